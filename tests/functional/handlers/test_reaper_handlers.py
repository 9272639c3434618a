"""The reaper's entry points, `consumed`, `finish_file` and `sweep`, called as Lambda calls
them: recorded events (SQS, SNS, EventBridge schedule, state machine steps), a Lambda context,
and in-memory ports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
import pytest
from botocore.exceptions import ClientError

import reaper.app
from contracts.events import DeathNotification
from contracts.messages import FileRef, file_id
from contracts.receipts import DeletionReceipt
from contracts.steps import FileCounts, FinishStepInput, FinishStepOutput
from contracts.stored import StoredEvent
from reaper import handler
from reaper.app import ConsumedApp, FinishApp, S3Sources, SweepApp
from reaper.reap import RecordsUnaccountedError
from reaper.settings import ConsumedSettings, FinishSettings, SweepSettings
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import FileProgress, Ledger
from servicekit.settings import SettingsError
from servicekit.store import Store

from .environment import function_environment
from .fakes import DeadLetter, FakeDeadLetters, FakeLedger, FakeSources, FakeStore
from .recorded import (
    FakeLambdaContext,
    Message,
    event,
    sample,
    sample_text,
    sns_envelope,
    sqs_event,
)

QUEUE = "gro-events-consumed"
MAX_RECEIVE_COUNT = 5
NOW = 1_700_000_000.0
EVENT = msgspec.json.decode(sample_text("EventToPublish"), type=dict)["event"]
NOTIFICATION = msgspec.convert(EVENT, DeathNotification)
EVENT_ID = NOTIFICATION.source_id
FILE = FileRef(
    bucket="landing",
    key="incoming/DWP_D_20220301.xml",
    version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
)
FID = file_id(FILE)


def item(event_id: str, expires_at: int) -> StoredEvent:
    return StoredEvent(
        id=event_id,
        event=msgspec.structs.replace(NOTIFICATION, source_id=event_id),
        expires_at=expires_at,
        file_id=FID,
        ordinal=1,
    )


# -- consumed -------------------------------------------------------------------------------


@dataclass
class Consumed:
    store: FakeStore = field(default_factory=FakeStore)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)


@pytest.fixture
def consumed(monkeypatch: pytest.MonkeyPatch) -> Consumed:
    ports = Consumed()
    app = ConsumedApp(
        settings=ConsumedSettings(
            store_table="gro-temporary-store",
            consumed_dlq_url="https://sqs.us-east-1.amazonaws.com/123456789012/gro-events-consumed-dlq",
            max_receive_count=MAX_RECEIVE_COUNT,
        ),
        store=ports.store,
        dead_letters=ports.dead_letters,
    )
    monkeypatch.setattr(reaper.app, "consumed_app", lambda: app)
    ports.store.items[EVENT_ID] = item(EVENT_ID, int(NOW) + 3600)
    return ports


def consumed_context() -> FakeLambdaContext:
    return FakeLambdaContext("gro-reaper-consumed")


def test_a_consumed_notice_delivered_raw_deletes_the_stored_event(consumed: Consumed) -> None:
    # given: SNS raw message delivery: the body is the platform's notice itself
    body = sample_text("EventsConsumed")

    # when
    response = handler.consumed(sqs_event(body, queue=QUEUE), consumed_context())

    # then
    assert response == {"batchItemFailures": []}
    assert consumed.store.deleted == [EVENT_ID]
    assert consumed.store.items == {}
    assert consumed.dead_letters.sent == []


def test_a_consumed_notice_in_an_sns_envelope_deletes_the_stored_event(
    consumed: Consumed,
) -> None:
    # given: SNS -> SQS without raw delivery: the notice is the envelope's Message
    body = sns_envelope(sample_text("EventsConsumed"))
    assert json.loads(body)["Type"] == "Notification"

    # when
    response = handler.consumed(sqs_event(body, queue=QUEUE), consumed_context())

    # then
    assert response == {"batchItemFailures": []}
    assert consumed.store.deleted == [EVENT_ID]
    assert consumed.dead_letters.sent == []


def test_a_notice_for_an_event_already_gone_is_fine(consumed: Consumed) -> None:
    consumed.store.items.clear()

    response = handler.consumed(
        sqs_event(sample_text("EventsConsumed"), queue=QUEUE), consumed_context()
    )

    assert response == {"batchItemFailures": []}
    assert consumed.store.deleted == [EVENT_ID]


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        '{"event": "consumed"}',
        sns_envelope('{"identifier": "x"}'),
        json.dumps({"Type": "SubscriptionConfirmation", "Message": "confirm"}),
    ],
    ids=["not-json", "not-a-notice", "envelope-without-a-notice", "not-a-notification"],
)
def test_an_undecodable_notice_is_dead_lettered_and_deletes_nothing(
    consumed: Consumed, body: str
) -> None:
    # when
    response = handler.consumed(sqs_event(body, queue=QUEUE), consumed_context())

    # then
    assert response == {"batchItemFailures": []}
    (dead,) = consumed.dead_letters.sent
    assert dead.body == body
    assert dead.reason.startswith("the body is not events-consumed.v1")
    assert dead.attempts == 1
    assert consumed.store.deleted == []
    assert EVENT_ID in consumed.store.items


def test_a_store_failure_before_the_last_attempt_is_retried(consumed: Consumed) -> None:
    # given: the store fails for this batch; the second message is not ours to retry
    consumed.store.fail_with = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
        "DeleteItem",
    )
    event_ = sqs_event(
        Message(sample_text("EventsConsumed"), receive_count=2, message_id="retry-me"),
        Message("not json", message_id="dead"),
        queue=QUEUE,
    )

    # when
    response = handler.consumed(event_, consumed_context())

    # then
    assert response == {"batchItemFailures": [{"itemIdentifier": "retry-me"}]}
    assert [d.body for d in consumed.dead_letters.sent] == ["not json"]


def test_a_store_failure_on_the_last_attempt_is_dead_lettered_with_the_reason(
    consumed: Consumed,
) -> None:
    # given
    consumed.store.fail_with = ClientError(
        {"Error": {"Code": "InternalServerError", "Message": "try again"}}, "DeleteItem"
    )
    body = sample_text("EventsConsumed")

    # when
    response = handler.consumed(
        sqs_event(Message(body, receive_count=MAX_RECEIVE_COUNT), queue=QUEUE),
        consumed_context(),
    )

    # then
    assert response == {"batchItemFailures": []}
    assert consumed.dead_letters.sent == [
        DeadLetter(body, f"ClientError after {MAX_RECEIVE_COUNT} attempts", MAX_RECEIVE_COUNT)
    ]
    assert EVENT_ID in consumed.store.items


# -- finish_file ----------------------------------------------------------------------------


@dataclass
class Finish:
    ledger: FakeLedger = field(default_factory=FakeLedger)
    sources: FakeSources = field(default_factory=FakeSources)


STALL_SECONDS = 3600


@pytest.fixture
def finish(monkeypatch: pytest.MonkeyPatch) -> Finish:
    ports = Finish()
    app = FinishApp(
        settings=FinishSettings(ledger_table="gro-ledger", stall_seconds=STALL_SECONDS),
        ledger=ports.ledger,
        sources=ports.sources,
        clock=lambda: NOW,
    )
    monkeypatch.setattr(reaper.app, "finish_app", lambda: app)
    return ports


def progress(*, emitted: int | None, published: int, rejected: int, dead: int) -> FileProgress:
    return FileProgress(
        file_id=FID,
        status="split" if emitted is not None else "splitting",
        emitted=emitted,
        record_count=emitted or 0,
        published=published,
        rejected=rejected,
        dead_lettered=dead,
        terminal=published + rejected + dead,
    )


def finish_context() -> FakeLambdaContext:
    return FakeLambdaContext("gro-reaper-finish-file")


def test_a_complete_file_has_its_source_deleted_a_receipt_written_and_is_finished(
    finish: Finish,
) -> None:
    # given: all 2400 emitted records ended one way or another
    finish.ledger.progress_of[FID] = progress(emitted=2400, published=2390, rejected=7, dead=3)

    # when
    out = handler.finish_file(sample("FinishStepInput"), finish_context())

    # then
    step = msgspec.convert(out, FinishStepOutput)
    assert step.finished is True
    assert step.file == FILE
    assert step.counts == FileCounts(
        emitted=2400, terminal=2400, published=2390, rejected=7, dead_lettered=3
    )
    assert finish.sources.deleted == [FILE]
    assert finish.ledger.file_calls == [("file_finished", FILE)]
    (key,) = finish.sources.receipts
    assert key == f"receipts/{FID}.json"
    receipt = msgspec.json.decode(finish.sources.receipts[key], type=DeletionReceipt)
    assert receipt == DeletionReceipt(
        file_id=FID,
        bucket=FILE.bucket,
        key=FILE.key,
        version_id=FILE.version_id,
        records=2400,
        published=2390,
        rejected=7,
        dead_lettered=3,
        source_deleted_at=int(NOW),
    )


def test_a_receipt_holds_counts_and_identities_only(finish: Finish) -> None:
    finish.ledger.progress_of[FID] = progress(emitted=1, published=1, rejected=0, dead=0)

    handler.finish_file(sample("FinishStepInput"), finish_context())

    (raw,) = finish.sources.receipts.values()
    fields = set(json.loads(raw))
    assert fields == set(sample("DeletionReceipt"))
    assert fields == {
        "file_id",
        "bucket",
        "key",
        "version_id",
        "records",
        "published",
        "rejected",
        "dead_lettered",
        "source_deleted_at",
    }


def test_an_incomplete_file_is_not_finished_and_nothing_is_deleted(finish: Finish) -> None:
    # given: 2 of 2400 records still on their way; progress since the last check
    finish.ledger.progress_of[FID] = progress(emitted=2400, published=2395, rejected=3, dead=0)

    # when
    out = handler.finish_file(sample("FinishStepInput"), finish_context())

    # then
    step = msgspec.convert(out, FinishStepOutput)
    assert step.finished is False
    assert (step.terminal_seen, step.progress_at) == (2398, NOW)
    assert step.wait_seconds == 10
    assert finish.sources.deleted == []
    assert finish.sources.receipts == {}
    assert finish.ledger.file_calls == []
    # the state machine asks again with this output
    assert msgspec.convert(out, FinishStepInput).terminal_seen == 2398


def test_a_file_still_being_split_is_not_finished(finish: Finish) -> None:
    finish.ledger.progress_of[FID] = progress(emitted=None, published=0, rejected=0, dead=0)

    out = handler.finish_file(sample("SplitStepOutput"), finish_context())

    assert msgspec.convert(out, FinishStepOutput).finished is False
    assert finish.sources.deleted == []


def test_a_file_stalled_beyond_stall_seconds_raises_records_unaccounted(finish: Finish) -> None:
    # given: no record has ended since the last check, which was over an hour ago
    finish.ledger.progress_of[FID] = progress(emitted=2400, published=2398, rejected=0, dead=0)
    state = sample("FinishStepInput") | {
        "terminal_seen": 2398,
        "progress_at": NOW - STALL_SECONDS - 1,
    }

    # when
    with pytest.raises(RecordsUnaccountedError) as stalled:
        handler.finish_file(state, finish_context())

    # then: the state machine catches it by name
    assert type(stalled.value).__name__ == "RecordsUnaccountedError"
    assert "2 records" in str(stalled.value)
    assert finish.sources.deleted == []
    assert finish.ledger.file_calls == []


def test_a_file_waiting_less_than_stall_seconds_is_not_stalled(finish: Finish) -> None:
    finish.ledger.progress_of[FID] = progress(emitted=2400, published=2398, rejected=0, dead=0)
    state = sample("FinishStepInput") | {"terminal_seen": 2398, "progress_at": NOW - 60}

    out = handler.finish_file(state, finish_context())

    assert msgspec.convert(out, FinishStepOutput).progress_at == NOW - 60


# -- sweep ----------------------------------------------------------------------------------


@pytest.fixture
def swept(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    store = FakeStore()
    app = SweepApp(
        settings=SweepSettings(store_table="gro-temporary-store"), store=store, clock=lambda: NOW
    )
    monkeypatch.setattr(reaper.app, "sweep_app", lambda: app)
    return store


def test_the_sweep_deletes_exactly_the_expired_events_and_says_how_many(
    swept: FakeStore,
) -> None:
    # given
    for event_id, expires_at in {
        "gro1-expired-long-ago": int(NOW) - 86_400,
        "gro1-expired-just-now": int(NOW),
        "gro1-live": int(NOW) + 1,
        "gro1-live-for-a-week": int(NOW) + 7 * 86_400,
    }.items():
        swept.items[event_id] = item(event_id, expires_at)
    scheduled = event("scheduled_event.json")

    # when
    out = handler.sweep(scheduled, FakeLambdaContext("gro-reaper-sweep"))

    # then
    assert out == {"deleted": 2}
    assert sorted(swept.deleted) == ["gro1-expired-just-now", "gro1-expired-long-ago"]
    assert sorted(swept.items) == ["gro1-live", "gro1-live-for-a-week"]


def test_a_sweep_with_nothing_expired_deletes_nothing(swept: FakeStore) -> None:
    swept.items["gro1-live"] = item("gro1-live", int(NOW) + 1)

    out = handler.sweep(event("scheduled_event.json"), FakeLambdaContext("gro-reaper-sweep"))

    assert out == {"deleted": 0}
    assert swept.deleted == []


# -- the composition root -------------------------------------------------------------------


@pytest.fixture
def fresh_apps() -> Iterator[None]:
    builders = (reaper.app.consumed_app, reaper.app.finish_app, reaper.app.sweep_app)
    for build in builders:
        build.cache_clear()
    yield
    for build in builders:
        build.cache_clear()


@pytest.mark.usefixtures("fresh_apps")
def test_the_consumed_app_builds_from_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dlq = "https://sqs.us-east-1.amazonaws.com/123456789012/gro-events-consumed-dlq"
    function_environment(
        monkeypatch,
        ConsumedSettings,
        STORE_TABLE="gro-temporary-store",
        CONSUMED_DLQ_URL=dlq,
        MAX_RECEIVE_COUNT="3",
    )

    built = reaper.app.consumed_app()

    assert built.settings == ConsumedSettings(
        store_table="gro-temporary-store", consumed_dlq_url=dlq, max_receive_count=3
    )
    assert isinstance(built.store, Store)
    assert isinstance(built.dead_letters, DeadLetterQueue)
    assert reaper.app.consumed_app() is built


@pytest.mark.usefixtures("fresh_apps")
def test_the_finish_and_sweep_apps_build_from_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(monkeypatch, FinishSettings, LEDGER_TABLE="gro-ledger", STALL_SECONDS="60")
    function_environment(monkeypatch, SweepSettings, STORE_TABLE="gro-temporary-store")

    finish_app = reaper.app.finish_app()
    sweep_app = reaper.app.sweep_app()

    assert finish_app.settings == FinishSettings(ledger_table="gro-ledger", stall_seconds=60)
    assert isinstance(finish_app.ledger, Ledger)
    assert isinstance(finish_app.sources, S3Sources)
    assert sweep_app.settings == SweepSettings(store_table="gro-temporary-store")
    assert isinstance(sweep_app.store, Store)


@pytest.mark.usefixtures("fresh_apps")
def test_a_missing_variable_fails_the_consumed_app_at_build_time_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(monkeypatch, ConsumedSettings, STORE_TABLE="gro-temporary-store")

    with pytest.raises(SettingsError, match="CONSUMED_DLQ_URL"):
        reaper.app.consumed_app()
