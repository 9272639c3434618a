"""Dead-letter a message with its reason: by its consumer, before SQS's redrive would.

SQS's own redrive (after maxReceiveCount) moves a message without saying why. So a consumer
that gives up on a message, because it can never succeed or because this was its last attempt,
sends the original body to the DLQ itself with `contracts.deadletter.DeadLetterAttributes`,
then lets the source message go. The redrive policy stays as the safety net for a consumer that
dies before it can do that.
"""

from __future__ import annotations

from typing import Any, Protocol

from contracts.deadletter import MAX_REASON_CHARS, DeadLetterAttributes


class SqsClient(Protocol):
    """The part of a boto3 SQS client used here."""

    def send_message(self, **kwargs: Any) -> Any: ...


class DeadLetterQueue:
    """One consumer's dead-letter queue."""

    def __init__(self, sqs: SqsClient, url: str, *, failed_by: str, version: str) -> None:
        self._sqs = sqs
        self._url = url
        self._failed_by = failed_by
        self._version = version

    def send(
        self, body: str, *, reason: str, attempts: int, first_received_at: int | None = None
    ) -> None:
        """Put `body` on the dead-letter queue with why, by whom (and which version), after how
        many attempts, and when it was first received."""
        attributes = DeadLetterAttributes(
            reason=reason[:MAX_REASON_CHARS] or "unknown",
            failed_by=self._failed_by,
            attempts=max(1, attempts),
            failed_by_version=self._version,
            first_received_at=first_received_at,
        )
        self._sqs.send_message(
            QueueUrl=self._url, MessageBody=body, MessageAttributes=attributes.to_sqs()
        )
