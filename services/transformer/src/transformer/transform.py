"""The transformer's step: one record-to-transform message becomes one event-to-publish
message, or a rejection with reasons. Pure: the outgoing queue and the keys come in as ports."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from contracts.messages import EventToPublish, RecordToTransform
from servicekit.errors import PermanentError
from servicekit.ledger import RecordStatus
from transformer.core import Rejected, transform_fragment
from transformer.keys import EventIdKey, NoKeyForRecordError


class EventSink(Protocol):
    """Where events go (the events-to-publish queue; the send itself may be put off to the end
    of the batch, see `transformer.app.QueueEvents`)."""

    def send(self, message: EventToPublish) -> None: ...


# The event-id key of a record whose file arrived then (None: the message carries no time).
KeyFor = Callable[[datetime | None], EventIdKey]


def transform_message(
    message: RecordToTransform,
    *,
    key_for: KeyFor,
    events: EventSink,
    left_out: Callable[[int], None] = lambda _count: None,
) -> str:
    """Transform the record and send its event on; returns the event id. A record that breaks
    a rule raises `PermanentError` with the reasons (fields and rules, never values); so does
    one whose key version is no longer kept (dead-lettered: put the version back, redrive).
    `left_out` is told how many elements the GRO format does not define the event left out."""
    try:
        key = key_for(message.file_arrived)
    except NoKeyForRecordError as err:
        raise PermanentError(str(err)) from None
    outcome = transform_fragment(message.fragment, key=key.secret, key_version=key.version)
    if isinstance(outcome, Rejected):
        raise PermanentError(*outcome.reasons, status=RecordStatus.REJECTED)
    events.send(
        EventToPublish(
            file=message.file,
            ordinal=message.ordinal,
            event=outcome.event,
        )
    )
    left_out(outcome.undefined_elements)
    return outcome.event.source_id
