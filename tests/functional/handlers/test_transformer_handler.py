"""The transformer's entry point, `transform`, called as Lambda calls it: a recorded SQS event
carrying golden record-to-transform messages, a Lambda context, and in-memory ports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

import transformer.app
from contracts.messages import EventToPublish, RecordToTransform
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import Ledger, RecordStatus
from servicekit.settings import SettingsError
from tests.builders import fragment, record
from transformer import handler
from transformer.app import App, QueueEvents
from transformer.keys import CachedKeyRing, KeyRing
from transformer.settings import Settings
from transformer.transform import KeyFor

from .environment import function_environment
from .fakes import DeadLetter, FakeDeadLetters, FakeEventSink, FakeLedger, RecordEnded
from .recorded import FakeLambdaContext, Message, sample_text, sqs_event

QUEUE = "gro-records-to-transform"
MAX_RECEIVE_COUNT = 5
SETTINGS = Settings(
    events_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/gro-events-to-publish",
    records_dlq_url="https://sqs.us-east-1.amazonaws.com/123456789012/gro-records-to-transform-dlq",
    ledger_table="gro-ledger",
    event_id_key_secret="gro/event-id-key",
    max_receive_count=MAX_RECEIVE_COUNT,
)
KEY = b"test-event-id-key, 32 bytes or more"
GOLDEN = sample_text("RecordToTransform")
GOLDEN_MESSAGE = msgspec.json.decode(GOLDEN, type=RecordToTransform)


def context() -> FakeLambdaContext:
    return FakeLambdaContext("gro-transformer-transform")


def message(ordinal: int, xml: str | bytes) -> str:
    """A record-to-transform body for another record of the golden sample's file."""
    text = xml.decode() if isinstance(xml, bytes) else xml
    return msgspec.json.encode(
        msgspec.structs.replace(GOLDEN_MESSAGE, ordinal=ordinal, fragment=text)
    ).decode()


@dataclass
class Ports:
    ledger: FakeLedger = field(default_factory=FakeLedger)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)
    events: FakeEventSink = field(default_factory=FakeEventSink)
    monkeypatch: pytest.MonkeyPatch | None = None

    def use_keys(self, key_for: KeyFor) -> None:
        """The app, with its event id keys from `key_for`."""
        assert self.monkeypatch is not None
        app = App(
            settings=SETTINGS,
            ledger=self.ledger,
            dead_letters=self.dead_letters,
            events=self.events,
            event_id_keys=key_for,
        )
        self.monkeypatch.setattr(transformer.app, "current", lambda: app)


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> Ports:
    fakes = Ports(monkeypatch=monkeypatch)
    fakes.use_keys(KeyRing.single(KEY, what="the test key").for_arrival)
    return fakes


def test_a_valid_record_becomes_one_event_to_publish_for_the_same_record(ports: Ports) -> None:
    # given
    event = sqs_event(GOLDEN, queue=QUEUE)

    # when
    response = handler.transform(event, context())

    # then
    assert response == {"batchItemFailures": []}
    (sent,) = ports.events.sent
    assert isinstance(sent, EventToPublish)
    assert sent.file == GOLDEN_MESSAGE.file
    assert sent.ordinal == GOLDEN_MESSAGE.ordinal
    assert sent.trace_header is None  # deprecated body field: the trace goes as AWSTraceHeader
    assert sent.event.registration_id == "31677"
    assert sent.event.source_id.startswith("gro1-")
    # the event travels as the contract says
    assert msgspec.json.decode(msgspec.json.encode(sent), type=EventToPublish) == sent
    # terminal only once published: nothing for the ledger yet, nothing dead-lettered
    assert ports.ledger.records == []
    assert ports.dead_letters.sent == []


def test_the_event_id_is_the_same_for_the_same_record_and_key(ports: Ports) -> None:
    handler.transform(sqs_event(GOLDEN, GOLDEN, queue=QUEUE), context())

    first, second = ports.events.sent
    assert first.event.source_id == second.event.source_id


def test_a_record_breaking_a_rule_is_dead_lettered_with_a_reason_naming_the_rule_not_the_value(
    ports: Ports,
) -> None:
    # given: a registration id that is not a number
    body = message(7, fragment(record(registration_id="SECRETNAME")))
    event = sqs_event(Message(body, receive_count=1), queue=QUEUE)

    # when
    response = handler.transform(event, context())

    # then
    assert response == {"batchItemFailures": []}
    assert ports.events.sent == []
    (dead,) = ports.dead_letters.sent
    assert dead.body == body
    assert dead.attempts == 1
    assert "RegistrationID is not a number" in dead.reason
    assert "SECRETNAME" not in dead.reason
    assert ports.ledger.records == [
        RecordEnded(
            GOLDEN_MESSAGE.file,
            7,
            RecordStatus.REJECTED,
            None,
            ("RegistrationID is not a number",),
        )
    ]


def test_an_undecodable_body_is_dead_lettered_as_not_the_contract_without_a_ledger_write(
    ports: Ports,
) -> None:
    # given: JSON, but not a record-to-transform (no kind tag, no file)
    body = '{"ordinal": 3, "fragment": "<DeathRegistration/>"}'

    # when
    response = handler.transform(sqs_event(body, queue=QUEUE), context())

    # then
    assert response == {"batchItemFailures": []}
    (dead,) = ports.dead_letters.sent
    assert dead.body == body
    assert dead.reason.startswith("the body is not record-to-transform.v1")
    assert ports.ledger.records == []
    assert ports.events.sent == []


def test_a_body_that_is_not_json_is_dead_lettered_too(ports: Ports) -> None:
    response = handler.transform(sqs_event("<DeathRegistration/>", queue=QUEUE), context())

    assert response == {"batchItemFailures": []}
    assert [d.reason.split(":")[0] for d in ports.dead_letters.sent] == [
        "the body is not record-to-transform.v1"
    ]


def test_an_unexpected_error_before_the_last_attempt_fails_only_that_message(
    ports: Ports,
) -> None:
    # given: sending ordinal 9's event fails; ordinal 5 goes through
    ports.events.fail_for = frozenset({9})
    failing = message(9, GOLDEN_MESSAGE.fragment)
    event = sqs_event(
        Message(GOLDEN, message_id="ok"),
        Message(failing, receive_count=MAX_RECEIVE_COUNT - 1, message_id="failing"),
        queue=QUEUE,
    )

    # when
    response = handler.transform(event, context())

    # then: SQS will deliver it again
    assert response == {"batchItemFailures": [{"itemIdentifier": "failing"}]}
    assert [e.ordinal for e in ports.events.sent] == [5]
    assert ports.dead_letters.sent == []
    assert ports.ledger.records == []


def test_an_unexpected_error_on_the_last_attempt_is_dead_lettered_with_its_type_and_attempts(
    ports: Ports,
) -> None:
    # given
    ports.events.fail_for = frozenset({5})
    event = sqs_event(Message(GOLDEN, receive_count=MAX_RECEIVE_COUNT), queue=QUEUE)

    # when
    response = handler.transform(event, context())

    # then: given up on, by us, with the reason; the error's text (a surname) is not quoted
    assert response == {"batchItemFailures": []}
    assert ports.dead_letters.sent == [
        DeadLetter(GOLDEN, f"RuntimeError after {MAX_RECEIVE_COUNT} attempts", MAX_RECEIVE_COUNT)
    ]
    assert ports.ledger.records == [
        RecordEnded(
            GOLDEN_MESSAGE.file,
            GOLDEN_MESSAGE.ordinal,
            RecordStatus.DEAD_LETTERED,
            None,
            (f"RuntimeError after {MAX_RECEIVE_COUNT} attempts",),
        )
    ]


def test_a_batch_whose_every_message_fails_fails_the_invocation(ports: Ports) -> None:
    # Powertools' BatchProcessor raises when nothing in the batch succeeded: SQS retries all
    ports.events.fail_for = frozenset({5})

    with pytest.raises(BatchProcessingError):
        handler.transform(sqs_event(GOLDEN, queue=QUEUE), context())

    assert ports.dead_letters.sent == []


def test_the_logs_name_the_record_but_never_its_content(
    ports: Ports, capsys: pytest.CaptureFixture[str]
) -> None:
    handler.transform(sqs_event(GOLDEN, queue=QUEUE), context())

    out = capsys.readouterr().out
    assert "record transformed" in out
    assert ports.events.sent[0].event.source_id in out
    for personal in ("ÏSOLDE", "Alice", "West Smithfield", "31677"):
        assert personal not in out


def test_content_the_format_does_not_define_is_left_out_counted_in_the_log_and_a_metric(
    ports: Ports, capsys: pytest.CaptureFixture[str]
) -> None:
    undefined = '<JohnSmith xmlns="urn:example:john-smith"><Born>1950</Born></JohnSmith>'
    body = message(8, fragment(record(rest=undefined)))

    handler.transform(sqs_event(GOLDEN, body, queue=QUEUE), context())

    plain, with_it = (sent.event for sent in ports.events.sent)
    assert plain.extra == () and with_it.extra == ()
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]
    logged = {
        line["ordinal"]: line["undefined_elements_dropped"]
        for line in lines
        if line.get("message") == "record transformed"
    }
    assert logged == {GOLDEN_MESSAGE.ordinal: 0, 8: 2}
    (metric,) = [line for line in lines if "_aws" in line]
    assert metric["UndefinedElementsDropped"] == [2]
    for word in ("JohnSmith", "john-smith", "Born", "1950"):
        assert word not in out


# -- the event id key and its versions ---------------------------------------------------------

NEW_KEY = "version-2 key of the transformer handler tests, 32 bytes or more"
ACTIVE_FROM = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
KEY_SET = json.dumps(
    {
        "versions": [
            {"version": 1, "key": KEY.decode()},
            {"version": 2, "key": NEW_KEY, "active_from": "2025-07-01T09:00:00Z"},
        ]
    }
)


def arriving(at: datetime | None, ordinal: int = GOLDEN_MESSAGE.ordinal) -> str:
    """The golden message, for a file that arrived at `at` (None: not stamped)."""
    stamped = msgspec.structs.replace(GOLDEN_MESSAGE, ordinal=ordinal, file_arrived=at)
    return msgspec.json.encode(stamped).decode()


def test_a_record_gets_the_key_version_that_was_active_when_its_file_arrived(
    ports: Ports,
) -> None:
    # given: the ids of the golden record under the plain key, before any rotation
    handler.transform(sqs_event(GOLDEN, queue=QUEUE), context())
    (before,) = ports.events.sent
    # and the secret now holds a key set: version 1 (that key) and version 2
    ports.use_keys(KeyRing.parse(KEY_SET, source="secret S").for_arrival)
    ports.events.sent.clear()
    just_before = ACTIVE_FROM - timedelta(seconds=1)

    # when
    event = sqs_event(
        Message(GOLDEN, message_id="unstamped"),
        Message(arriving(just_before, 6), message_id="before"),
        Message(arriving(ACTIVE_FROM, 7), message_id="after"),
        queue=QUEUE,
    )
    response = handler.transform(event, context())

    # then: the same content, and the same id as before the rotation unless its file arrived
    # once version 2 was active; that id says its version
    assert response == {"batchItemFailures": []}
    unstamped, stamped_before, stamped_after = (e.event.source_id for e in ports.events.sent)
    assert unstamped == stamped_before == before.event.source_id
    assert stamped_after.startswith("gro1-k2-") and stamped_after != before.event.source_id
    assert stamped_after.removeprefix("gro1-k2-") != before.event.source_id.removeprefix("gro1-")


def test_a_record_whose_key_version_was_retired_is_dead_lettered_with_the_reason(
    ports: Ports,
) -> None:
    # given: version 1 retired too early, and a message of its era
    retired = json.dumps({"versions": json.loads(KEY_SET)["versions"][1:]})
    ports.use_keys(KeyRing.parse(retired, source="secret S").for_arrival)
    body = arriving(ACTIVE_FROM - timedelta(hours=1))

    # when
    response = handler.transform(sqs_event(Message(body, receive_count=1), queue=QUEUE), context())

    # then: not transformed under another version (that would be a second id): dead-lettered
    assert response == {"batchItemFailures": []}
    assert ports.events.sent == []
    (dead,) = ports.dead_letters.sent
    assert dead.body == body
    assert "no kept key version was active when the record's file arrived" in dead.reason
    assert "put the retired version back and redrive" in dead.reason
    assert [(r.ordinal, r.status) for r in ports.ledger.records] == [
        (GOLDEN_MESSAGE.ordinal, RecordStatus.DEAD_LETTERED)
    ]


def test_a_secret_with_a_short_key_fails_the_record_until_fixed_and_never_shows_the_key(
    ports: Ports, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: someone put a short key in the secret
    ports.use_keys(CachedKeyRing(lambda: "Short-Key-0123", source="secret S"))

    # when: before the last attempt, the record goes back to the queue (the batch fails whole)
    with pytest.raises(BatchProcessingError):
        handler.transform(sqs_event(Message(GOLDEN, receive_count=1), queue=QUEUE), context())
    assert ports.dead_letters.sent == []
    # and on the last, it is dead-lettered with the error's type, like any other fault
    last = sqs_event(Message(GOLDEN, receive_count=MAX_RECEIVE_COUNT), queue=QUEUE)
    response = handler.transform(last, context())

    # then
    assert response == {"batchItemFailures": []}
    assert [d.reason for d in ports.dead_letters.sent] == [
        f"KeySetError after {MAX_RECEIVE_COUNT} attempts"
    ]
    assert ports.events.sent == []
    assert "Short-Key-0123" not in capsys.readouterr().out


def test_the_app_reads_the_secret_through_powertools_uncached_and_checks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, bool]] = []

    def get_secret(name: str, force_fetch: bool = False, **_: object) -> str:
        calls.append((name, force_fetch))
        return KEY_SET

    monkeypatch.setattr(transformer.app.parameters, "get_secret", get_secret)
    keys = transformer.app.secret_keys("gro/event-id-key")
    assert calls == []  # nothing read until a record needs a key

    assert keys(None).version == 1
    assert keys(ACTIVE_FROM).version == 2
    # one read: the cache is CachedKeyRing's, Powertools is asked for a fresh value each time
    assert calls == [("gro/event-id-key", True)]


# -- the composition root -------------------------------------------------------------------


@pytest.fixture
def fresh_app() -> Iterator[None]:
    transformer.app.current.cache_clear()
    yield
    transformer.app.current.cache_clear()


@pytest.mark.usefixtures("fresh_app")
def test_the_app_builds_from_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    function_environment(
        monkeypatch,
        Settings,
        EVENTS_QUEUE_URL=SETTINGS.events_queue_url,
        RECORDS_DLQ_URL=SETTINGS.records_dlq_url,
        LEDGER_TABLE="gro-ledger",
        EVENT_ID_KEY_SECRET="gro/event-id-key",
        MAX_RECEIVE_COUNT="7",
    )

    built = transformer.app.current()

    assert isinstance(built, App)
    assert built.settings == msgspec.structs.replace(SETTINGS, max_receive_count=7)
    assert isinstance(built.ledger, Ledger)
    assert isinstance(built.dead_letters, DeadLetterQueue)
    assert isinstance(built.events, QueueEvents)
    assert isinstance(built.event_id_keys, CachedKeyRing)  # read on first use, not here
    assert transformer.app.current() is built


@pytest.mark.usefixtures("fresh_app")
def test_a_missing_variable_fails_the_app_at_build_time_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(
        monkeypatch,
        Settings,
        RECORDS_DLQ_URL=SETTINGS.records_dlq_url,
        LEDGER_TABLE="gro-ledger",
        EVENT_ID_KEY_SECRET="gro/event-id-key",
    )

    with pytest.raises(SettingsError, match="EVENTS_QUEUE_URL"):
        transformer.app.current()


# -- the events queue: a batch's events in SendMessageBatch calls ---------------------------


@dataclass
class FakeSqs:
    """SendMessageBatch: keeps each call's entries; lists as failed the entries whose event
    is for an ordinal in `fail_for`."""

    calls: list[list[dict[str, Any]]] = field(default_factory=list)
    fail_for: frozenset[int] = frozenset()

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        assert QueueUrl == SETTINGS.events_queue_url
        assert len(Entries) <= 10 and len({e["Id"] for e in Entries}) == len(Entries)
        self.calls.append(Entries)
        failed = [
            e["Id"]
            for e in Entries
            if msgspec.json.decode(e["MessageBody"], type=EventToPublish).ordinal in self.fail_for
        ]
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e["Id"] not in failed],
            "Failed": [{"Id": i, "Code": "InternalError", "SenderFault": False} for i in failed],
        }


@pytest.fixture
def sqs(ports: Ports, monkeypatch: pytest.MonkeyPatch) -> FakeSqs:
    """The app with the real `QueueEvents` over a fake SQS client, and a trace header per
    record (the one its span would give)."""
    fake = FakeSqs()
    app = App(
        settings=SETTINGS,
        ledger=ports.ledger,
        dead_letters=ports.dead_letters,
        events=QueueEvents(fake, SETTINGS.events_queue_url),
        event_id_keys=KeyRing.single(KEY, what="the test key").for_arrival,
    )
    monkeypatch.setattr(transformer.app, "current", lambda: app)
    parents = iter(f"{n:016x}" for n in range(1, 100))
    monkeypatch.setattr(
        transformer.app.tracing,
        "header",
        lambda: f"Root=1-5759e988-bd862e3fe1be46a994272793;Parent={next(parents)};Sampled=1",
    )
    return fake


def bodies(n: int) -> list[Message]:
    return [
        Message(message(o, GOLDEN_MESSAGE.fragment), message_id=f"m-{o}") for o in range(1, n + 1)
    ]


def test_a_batchs_events_go_out_in_one_call_each_with_its_own_records_trace(
    sqs: FakeSqs,
) -> None:
    response = handler.transform(sqs_event(*bodies(3), queue=QUEUE), context())

    assert response == {"batchItemFailures": []}
    (entries,) = sqs.calls
    ordinals = [msgspec.json.decode(e["MessageBody"], type=EventToPublish).ordinal for e in entries]
    assert ordinals == [1, 2, 3]
    headers = [e["MessageSystemAttributes"]["AWSTraceHeader"]["StringValue"] for e in entries]
    assert len(set(headers)) == 3  # each record's own parent span, not one for the batch
    assert all(h.endswith(";Sampled=1") for h in headers)


def test_more_than_ten_events_go_out_ten_to_a_call(sqs: FakeSqs) -> None:
    response = handler.transform(sqs_event(*bodies(12), queue=QUEUE), context())

    assert response == {"batchItemFailures": []}
    assert [len(c) for c in sqs.calls] == [10, 2]


def test_an_entry_sqs_lists_as_failed_sends_back_that_record_alone(
    sqs: FakeSqs, ports: Ports
) -> None:
    sqs.fail_for = frozenset({2})

    response = handler.transform(sqs_event(*bodies(3), queue=QUEUE), context())

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert ports.dead_letters.sent == [] and ports.ledger.records == []


def test_an_entry_failed_on_the_last_attempt_is_dead_lettered_with_the_queues_code(
    sqs: FakeSqs, ports: Ports
) -> None:
    sqs.fail_for = frozenset({1})
    body = message(1, GOLDEN_MESSAGE.fragment)

    response = handler.transform(
        sqs_event(Message(body, receive_count=MAX_RECEIVE_COUNT), queue=QUEUE), context()
    )

    assert response == {"batchItemFailures": []}
    reason = f"the events queue refused the event: InternalError after {MAX_RECEIVE_COUNT} attempts"
    assert ports.dead_letters.sent == [DeadLetter(body, reason, MAX_RECEIVE_COUNT)]
    assert ports.ledger.records == [
        RecordEnded(GOLDEN_MESSAGE.file, 1, RecordStatus.DEAD_LETTERED, None, (reason,))
    ]


def test_a_rejected_record_sends_nothing_and_the_rest_of_its_batch_goes_out(
    sqs: FakeSqs, ports: Ports
) -> None:
    bad = message(2, fragment(record(registration_id="SECRETNAME")))
    batch = [*bodies(1), Message(bad, message_id="m-2"), *bodies(3)[2:]]

    response = handler.transform(sqs_event(*batch, queue=QUEUE), context())

    assert response == {"batchItemFailures": []}
    (entries,) = sqs.calls
    assert [
        msgspec.json.decode(e["MessageBody"], type=EventToPublish).ordinal for e in entries
    ] == [1, 3]
    assert [r.status for r in ports.ledger.records] == [RecordStatus.REJECTED]


def test_a_batch_call_is_cut_where_its_bytes_would_pass_sqss_limit() -> None:
    from transformer.app import MAX_BATCH_BYTES, _calls

    assert _calls([100] * 25) == [list(range(10)), list(range(10, 20)), list(range(20, 25))]
    half = MAX_BATCH_BYTES // 2
    assert _calls([half, half, 1, MAX_BATCH_BYTES + 1, 5]) == [[0, 1], [2], [3], [4]]
