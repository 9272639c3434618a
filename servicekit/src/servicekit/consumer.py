"""The SQS consumer policy, decided once for every consumer of the pipeline's records
(transformer, publisher, reaper; the splitter's `start` reads S3 notices and needs only `consume`).

A message is decoded into its contract, handed to the service's domain, and then:

- handled: if the domain says how the record ended (published), that goes in the ledger;
- `PermanentError` (a body that is not the contract, a rule broken, the platform's 400/403):
  no retry can help, so it is dead-lettered at once with the reason, the record is accounted
  for in the ledger, and the message is let go;
- anything else (`TransientError`: throttling, 5xx, timeouts, network; or an error nobody
  foresaw): the message goes back to its queue (a batch item failure), after a longer
  visibility each time where the consumer backs off, until its last allowed attempt: then it
  is dead-lettered with the reason and accounted for, as a permanent error would be.

So every record ends with a reason, written by the consumer that gave up, and the queue's own
redrive policy (which says nothing of why) stays as the safety net for a consumer that dies.
A message whose work succeeded but whose ledger write failed on its last attempt is
dead-lettered with that reason and nothing undone: a redrive repeats the (idempotent) work.
Reasons name fields, statuses and error types, never values.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import msgspec
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from contracts.messages import FileRef, file_id
from servicekit import tracing
from servicekit.errors import PermanentError, TransientError
from servicekit.ledger import RecordStatus

__all__ = ["ConsumerPolicy", "PermanentError", "TransientError", "consume"]

M = TypeVar("M")


class LedgerEntry(NamedTuple):
    """Where a message's record stands in the ledger."""

    file: FileRef
    ordinal: int
    event_id: str | None = None


class RecordLedger(Protocol):
    """The ledger, as a consumer writes it."""

    def record_ended(
        self,
        ref: FileRef,
        ordinal: int,
        status: RecordStatus,
        *,
        event_id: str | None = None,
        reasons: tuple[str, ...] = (),
        handled_by: str | None = None,
    ) -> bool: ...


class DeadLetters(Protocol):
    """A consumer's dead-letter queue."""

    def send(
        self, body: str, *, reason: str, attempts: int, first_received_at: int | None = None
    ) -> None: ...


class Visibility(Protocol):
    """Keeps a received message away from consumers for a while."""

    def hide(self, record: SQSRecord, seconds: int) -> None: ...


class Counter(Protocol):
    """The part of Powertools Metrics the policy uses (one count per message and outcome)."""

    def add_metric(self, name: str, unit: Any, value: float) -> None: ...


# outcome -> the metric it counts as
_METRIC = {
    "ok": "MessagesHandled",
    "published": "RecordsPublished",
    "rejected": "RecordsRejected",
    "dead_lettered": "RecordsDeadLettered",
    "retry": "MessagesRetried",
    "undecodable": "MessagesUndecodable",
    "error": "MessagesFailed",
}


class Log(Protocol):
    """The part of a Powertools Logger the policy uses."""

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None: ...
    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None: ...
    def error(self, msg: object, *args: Any, **kwargs: Any) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Keep a message away longer each time it fails transiently: base, doubling, capped,
    with "equal jitter" (a random point in the upper half of the step) so that a burst of
    failures does not come back as one burst."""

    visibility: Visibility
    base_seconds: int = 5
    cap_seconds: int = 900
    jitter: Callable[[float], float] = field(default=lambda top: random.uniform(top / 2, top))  # noqa: S311

    def seconds(self, attempts: int) -> int:
        """How long to keep the message away after its `attempts`-th failure."""
        top = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return max(1, round(self.jitter(top)))


def _nothing(_message: Any) -> None:
    return None


@dataclass(frozen=True)
class ConsumerPolicy(Generic[M]):
    """How one SQS consumer treats each message; call it with an `SQSRecord`."""

    kind: str
    decode: Callable[[str], M]
    handle: Callable[[M], RecordStatus | None]
    dead_letters: DeadLetters
    max_receive_count: int
    log: Log
    ledger: RecordLedger | None = None
    entry: Callable[[M], LedgerEntry | None] = _nothing
    on_give_up: Callable[[M], None] = _nothing
    backoff: Backoff | None = None
    # who handles the messages: on the ledger, on dead letters' spans, in metrics
    service: str = ""
    version: str = ""
    operation: str = ""
    metrics: Counter | None = None

    @property
    def handled_by(self) -> str | None:
        """The release that handles the messages ("publisher 0.1.0+3f2a1c9")."""
        return f"{self.service} {self.version}".strip() or None

    def __call__(self, record: SQSRecord) -> None:
        """Handle one message under the policy, in a `record` span of its own."""
        outcome = "error"
        with tracing.span(
            "record",
            service=self.service or None,
            service_version=self.version or None,
            operation=self.operation or None,
        ) as span:
            try:
                outcome = self._consume(record, span)
            except Exception:
                outcome = "retry"
                raise
            finally:
                span.put_annotation(tracing.OUTCOME, outcome)
                if self.metrics is not None:
                    self.metrics.add_metric(name=_METRIC[outcome], unit="Count", value=1)

    def _consume(self, record: SQSRecord, span: Any) -> str:
        attempts = int(record.attributes.approximate_receive_count or 1)
        try:
            message = self.decode(record.body)
        except (msgspec.DecodeError, ValueError, KeyError, TypeError) as err:
            # not our contract: no retry can help. msgspec names the path, and quotes a value it
            # does not accept (an enum, a tag): the quote goes, the path stays.
            detail = (
                without_values(str(err))
                if isinstance(err, msgspec.DecodeError)
                else type(err).__name__
            )
            reason = f"the body is not {self.kind}: {detail}"
            self.dead_letters.send(
                record.body,
                reason=reason,
                attempts=attempts,
                first_received_at=_first_received(record),
            )
            self.log.error("undecodable message dead-lettered", extra={"reason": reason})
            return "undecodable"
        entry = self.entry(message)
        if entry is not None:
            span.put_annotation(tracing.FILE_ID, file_id(entry.file))
            span.put_annotation(tracing.ORDINAL, entry.ordinal)
            if entry.event_id:
                span.put_annotation(tracing.EVENT_ID, entry.event_id)
        handled = False
        try:
            status = self.handle(message)
            handled = True
            if status is not None and entry is not None and self.ledger is not None:
                self.ledger.record_ended(
                    entry.file,
                    entry.ordinal,
                    status,
                    event_id=entry.event_id,
                    handled_by=self.handled_by,
                )
        except PermanentError as err:
            self._give_up(record, message, entry, err.reasons, err.status, attempts)
            return err.status.value
        except Exception as err:
            if attempts < self.max_receive_count:
                if isinstance(err, TransientError) and self.backoff is not None:
                    self.backoff.visibility.hide(record, self.backoff.seconds(attempts))
                self.log.warning("will retry", extra={**_ids(entry), "error": _named(err)})
                raise
            # the last allowed attempt: dead-letter it ourselves, with the reason
            reason = f"{_named(err)} after {attempts} attempts"
            if handled:
                # the work is done; only its accounting failed. Nothing to undo: a redrive
                # finds the work done (idempotent) and writes the ledger again.
                reason = f"handled, but the ledger write failed: {reason}"
                self.dead_letters.send(
                    record.body,
                    reason=reason,
                    attempts=attempts,
                    first_received_at=_first_received(record),
                )
                self.log.error("message dead-lettered", extra={**_ids(entry), "reasons": [reason]})
                return RecordStatus.DEAD_LETTERED.value
            self._give_up(record, message, entry, (reason,), RecordStatus.DEAD_LETTERED, attempts)
            return RecordStatus.DEAD_LETTERED.value
        return status.value if status is not None else "ok"

    def _give_up(
        self,
        record: SQSRecord,
        message: M,
        entry: LedgerEntry | None,
        reasons: tuple[str, ...],
        status: RecordStatus,
        attempts: int,
    ) -> None:
        self.dead_letters.send(
            record.body,
            reason="; ".join(reasons),
            attempts=attempts,
            first_received_at=_first_received(record),
        )
        self.on_give_up(message)
        if entry is not None and self.ledger is not None:
            self.ledger.record_ended(
                entry.file,
                entry.ordinal,
                status,
                event_id=entry.event_id,
                reasons=reasons,
                handled_by=self.handled_by,
            )
        level = self.log.warning if status is RecordStatus.REJECTED else self.log.error
        level(
            f"message {status.value.replace('_', '-')}",
            extra={**_ids(entry), "reasons": list(reasons)},
        )


def _first_received(record: SQSRecord) -> int | None:
    raw = record.attributes.approximate_first_receive_timestamp
    return int(raw) if raw and str(raw).isdigit() else None


def without_values(decode_error: str) -> str:
    """A msgspec error with any value it quotes cut out: "Invalid enum value 'X' - at `$.sex`"
    becomes "Invalid enum value - at `$.sex`". The path names fields of the contract."""
    head, at, path = decode_error.rpartition(" - at `")
    if not at:
        head, path = decode_error, ""
    head = re.split(r"['\"]", head, maxsplit=1)[0].rstrip()
    return f"{head}{at}{path}"


def _named(err: BaseException) -> str:
    """Our own transient errors say what happened (a status); anything else by its type only,
    since a foreign message could quote a value."""
    return str(err) if isinstance(err, TransientError) else type(err).__name__


def _ids(entry: LedgerEntry | None) -> dict[str, Any]:
    if entry is None:
        return {}
    out: dict[str, Any] = {"ordinal": entry.ordinal}
    if entry.event_id:
        out["event_id"] = entry.event_id
    return out


def consume(
    event: dict[str, Any], context: Any, policy: Callable[[SQSRecord], None]
) -> PartialItemFailureResponse:
    """Apply the policy to every message of an SQS batch; report only the ones that failed."""
    return process_partial_response(
        event=event,
        record_handler=policy,
        processor=BatchProcessor(event_type=EventType.SQS),
        context=context,
    )


class SqsVisibility:
    """`Visibility` over a boto3 SQS client: the queue is found from the record's source ARN."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self._urls: dict[str, str] = {}

    def hide(self, record: SQSRecord, seconds: int) -> None:
        arn = record.event_source_arn
        if arn not in self._urls:
            name = arn.rsplit(":", 1)[-1]
            self._urls[arn] = str(self._sqs.get_queue_url(QueueName=name)["QueueUrl"])
        self._sqs.change_message_visibility(
            QueueUrl=self._urls[arn], ReceiptHandle=record.receipt_handle, VisibilityTimeout=seconds
        )
