"""The deletion receipt: written by the reaper when a file is finished and its source deleted.

Counts and identities only, never personal data: enough for an auditor to check that what was
ingested was accounted for and that the source is gone. Kept under `receipts/{file_id}.json`.
"""

from __future__ import annotations

import msgspec


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
