"""The splitter's entry points, `start` and `split`, called as Lambda calls them: a recorded
event, a Lambda context, and the composition root replaced by in-memory ports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

import splitter.app
from contracts.messages import FileRef, RecordToTransform, file_id
from contracts.steps import Cursor, FinishStepInput, SplitStepInput, SplitStepOutput
from servicekit.ledger import Ledger
from servicekit.settings import SettingsError
from splitter import handler
from splitter.adapters import QueueSink, S3Files, StepFunctionsExecutions
from splitter.app import SplitApp, StartApp
from splitter.ingest import FileRefusedError
from splitter.settings import SplitSettings, StartSettings
from tests.builders import extract, record

from .environment import function_environment
from .fakes import FakeExecutions, FakeFiles, FakeLedger, FakeStepSink
from .recorded import FakeLambdaContext, Message, object_created, sample, sqs_event

QUEUE = "gro-file-arrivals"
STATE_MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:gro-ingest-file"
RECORDS_QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/gro-records-to-transform"
TRACE = "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=1"
# the file the recorded events and the golden samples name
FILE = FileRef(
    bucket="landing",
    key="incoming/DWP_D_20220301.xml",
    version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
)


def start_context() -> FakeLambdaContext:
    return FakeLambdaContext("gro-splitter-start")


def split_context(remaining_millis: int = 900_000) -> FakeLambdaContext:
    return FakeLambdaContext("gro-splitter-split", remaining_millis=remaining_millis)


# -- start ----------------------------------------------------------------------------------


@dataclass
class Start:
    files: FakeFiles = field(default_factory=FakeFiles)
    executions: FakeExecutions = field(default_factory=FakeExecutions)


@pytest.fixture
def start(monkeypatch: pytest.MonkeyPatch) -> Start:
    ports = Start()
    app = StartApp(
        settings=StartSettings(state_machine_arn=STATE_MACHINE, record_wait_seconds=30),
        files=ports.files,
        executions=ports.executions,
    )
    monkeypatch.setattr(splitter.app, "start_app", lambda: app)
    return ports


def test_a_landed_file_starts_one_execution_named_by_its_file_id(start: Start) -> None:
    # given
    start.files.objects[FILE] = extract(record())
    event = sqs_event(object_created(), queue=QUEUE)

    # when
    response = handler.start(event, start_context())

    # then
    assert response == {"batchItemFailures": []}
    assert start.executions.started == {file_id(FILE): SplitStepInput(file=FILE, wait_seconds=30)}


def test_the_execution_input_is_what_the_split_step_reads(start: Start) -> None:
    start.files.objects[FILE] = extract(record())

    handler.start(sqs_event(object_created(), queue=QUEUE), start_context())

    (state,) = start.executions.started.values()
    as_sent = msgspec.json.decode(msgspec.json.encode(state))
    assert msgspec.convert(as_sent, SplitStepInput) == state
    assert as_sent["cursor"] == {"emitted": 0, "checked": False}


def test_a_repeated_object_created_event_starts_nothing_new_and_is_not_a_failure(
    start: Start,
) -> None:
    # given: S3 announced the same object version twice (CompleteMultipartUpload does)
    start.files.objects[FILE] = extract(record())
    event = sqs_event(object_created(), object_created(), queue=QUEUE)

    # when
    response = handler.start(event, start_context())
    again = handler.start(sqs_event(object_created(), queue=QUEUE), start_context())

    # then
    assert response == again == {"batchItemFailures": []}
    assert start.executions.calls == 3
    assert list(start.executions.started) == [file_id(FILE)]


def test_an_url_encoded_key_falls_back_to_the_decoded_key(start: Start) -> None:
    # given: the object's key has spaces and brackets; the event carries it URL-encoded
    landed = FileRef(bucket="landing", key="incoming/DWP D 2022 (03).xml", version_id="v1")
    start.files.objects[landed] = extract(record())
    event = sqs_event(
        object_created(key="incoming/DWP+D+2022+%2803%29.xml", version_id="v1"), queue=QUEUE
    )

    # when
    response = handler.start(event, start_context())

    # then
    assert response == {"batchItemFailures": []}
    assert start.files.asked[-1] == landed
    assert start.executions.started == {
        file_id(landed): SplitStepInput(file=landed, wait_seconds=30)
    }


def test_a_key_given_as_is_is_tried_before_its_decoded_form(start: Start) -> None:
    # given: a key holding a literal '+', carried in the event as it is
    landed = FileRef(bucket="landing", key="incoming/DWP+D+20220301.xml", version_id="v1")
    start.files.objects[landed] = extract(record())
    event = sqs_event(object_created(key=landed.key, version_id="v1"), queue=QUEUE)

    # when
    response = handler.start(event, start_context())

    # then
    assert response == {"batchItemFailures": []}
    assert start.files.asked[0] == landed
    assert list(start.executions.started) == [file_id(landed)]


def test_an_object_in_an_unversioned_bucket_is_named_without_a_version(start: Start) -> None:
    unversioned = FileRef(bucket="landing", key=FILE.key)
    start.files.objects[unversioned] = extract(record())

    handler.start(sqs_event(object_created(version_id="null"), queue=QUEUE), start_context())

    assert list(start.executions.started) == [file_id(unversioned)]


def test_an_object_gone_before_its_ingest_starts_starts_nothing_and_is_not_a_failure(
    start: Start, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: a batch naming an object that is gone, and one that is there
    start.files.objects[FILE] = extract(record())
    event = sqs_event(
        Message(object_created(key="incoming/gone.xml"), message_id="gone"),
        Message(object_created(), message_id="there"),
        queue=QUEUE,
    )

    # when
    response = handler.start(event, start_context())

    # then
    assert response == {"batchItemFailures": []}
    assert list(start.executions.started) == [file_id(FILE)]
    assert "object gone before its ingest started" in capsys.readouterr().out


def test_a_failure_to_reach_the_bucket_fails_only_that_message(
    start: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: two files landed; asking about the second one fails
    other = FileRef(bucket="landing", key="incoming/DWP_D_20220302.xml", version_id="v2")
    start.files.objects[FILE] = extract(record())
    start.files.objects[other] = extract(record())
    real_exists = start.files.exists

    def exists(file: FileRef) -> bool:
        if file.key == other.key:
            raise TimeoutError("S3 did not answer")
        return real_exists(file)

    monkeypatch.setattr(start.files, "exists", exists)
    event = sqs_event(
        Message(object_created(), message_id="first"),
        Message(object_created(key=other.key, version_id="v2"), message_id="second"),
        queue=QUEUE,
    )

    # when
    response = handler.start(event, start_context())

    # then
    assert response == {"batchItemFailures": [{"itemIdentifier": "second"}]}
    assert list(start.executions.started) == [file_id(FILE)]


# -- split ----------------------------------------------------------------------------------


@dataclass
class Split:
    files: FakeFiles = field(default_factory=FakeFiles)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    out: list[RecordToTransform] = field(default_factory=list)
    sinks: list[FakeStepSink] = field(default_factory=list)

    def new_sink(self) -> FakeStepSink:
        sink = FakeStepSink(self.out)
        self.sinks.append(sink)
        return sink

    def ordinals(self) -> list[int]:
        return [m.ordinal for m in self.out]


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch) -> Split:
    ports = Split()
    app = SplitApp(
        settings=SplitSettings(records_queue_url=RECORDS_QUEUE, ledger_table="gro-ledger"),
        files=ports.files,
        ledger=ports.ledger,
        new_sink=ports.new_sink,
    )
    monkeypatch.setattr(splitter.app, "split_app", lambda: app)
    return ports


def test_a_small_valid_extract_is_split_whole_in_one_step(
    split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given
    split.files.objects[FILE] = extract(*(record(registration_id=str(n)) for n in (11, 12, 13)))
    monkeypatch.setenv("_X_AMZN_TRACE_ID", TRACE)

    # when
    out = handler.split(sample("SplitStepInput"), split_context())

    # then
    step = msgspec.convert(out, SplitStepOutput)
    assert step == SplitStepOutput(
        file=FILE, cursor=Cursor(emitted=3, checked=True), done=True, wait_seconds=10
    )
    assert split.ordinals() == [1, 2, 3]
    for message, reg in zip(split.out, (11, 12, 13), strict=True):
        assert message.file == FILE
        assert f"<RegistrationID>{reg}</RegistrationID>" in message.fragment
        # the trace context travels as the message's AWSTraceHeader, not in the body
        assert message.trace_header is None
    assert split.ledger.file_calls == [
        ("file_started", FILE),
        ("file_checked", FILE, 3),
        ("file_split", FILE, 3),
    ]
    assert all(sink.closed for sink in split.sinks)


def test_the_split_output_is_what_the_finish_step_reads(split: Split) -> None:
    split.files.objects[FILE] = extract(record())

    out = handler.split(sample("SplitStepInput"), split_context())

    finish = msgspec.convert(out, FinishStepInput)
    assert finish.file == FILE
    assert finish.wait_seconds == 10


def test_a_truncated_file_is_quarantined_and_refused_whole_with_nothing_emitted(
    split: Split,
) -> None:
    # given: the file stops inside its trailer
    split.files.objects[FILE] = extract(record(), record())[:-40]

    # when
    with pytest.raises(FileRefusedError) as refused:
        handler.split(sample("SplitStepInput"), split_context())

    # then: the state machine catches the error by its name
    assert type(refused.value).__name__ == "FileRefusedError"
    reason = str(refused.value)
    assert "truncated" in reason
    assert split.files.quarantined == {FILE: reason}
    assert split.ledger.file_calls == [("file_started", FILE), ("file_refused", FILE, reason)]
    assert split.out == []
    assert all(sink.closed for sink in split.sinks)


def test_a_refusal_reason_does_not_quote_the_file(split: Split) -> None:
    split.files.objects[FILE] = extract(record(registration_id="SECRET123"))[:-40]

    with pytest.raises(FileRefusedError) as refused:
        handler.split(sample("SplitStepInput"), split_context())

    assert "SECRET123" not in str(refused.value)
    assert "Robert" not in str(refused.value)


def test_a_tiny_time_budget_resumes_from_the_cursor_and_emits_every_record_once(
    split: Split,
) -> None:
    # given: 5 s left, less than the safety margin: every step is out of time at once
    split.files.objects[FILE] = extract(*(record(registration_id=str(n)) for n in range(1, 6)))
    state: dict[str, Any] = sample("SplitStepInput")

    # when: the state machine passes each step's output on as the next step's input
    steps: list[SplitStepOutput] = []
    for _ in range(20):
        out = handler.split(state, split_context(remaining_millis=5_000))
        steps.append(msgspec.convert(out, SplitStepOutput))
        if steps[-1].done:
            break
        state = out

    # then
    assert steps[-1].done
    assert len(steps) > 2, "the budget should have cut the file into several steps"
    assert split.ordinals() == [1, 2, 3, 4, 5]
    cursors = [s.cursor.emitted for s in steps]
    assert cursors == sorted(cursors)
    assert steps[-1].cursor == Cursor(emitted=5, checked=True)
    assert split.ledger.names().count("file_started") == 1
    assert split.ledger.names().count("file_checked") == 1
    assert split.ledger.file_calls[-1] == ("file_split", FILE, 5)
    assert len(split.sinks) == len(steps)
    assert all(sink.closed for sink in split.sinks)


def test_a_configured_budget_of_zero_also_cuts_the_file_into_steps(
    split: Split, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = splitter.app.split_app()
    zero = SplitSettings(
        records_queue_url=RECORDS_QUEUE, ledger_table="gro-ledger", split_time_budget_seconds=0
    )
    monkeypatch.setattr(
        splitter.app,
        "split_app",
        lambda: SplitApp(settings=zero, files=app.files, ledger=app.ledger, new_sink=app.new_sink),
    )
    split.files.objects[FILE] = extract(*(record(registration_id=str(n)) for n in range(1, 4)))

    out = handler.split(sample("SplitStepInput"), split_context())

    step = msgspec.convert(out, SplitStepOutput)
    assert not step.done
    assert step.cursor.checked
    assert split.ledger.names() == ["file_started", "file_checked"]


# -- the composition root -------------------------------------------------------------------


@pytest.fixture
def fresh_apps() -> Iterator[None]:
    splitter.app.start_app.cache_clear()
    splitter.app.split_app.cache_clear()
    yield
    splitter.app.start_app.cache_clear()
    splitter.app.split_app.cache_clear()


@pytest.mark.usefixtures("fresh_apps")
def test_the_start_app_builds_from_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    function_environment(
        monkeypatch, StartSettings, STATE_MACHINE_ARN=STATE_MACHINE, RECORD_WAIT_SECONDS="30"
    )

    built = splitter.app.start_app()

    assert isinstance(built, StartApp)
    assert built.settings == StartSettings(state_machine_arn=STATE_MACHINE, record_wait_seconds=30)
    assert isinstance(built.files, S3Files)
    assert isinstance(built.executions, StepFunctionsExecutions)
    assert splitter.app.start_app() is built


@pytest.mark.usefixtures("fresh_apps")
def test_the_split_app_builds_from_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    function_environment(
        monkeypatch,
        SplitSettings,
        RECORDS_QUEUE_URL=RECORDS_QUEUE,
        LEDGER_TABLE="gro-ledger",
        SPLIT_TIME_BUDGET_SECONDS="120.5",
        SEND_CONCURRENCY="4",
    )

    built = splitter.app.split_app()

    assert isinstance(built, SplitApp)
    assert built.settings == SplitSettings(
        records_queue_url=RECORDS_QUEUE,
        ledger_table="gro-ledger",
        split_time_budget_seconds=120.5,
        send_concurrency=4,
    )
    assert isinstance(built.ledger, Ledger)
    sink = built.new_sink()  # threads, no connection: nothing is sent until a batch fills
    try:
        assert isinstance(sink, QueueSink)
        assert sink.emitted == 0
    finally:
        sink.close()


@pytest.mark.usefixtures("fresh_apps")
def test_a_missing_variable_fails_the_split_app_at_build_time_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(monkeypatch, SplitSettings, RECORDS_QUEUE_URL=RECORDS_QUEUE)

    with pytest.raises(SettingsError, match="LEDGER_TABLE"):
        splitter.app.split_app()
