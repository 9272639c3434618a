"""The publisher's platform client against the platform simulator, over HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from contracts.events import MinimalEvent
from localcloud.platform import PlatformSimulator
from publisher.platform import (
    ClientCredentials,
    CredentialsRefusedError,
    PermanentPlatformError,
    PlatformClient,
    TransientPlatformError,
)

CREDS = ClientCredentials(client_id="pipeline", client_secret="s3cret-for-tests")


@pytest.fixture
def platform() -> Iterator[PlatformSimulator]:
    sim = PlatformSimulator(
        client_id=CREDS.client_id,
        client_secret=CREDS.client_secret,
        consumers=1,
        enrich=lambda _id: {"statusCode": 200, "payload": {}},
        publish_consumed=lambda _id: None,
    )
    sim.start()
    yield sim
    sim.stop()


def client_for(sim: PlatformSimulator, creds: ClientCredentials = CREDS) -> PlatformClient:
    return PlatformClient(
        platform_url=sim.url, token_url=sim.token_url, credentials=lambda _refresh: creds
    )


def event(n: int) -> MinimalEvent:
    return MinimalEvent(event_time="2022-03-01T12:09:33", id=f"gro1-{n:064x}")


def test_events_are_published_with_one_token_per_container(platform: PlatformSimulator) -> None:
    client = client_for(platform)
    assert [client.publish(event(n)) for n in range(5)] == [201] * 5
    assert client.tokens_fetched == 1
    assert platform.stats().tokens_issued == 1
    bodies = platform.received_bodies()
    assert bodies[0] == {
        "eventType": "GRO_DEATH_NOTIFICATION",
        "eventTime": "2022-03-01T12:09:33",
        "id": event(0).id,
    }


def test_a_second_post_of_the_same_id_counts_as_published(platform: PlatformSimulator) -> None:
    client = client_for(platform)
    assert client.publish(event(1)) == 201
    assert client.publish(event(1)) == 409
    assert platform.stats().created == 1


def test_an_expired_token_is_replaced_once_and_the_post_retried(
    platform: PlatformSimulator,
) -> None:
    client = client_for(platform)
    client.publish(event(1))
    platform.expire_tokens()
    assert client.publish(event(2)) == 201
    assert client.tokens_fetched == 2


def test_a_busy_platform_is_a_transient_error_and_nothing_is_lost(
    platform: PlatformSimulator,
) -> None:
    client = client_for(platform)
    platform.inject_failures(1, status=429)
    with pytest.raises(TransientPlatformError, match="429"):
        client.publish(event(1))
    platform.inject_failures(1, status=503)
    with pytest.raises(TransientPlatformError, match="503"):
        client.publish(event(1))
    assert client.publish(event(1)) == 201  # the next delivery gets through, once
    assert platform.stats().created == 1


def test_refused_credentials_are_transient_visible_and_the_secret_is_read_again(
    platform: PlatformSimulator,
) -> None:
    # given a secret that is wrong until someone fixes it (a deploy before it was set)
    secret = {"value": ClientCredentials(client_id="pipeline", client_secret="wrong")}
    reads: list[bool] = []
    refused: list[int] = []

    def credentials(refresh: bool) -> ClientCredentials:
        reads.append(refresh)
        return secret["value"]

    client = PlatformClient(
        platform_url=platform.url,
        token_url=platform.token_url,
        credentials=credentials,
        on_credentials_refused=refused.append,
    )

    # when the platform refuses them, it is the credentials' problem, not the event's
    with pytest.raises(CredentialsRefusedError, match="401"):
        client.publish(event(1))
    assert isinstance(CredentialsRefusedError("x"), TransientPlatformError)
    assert not isinstance(CredentialsRefusedError("x"), PermanentPlatformError)
    assert refused == [401]

    # then once the secret is fixed, the next try reads it again (not the cached one) and works
    secret["value"] = CREDS
    assert client.publish(event(1)) == 201
    assert reads == [False, True]


def test_an_unreachable_platform_is_transient() -> None:
    client = PlatformClient(
        platform_url="http://127.0.0.1:9",
        token_url="http://127.0.0.1:9/oauth2/token",
        credentials=lambda _refresh: CREDS,
        timeout_seconds=1,
    )
    with pytest.raises(TransientPlatformError, match="unreachable"):
        client.publish(event(1))
