"""The shared SQS consumer policy on its own: what it does with each outcome of a handler."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from contracts.messages import FileRef
from servicekit.consumer import ConsumerPolicy, LedgerEntry, PermanentError, TransientError
from servicekit.ledger import RecordStatus

FILE = FileRef(bucket="landing", key="incoming/a.xml", version_id="v1")


class Message(msgspec.Struct):
    ordinal: int


class Recorder:
    def __init__(self, *, ledger_fails: bool = False) -> None:
        self.dead: list[tuple[str, str, int]] = []
        self.ended: list[tuple[int, RecordStatus, tuple[str, ...]]] = []
        self.forgotten: list[int] = []
        self.logged: list[str] = []
        self._ledger_fails = ledger_fails

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

    # Log
    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.logged.append(str(msg))

    warning = error = info


def policy(recorder: Recorder, handle: Any, max_receive_count: int = 3) -> ConsumerPolicy[Message]:
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
    )


def sqs_record(body: str, attempts: int = 1) -> SQSRecord:
    return SQSRecord(
        {
            "messageId": "m-1",
            "receiptHandle": "r-1",
            "body": body,
            "attributes": {
                "ApproximateReceiveCount": str(attempts),
                "ApproximateFirstReceiveTimestamp": "1646179200123",
            },
            "messageAttributes": {},
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
        }
    )


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
