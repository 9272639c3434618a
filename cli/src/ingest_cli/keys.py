"""Where the CLI gets the event id key: the environment, a key file, or a fixed development key."""

from __future__ import annotations

import os
import sys
from pathlib import Path

KEY_ENV = "INGEST_EVENT_ID_KEY"
KEY_FILE_ENV = "INGEST_EVENT_ID_KEY_FILE"
# Fixed so that two local runs over one file give the same ids. Never used on AWS, where the
# key comes from Secrets Manager.
DEVELOPMENT_KEY = b"gro-ingest development event-id key: NOT FOR PRODUCTION"


def event_id_key(key_file: str | None = None) -> bytes:
    """The key from --key-file, $INGEST_EVENT_ID_KEY_FILE, $INGEST_EVENT_ID_KEY or the dev key."""
    path = key_file or os.environ.get(KEY_FILE_ENV)
    if path:
        key = Path(path).read_bytes().strip()
        if not key:
            raise ValueError(f"key file {path} is empty")
        return key
    value = os.environ.get(KEY_ENV)
    if value:
        return value.encode()
    print(
        f"ingest: no {KEY_ENV} or {KEY_FILE_ENV}: using the fixed development key "
        "(ids are stable but not secret)",
        file=sys.stderr,
    )
    return DEVELOPMENT_KEY
