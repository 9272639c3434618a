"""What a dead-lettered message carries beside its body: why, by whom, after how many attempts.

A consumer that gives up on a message puts the original body on its queue's DLQ with these
SQS message attributes (the body is left as it was, so a redrive replays it unchanged). Reasons
name fields, statuses and error types, never values.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

REASON: Final = "failure-reason"
FAILED_BY: Final = "failed-by"
ATTEMPTS: Final = "attempts"
MAX_REASON_CHARS: Final = 1024


class DeadLetterAttributes(msgspec.Struct, frozen=True, kw_only=True):
    """The message attributes of a dead-lettered message (names as on the wire)."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON_CHARS)] = msgspec.field(
        name=REASON
    )
    failed_by: str = msgspec.field(name=FAILED_BY)
    attempts: Annotated[int, msgspec.Meta(ge=1)] = msgspec.field(name=ATTEMPTS)

    def to_sqs(self) -> dict[str, dict[str, str]]:
        """As SQS `MessageAttributes`."""
        return {
            REASON: {"DataType": "String", "StringValue": self.reason},
            FAILED_BY: {"DataType": "String", "StringValue": self.failed_by},
            ATTEMPTS: {"DataType": "Number", "StringValue": str(self.attempts)},
        }

    @classmethod
    def from_sqs(cls, attributes: dict[str, dict[str, str]]) -> DeadLetterAttributes:
        """From SQS `MessageAttributes` (as `ReceiveMessage` returns them)."""
        raw = {name: value.get("StringValue") for name, value in attributes.items()}
        return msgspec.convert(raw, cls, strict=False)
