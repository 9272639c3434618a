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
FAILED_BY_VERSION: Final = "failed-by-version"
ATTEMPTS: Final = "attempts"
FIRST_RECEIVED_AT: Final = "first-received-at"
MAX_REASON_CHARS: Final = 1024


class DeadLetterAttributes(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The message attributes of a dead-lettered message (names as on the wire)."""

    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_REASON_CHARS)] = msgspec.field(
        name=REASON
    )
    failed_by: str = msgspec.field(name=FAILED_BY)
    attempts: Annotated[int, msgspec.Meta(ge=1)] = msgspec.field(name=ATTEMPTS)
    # added in v1.1 (optional, so v1 readers and messages stay valid): the version of the
    # service that gave up, and when the message was first received (epoch milliseconds)
    failed_by_version: str | None = msgspec.field(default=None, name=FAILED_BY_VERSION)
    first_received_at: int | None = msgspec.field(default=None, name=FIRST_RECEIVED_AT)

    def to_sqs(self) -> dict[str, dict[str, str]]:
        """As SQS `MessageAttributes`."""
        out = {
            REASON: {"DataType": "String", "StringValue": self.reason},
            FAILED_BY: {"DataType": "String", "StringValue": self.failed_by},
            ATTEMPTS: {"DataType": "Number", "StringValue": str(self.attempts)},
        }
        if self.failed_by_version is not None:
            out[FAILED_BY_VERSION] = {"DataType": "String", "StringValue": self.failed_by_version}
        if self.first_received_at is not None:
            out[FIRST_RECEIVED_AT] = {
                "DataType": "Number",
                "StringValue": str(self.first_received_at),
            }
        return out

    @classmethod
    def from_sqs(cls, attributes: dict[str, dict[str, str]]) -> DeadLetterAttributes:
        """From SQS `MessageAttributes` (as `ReceiveMessage` returns them)."""
        raw = {name: value.get("StringValue") for name, value in attributes.items()}
        return msgspec.convert(raw, cls, strict=False)
