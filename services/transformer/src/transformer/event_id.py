"""Deterministic, keyed event ids.

The id is an HMAC-SHA256, under a secret key, of the record's content with whitespace
collapsed. The same record always gives the same id (so a re-ingested file or a redriven
message cannot make a second event), any change of content gives another (an update is a
different event from the registration it updates), and without the key nobody can test a
guessed name and date against an id. Hex keeps it inside the platform's id alphabet.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from contracts.gro import GroDeathRecord

ID_PREFIX = "gro1-"
# Bump only with a new event id scheme: it is hashed into every id.
_DOMAIN = b"gro-death-notification/id/v1\x00"


def _normalised(value: object) -> object:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    return value


def identity_bytes(record: GroDeathRecord) -> bytes:
    """The canonical bytes an id is computed from: content, not layout."""
    return _DOMAIN + msgspec.json.encode(_normalised(msgspec.to_builtins(record)), order="sorted")


def event_id(record: GroDeathRecord, key: bytes) -> str:
    """The record's event id: `gro1-` and 64 hex digits (69 characters)."""
    if not key:
        raise ValueError("the event id key is empty")
    digest = hmac.new(key, identity_bytes(record), hashlib.sha256).hexdigest()
    return ID_PREFIX + digest
