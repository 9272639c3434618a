"""Deterministic, keyed event ids.

The id is an HMAC-SHA256, under a secret key, of the record's content with whitespace
collapsed. The same record always gives the same id (so a re-ingested file or a redriven
message cannot make a second event), any change of content gives another (an update is a
different event from the registration it updates), and without the key nobody can test a
guessed name and date against an id. Hex keeps it inside the platform's id alphabet.

The key's version is in the id from version 2 on (`gro1-k2-` + hex, 72 characters); an id of
version 1, the key first deployed, has no marker (`gro1-` + hex, 69 characters), so that no id
made before key versions existed changes. Which version a record gets: `transformer.keys`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

import msgspec

from contracts.gro import GroDeathRecord
from transformer.rules import all_collapsed

ID_PREFIX = "gro1-"
# Bump only with a new event id scheme: it is hashed into every id.
_DOMAIN = b"gro-death-notification/id/v1\x00"
_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def _normalised(value: object) -> object:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    return value


def identity_bytes(record: GroDeathRecord) -> bytes:
    """The canonical bytes an id is computed from: content, not layout.

    The record as builtins, every string collapsed, keys sorted. Most records have nothing to
    collapse: then the record encoded as it is gives the same bytes (a Struct encodes with
    `order="sorted"` exactly as its builtins do), without the walk.
    """
    return identity_and_plain(record)[0]


def identity_and_plain(record: GroDeathRecord) -> tuple[bytes, bool]:
    """`identity_bytes`, and whether the record had nothing to collapse (then `mapping` need
    not look again: the event is read off the record as it is)."""
    encoded = _encode_sorted(record)
    if all_collapsed(encoded):
        return _DOMAIN + encoded, True
    normalised = _normalised(msgspec.to_builtins(record))
    return _DOMAIN + msgspec.json.encode(normalised, order="sorted"), False


def id_prefix(key_version: int) -> str:
    """What an id under this key version starts with: `gro1-`, or `gro1-k<version>-`."""
    if key_version < 1:
        raise ValueError(f"key version {key_version} is not a version (1 or more)")
    return ID_PREFIX if key_version == 1 else f"{ID_PREFIX}k{key_version}-"


def key_version_of(source_id: str) -> int | None:
    """The key version an event id was made under (None: not an id of this scheme)."""
    if not source_id.startswith(ID_PREFIX):
        return None
    rest = source_id[len(ID_PREFIX) :]
    if not rest.startswith("k"):
        return 1
    version, _, _ = rest[1:].partition("-")
    return int(version) if version.isdigit() else None


def event_id(record: GroDeathRecord, key: bytes, key_version: int = 1) -> str:
    """The record's event id: `gro1-` (version 1) or `gro1-k<version>-`, and 64 hex digits.

    The key's length is checked where keys come in (`transformer.keys.check_key`).
    """
    return keyed_id(identity_bytes(record), key, key_version)


def keyed_id(identity: bytes, key: bytes, key_version: int = 1) -> str:
    """The event id of a record whose `identity_bytes` these are."""
    if not key:
        raise ValueError("the event id key is empty")
    mac = _keyed(key).copy()
    mac.update(identity)
    return (ID_PREFIX if key_version == 1 else id_prefix(key_version)) + mac.hexdigest()


@functools.lru_cache(maxsize=8)
def _keyed(key: bytes) -> hmac.HMAC:
    # The HMAC with the key already taken in, copied for each record: a third cheaper than a
    # new HMAC per record (a process uses a key or two: the current one, and older versions).
    return hmac.new(key, digestmod=hashlib.sha256)
