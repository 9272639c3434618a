"""The deletion receipt: written by the reaper when a file is finished and its source deleted.

Counts and identities only, never personal data: enough for an auditor to check that what was
ingested was accounted for and that the source is gone. Kept under `receipts/{file_id}.json`.
"""

from __future__ import annotations

from typing import Final

import msgspec

# Where receipts are kept, in the landing bucket (its lifecycle keeps them 400 days; the reaper's
# role may write only there).
RECEIPTS_PREFIX: Final = "receipts/"


def receipt_key(file_id: str) -> str:
    """The object key of a file's receipt."""
    return f"{RECEIPTS_PREFIX}{file_id}.json"


class DeletionReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """One finished file: where it was, how its records ended, when the source was deleted."""

    file_id: str
    bucket: str
    key: str
    version_id: str | None
    records: int | None
    published: int
    rejected: int
    dead_lettered: int
    source_deleted_at: int
