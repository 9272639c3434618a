"""The deletion receipt: written by the reaper when a file is finished and its source deleted,
and written again when the last of its records has left the temporary store.

Counts, times, hashes and identities only, never personal data: enough for an auditor to check
that what was ingested was accounted for, that the source is gone, and that nothing of it is
left in the store. Kept under `receipts/{file_id}.json`.

Every count and time added after the first release is optional (a receipt written before reads
as before); `omit_defaults` keeps such a receipt's JSON as it was.
"""

from __future__ import annotations

from typing import Final

import msgspec

# Where receipts are kept, in the landing bucket (its lifecycle keeps them 400 days; the reaper's
# roles may write only there).
RECEIPTS_PREFIX: Final = "receipts/"


def receipt_key(file_id: str) -> str:
    """The object key of a file's receipt."""
    return f"{RECEIPTS_PREFIX}{file_id}.json"


class DeletionReceipt(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One finished file: what it was, how its records ended, when each stage finished, when
    the source was deleted and when the last of its records left the temporary store.

    Times are Unix seconds (UTC). `published = consumed + expired + removed_otherwise + in_store`:
    each published record left the store by a consumed notice, by the reaper's sweep at its
    expiry, or was found gone by the reaper (deleted by the publisher as a duplicate the
    platform already had, or by DynamoDB's TTL), or is still there. `complete`: the source is
    deleted and none of the file's published records is left in the store.
    """

    file_id: str
    bucket: str
    key: str
    version_id: str | None
    records: int | None
    published: int
    rejected: int
    dead_lettered: int
    source_deleted_at: int
    # the file itself: SHA-256 (hex) of its bytes and its size in bytes, as the splitter read it
    sha256: str | None = None
    size: int | None = None
    # how the published records left the temporary store
    consumed: int | None = None
    expired: int | None = None
    removed_otherwise: int | None = None
    in_store: int | None = None
    # when each stage finished: splitting began, every record emitted, the last record
    # published, the last record ended (published, rejected or dead-lettered), and the last
    # record left the store
    started_at: int | None = None
    split_at: int | None = None
    published_at: int | None = None
    accounted_at: int | None = None
    last_left_store_at: int | None = None
    complete: bool | None = None
