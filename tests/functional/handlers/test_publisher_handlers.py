"""The publisher's entry points, `publish` and `enrich`, called as Lambda calls them: recorded
events carrying golden event-to-publish messages, a Lambda context, and in-memory ports."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import msgspec
import pytest

import publisher.app
from contracts.enrichment import EnrichResponse
from contracts.events import MinimalEvent
from contracts.messages import EventToPublish, file_id
from contracts.stored import StoredEvent
from publisher import handler
from publisher.app import EnrichApp, PublishApp
from publisher.platform import PermanentPlatformError, PlatformClient, TransientPlatformError
from publisher.settings import EnrichSettings, PublishSettings
from servicekit.consumer import Backoff, SqsVisibility
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import Ledger, RecordStatus
from servicekit.settings import SettingsError
from servicekit.store import Store

from .environment import function_environment
from .fakes import (
    DeadLetter,
    FakeDeadLetters,
    FakeLedger,
    FakePlatform,
    FakeStore,
    FakeVisibility,
    RecordEnded,
)
from .recorded import FakeLambdaContext, Message, sample, sample_text, sqs_event

QUEUE = "gro-events-to-publish"
NOW = 1_700_000_000
RETENTION = 7 * 24 * 3600
MAX_RECEIVE_COUNT = 10
SETTINGS = PublishSettings(
    store_table="gro-temporary-store",
    ledger_table="gro-ledger",
    events_dlq_url="https://sqs.us-east-1.amazonaws.com/123456789012/gro-events-to-publish-dlq",
    platform_url="https://platform.example.test",
    token_url="https://auth.example.test/oauth2/token",
    platform_client_secret_name="gro/platform-client",
    store_retention_seconds=RETENTION,
    max_receive_count=MAX_RECEIVE_COUNT,
)
GOLDEN = sample_text("EventToPublish")
GOLDEN_MESSAGE = msgspec.json.decode(GOLDEN, type=EventToPublish)
EVENT_ID = GOLDEN_MESSAGE.event.source_id
OTHER_ID = "gro1-" + "0" * 64


def other_message() -> str:
    """Another record of the same file, with an event of its own."""
    other = msgspec.structs.replace(
        GOLDEN_MESSAGE,
        ordinal=6,
        event=msgspec.structs.replace(GOLDEN_MESSAGE.event, source_id=OTHER_ID),
    )
    return msgspec.json.encode(other).decode()


def stored(message: EventToPublish, *, expires_at: int = NOW + RETENTION) -> StoredEvent:
    return StoredEvent(
        id=message.event.source_id,
        event=message.event,
        expires_at=expires_at,
        file_id=file_id(message.file),
        ordinal=message.ordinal,
    )


# -- publish --------------------------------------------------------------------------------


@dataclass
class Ports:
    store: FakeStore = field(default_factory=FakeStore)
    platform: FakePlatform = field(default_factory=FakePlatform)
    ledger: FakeLedger = field(default_factory=FakeLedger)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)
    visibility: FakeVisibility = field(default_factory=FakeVisibility)


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> Ports:
    fakes = Ports()
    app = PublishApp(
        settings=SETTINGS,
        store=fakes.store,
        platform=fakes.platform,
        ledger=fakes.ledger,
        dead_letters=fakes.dead_letters,
        backoff=Backoff(visibility=fakes.visibility, jitter=lambda top: top),
        clock=lambda: float(NOW),
    )
    monkeypatch.setattr(publisher.app, "publish_app", lambda: app)
    return fakes


def publish_context() -> FakeLambdaContext:
    return FakeLambdaContext("gro-publisher-publish")


def published() -> RecordEnded:
    return RecordEnded(
        GOLDEN_MESSAGE.file, GOLDEN_MESSAGE.ordinal, RecordStatus.PUBLISHED, EVENT_ID, ()
    )


def test_a_201_stores_the_event_and_records_it_published_with_its_id(ports: Ports) -> None:
    # when
    response = handler.publish(sqs_event(GOLDEN, queue=QUEUE), publish_context())

    # then
    assert response == {"batchItemFailures": []}
    assert ports.store.items == {EVENT_ID: stored(GOLDEN_MESSAGE)}
    assert ports.platform.posted == [
        MinimalEvent(event_time=GOLDEN_MESSAGE.event.event_time, id=EVENT_ID)
    ]
    assert ports.ledger.records == [published()]
    assert ports.dead_letters.sent == []


def test_a_batchs_published_records_go_into_the_ledger_in_one_write_once_all_are_published(
    ports: Ports,
) -> None:
    # given: the second event's platform call fails for now
    ports.platform.answers[OTHER_ID] = TransientPlatformError(503)
    event = sqs_event(
        Message(GOLDEN, message_id="golden"),
        Message(other_message(), message_id="other"),
        Message(GOLDEN, message_id="golden-again"),  # at-least-once: twice in one batch
        queue=QUEUE,
    )

    response = handler.publish(event, publish_context())

    # then the published ones are ended in one ledger call (the ledger counts a record once);
    # the one that failed is not, and goes back to its queue
    assert response == {"batchItemFailures": [{"itemIdentifier": "other"}]}
    assert ports.ledger.ending_calls == 1
    assert ports.ledger.records == [published(), published()]


def test_the_platform_is_told_only_the_minimal_event(ports: Ports) -> None:
    handler.publish(sqs_event(GOLDEN, queue=QUEUE), publish_context())

    (posted,) = ports.platform.posted
    as_sent = msgspec.json.decode(msgspec.json.encode(posted))
    assert as_sent == sample("MinimalEvent") | {"id": EVENT_ID}
    assert "ÏSOLDE" not in msgspec.json.encode(posted).decode()


def test_a_409_for_an_event_just_stored_deletes_the_copy_and_still_counts_as_published(
    ports: Ports,
) -> None:
    # given: the platform had it already (an earlier ingestion of the same record)
    ports.platform.answers[EVENT_ID] = 409

    # when
    response = handler.publish(sqs_event(GOLDEN, queue=QUEUE), publish_context())

    # then: nobody will ask for this copy
    assert response == {"batchItemFailures": []}
    assert ports.store.deleted == [EVENT_ID]
    assert ports.store.items == {}
    assert ports.ledger.records == [published()]


def test_a_409_for_an_event_stored_before_keeps_the_stored_copy(ports: Ports) -> None:
    # given: a redelivery: this message stored the event on an earlier attempt
    earlier = stored(GOLDEN_MESSAGE, expires_at=NOW + 60)
    ports.store.items[EVENT_ID] = earlier
    ports.platform.answers[EVENT_ID] = 409

    # when
    response = handler.publish(sqs_event(GOLDEN, queue=QUEUE), publish_context())

    # then
    assert response == {"batchItemFailures": []}
    assert ports.store.deleted == []
    assert ports.store.items == {EVENT_ID: earlier}
    assert ports.ledger.records == [published()]


def test_a_400_is_dead_lettered_at_once_its_stored_copy_deleted_and_recorded(
    ports: Ports,
) -> None:
    # given
    ports.platform.answers[EVENT_ID] = PermanentPlatformError(
        "platform answered 400 to POST /events"
    )

    # when
    response = handler.publish(sqs_event(GOLDEN, queue=QUEUE), publish_context())

    # then: no retry can help
    assert response == {"batchItemFailures": []}
    assert ports.dead_letters.sent == [
        DeadLetter(GOLDEN, "platform answered 400 to POST /events", 1)
    ]
    assert ports.store.items == {}
    assert ports.store.deleted == [EVENT_ID]
    assert ports.ledger.records == [
        RecordEnded(
            GOLDEN_MESSAGE.file,
            GOLDEN_MESSAGE.ordinal,
            RecordStatus.DEAD_LETTERED,
            EVENT_ID,
            ("platform answered 400 to POST /events",),
        )
    ]
    assert ports.visibility.hidden == []


def test_a_503_before_the_last_attempt_is_retried_after_a_longer_visibility(
    ports: Ports,
) -> None:
    # given: the third delivery of a message the platform is too busy for, in a batch
    ports.platform.answers[EVENT_ID] = TransientPlatformError("platform answered 503")
    event = sqs_event(
        Message(GOLDEN, receive_count=3, message_id="busy"),
        Message(other_message(), message_id="fine"),
        queue=QUEUE,
    )

    # when
    response = handler.publish(event, publish_context())

    # then: SQS delivers it again in 5 s * 2**(3-1) = 20 s (jitter off)
    assert response == {"batchItemFailures": [{"itemIdentifier": "busy"}]}
    assert ports.visibility.hidden == [("busy", 20)]
    assert ports.dead_letters.sent == []
    assert ports.ledger.records == [
        RecordEnded(GOLDEN_MESSAGE.file, 6, RecordStatus.PUBLISHED, OTHER_ID, ())
    ]


def test_a_503_on_the_last_attempt_is_dead_lettered_with_the_status_and_attempts(
    ports: Ports,
) -> None:
    # given
    ports.platform.answers[EVENT_ID] = TransientPlatformError("platform answered 503")
    event = sqs_event(Message(GOLDEN, receive_count=MAX_RECEIVE_COUNT), queue=QUEUE)

    # when
    response = handler.publish(event, publish_context())

    # then
    reason = f"platform answered 503 after {MAX_RECEIVE_COUNT} attempts"
    assert response == {"batchItemFailures": []}
    assert ports.dead_letters.sent == [DeadLetter(GOLDEN, reason, MAX_RECEIVE_COUNT)]
    assert ports.store.items == {}
    assert ports.ledger.records == [
        RecordEnded(
            GOLDEN_MESSAGE.file,
            GOLDEN_MESSAGE.ordinal,
            RecordStatus.DEAD_LETTERED,
            EVENT_ID,
            (reason,),
        )
    ]
    assert ports.visibility.hidden == []


def test_a_message_that_is_not_an_event_to_publish_is_dead_lettered_unread(
    ports: Ports,
) -> None:
    body = sample_text("RecordToTransform")

    response = handler.publish(sqs_event(body, queue=QUEUE), publish_context())

    assert response == {"batchItemFailures": []}
    (dead,) = ports.dead_letters.sent
    assert dead.reason.startswith("the body is not event-to-publish.v1")
    assert ports.platform.posted == []
    assert ports.ledger.records == []


# -- enrich ---------------------------------------------------------------------------------


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()
    app = EnrichApp(settings=EnrichSettings(store_table="gro-temporary-store"), store=fake)
    monkeypatch.setattr(publisher.app, "enrich_app", lambda: app)
    return fake


def enrich_context() -> FakeLambdaContext:
    return FakeLambdaContext("gro-publisher-enrich")


def test_enrichment_of_a_stored_event_answers_200_with_the_event(store: FakeStore) -> None:
    # given
    store.items[EVENT_ID] = stored(GOLDEN_MESSAGE, expires_at=int(time.time()) + 3600)

    # when
    out = handler.enrich(sample("EnrichRequest") | {"id": EVENT_ID}, enrich_context())

    # then
    answer = msgspec.convert(out, EnrichResponse)
    assert answer.status_code == 200
    assert answer.payload == GOLDEN_MESSAGE.event
    assert out["statusCode"] == 200
    assert out["payload"]["sourceId"] == EVENT_ID


def test_enrichment_of_an_unknown_id_answers_404(store: FakeStore) -> None:
    out = handler.enrich({"id": OTHER_ID}, enrich_context())

    assert out == {"statusCode": 404}
    assert msgspec.convert(out, EnrichResponse) == EnrichResponse(status_code=404)


def test_enrichment_of_a_malformed_id_answers_404_and_never_echoes_it(
    store: FakeStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: something that is not an id of ours, and that a log must not carry
    malformed = "Robert LEE <script>ZX-MALFORMED-81</script>"

    # when
    out = handler.enrich({"id": malformed}, enrich_context())

    # then
    assert out == {"statusCode": 404}
    logged = capsys.readouterr()
    assert "enrichment: not found" in logged.out
    assert "ZX-MALFORMED-81" not in logged.out + logged.err
    assert "Robert" not in logged.out + logged.err


@pytest.mark.parametrize("request_event", [{}, {"id": 42}, {"identifier": EVENT_ID}])
def test_enrichment_without_an_id_answers_400(
    store: FakeStore, request_event: dict[str, object]
) -> None:
    out = handler.enrich(request_event, enrich_context())

    assert out == {"statusCode": 400}
    assert msgspec.convert(out, EnrichResponse) == EnrichResponse(status_code=400)


def test_enrichment_of_an_expired_event_answers_404_even_before_ttl_deletes_it(
    store: FakeStore,
) -> None:
    # given: past its expiry, still in the table (DynamoDB's TTL can lag 48 h)
    store.items[EVENT_ID] = stored(GOLDEN_MESSAGE, expires_at=int(time.time()) - 1)

    # when
    out = handler.enrich({"id": EVENT_ID}, enrich_context())

    # then
    assert out == {"statusCode": 404}
    assert EVENT_ID in store.items


# -- the composition root -------------------------------------------------------------------


@pytest.fixture
def fresh_apps() -> Iterator[None]:
    publisher.app.publish_app.cache_clear()
    publisher.app.enrich_app.cache_clear()
    yield
    publisher.app.publish_app.cache_clear()
    publisher.app.enrich_app.cache_clear()


@pytest.mark.usefixtures("fresh_apps")
def test_the_publish_app_builds_from_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(
        monkeypatch,
        PublishSettings,
        STORE_TABLE=SETTINGS.store_table,
        LEDGER_TABLE=SETTINGS.ledger_table,
        EVENTS_DLQ_URL=SETTINGS.events_dlq_url,
        PLATFORM_URL=SETTINGS.platform_url,
        TOKEN_URL=SETTINGS.token_url,
        PLATFORM_CLIENT_SECRET_NAME=SETTINGS.platform_client_secret_name,
        MAX_RECEIVE_COUNT="12",
        HTTP_TIMEOUT_SECONDS="2.5",
    )

    built = publisher.app.publish_app()

    assert isinstance(built, PublishApp)
    assert built.settings == msgspec.structs.replace(
        SETTINGS, max_receive_count=12, http_timeout_seconds=2.5
    )
    assert isinstance(built.store, Store)
    assert isinstance(built.ledger, Ledger)
    assert isinstance(built.dead_letters, DeadLetterQueue)
    assert isinstance(built.platform, PlatformClient)
    assert built.platform.tokens_fetched == 0  # the token is fetched on first publish
    assert built.backoff is not None
    assert isinstance(built.backoff.visibility, SqsVisibility)
    assert (built.backoff.base_seconds, built.backoff.cap_seconds) == (5, 900)
    assert publisher.app.publish_app() is built


@pytest.mark.usefixtures("fresh_apps")
def test_the_enrich_app_builds_from_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(monkeypatch, EnrichSettings, STORE_TABLE="gro-temporary-store")

    built = publisher.app.enrich_app()

    assert built.settings == EnrichSettings(store_table="gro-temporary-store")
    assert isinstance(built.store, Store)


@pytest.mark.usefixtures("fresh_apps")
def test_a_missing_variable_fails_the_publish_app_at_build_time_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(
        monkeypatch,
        PublishSettings,
        STORE_TABLE=SETTINGS.store_table,
        LEDGER_TABLE=SETTINGS.ledger_table,
        EVENTS_DLQ_URL=SETTINGS.events_dlq_url,
        PLATFORM_URL=SETTINGS.platform_url,
        PLATFORM_CLIENT_SECRET_NAME=SETTINGS.platform_client_secret_name,
    )

    with pytest.raises(SettingsError, match="TOKEN_URL"):
        publisher.app.publish_app()


def test_the_release_that_published_a_record_is_written_in_the_ledger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ledger = FakeLedger()
    app = PublishApp(
        settings=msgspec.structs.replace(SETTINGS, service_version="0.1.0+abc1234"),
        store=FakeStore(),
        platform=FakePlatform(),
        ledger=ledger,
        dead_letters=FakeDeadLetters(),
        backoff=None,
        clock=lambda: NOW,
    )
    monkeypatch.setattr(publisher.app, "publish_app", lambda: app)
    handler.publish(sqs_event(GOLDEN, queue=QUEUE), publish_context())
    assert ledger.handled_by == ["publisher 0.1.0+abc1234"]
