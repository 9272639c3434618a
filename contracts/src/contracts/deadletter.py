"""How a message that cannot be processed is dead-lettered: with its reason, by its consumer.

SQS's own redrive (after maxReceiveCount) moves a message without saying why. So a consumer
that gives up on a message, because it can never succeed (a record that breaks a rule, a body
that is not the contract) or because this was its last attempt, sends it to the DLQ itself with
message attributes that say why, then lets the source message go. SQS's redrive policy stays as
the safety net for a consumer that dies before it can do that. Reasons name fields and error
types, never values.
"""

from __future__ import annotations

from typing import Any, Protocol

REASON = "failure-reason"
FAILED_BY = "failed-by"
ATTEMPTS = "attempts"
MAX_REASON_CHARS = 1024


class SqsClient(Protocol):
    """The part of a boto3 SQS client used here."""

    def send_message(self, **kwargs: Any) -> Any: ...


def dead_letter(
    sqs: SqsClient, dlq_url: str, body: str, *, reason: str, failed_by: str, attempts: int
) -> None:
    """Put `body` on the dead-letter queue with why, by whom and after how many attempts."""
    sqs.send_message(
        QueueUrl=dlq_url,
        MessageBody=body,
        MessageAttributes={
            REASON: {"DataType": "String", "StringValue": reason[:MAX_REASON_CHARS] or "unknown"},
            FAILED_BY: {"DataType": "String", "StringValue": failed_by},
            ATTEMPTS: {"DataType": "Number", "StringValue": str(attempts)},
        },
    )
