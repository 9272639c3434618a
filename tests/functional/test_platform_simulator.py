"""The local Data Exchange platform simulator behaves as platform-api.md says, over real HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from localcloud.platform import PlatformSimulator

CLIENT_ID = "pipeline-client"
CLIENT_SECRET = "s3cret:with/odd+chars"
EVENT = {"eventType": "GRO_DEATH_NOTIFICATION", "eventTime": "2022-03-01T12:09:33", "id": "evt-1"}
PAYLOAD = {"sourceId": "evt-1", "forenames": "Robert", "surname": "LEE"}

# Loopback only: never let an environment proxy see these requests.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Fakes:
    """The pipeline's side: an enrichment function and a consumed-topic publisher, recorded."""

    def __init__(self) -> None:
        self.enrich_calls: list[tuple[str, str]] = []  # (thread name, id)
        self.consumed: list[str] = []
        self.enrich_answer: Callable[[str], dict[str, Any]] = lambda source_id: {
            "statusCode": 200,
            "payload": dict(PAYLOAD, sourceId=source_id),
        }
        self.publish_failures = 0

    def enrich(self, source_id: str) -> dict[str, Any]:
        self.enrich_calls.append((threading.current_thread().name, source_id))
        return self.enrich_answer(source_id)

    def publish_consumed(self, source_id: str) -> None:
        if self.publish_failures:
            self.publish_failures -= 1
            raise ConnectionError("topic unavailable")
        self.consumed.append(source_id)


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
def make_platform(fakes: Fakes) -> Iterator[Callable[..., PlatformSimulator]]:
    started: list[PlatformSimulator] = []

    def make(**options: Any) -> PlatformSimulator:
        options.setdefault("consumers", 3)
        sim = PlatformSimulator(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            enrich=fakes.enrich,
            publish_consumed=fakes.publish_consumed,
            **options,
        )
        sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def platform(make_platform: Callable[..., PlatformSimulator]) -> PlatformSimulator:
    return make_platform()


def request(
    url: str, body: bytes | None, headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    assert url.startswith("http://127.0.0.1:")
    req = urllib.request.Request(url, data=body, headers=headers or {}, method=method)  # noqa: S310
    try:
        with OPENER.open(req, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read() or b"{}")


def basic(client_id: str, secret: str) -> str:
    raw = f"{urllib.parse.quote_plus(client_id)}:{urllib.parse.quote_plus(secret)}"
    return "Basic " + base64.b64encode(raw.encode()).decode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}
GRANT = b"grant_type=client_credentials&scope=events/publish"


def get_token(sim: PlatformSimulator) -> str:
    status, answer = request(
        sim.token_url, GRANT, {**FORM, "Authorization": basic(CLIENT_ID, CLIENT_SECRET)}
    )
    assert status == 200
    return str(answer["access_token"])


def post_event(
    sim: PlatformSimulator, token: str | None, event: Any = EVENT, *, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    body = raw if raw is not None else json.dumps(event).encode()
    return request(sim.url + "/events", body, headers)


def test_a_client_gets_a_bearer_token_with_http_basic_credentials(
    platform: PlatformSimulator,
) -> None:
    status, answer = request(
        platform.token_url, GRANT, {**FORM, "Authorization": basic(CLIENT_ID, CLIENT_SECRET)}
    )
    assert status == 200
    assert answer["token_type"] == "Bearer"
    assert answer["expires_in"] == 3600
    assert len(answer["access_token"]) >= 32
    assert platform.stats().tokens_issued == 1


def test_a_client_gets_a_bearer_token_with_form_field_credentials(
    platform: PlatformSimulator,
) -> None:
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "scope": "events/publish",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        }
    ).encode()
    status, answer = request(platform.token_url, form, FORM)
    assert status == 200
    assert answer["token_type"] == "Bearer"
    assert post_event(platform, answer["access_token"])[0] == 201


@pytest.mark.parametrize(
    "headers_and_body",
    [
        ({"Authorization": basic(CLIENT_ID, "wrong")}, GRANT),
        ({"Authorization": basic("someone-else", CLIENT_SECRET)}, GRANT),
        ({"Authorization": "Basic %%%not-base64"}, GRANT),
        ({}, GRANT),
        ({}, GRANT + b"&client_id=" + CLIENT_ID.encode() + b"&client_secret=nope"),
    ],
    ids=["wrong secret", "wrong id", "garbled basic", "no credentials", "wrong form secret"],
)
def test_a_bad_client_is_refused_with_401_invalid_client(
    platform: PlatformSimulator, headers_and_body: tuple[dict[str, str], bytes]
) -> None:
    headers, body = headers_and_body
    status, answer = request(platform.token_url, body, {**FORM, **headers})
    assert status == 401
    assert answer["error"] == "invalid_client"
    assert platform.stats().tokens_issued == 0
    assert platform.stats().token_requests == 1


def test_a_grant_type_other_than_client_credentials_is_unsupported(
    platform: PlatformSimulator,
) -> None:
    status, answer = request(
        platform.token_url,
        b"grant_type=password&scope=events/publish",
        {**FORM, "Authorization": basic(CLIENT_ID, CLIENT_SECRET)},
    )
    assert status == 400
    assert answer["error"] == "unsupported_grant_type"


def test_posting_an_event_without_a_valid_token_is_refused_with_401(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    assert post_event(platform, None)[0] == 401
    assert post_event(platform, "made-up-token")[0] == 401
    status, _ = request(
        platform.url + "/events",
        json.dumps(EVENT).encode(),
        {"Content-Type": "application/json", "Authorization": basic(CLIENT_ID, CLIENT_SECRET)},
    )
    assert status == 401
    stats = platform.stats()
    assert (stats.posts, stats.rejected, stats.created) == (3, 3, 0)
    assert fakes.enrich_calls == []


def test_a_token_is_refused_once_its_lifetime_is_over(
    make_platform: Callable[..., PlatformSimulator],
) -> None:
    sim = make_platform(token_ttl_seconds=1)
    status, answer = request(
        sim.token_url, GRANT, {**FORM, "Authorization": basic(CLIENT_ID, CLIENT_SECRET)}
    )
    assert (status, answer["expires_in"]) == (200, 1)
    time.sleep(1.1)
    assert post_event(sim, answer["access_token"])[0] == 401
    assert post_event(sim, get_token(sim))[0] == 201


def test_expire_tokens_invalidates_every_token_issued_so_far(platform: PlatformSimulator) -> None:
    first, second = get_token(platform), get_token(platform)
    platform.expire_tokens()
    assert post_event(platform, first)[0] == 401
    assert post_event(platform, second)[0] == 401
    assert post_event(platform, get_token(platform))[0] == 201


def test_an_accepted_event_is_enriched_by_every_consumer_then_consumed_once(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    status, answer = post_event(platform, get_token(platform))
    assert status == 201
    assert answer["eventId"]
    assert platform.wait_idle(2)
    assert sorted(fakes.enrich_calls) == [
        ("platform-consumer-0", "evt-1"),
        ("platform-consumer-1", "evt-1"),
        ("platform-consumer-2", "evt-1"),
    ]
    assert fakes.consumed == ["evt-1"]
    stats = platform.stats()
    assert (stats.created, stats.enrich_calls, stats.enriched, stats.consumed) == (1, 3, 1, 1)
    assert stats.event_ids == ["evt-1"]
    assert platform.received_bodies() == [EVENT]


def test_many_events_are_each_consumed_exactly_once(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    token = get_token(platform)
    ids = [f"evt-{n}" for n in range(20)]
    for source_id in ids:
        assert post_event(platform, token, dict(EVENT, id=source_id))[0] == 201
    assert platform.wait_idle(2)
    assert sorted(fakes.consumed) == sorted(ids)
    assert len(fakes.enrich_calls) == 3 * len(ids)
    assert platform.stats().event_ids == ids


def test_a_second_event_with_the_same_id_is_a_409_and_is_not_consumed_again(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    token = get_token(platform)
    assert post_event(platform, token)[0] == 201
    assert platform.wait_idle(2)
    later = dict(EVENT, eventTime="2023-01-01T00:00:00")
    assert post_event(platform, token, later)[0] == 409
    assert platform.wait_idle(2)
    assert len(fakes.enrich_calls) == 3
    assert fakes.consumed == ["evt-1"]
    stats = platform.stats()
    assert (stats.created, stats.duplicates) == (1, 1)
    assert platform.received_bodies() == [EVENT]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'"GRO_DEATH_NOTIFICATION"',
        json.dumps({"eventType": "GRO_DEATH_NOTIFICATION", "id": "evt-1"}).encode(),
        json.dumps(dict(EVENT, extra="field")).encode(),
        json.dumps(dict(EVENT, id=12345)).encode(),
        json.dumps(dict(EVENT, eventTime=None)).encode(),
        json.dumps(dict(EVENT, id="")).encode(),
        json.dumps(dict(EVENT, id="x" * 81)).encode(),
        json.dumps(dict(EVENT, id="has space")).encode(),
        json.dumps(dict(EVENT, id="semi;colon")).encode(),
        json.dumps(dict(EVENT, id="trailing\n")).encode(),
        json.dumps(dict(EVENT, eventTime="2022-03-01")).encode(),
        json.dumps(dict(EVENT, eventTime="2022-03-01T12:09:33Z")).encode(),
        json.dumps(dict(EVENT, eventTime="2022-03-01T12:09:33+01:00")).encode(),
        json.dumps(dict(EVENT, eventTime="2022-02-30T12:09:33")).encode(),
        json.dumps(dict(EVENT, eventTime="01/03/2022 12:09")).encode(),
        b'{"eventType": "GRO_DEATH_NOTIFICATION", "eventTime": "2022-03-01T12:09:33",'
        b' "id": "a", "id": "b"}',
        b"[" * 50_000 + b"]" * 10_000,
    ],
    ids=[
        "bad json",
        "not utf-8",
        "array",
        "string",
        "missing eventTime",
        "unknown field",
        "id not a string",
        "eventTime null",
        "empty id",
        "id too long",
        "id with a space",
        "id with a semicolon",
        "id with a newline",
        "date without time",
        "zulu time",
        "offset time",
        "impossible date",
        "not iso",
        "duplicate key",
        "deep nesting",
    ],
)
def test_an_invalid_body_is_refused_with_400_and_never_reaches_a_consumer(
    platform: PlatformSimulator, fakes: Fakes, raw: bytes
) -> None:
    status, answer = post_event(platform, get_token(platform), raw=raw)
    assert status == 400
    assert answer["error"] == "invalid_body"
    assert platform.wait_idle(1)
    assert fakes.enrich_calls == []
    assert platform.stats().rejected == 1
    assert platform.received_bodies() == []


@pytest.mark.parametrize("event_time", ["2022-03-01T12:09:33.123", "2022-03-01T12:09"])
def test_local_date_times_with_milliseconds_or_without_seconds_are_accepted(
    platform: PlatformSimulator, event_time: str
) -> None:
    assert post_event(platform, get_token(platform), dict(EVENT, eventTime=event_time))[0] == 201


def test_an_event_type_other_than_gro_death_notification_is_forbidden(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    status, answer = post_event(platform, get_token(platform), dict(EVENT, eventType="BIRTH"))
    assert status == 403
    assert answer["error"] == "forbidden"
    assert fakes.enrich_calls == []
    assert platform.stats().rejected == 1


def test_injected_failures_answer_without_accepting_then_the_retry_succeeds(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    token = get_token(platform)
    platform.inject_failures(1)
    platform.inject_failures(2, status=429)
    assert [post_event(platform, token)[0] for _ in range(4)] == [503, 429, 429, 201]
    assert platform.wait_idle(2)
    assert fakes.consumed == ["evt-1"]
    stats = platform.stats()
    assert (stats.posts, stats.throttled, stats.created) == (4, 3, 1)
    assert stats.posts == stats.created + stats.duplicates + stats.rejected + stats.throttled


def test_inject_failures_only_takes_429_or_5xx(platform: PlatformSimulator) -> None:
    with pytest.raises(ValueError, match="429 or 5xx"):
        platform.inject_failures(1, status=400)


def test_an_enrichment_answering_404_means_no_consumed_notice(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    fakes.enrich_answer = lambda source_id: {"statusCode": 404}
    assert post_event(platform, get_token(platform))[0] == 201
    assert platform.wait_idle(2)
    assert len(fakes.enrich_calls) == 3  # a 404 is an answer, not an error: no retry
    assert fakes.consumed == []
    stats = platform.stats()
    assert (stats.enrich_not_found, stats.enriched, stats.consumed) == (3, 0, 0)


def test_a_404_for_a_single_consumer_is_enough_to_withhold_the_consumed_notice(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    def enrich(source_id: str) -> dict[str, Any]:
        if threading.current_thread().name == "platform-consumer-1":
            return {"statusCode": 404}
        return {"statusCode": 200, "payload": PAYLOAD}

    fakes.enrich_answer = enrich
    assert post_event(platform, get_token(platform))[0] == 201
    assert platform.wait_idle(2)
    assert fakes.consumed == []
    assert platform.stats().enrich_not_found == 1


def test_a_failing_enrichment_is_retried_then_succeeds(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    failures: Iterator[Exception | dict[str, Any]] = iter(
        [RuntimeError("lambda throttled"), {"statusCode": 500}]
    )

    def enrich(source_id: str) -> dict[str, Any]:
        failure = next(failures, None)
        if isinstance(failure, Exception):
            raise failure
        return failure or {"statusCode": 200, "payload": PAYLOAD}

    fakes.enrich_answer = enrich
    assert post_event(platform, get_token(platform))[0] == 201
    assert platform.wait_idle(2)
    assert fakes.consumed == ["evt-1"]
    assert platform.stats().enrich_calls == 5


def test_an_enrichment_that_always_fails_is_given_up_without_hanging(
    make_platform: Callable[..., PlatformSimulator], fakes: Fakes
) -> None:
    sim = make_platform(consumers=2)

    def enrich(source_id: str) -> dict[str, Any]:
        raise RuntimeError("boom " + PAYLOAD["surname"])

    fakes.enrich_answer = enrich
    assert post_event(sim, get_token(sim))[0] == 201
    assert sim.wait_idle(2)
    stats = sim.stats()
    assert stats.enrich_calls == 10  # 5 attempts for each of the 2 consumers
    assert (stats.enrich_failed, stats.enriched, stats.consumed) == (2, 0, 0)
    assert fakes.consumed == []


def test_a_failing_consumed_notice_is_retried_and_published_once(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    fakes.publish_failures = 2
    assert post_event(platform, get_token(platform))[0] == 201
    assert platform.wait_idle(2)
    assert fakes.consumed == ["evt-1"]
    stats = platform.stats()
    assert (stats.consumed, stats.consumed_notices_failed) == (1, 0)


def test_a_consumed_notice_that_keeps_failing_is_counted(
    platform: PlatformSimulator, fakes: Fakes
) -> None:
    fakes.publish_failures = 100
    assert post_event(platform, get_token(platform))[0] == 201
    assert platform.wait_idle(2)
    stats = platform.stats()
    assert (stats.enriched, stats.consumed, stats.consumed_notices_failed) == (1, 0, 1)


def test_a_body_over_64_kib_is_refused_with_413(platform: PlatformSimulator, fakes: Fakes) -> None:
    status, _ = post_event(platform, get_token(platform), raw=b" " * (64 * 1024 + 1))
    assert status == 413
    assert fakes.enrich_calls == []


def test_unknown_paths_are_404_and_other_methods_are_405(platform: PlatformSimulator) -> None:
    assert request(platform.url + "/nothing", b"{}", {"Content-Type": "application/json"})[0] == 404
    assert request(platform.url + "/", None, method="GET")[0] == 404
    assert request(platform.url + "/events", None, method="GET")[0] == 405


def test_client_errors_print_nothing_and_payloads_are_never_printed(
    platform: PlatformSimulator, fakes: Fakes, capfd: pytest.CaptureFixture[str]
) -> None:
    token = get_token(platform)
    post_event(platform, token, raw=b"{broken")
    post_event(platform, None)
    post_event(platform, token, raw=b"[" * 50_000)
    request(platform.token_url, b"\xff", FORM)
    post_event(platform, token)
    assert platform.wait_idle(2)
    out, err = capfd.readouterr()
    assert out == err == ""


def test_stop_returns_promptly_even_with_slow_consumers_and_pending_events(
    make_platform: Callable[..., PlatformSimulator], fakes: Fakes
) -> None:
    sim = make_platform(consumer_delay_seconds=30)
    token = get_token(sim)
    for n in range(3):
        assert post_event(sim, token, dict(EVENT, id=f"evt-{n}"))[0] == 201
    assert not sim.wait_idle(0.1)
    started = time.monotonic()
    sim.stop()
    assert time.monotonic() - started < 1
    assert fakes.enrich_calls == []
    sim.stop()  # idempotent
    with pytest.raises(urllib.error.URLError):
        OPENER.open(sim.url + "/events", data=b"{}", timeout=1)


def test_a_kept_alive_connection_gets_no_answer_once_the_platform_is_stopped(
    platform: PlatformSimulator,
) -> None:
    token = get_token(platform)
    port = int(platform.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    try:
        connection.request("POST", "/events", json.dumps(EVENT), headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 201
        assert not response.will_close
        platform.stop()

        def post_again() -> None:
            connection.request("POST", "/events", json.dumps(dict(EVENT, id="evt-2")), headers)
            connection.getresponse()

        with pytest.raises((OSError, http.client.HTTPException)):
            post_again()
    finally:
        connection.close()
    assert platform.stats().event_ids == ["evt-1"]


def test_the_simulator_only_binds_to_loopback(fakes: Fakes) -> None:
    with pytest.raises(ValueError, match="loopback"):
        PlatformSimulator(
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            enrich=fakes.enrich,
            publish_consumed=fakes.publish_consumed,
            host="0.0.0.0",  # noqa: S104 (refused: that is the point)
        )


def test_each_consumer_reads_up_to_its_workers_events_at_a_time_and_each_once(
    make_platform: Callable[..., PlatformSimulator], fakes: Fakes
) -> None:
    # given: 2 consumers of 3 workers each, and an enrichment that takes a while
    platform = make_platform(consumers=2, consumer_workers=3)
    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    most: dict[str, int] = {}

    def slow(source_id: str) -> dict[str, Any]:
        consumer = threading.current_thread().name
        with lock:
            in_flight[consumer] = in_flight.get(consumer, 0) + 1
            most[consumer] = max(most.get(consumer, 0), in_flight[consumer])
        time.sleep(0.1)
        with lock:
            in_flight[consumer] -= 1
        return {"statusCode": 200, "payload": dict(PAYLOAD, sourceId=source_id)}

    fakes.enrich_answer = slow
    token = get_token(platform)
    ids = [f"evt-{n}" for n in range(12)]
    # when
    for source_id in ids:
        assert post_event(platform, token, dict(EVENT, id=source_id))[0] == 201
    assert platform.wait_idle(10)
    # then: three at a time per consumer, never more; every event enriched once per consumer
    assert most == {"platform-consumer-0": 3, "platform-consumer-1": 3}
    assert sorted(fakes.enrich_calls) == sorted(
        (f"platform-consumer-{c}", source_id) for c in (0, 1) for source_id in ids
    )
    assert sorted(fakes.consumed) == sorted(ids)


def test_flaky_fails_an_event_at_most_twice_in_a_row(
    make_platform: Callable[..., PlatformSimulator],
) -> None:
    # given: a platform that fails every POST it may
    from localcloud.faults import FaultSwitch, parse

    platform = make_platform(faults=FaultSwitch(parse(["platform=flaky:1"])))
    token = get_token(platform)
    # when: one event is posted until it is accepted
    answers = [post_event(platform, token)[0] for _ in range(3)]
    # then: its third attempt in a row is spared; the next event starts a streak of its own
    assert answers[:2] in ([500, 500], [500, 429], [429, 500], [429, 429])
    assert answers[2] == 201
    assert post_event(platform, token, dict(EVENT, id="evt-2"))[0] in (500, 429)
