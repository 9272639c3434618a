"""The event-id keys: which key makes a record's id, before, during and after a rotation.

The transformer's secret holds either one key, the format first deployed, which is version 1
and in force since always:

    Xq3...64 random letters and digits...

or a key set, which a rotation writes (README, "Rotating the event-id key"):

    {"versions": [
        {"version": 1, "key": "Xq3...the key above, unchanged..."},
        {"version": 2, "key": "...", "active_from": "2025-07-01T09:00:00Z"}
    ]}

A record's key is the newest version that was active when the record's file arrived: the S3
LastModified of the file's object version, stamped by the splitter on every record-to-transform
message (`file_arrived`). That time belongs to the record and travels with it through retries,
dead letters and redrives, so the choice is a pure function of (record, key set); and a
container never makes it from a key set read before the file arrived (`CachedKeyRing`), so every
container makes it the same way as long as each version is written before it becomes active.
A message without the stamp was split before stamps existed: its key is the one of that time
(the version without `active_from`).

Pure: no AWS, no I/O. Errors say what is wrong and where, never a key.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import msgspec

# The least an event-id key may weigh (HMAC-SHA256's own output size). A generated key has 64
# random letters and digits (about 380 bits).
MIN_KEY_BYTES = 32
# How long a container keeps the key set before reading the secret again: how long a retired
# version may still be used after it left the secret.
KEY_MAX_AGE_SECONDS = 300
# A record whose file arrived after the last read makes the container read the secret again
# first, but not more often than this (the clocks of S3 and of a container may differ a little).
MIN_REREAD_SECONDS = 1.0
# Keeps every id within the platform's 80 characters (`gro1-k9999-` + 64 hex digits = 75).
MAX_VERSION = 9999


class KeySetError(ValueError):
    """The secret does not hold a usable key or key set: says what and where, never a key."""


class NoKeyForRecordError(LookupError):
    """No kept key version was active when the record's file arrived (retired too early)."""


class _VersionDocument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1, le=MAX_VERSION)]
    key: str
    active_from: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class _KeySetDocument(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    versions: Annotated[list[_VersionDocument], msgspec.Meta(min_length=1)]


_decode_key_set = msgspec.json.Decoder(_KeySetDocument).decode


@dataclass(frozen=True, slots=True)
class EventIdKey:
    """One version of the key. `secret` is left out of the repr, so no log or traceback shows it."""

    version: int
    secret: bytes = field(repr=False)
    active_from: datetime | None = None


def check_key(key: bytes, *, what: str) -> bytes:
    """`key`, if it is long enough to be an event-id key; else a clear error naming `what`."""
    if len(key) < MIN_KEY_BYTES:
        raise KeySetError(
            f"{what} is {len(key)} bytes; an event id key needs at least {MIN_KEY_BYTES} "
            "(generate 64 random letters and digits)"
        )
    return key


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The key versions the secret holds, oldest first."""

    keys: tuple[EventIdKey, ...]

    @classmethod
    def single(cls, key: bytes, *, what: str) -> KeyRing:
        """One key, version 1, in force since always (the secret's first format)."""
        return cls((EventIdKey(1, check_key(key, what=what)),))

    @classmethod
    def parse(cls, value: str | bytes, *, source: str) -> KeyRing:
        """The secret's value: one key (version 1), or a key set (JSON, `{"versions": [...]}`).

        A plain key is taken as it stands, byte for byte, so that ids made under it before key
        sets existed do not change.
        """
        if isinstance(value, bytes):  # a binary secret is one key
            return cls.single(value, what=f"the key in {source}")
        if not value.lstrip().startswith("{"):
            return cls.single(value.encode(), what=f"the key in {source}")
        try:
            document = _decode_key_set(value)
        except msgspec.ValidationError as err:  # names the field and the rule, not the value
            raise KeySetError(f"{source} holds no valid key set: {err}") from None
        except msgspec.DecodeError:
            raise KeySetError(f"{source} starts with '{{' but is not JSON") from None
        return cls._from_document(document, source)

    @classmethod
    def _from_document(cls, document: _KeySetDocument, source: str) -> KeyRing:
        versions = sorted(document.versions, key=lambda v: v.version)
        seen: dict[bytes, int] = {}
        keys: list[EventIdKey] = []
        for i, doc in enumerate(versions):
            where = f"{source}, version {doc.version}"
            secret = check_key(doc.key.encode(), what=f"the key of {where}")
            if secret in seen:
                raise KeySetError(f"{where} has the same key as version {seen[secret]}")
            seen[secret] = doc.version
            if i and doc.version == versions[i - 1].version:
                raise KeySetError(f"{source} has version {doc.version} twice")
            if i and doc.active_from is None:
                raise KeySetError(
                    f"{where} has no active_from: only the oldest version may lack one"
                )
            previous = keys[-1].active_from if keys else None
            if doc.active_from and previous and doc.active_from <= previous:
                raise KeySetError(
                    f"{where} is active from {_utc(doc.active_from)}, not after version "
                    f"{keys[-1].version} ({_utc(previous)}): later versions start later"
                )
            keys.append(EventIdKey(doc.version, secret, doc.active_from))
        return cls(tuple(keys))

    @property
    def versions(self) -> tuple[int, ...]:
        """The versions held, oldest first."""
        return tuple(k.version for k in self.keys)

    def for_arrival(self, arrived: datetime | None) -> EventIdKey:
        """The key of a record whose file arrived at `arrived` (None: split before stamps
        existed): the newest version active then."""
        if arrived is None:
            first = self.keys[0]
            if first.active_from is None:
                return first
            raise NoKeyForRecordError(
                "the record carries no file arrival time (it was split before times were "
                "stamped), so its key is the one of before the first rotation, which the key "
                f"set no longer holds (oldest kept: version {first.version}); put that version "
                "back and redrive"
            )
        chosen: EventIdKey | None = None
        for key in self.keys:
            if key.active_from is None or key.active_from <= arrived:
                chosen = key
            else:
                break
        if chosen is None:
            first = self.keys[0]
            assert first.active_from is not None  # else it would have been chosen
            raise NoKeyForRecordError(
                f"no kept key version was active when the record's file arrived "
                f"({_utc(arrived)}): the oldest kept, version {first.version}, is active from "
                f"{_utc(first.active_from)}; put the retired version back and redrive"
            )
        return chosen


class CachedKeyRing:
    """The key ring from a secret, as a container holds it: read on first use, again once it
    is `max_age` seconds old, and again before serving a record whose file arrived after the
    last read.

    That last rule is the rotation's guarantee: a container never chooses a record's key from a
    key set read before the record's file arrived. Every version written before the file
    arrived is then known to every container that handles the record, and a version written
    after it is active only later (its `active_from` is in the future when it is written), so
    it does not apply: every container, every retry and every redrive choose the same version,
    whatever the age of their caches. `max_age` bounds how long a retired version stays in use.

    The cache is kept here, not in Powertools Parameters, because the guarantee depends on when
    the secret was read, and `clock` (seconds since the epoch) lets a test run two containers
    through a rotation. `fetch` reads the secret. `on_late_version(version)` is told when a
    read finds a new version active from a time at or before the arrival of a record this
    container already served under the old key set: a version written with `active_from` in
    the past, whose window of records may have ids under the version before it.
    """

    def __init__(
        self,
        fetch: Callable[[], str | bytes],
        *,
        source: str,
        max_age: float = KEY_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.time,
        on_late_version: Callable[[int], None] = lambda _version: None,
    ) -> None:
        self._fetch = fetch
        self._source = source
        self._max_age = max_age
        self._clock = clock
        self._on_late_version = on_late_version
        self._ring: KeyRing | None = None
        self._read_at = 0.0
        self._latest_served: datetime | None = None  # the latest arrival served by this ring

    def __call__(self, arrived: datetime | None) -> EventIdKey:
        """The key of a record whose file arrived at `arrived` (None: not stamped)."""
        now = self._clock()
        if (
            self._ring is None
            or now - self._read_at >= self._max_age
            or (
                arrived is not None
                and arrived.timestamp() > self._read_at
                and now - self._read_at >= MIN_REREAD_SECONDS
            )
        ):
            self._read(now)
        assert self._ring is not None
        key = self._ring.for_arrival(arrived)
        if arrived is not None and (self._latest_served is None or arrived > self._latest_served):
            self._latest_served = arrived
        return key

    def _read(self, now: float) -> None:
        ring = KeyRing.parse(self._fetch(), source=self._source)
        if self._ring is not None and self._latest_served is not None:
            known = set(self._ring.versions)
            for key in ring.keys:
                if (
                    key.version not in known
                    and key.active_from is not None
                    and key.active_from <= self._latest_served
                ):
                    self._on_late_version(key.version)
        if self._ring is None or ring.keys != self._ring.keys:
            self._latest_served = None  # what the new key set serves from here
        self._ring, self._read_at = ring, now
