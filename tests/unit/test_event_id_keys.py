"""The event-id key: its minimum length, its version in the id, and a rotation during which one
record never gets two ids, whichever container handles it, however old its cache, and however
often the record is retried or redriven.

The containers here are `CachedKeyRing`s over one simulated secret, with one simulated clock:
each reads the secret when it first needs it, again when its copy is `KEY_MAX_AGE_SECONDS`
old, and again before a record whose file arrived after its last read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from contracts.events import SOURCE_ID_PATTERN
from contracts.messages import EventToPublish, FileRef, RecordToTransform
from ingest_cli.keys import DEVELOPMENT_KEY, KEY_ENV, KEY_FILE_ENV, event_id_key
from servicekit.errors import PermanentError
from servicekit.ledger import RecordStatus
from tests.builders import fragment, record
from transformer.core import Transformed, transform_fragment
from transformer.event_id import event_id, key_version_of
from transformer.keys import (
    KEY_MAX_AGE_SECONDS,
    MIN_KEY_BYTES,
    CachedKeyRing,
    EventIdKey,
    KeyRing,
    KeySetError,
    NoKeyForRecordError,
)
from transformer.parse import parse_fragment
from transformer.transform import transform_message

OLD_KEY = "Ol9dKeyOfVersionOne0fTheTransformer0123456789abcdefghijklmnopqrs"  # 64, as generated
NEW_KEY = "NewKeyOfVersionTwo0fTheTransformer0123456789abcdefghijklmnopqrstu"
NEWER_KEY = "NewerKeyOfVersionThree0fTheTransformer0123456789abcdefghijklmnopq"
EPOCH = datetime(2025, 7, 1, 9, 0, 0, tzinfo=UTC)  # the simulated clock's zero
FILE = FileRef(bucket="landing", key="incoming/DWP_D_20250701.xml", version_id="v1")


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def key_set(*versions: tuple[int, str, float | None]) -> str:
    """A key set as the rotation procedure writes it: (version, key, active from (seconds))."""
    return json.dumps(
        {
            "versions": [
                {"version": v, "key": k}
                | ({} if start is None else {"active_from": f"{at(start):%Y-%m-%dT%H:%M:%SZ}"})
                for v, k, start in versions
            ]
        }
    )


def records(n: int) -> list[bytes]:
    return [fragment(record(registration_id=str(100 + i))) for i in range(n)]


def id_of(xml: bytes, key: EventIdKey) -> str:
    out = transform_fragment(xml, key=key.secret, key_version=key.version)
    assert isinstance(out, Transformed)
    return out.event.source_id


# -- the id and its version ------------------------------------------------------------------


def test_a_plain_secret_is_version_1_and_its_ids_are_the_ids_made_before_key_versions() -> None:
    # the id below was made by the transformer before key versions existed (commit 0a02ada)
    key = KeyRing.parse("a key of version one, thirty-two bytes or more", source="secret S")
    only = key.for_arrival(None)

    assert (only.version, key.versions) == (1, (1,))
    assert id_of(fragment(record()), only) == (
        "gro1-6eb71d7902617c7a037500ca3b14876a4e17492f4a59967d1e83c720ddc2faa2"
    )


def test_version_1_in_a_key_set_gives_the_same_ids_as_the_plain_secret_it_came_from() -> None:
    plain = KeyRing.parse(OLD_KEY, source="secret S")
    rotated = KeyRing.parse(key_set((1, OLD_KEY, None), (2, NEW_KEY, 600)), source="secret S")

    for xml in records(5):
        assert id_of(xml, rotated.for_arrival(at(599))) == id_of(xml, plain.for_arrival(at(599)))
        assert id_of(xml, rotated.for_arrival(None)) == id_of(xml, plain.for_arrival(None))


def test_a_later_version_is_visible_in_the_id_and_the_id_still_fits_the_platform() -> None:
    rec = parse_fragment(fragment(record())).record
    first, second = event_id(rec, OLD_KEY.encode()), event_id(rec, NEW_KEY.encode(), 2)
    biggest = event_id(rec, NEW_KEY.encode(), 9999)

    assert first.startswith("gro1-") and not first.startswith("gro1-k")
    assert second.startswith("gro1-k2-") and len(second) == 72
    assert len(biggest) == 75
    for the_id in (first, second, biggest):
        assert re.fullmatch(SOURCE_ID_PATTERN, the_id)
    assert [key_version_of(i) for i in (first, second, biggest)] == [1, 2, 9999]
    assert key_version_of("not-ours") is None


def test_the_same_key_under_two_versions_would_still_give_two_ids() -> None:
    # the version is part of the id, so a rotation can never make an old id again by accident
    rec = parse_fragment(fragment(record())).record
    assert event_id(rec, OLD_KEY.encode(), 1) != event_id(rec, OLD_KEY.encode(), 2)


# -- the key's length and the key set's shape ---------------------------------------------------


def test_a_plain_secret_shorter_than_32_bytes_is_refused_naming_the_secret_not_the_key() -> None:
    with pytest.raises(KeySetError) as refused:
        KeyRing.parse("short-key-Zq81", source="secret gro-transformer-event-id-key")

    message = str(refused.value)
    assert "secret gro-transformer-event-id-key" in message
    assert f"14 bytes; an event id key needs at least {MIN_KEY_BYTES}" in message
    assert "short-key-Zq81" not in message


def test_an_empty_secret_is_refused() -> None:
    with pytest.raises(KeySetError, match="is 0 bytes"):
        KeyRing.parse("", source="secret S")
    with pytest.raises(KeySetError, match="is 0 bytes"):
        KeyRing.parse(b"", source="secret S")


def test_a_binary_secret_is_one_key() -> None:
    ring = KeyRing.parse(OLD_KEY.encode(), source="secret S")
    assert ring.for_arrival(None) == EventIdKey(1, OLD_KEY.encode())


@pytest.mark.parametrize(
    ("secret", "says"),
    [
        (key_set((1, OLD_KEY, None), (2, "Tooshort2", 600)), "version 2 is 9 bytes"),
        (key_set((1, OLD_KEY, None), (2, NEW_KEY, None)), "version 2 has no active_from"),
        (
            key_set((1, OLD_KEY, None), (2, NEW_KEY, 600), (3, NEWER_KEY, 600)),
            "version 3 is active from 2025-07-01T09:10:00Z, not after version 2",
        ),
        (key_set((1, OLD_KEY, None), (2, OLD_KEY, 600)), "version 2 has the same key as version 1"),
        (key_set((1, OLD_KEY, None), (1, NEW_KEY, 600)), "has version 1 twice"),
        (json.dumps({"versions": []}), "no valid key set"),
        (json.dumps({"versions": [{"version": 0, "key": OLD_KEY}]}), "$.versions[0].version"),
        (json.dumps({"versions": [{"version": 1, "key": OLD_KEY, "kid": 1}]}), "kid"),
        (
            json.dumps(
                {"versions": [{"version": 2, "key": NEW_KEY, "active_from": "2025-07-01T09:00"}]}
            ),
            "$.versions[0].active_from",
        ),
        ('{"versions": [{"version": 1, "key": "' + OLD_KEY, "is not JSON"),
    ],
    ids=[
        "short key",
        "later version without active_from",
        "activations not increasing",
        "a key reused",
        "a version twice",
        "no versions",
        "version 0",
        "an unknown field",
        "a time without its zone",
        "not JSON",
    ],
)
def test_a_malformed_key_set_is_refused_saying_what_and_where_and_never_a_key(
    secret: str, says: str
) -> None:
    with pytest.raises(KeySetError) as refused:
        KeyRing.parse(secret, source="secret S")

    message = str(refused.value)
    assert says in message
    assert "secret S" in message
    for key in (OLD_KEY, NEW_KEY, NEWER_KEY, "Tooshort2"):
        assert key not in message


def test_a_key_never_shows_in_a_repr() -> None:
    ring = KeyRing.parse(key_set((1, OLD_KEY, None), (2, NEW_KEY, 600)), source="secret S")
    shown = repr(ring) + repr(ring.for_arrival(at(700)))
    assert OLD_KEY not in shown and NEW_KEY not in shown
    assert "version=2" in shown


def test_the_cli_refuses_a_key_under_32_bytes_from_any_source(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.setenv(KEY_ENV, "production-like")
    with pytest.raises(ValueError, match=r"\$INGEST_EVENT_ID_KEY is 15 bytes") as from_env:
        event_id_key()
    assert "production-like" not in str(from_env.value)

    short = tmp_path / "key"
    short.write_text("production-like\n")
    with pytest.raises(ValueError, match=r"key file .* is 15 bytes"):
        event_id_key(str(short))

    monkeypatch.setenv(KEY_ENV, "x" * MIN_KEY_BYTES)
    assert event_id_key() == b"x" * MIN_KEY_BYTES


def test_the_cli_refuses_a_key_set_in_a_key_file_rather_than_hash_it_as_a_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    path = tmp_path / "secret.json"
    path.write_text(key_set((1, OLD_KEY, None), (2, NEW_KEY, 600)))

    with pytest.raises(ValueError, match="holds a key set") as refused:
        event_id_key(str(path))
    assert OLD_KEY not in str(refused.value)


def test_the_cli_development_key_is_long_enough_and_unchanged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    assert (
        event_id_key()
        == DEVELOPMENT_KEY
        == b"gro-ingest development event-id key: NOT FOR PRODUCTION"
    )
    assert len(DEVELOPMENT_KEY) >= MIN_KEY_BYTES


# -- which version a record gets ---------------------------------------------------------------


def test_a_record_gets_the_newest_version_active_when_its_file_arrived() -> None:
    ring = KeyRing.parse(
        key_set((1, OLD_KEY, None), (2, NEW_KEY, 600), (3, NEWER_KEY, 1200)), source="secret S"
    )

    assert [ring.for_arrival(at(t)).version for t in (-(10**6), 599, 600, 1199, 1200, 10**6)] == [
        1,
        1,
        2,
        2,
        3,
        3,
    ]
    assert ring.for_arrival(None).version == 1  # split before arrival times were stamped


def test_once_version_1_is_retired_a_record_of_its_era_is_refused_not_given_a_new_id() -> None:
    ring = KeyRing.parse(key_set((2, NEW_KEY, 600), (3, NEWER_KEY, 1200)), source="secret S")

    assert ring.for_arrival(at(600)).version == 2
    with pytest.raises(NoKeyForRecordError, match="oldest kept, version 2, is active from"):
        ring.for_arrival(at(599))
    with pytest.raises(NoKeyForRecordError, match="carries no file arrival time"):
        ring.for_arrival(None)


# -- the rotation, across containers, retries and redrives -----------------------------------


@dataclass
class Secret:
    """Secrets Manager, as the containers see it: the value in force at the clock's time."""

    clock: list[float]
    history: list[tuple[float, str]] = field(default_factory=list)
    reads: int = 0

    def put(self, when: float, value: str) -> None:
        self.history.append((when, value))

    def get(self) -> str:
        self.reads += 1
        return [value for when, value in self.history if when <= self.clock[0]][-1]


@dataclass
class Cloud:
    """One secret, one clock, and containers that each read the secret through their cache."""

    now: list[float] = field(default_factory=lambda: [0.0])
    late: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.secret = Secret(self.now)
        self.secret.put(-(10**6), OLD_KEY)  # deployed long ago: the plain key, version 1

    def container(self) -> CachedKeyRing:
        return CachedKeyRing(
            self.secret.get,
            source="secret S",
            clock=lambda: EPOCH.timestamp() + self.now[0],
            on_late_version=self.late.append,
        )

    def at(self, seconds: float) -> Cloud:
        """The clock moves to `seconds`."""
        self.now[0] = seconds
        return self


def rotation_run(lead: float) -> tuple[dict[tuple[float, bytes], set[str]], dict[float, int]]:
    """Files arrive every 45 s for an hour around a rotation written at t=1000 with version 2
    active `lead` seconds later. Two containers, whose caches were read 240 s apart, each
    handle every record several times, from the moment its file arrives to an hour later (a
    retry, a redelivery, a redrive), interleaved in time order. Returns the ids seen per record
    and the version given per file."""
    cloud = Cloud()
    written = 1000.0
    cloud.secret.put(written, key_set((1, OLD_KEY, None), (2, NEW_KEY, written + lead)))
    a, b = cloud.container(), cloud.container()
    a(None)  # a reads the secret at t=0
    cloud.at(240)
    b(None)  # b at t=240
    files = [float(t) for t in range(0, 3600, 45)]
    xmls = records(2)
    work = sorted(
        (arrival + delay, arrival, who, xml)
        for arrival in files
        for delay in (0, 7, 130, 299, 301, 900, 3600)
        for who in (0, 1)
        for xml in xmls
    )
    seen: dict[tuple[float, bytes], set[str]] = {}
    version: dict[float, int] = {}
    for when, arrival, who, xml in work:
        cloud.at(when)
        key = (a, b)[who](at(arrival))
        seen.setdefault((arrival, xml), set()).add(id_of(xml, key))
        version[arrival] = key.version
    return seen, version


@pytest.mark.parametrize(
    "lead",
    [KEY_MAX_AGE_SECONDS + 60, 3600, 5],
    ids=["lead just over the cache age", "an hour's lead", "a lead of 5 s, far under the cache"],
)
def test_during_a_rotation_two_containers_with_differently_aged_caches_give_one_id_per_record(
    lead: float,
) -> None:
    seen, version = rotation_run(lead)

    assert all(len(ids) == 1 for ids in seen.values()), "a record got two ids"
    activation = 1000 + lead
    assert {t for t, v in version.items() if v == 2} == {t for t in version if t >= activation}
    assert {version[t] for t in version if t < activation} == {1}
    # and the ids of version 2 say so
    assert all(
        next(iter(ids)).startswith("gro1-k2-") == (arrival >= activation)
        for (arrival, _), ids in seen.items()
    )


def test_without_rereading_for_a_newer_file_a_stale_container_would_give_a_second_id() -> None:
    # the hazard the rule prevents: a container choosing from a key set read before the file
    # arrived, here one read before the rotation was written
    stale = KeyRing.parse(OLD_KEY, source="secret S")
    fresh = KeyRing.parse(key_set((1, OLD_KEY, None), (2, NEW_KEY, 1005)), source="secret S")
    xml = records(1)[0]

    assert id_of(xml, stale.for_arrival(at(1010))) != id_of(xml, fresh.for_arrival(at(1010)))


def test_a_container_reads_the_secret_again_once_per_newer_file_not_once_per_record() -> None:
    cloud = Cloud()
    container = cloud.container()
    for t in range(0, 200):  # a file that arrived at t=0, its records handled for 200 s
        cloud.at(t)
        container(at(0))
    assert cloud.secret.reads == 1
    cloud.at(250)
    for _ in range(100):  # a new file arrived at t=240: one read before its first record
        container(at(240))
    assert cloud.secret.reads == 2
    cloud.at(250 + KEY_MAX_AGE_SECONDS)
    container(at(0))  # the cache's age alone makes it read again
    assert cloud.secret.reads == 3


def test_a_redrive_after_activation_keeps_the_id_its_record_got_before() -> None:
    # given: a record of a file that arrived before version 2's activation was transformed
    # under version 1, then dead-lettered downstream
    cloud = Cloud()
    cloud.secret.put(100, key_set((1, OLD_KEY, None), (2, NEW_KEY, 600)))
    body = RecordToTransform(
        file=FILE, ordinal=1, fragment=records(1)[0].decode(), file_arrived=at(590)
    )
    sent: list[EventToPublish] = []

    class Sink:
        def send(self, message: EventToPublish) -> None:
            sent.append(message)

    first = transform_message(body, key_for=cloud.at(595).container(), events=Sink())

    # when: it is redriven a day later, by a container that never saw version 1 alone
    redriven = msgspec.json.decode(msgspec.json.encode(body), type=RecordToTransform)
    again = transform_message(redriven, key_for=cloud.at(86_400).container(), events=Sink())

    # then
    assert again == first and key_version_of(first) == 1
    # while a file that arrived after the activation gets version 2
    later = msgspec.structs.replace(body, file_arrived=at(600))
    assert key_version_of(transform_message(later, key_for=cloud.container(), events=Sink())) == 2


def test_a_message_split_before_stamps_existed_keeps_its_version_1_id_after_a_rotation() -> None:
    cloud = Cloud()
    xml = records(1)[0].decode()
    unstamped = RecordToTransform(file=FILE, ordinal=1, fragment=xml)
    before = transform_message(unstamped, key_for=cloud.container(), events=_Nowhere())
    cloud.secret.put(100, key_set((1, OLD_KEY, None), (2, NEW_KEY, 600)))

    after = transform_message(unstamped, key_for=cloud.at(10_000).container(), events=_Nowhere())

    assert after == before and key_version_of(after) == 1


def test_a_record_whose_version_was_retired_is_dead_lettered_with_the_reason() -> None:
    cloud = Cloud()
    cloud.secret.put(100, key_set((2, NEW_KEY, 600)))
    body = RecordToTransform(
        file=FILE, ordinal=3, fragment=records(1)[0].decode(), file_arrived=at(10)
    )

    with pytest.raises(PermanentError) as refused:
        transform_message(body, key_for=cloud.at(700).container(), events=_Nowhere())

    assert refused.value.status is RecordStatus.DEAD_LETTERED
    assert "put the retired version back and redrive" in str(refused.value)


def test_a_version_written_with_active_from_in_the_past_is_reported() -> None:
    # given: a container read the secret at t=490, then served, under version 1, a record of
    # a file that arrived at t=480
    cloud = Cloud()
    container = cloud.at(490).container()
    container(None)
    cloud.at(510)
    assert container(at(480)).version == 1
    # when: version 2 is written at t=520, active from t=470 (in the past), and read
    cloud.secret.put(520, key_set((1, OLD_KEY, None), (2, NEW_KEY, 470)))
    cloud.at(490 + KEY_MAX_AGE_SECONDS)
    assert container(at(480)).version == 2

    # then: the record of t=480 may now have two ids; the container says so
    assert cloud.late == [2]


def test_a_version_written_ahead_of_its_activation_is_not_reported() -> None:
    cloud = Cloud()
    container = cloud.at(490).container()
    container(at(480))
    cloud.secret.put(520, key_set((1, OLD_KEY, None), (2, NEW_KEY, 900)))
    cloud.at(2000)
    assert container(at(1000)).version == 2
    assert cloud.late == []


def test_a_bad_secret_fails_at_first_use_and_every_use_until_it_is_fixed() -> None:
    cloud = Cloud()
    cloud.secret.put(10, "short")
    container = cloud.at(20).container()  # built: nothing read yet
    assert cloud.secret.reads == 0

    with pytest.raises(KeySetError, match="is 5 bytes"):
        container(None)
    with pytest.raises(KeySetError):
        container(None)

    cloud.secret.put(30, OLD_KEY)
    cloud.at(31)
    assert container(None).version == 1


class _Nowhere:
    def send(self, message: EventToPublish) -> None:
        pass
