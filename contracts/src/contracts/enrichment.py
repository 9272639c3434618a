"""Enrichment: the platform invokes the publisher's `enrich` function for an event's data.

The shapes are the platform's (shared/reference/platform-api.md): `{"id": ...}` in,
`{"statusCode": 200, "payload": {...}}` or `{"statusCode": 404}` out (400 for a request that has
no id). The payload is the stored `DeathNotification`, as it was stored.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from contracts.events import DeathNotification


class EnrichRequest(msgspec.Struct, frozen=True, kw_only=True):
    """What the platform sends. `id` is any string: one that is not an id of ours is a 404."""

    id: str


class EnrichResponse(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What enrichment answers: 200 with the payload, 404 unknown or gone, 400 malformed."""

    status_code: Literal[200, 400, 404] = msgspec.field(name="statusCode")
    payload: DeathNotification | None = None
