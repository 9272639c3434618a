"""The transformer's step: one record-to-transform message becomes one event-to-publish
message, or a rejection with reasons. Pure: the outgoing queue comes in as a port."""

from __future__ import annotations

from typing import Protocol

from contracts.messages import EventToPublish, RecordToTransform
from servicekit.errors import PermanentError
from servicekit.ledger import RecordStatus
from transformer.core import Rejected, transform_fragment


class EventSink(Protocol):
    """Where events go (the events-to-publish queue)."""

    def send(self, message: EventToPublish) -> None: ...


def transform_message(message: RecordToTransform, *, key: bytes, events: EventSink) -> str:
    """Transform the record and send its event on; returns the event id. A record that breaks
    a rule raises `PermanentError` with the reasons (fields and rules, never values)."""
    outcome = transform_fragment(message.fragment, key=key)
    if isinstance(outcome, Rejected):
        raise PermanentError(*outcome.reasons, status=RecordStatus.REJECTED)
    events.send(
        EventToPublish(
            file=message.file,
            ordinal=message.ordinal,
            event=outcome.event,
        )
    )
    return outcome.event.source_id
