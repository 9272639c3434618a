"""The temporary store's item: the full event, kept only until it is consumed or its time is up.

Written by the publisher, read by its enrichment function, deleted by the reaper (consumed, or
past `expires_at`): a shape two services share, so it lives here. How it is written to DynamoDB
is the shared runtime's business (`servicekit.store`).
"""

from __future__ import annotations

import msgspec

from contracts.events import DeathNotification


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One item of the store. The event is kept as its own JSON, exactly as it will be served."""

    id: str
    event: DeathNotification
    expires_at: int
    file_id: str
    ordinal: int
