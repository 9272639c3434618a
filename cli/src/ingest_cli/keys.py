"""Where the CLI gets the event id key: the environment, a key file, or a fixed development key.

Whatever its source, a key shorter than `MIN_KEY_BYTES` is refused with a clear error (which
names the source and the length, never the key). The CLI makes version 1 ids (`gro1-` + hex)
under one key; a key set (the secret's format after a rotation) is refused: put the key of the
version wanted in the file.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from transformer.keys import MIN_KEY_BYTES, check_key

__all__ = ["DEVELOPMENT_KEY", "KEY_ENV", "KEY_FILE_ENV", "MIN_KEY_BYTES", "event_id_key"]

KEY_ENV = "INGEST_EVENT_ID_KEY"
KEY_FILE_ENV = "INGEST_EVENT_ID_KEY_FILE"
# Fixed so that two local runs over one file give the same ids. Never used on AWS, where the
# key comes from Secrets Manager.
DEVELOPMENT_KEY = b"gro-ingest development event-id key: NOT FOR PRODUCTION"


def _one_key(key: bytes, what: str) -> bytes:
    if key.lstrip().startswith(b"{"):
        raise ValueError(
            f"{what} holds a key set (JSON), not one key: put the key of one version in it"
        )
    return check_key(key, what=what)


def event_id_key(key_file: str | None = None) -> bytes:
    """The key from --key-file, $INGEST_EVENT_ID_KEY_FILE, $INGEST_EVENT_ID_KEY or the dev key."""
    path = key_file or os.environ.get(KEY_FILE_ENV)
    if path:
        key = Path(path).read_bytes().strip()
        if not key:
            raise ValueError(f"key file {path} is empty")
        return _one_key(key, f"key file {path}")
    value = os.environ.get(KEY_ENV)
    if value:
        return _one_key(value.encode(), f"${KEY_ENV}")
    print(
        f"ingest: no {KEY_ENV} or {KEY_FILE_ENV}: using the fixed development key "
        "(ids are stable but not secret)",
        file=sys.stderr,
    )
    return check_key(DEVELOPMENT_KEY, what="the development key")
