"""How the reaper reads the contracts it accepts (pyproject.toml's [tool.gro.contracts]); the
handler reads through these, and the compatibility gate runs them on every golden sample."""

from __future__ import annotations

from typing import Any

import msgspec
from aws_lambda_powertools.utilities.data_classes.sns_event import SNSMessage

from contracts.messages import EventsConsumed
from contracts.steps import FinishStepInput
from contracts.stored import StoredEvent

_notice = msgspec.json.Decoder(EventsConsumed)
read_stored = msgspec.json.Decoder(StoredEvent).decode


def read_notice(body: str) -> EventsConsumed:
    """The consumed notice, from a raw SNS delivery or from an SNS envelope."""
    try:
        return _notice.decode(body)
    except msgspec.ValidationError:
        envelope = msgspec.json.decode(body)
        if not (isinstance(envelope, dict) and envelope.get("Type") == "Notification"):
            raise  # the notice's own error says what is wrong with it
        return _notice.decode(SNSMessage(envelope).message)


def read_finish_input(event: Any) -> FinishStepInput:
    """The CheckRecords step's input, as the state machine passes it (a JSON object)."""
    return msgspec.convert(event, FinishStepInput)


READERS = {
    "EventsConsumed": read_notice,
    "FinishStepInput": read_finish_input,
    "StoredEvent": read_stored,
}
