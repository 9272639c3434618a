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

Work that costs a call per record but can be done for many records in one call is put off to
the end of the batch (`consume` settles it once every message has been handled): the ledger's
endings, folded into one conditional write per block, and whatever a service defers through a
`Deferred` (the transformer's events, ten to a SendMessageBatch; the reaper's deletions). A
record whose put-off work fails is treated exactly as if its handling had failed there: back to
its queue (a batch item failure, reported per record), or dead-lettered with the reason on its
last attempt; the others of the batch are not affected. Deferring changes when a call is made,
never what is guaranteed: a message is let go only once its work and its accounting are done.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
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
from servicekit.ledger import RecordEnd, RecordStatus

__all__ = ["ConsumerPolicy", "Deferred", "PermanentError", "TransientError", "consume"]

M = TypeVar("M")
T = TypeVar("T")

# the message id of the record a policy is handling now (what `Deferred.add` files work under)
_handling: ContextVar[str | None] = ContextVar("servicekit_consumer_handling", default=None)


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

    def records_ended(
        self, endings: Sequence[RecordEnd], *, handled_by: str | None = None
    ) -> list[BaseException | None]: ...


class Flushable(Protocol):
    """Work a batch's records put off to its end (a `Deferred`, or an adapter holding one)."""

    def flush(self) -> Mapping[str, BaseException]: ...
    def drop(self, message_id: str | None = None) -> None: ...


class Deferred(Generic[T]):
    """Work the records of one batch put off to its end, to be done in a few calls for all of
    them (ten events to one SendMessageBatch, say). Each item is kept with the message it was
    put off for, the one the policy is handling when `add` is called, so that `flush` can say
    which records' work failed. `run` is given the items in the order they were added and
    answers, for each, None (done) or the error that stopped it; if `run` raises, every item
    fails with that error."""

    def __init__(self, run: Callable[[Sequence[T]], Sequence[BaseException | None]]) -> None:
        self._run = run
        self._items: list[tuple[str, T]] = []

    def add(self, item: T) -> None:
        """Put `item` off to the end of the batch, for the record being handled."""
        message_id = _handling.get()
        if message_id is None:
            raise RuntimeError(
                "work can be deferred only while a consumer policy handles a message"
            )
        self._items.append((message_id, item))

    def drop(self, message_id: str | None = None) -> None:
        """Forget what was put off for one message (its handling failed), or for all."""
        self._items = [] if message_id is None else [i for i in self._items if i[0] != message_id]

    def flush(self) -> dict[str, BaseException]:
        """Do every item put off; the failures, by message id (the first error of each)."""
        items, self._items = self._items, []
        if not items:
            return {}
        try:
            outcomes = self._run([item for _, item in items])
            if len(outcomes) != len(items):
                raise RuntimeError(f"{len(outcomes)} outcomes for {len(items)} deferred items")
        except Exception as err:
            return {message_id: err for message_id, _ in items}
        failed: dict[str, BaseException] = {}
        for (message_id, _), outcome in zip(items, outcomes, strict=True):
            if outcome is not None:
                failed.setdefault(message_id, outcome)
        return failed


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


@dataclass
class _Held:
    """A message handled, whose put-off work (and ledger ending) the batch's end settles."""

    record: SQSRecord
    message: Any
    entry: LedgerEntry | None
    status: RecordStatus | None
    attempts: int
    outcome: str


@dataclass
class _Batch:
    """A policy's state while `consume` runs it over one batch."""

    open: bool = False
    held: list[_Held] = field(default_factory=list)


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
    # the event id a message is about, for its span, where its ledger entry does not say it
    event_id: Callable[[M], str | None] = _nothing
    on_give_up: Callable[[M], None] = _nothing
    backoff: Backoff | None = None
    # who handles the messages: on the ledger, on dead letters' spans, in metrics
    service: str = ""
    version: str = ""
    operation: str = ""
    metrics: Counter | None = None
    # work the handler puts off to the end of the batch (see `Deferred`)
    deferred: tuple[Flushable, ...] = ()
    _batch: _Batch = field(default_factory=_Batch, init=False, repr=False, compare=False)

    @property
    def handled_by(self) -> str | None:
        """The release that handles the messages ("publisher 0.1.0+3f2a1c9")."""
        return f"{self.service} {self.version}".strip() or None

    def __call__(self, record: SQSRecord) -> None:
        """Handle one message under the policy, in a `record` span of its own. Outside
        `consume` (or `batch`), the message is a batch of its own: its put-off work is done
        before this returns, and raises if it must go back to its queue."""
        if not self._batch.open:
            with self.batch():
                self._one(record)
                failed = self.settle()
            if record.message_id in failed:
                raise failed[record.message_id]
            return
        self._one(record)

    def _record_span(self) -> AbstractContextManager[Any]:
        """The `record` span every record is handled (or settled) in, named for this consumer."""
        return tracing.span(
            "record",
            service=self.service or None,
            service_version=self.version or None,
            operation=self.operation or None,
        )

    def _one(self, record: SQSRecord) -> None:
        outcome = "error"
        held = False
        with self._record_span() as span:
            token = _handling.set(record.message_id)
            try:
                outcome, held = self._consume(record, span)
            except Exception:
                outcome = "retry"
                raise
            finally:
                _handling.reset(token)
                span.put_annotation(tracing.OUTCOME, outcome)
                if not held:
                    self._count(outcome)

    def _annotate(self, span: Any, message: M, entry: LedgerEntry | None) -> None:
        """The record's ids on its span: file, ordinal, event id."""
        if entry is not None:
            span.put_annotation(tracing.FILE_ID, file_id(entry.file))
            span.put_annotation(tracing.ORDINAL, entry.ordinal)
        event_id = entry.event_id if entry is not None and entry.event_id else None
        event_id = event_id or self.event_id(message)
        if event_id:
            span.put_annotation(tracing.EVENT_ID, event_id)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.add_metric(name=_METRIC[outcome], unit="Count", value=1)

    def _consume(self, record: SQSRecord, span: Any) -> tuple[str, bool]:
        """The message's outcome, and whether it is held for the batch's end."""
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
            return "undecodable", False
        entry = self.entry(message)
        self._annotate(span, message, entry)
        try:
            status = self.handle(message)
        except Exception as err:
            for work in self.deferred:
                work.drop(record.message_id)
            outcome = self._failed(record, message, entry, err, attempts, handled=False)
            if outcome == "retry":
                raise
            return outcome, False
        outcome = status.value if status is not None else "ok"
        ends = status is not None and entry is not None and self.ledger is not None
        if not (ends or self.deferred):
            return outcome, False
        self._batch.held.append(_Held(record, message, entry, status, attempts, outcome))
        return outcome, True

    def _failed(
        self,
        record: SQSRecord,
        message: M,
        entry: LedgerEntry | None,
        err: BaseException,
        attempts: int,
        *,
        handled: bool,
    ) -> str:
        """What a failure of a message's work (or, once `handled`, of its ledger write) makes
        of it: "retry" (it goes back to its queue: the caller reports it), or dead-lettered."""
        if isinstance(err, PermanentError) and not handled:
            self._give_up(record, message, entry, err.reasons, err.status, attempts)
            return err.status.value
        if attempts < self.max_receive_count:
            if isinstance(err, TransientError) and self.backoff is not None:
                self.backoff.visibility.hide(record, self.backoff.seconds(attempts))
            self.log.warning("will retry", extra={**_ids(entry), "error": _named(err)})
            return "retry"
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

    @contextmanager
    def batch(self) -> Iterator[None]:
        """While open, handled messages are held for `settle` (what `consume` does)."""
        for work in self.deferred:
            work.drop()  # anything a crashed invocation of this container left behind
        self._batch.open, self._batch.held = True, []
        try:
            yield
        finally:
            self._batch.open, self._batch.held = False, []
            for work in self.deferred:
                work.drop()

    def settle(self) -> dict[str, BaseException]:
        """Do the batch's put-off work, then write the endings of the records whose work was
        done, folded (`records_ended`); apply the policy to each record whose part failed.
        Returns the records that must go back to their queue, by message id."""
        held, self._batch.held = self._batch.held, []
        if not held:
            return {}
        with tracing.span(
            "batch", service=self.service or None, service_version=self.version or None
        ) as span:
            span.put_annotation("records", len(held))
            work_failed: dict[str, BaseException] = {}
            for work in self.deferred:
                for message_id, err in work.flush().items():
                    work_failed.setdefault(message_id, err)
            ledger_failed = self._write_endings(
                [h for h in held if h.record.message_id not in work_failed]
            )
            back: dict[str, BaseException] = {}
            for h in held:
                message_id = h.record.message_id
                failure = work_failed.get(message_id) or ledger_failed.get(message_id)
                outcome = h.outcome
                if failure is not None:
                    outcome = self._settle_failure(h, failure, handled=message_id in ledger_failed)
                    if outcome == "retry":
                        back[message_id] = failure
                self._count(outcome)
            if back:
                span.put_annotation("retried", len(back))
        return back

    def _write_endings(self, held: list[_Held]) -> dict[str, BaseException]:
        ending = [h for h in held if h.status is not None and h.entry is not None]
        if not ending or self.ledger is None:
            return {}
        try:
            outcomes = self.ledger.records_ended(
                [
                    RecordEnd(h.entry.file, h.entry.ordinal, h.status, h.entry.event_id)
                    for h in ending
                    if h.entry is not None and h.status is not None
                ],
                handled_by=self.handled_by,
            )
        except Exception as err:
            return {h.record.message_id: err for h in ending}
        return {
            h.record.message_id: outcome
            for h, outcome in zip(ending, outcomes, strict=True)
            if outcome is not None
        }

    def _settle_failure(self, h: _Held, err: BaseException, *, handled: bool) -> str:
        """A held record whose put-off work or ending failed, in a `record` span of its own
        (the one it was handled in has been sent)."""
        outcome = "retry"
        with self._record_span() as span:
            self._annotate(span, h.message, h.entry)
            try:
                outcome = self._failed(
                    h.record, h.message, h.entry, err, h.attempts, handled=handled
                )
            except Exception:  # the dead-letter queue or the ledger failed too: try again
                self.log.warning("will retry", extra={**_ids(h.entry), "error": _named(err)})
                outcome = "retry"
            finally:
                span.put_annotation(tracing.OUTCOME, outcome)
        return outcome

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


class _SettlingProcessor(BatchProcessor):
    """Powertools' SQS batch processor, which settles the policy's put-off work once every
    record has been handled: a record whose part of it failed becomes a batch item failure."""

    def __init__(self, policy: ConsumerPolicy[Any]) -> None:
        super().__init__(event_type=EventType.SQS)
        self._policy = policy

    def process(self) -> list[tuple[Any, ...]]:
        results = super().process()
        back = self._policy.settle()
        for i, (state, _, raw) in enumerate(results):
            # a success holds the record as it came (a dict), a failure as an SQSRecord
            err = back.get(raw["messageId"]) if state == "success" else None
            if err is not None:
                self.success_messages.remove(raw)
                results[i] = self.failure_handler(
                    SQSRecord(raw), (type(err), err, err.__traceback__)
                )
        return results


def consume(
    event: dict[str, Any], context: Any, policy: Callable[[SQSRecord], None]
) -> PartialItemFailureResponse:
    """Apply the policy to every message of an SQS batch, settle what its handling put off to
    the batch's end, and report only the messages that failed."""
    if not isinstance(policy, ConsumerPolicy):
        return process_partial_response(
            event=event,
            record_handler=policy,
            processor=BatchProcessor(event_type=EventType.SQS),
            context=context,
        )
    with policy.batch():
        return process_partial_response(
            event=event,
            record_handler=policy,
            processor=_SettlingProcessor(policy),
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
