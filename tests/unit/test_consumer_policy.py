"""The shared SQS consumer policy on its own: what it does with each outcome of a handler."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from contracts.messages import FileRef
from servicekit.consumer import (
    ConsumerPolicy,
    Deferred,
    LedgerEntry,
    PermanentError,
    TransientError,
    consume,
)
from servicekit.ledger import RecordEnd, RecordStatus

FILE = FileRef(bucket="landing", key="incoming/a.xml", version_id="v1")


class Message(msgspec.Struct):
    ordinal: int


class Recorder:
    def __init__(
        self, *, ledger_fails: bool = False, ending_fails_for: frozenset[int] = frozenset()
    ) -> None:
        self.dead: list[tuple[str, str, int]] = []
        self.ended: list[tuple[int, RecordStatus, tuple[str, ...]]] = []
        self.forgotten: list[int] = []
        self.logged: list[str] = []
        self.ending_calls: list[list[int]] = []  # the ordinals of each records_ended call
        self.metrics: list[str] = []
        self._ledger_fails = ledger_fails
        self._ending_fails_for = ending_fails_for

    # DeadLetters
    def send(
        self, body: str, *, reason: str, attempts: int, first_received_at: int | None = None
    ) -> None:
        self.dead.append((body, reason, attempts))
        self.first_received = first_received_at

    # RecordLedger
    def record_ended(
        self,
        ref: FileRef,
        ordinal: int,
        status: RecordStatus,
        *,
        event_id: str | None = None,
        reasons: tuple[str, ...] = (),
        handled_by: str | None = None,
    ) -> bool:
        self.handled_by = handled_by
        if self._ledger_fails:
            raise ConnectionError("ledger down")
        self.ended.append((ordinal, status, reasons))
        return True

    def records_ended(
        self, endings: Sequence[RecordEnd], *, handled_by: str | None = None
    ) -> list[BaseException | None]:
        self.ending_calls.append([e.ordinal for e in endings])
        out: list[BaseException | None] = []
        for e in endings:
            if e.ordinal in self._ending_fails_for:
                out.append(ConnectionError("ledger down"))
                continue
            try:
                self.record_ended(e.file, e.ordinal, e.status, handled_by=handled_by)
            except ConnectionError as err:
                out.append(err)
            else:
                out.append(None)
        return out

    # Counter
    def add_metric(self, name: str, unit: Any, value: float) -> None:
        self.metrics.append(name)

    # Log
    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.logged.append(str(msg))

    warning = error = info


def policy(
    recorder: Recorder,
    handle: Any,
    max_receive_count: int = 3,
    deferred: tuple[Deferred[Any], ...] = (),
) -> ConsumerPolicy[Message]:
    return ConsumerPolicy(
        kind="message.v1",
        decode=msgspec.json.Decoder(Message).decode,
        handle=handle,
        entry=lambda m: LedgerEntry(FILE, m.ordinal),
        on_give_up=lambda m: recorder.forgotten.append(m.ordinal),
        dead_letters=recorder,
        ledger=recorder,
        max_receive_count=max_receive_count,
        log=recorder,
        service="tester",
        version="1.2.3+abc",
        metrics=recorder,
        deferred=deferred,
    )


def raw_record(body: str, attempts: int = 1, message_id: str = "m-1") -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"r-{message_id}",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": str(attempts),
            "ApproximateFirstReceiveTimestamp": "1646179200123",
        },
        "messageAttributes": {},
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
    }


def sqs_record(body: str, attempts: int = 1) -> SQSRecord:
    return SQSRecord(raw_record(body, attempts))


def batch(*ordinals: int, attempts: int = 1) -> dict[str, Any]:
    """An SQS event, one message per ordinal, message ids m-<ordinal>."""
    return {
        "Records": [
            raw_record(f'{{"ordinal": {o}}}', attempts, message_id=f"m-{o}") for o in ordinals
        ]
    }


def failures(response: Any) -> list[str]:
    return [f["itemIdentifier"] for f in response["batchItemFailures"]]


class Outbox:
    """Work deferred to the batch's end: what each flush was given; fails the ordinals in
    `fail_for` (as SendMessageBatch lists failed entries)."""

    def __init__(self, fail_for: frozenset[int] = frozenset()) -> None:
        self.flushes: list[list[int]] = []
        self.fail_for = fail_for
        self.work: Deferred[int] = Deferred(self.run)

    def run(self, ordinals: Sequence[int]) -> list[BaseException | None]:
        self.flushes.append(list(ordinals))
        return [
            TransientError("queue said InternalError") if o in self.fail_for else None
            for o in ordinals
        ]


def test_a_handled_message_records_the_status_the_handler_returns() -> None:
    recorder = Recorder()
    policy(recorder, lambda m: RecordStatus.PUBLISHED)(sqs_record('{"ordinal": 7}'))
    assert recorder.ended == [(7, RecordStatus.PUBLISHED, ())] and recorder.dead == []
    assert recorder.handled_by == "tester 1.2.3+abc"  # which release ended it


def test_a_permanent_error_dead_letters_at_once_with_its_reasons_and_its_status() -> None:
    recorder = Recorder()

    def handle(m: Message) -> None:
        raise PermanentError("DeceasedGender is not one of 1, 2, 9", status=RecordStatus.REJECTED)

    policy(recorder, handle)(sqs_record('{"ordinal": 3}', attempts=1))
    assert recorder.dead == [('{"ordinal": 3}', "DeceasedGender is not one of 1, 2, 9", 1)]
    assert recorder.ended == [(3, RecordStatus.REJECTED, ("DeceasedGender is not one of 1, 2, 9",))]
    assert recorder.forgotten == [3]
    assert recorder.first_received == 1646179200123  # when it first failed, for the operator


def test_a_transient_error_goes_back_to_the_queue_until_the_last_attempt() -> None:
    recorder = Recorder()

    def handle(m: Message) -> None:
        raise TransientError("platform answered 503")

    with pytest.raises(TransientError):
        policy(recorder, handle)(sqs_record('{"ordinal": 1}', attempts=2))
    assert recorder.dead == [] and recorder.ended == []
    policy(recorder, handle)(sqs_record('{"ordinal": 1}', attempts=3))
    assert recorder.dead == [('{"ordinal": 1}', "platform answered 503 after 3 attempts", 3)]
    assert recorder.ended[0][1] is RecordStatus.DEAD_LETTERED


def test_a_foreign_error_is_named_by_its_type_only() -> None:
    recorder = Recorder()

    def handle(m: Message) -> None:
        raise ValueError("Mary Quillfeatherby")  # a message from elsewhere could quote a value

    policy(recorder, handle)(sqs_record('{"ordinal": 1}', attempts=3))
    assert recorder.dead[0][1] == "ValueError after 3 attempts"


def test_an_undecodable_body_is_dead_lettered_without_its_value_and_not_ledgered() -> None:
    recorder = Recorder()
    policy(recorder, lambda m: None)(sqs_record('{"ordinal": "Quillfeatherby"}'))
    ((_, reason, _),) = recorder.dead
    assert reason.startswith("the body is not message.v1: Expected `int`")
    assert "Quillfeatherby" not in reason and recorder.ended == []


def test_work_done_but_not_ledgered_on_the_last_attempt_is_dead_lettered_and_not_undone() -> None:
    recorder = Recorder(ledger_fails=True)
    handle = lambda m: RecordStatus.PUBLISHED  # noqa: E731
    with pytest.raises(ConnectionError):
        policy(recorder, handle)(sqs_record('{"ordinal": 4}', attempts=1))
    policy(recorder, handle)(sqs_record('{"ordinal": 4}', attempts=3))
    ((_, reason, _),) = recorder.dead
    assert reason == "handled, but the ledger write failed: ConnectionError after 3 attempts"
    assert recorder.forgotten == []  # the published event keeps its stored copy


# -- a batch: work put off to its end, endings folded ----------------------------------------


def test_a_batchs_endings_are_written_in_one_call_once_every_message_is_handled() -> None:
    recorder = Recorder()
    response = consume(batch(1, 2, 3), None, policy(recorder, lambda m: RecordStatus.PUBLISHED))
    assert failures(response) == []
    assert recorder.ending_calls == [[1, 2, 3]]
    assert [e[0] for e in recorder.ended] == [1, 2, 3]
    assert recorder.metrics == ["RecordsPublished"] * 3  # each counted once, when settled


def test_deferred_work_is_done_once_for_the_whole_batch_in_handling_order() -> None:
    recorder, outbox = Recorder(), Outbox()

    def handle(m: Message) -> None:
        outbox.work.add(m.ordinal)

    response = consume(batch(4, 5, 6), None, policy(recorder, handle, deferred=(outbox.work,)))
    assert failures(response) == [] and outbox.flushes == [[4, 5, 6]]
    assert recorder.metrics == ["MessagesHandled"] * 3


def test_deferred_work_failing_for_one_record_sends_back_that_message_alone() -> None:
    recorder, outbox = Recorder(), Outbox(fail_for=frozenset({2}))

    def handle(m: Message) -> RecordStatus:
        outbox.work.add(m.ordinal)
        return RecordStatus.PUBLISHED

    response = consume(batch(1, 2, 3), None, policy(recorder, handle, deferred=(outbox.work,)))
    assert failures(response) == ["m-2"]
    # the others are accounted for; the failed one is not (its work was not done)
    assert recorder.ending_calls == [[1, 3]] and recorder.dead == []
    assert sorted(recorder.metrics) == ["MessagesRetried", "RecordsPublished", "RecordsPublished"]


def test_deferred_work_failing_on_the_last_attempt_dead_letters_that_record_with_the_reason() -> (
    None
):
    recorder, outbox = Recorder(), Outbox(fail_for=frozenset({2}))

    def handle(m: Message) -> None:
        outbox.work.add(m.ordinal)

    response = consume(
        batch(1, 2, attempts=3), None, policy(recorder, handle, deferred=(outbox.work,))
    )
    assert failures(response) == []  # given up on, not retried
    assert recorder.dead == [('{"ordinal": 2}', "queue said InternalError after 3 attempts", 3)]
    assert recorder.ended == [
        (2, RecordStatus.DEAD_LETTERED, ("queue said InternalError after 3 attempts",))
    ]
    assert recorder.forgotten == [2]


def test_work_deferred_by_a_message_whose_handling_then_failed_is_not_done() -> None:
    recorder, outbox = Recorder(), Outbox()

    def handle(m: Message) -> None:
        outbox.work.add(m.ordinal)
        if m.ordinal == 2:
            raise TransientError("platform answered 503")

    response = consume(batch(1, 2, 3), None, policy(recorder, handle, deferred=(outbox.work,)))
    assert failures(response) == ["m-2"] and outbox.flushes == [[1, 3]]


def test_a_failed_folded_ending_sends_back_its_record_and_dead_letters_it_on_the_last_attempt() -> (
    None
):
    handle = lambda m: RecordStatus.PUBLISHED  # noqa: E731
    recorder = Recorder(ending_fails_for=frozenset({2}))
    assert failures(consume(batch(1, 2, 3), None, policy(recorder, handle))) == ["m-2"]
    assert [e[0] for e in recorder.ended] == [1, 3] and recorder.dead == []

    last = Recorder(ending_fails_for=frozenset({2}))
    assert failures(consume(batch(2, attempts=3), None, policy(last, handle))) == []
    ((_, reason, _),) = last.dead
    assert reason == "handled, but the ledger write failed: ConnectionError after 3 attempts"
    assert last.forgotten == []  # the work stands


def test_every_message_of_a_batch_failing_at_its_end_fails_the_invocation() -> None:
    from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

    recorder, outbox = Recorder(), Outbox(fail_for=frozenset({1, 2}))

    def handle(m: Message) -> None:
        outbox.work.add(m.ordinal)

    with pytest.raises(BatchProcessingError):
        consume(batch(1, 2), None, policy(recorder, handle, deferred=(outbox.work,)))


def test_work_left_by_a_crashed_invocation_is_not_done_by_the_next() -> None:
    recorder, outbox = Recorder(), Outbox()

    def handle(m: Message) -> None:
        outbox.work.add(m.ordinal)
        if m.ordinal == 9:
            raise SystemExit("the container dies mid-batch")

    with pytest.raises(SystemExit):
        consume(batch(8, 9), None, policy(recorder, handle, deferred=(outbox.work,)))
    consume(batch(1), None, policy(recorder, handle, deferred=(outbox.work,)))
    assert outbox.flushes == [[1]]


def test_deferring_outside_a_policys_handling_is_refused() -> None:
    with pytest.raises(RuntimeError, match="only while a consumer policy handles a message"):
        Outbox().work.add(1)


def test_a_message_handled_alone_does_its_deferred_work_before_returning() -> None:
    recorder, outbox = Recorder(), Outbox(fail_for=frozenset({7}))

    def handle(m: Message) -> None:
        outbox.work.add(m.ordinal)

    policy(recorder, handle, deferred=(outbox.work,))(sqs_record('{"ordinal": 1}'))
    assert outbox.flushes == [[1]]
    with pytest.raises(TransientError):
        policy(recorder, handle, deferred=(outbox.work,))(sqs_record('{"ordinal": 7}'))
