"""The publisher's decisions, as pure functions over ports: store the full event briefly,
announce the minimal event, and serve enrichment.

- The event is stored first (put if absent, with an expiry), then announced: the platform may
  ask for it as soon as it knows the id.
- 201 and 409 both mean the platform has it. A 409 for an event this call has just stored means
  an earlier ingestion's copy was consumed or expired: nobody will ask for this one, so it is
  not kept.
- The platform's 400/403 are permanent (`PermanentPlatformError`), 429/5xx and network failures
  transient (`TransientPlatformError`): the shared consumer policy dead-letters or retries.
- A message given up on has its stored copy deleted: nothing will ever ask for it.
"""

from __future__ import annotations

import re
from typing import Protocol

import msgspec

from contracts.enrichment import EnrichRequest, EnrichResponse
from contracts.events import SOURCE_ID_PATTERN, DeathNotification, MinimalEvent
from contracts.messages import EventToPublish, file_id
from contracts.stored import StoredEvent

# The platform's rule for a source id: anything else is not an id of ours.
_SOURCE_ID = re.compile(SOURCE_ID_PATTERN)


class EventStore(Protocol):
    """The temporary store."""

    def put_if_absent(self, item: StoredEvent) -> bool: ...
    def get_live(self, event_id: str, now: float | None = None) -> DeathNotification | None: ...
    def delete(self, event_id: str) -> None: ...


class Platform(Protocol):
    """The platform's publishing API."""

    def publish(self, event: MinimalEvent) -> int:
        """201 or 409 (it has the event), else raises a platform error."""
        ...


class Published(msgspec.Struct, frozen=True, kw_only=True):
    """What publishing one event did."""

    event_id: str
    status: int
    stored: bool


def publish_event(
    message: EventToPublish,
    *,
    store: EventStore,
    platform: Platform,
    now: int,
    retention_seconds: int,
) -> Published:
    """Store the event if it is not there, then post its minimal event to the platform."""
    event = message.event
    stored = store.put_if_absent(
        StoredEvent(
            id=event.source_id,
            event=event,
            expires_at=now + retention_seconds,
            file_id=file_id(message.file),
            ordinal=message.ordinal,
        )
    )
    status = platform.publish(MinimalEvent(event_time=event.event_time, id=event.source_id))
    if status == 409 and stored:
        store.delete(event.source_id)
    return Published(event_id=event.source_id, status=status, stored=stored)


def forget(message: EventToPublish, *, store: EventStore) -> None:
    """A message given up on: delete its stored copy, which nobody will ever ask for."""
    store.delete(message.event.source_id)


def enrich(request: EnrichRequest, *, store: EventStore) -> EnrichResponse:
    """The stored event for the platform (200), or 404 when the id is unknown, gone, expired,
    or not an id at all (never echoed back)."""
    if not _SOURCE_ID.match(request.id):
        return EnrichResponse(status_code=404)
    found = store.get_live(request.id)
    if found is None:
        return EnrichResponse(status_code=404)
    return EnrichResponse(status_code=200, payload=found)
