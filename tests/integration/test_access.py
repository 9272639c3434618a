"""Only the platform gets in: on the local cloud (the project's templates, deployed with the
platform's principal as their parameters), the platform's principal may invoke enrichment and
publish consumed notices; another principal of the account is refused by both, learns nothing of
a record and deletes nothing. The local rule is localcloud.access's (see localcloud/README.md)."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud import access, deploy
from localcloud.cloud import LocalCloud
from tests.builders import fragment, record

ENRICH = "gro-publisher-enrich"
REGISTRATION_ID = "4242"  # and a number of its own per test: every test's record is another
SURNAME = "LEE"  # tests.builders' default name
_records = itertools.count(1)


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(consumers=1) as running:
        yield running


def _user(cloud: LocalCloud, name: str, policy: dict[str, Any] | None = None) -> access.AccessKey:
    iam = cloud.client("iam")
    iam.create_user(UserName=name)
    if policy is not None:
        iam.put_user_policy(UserName=name, PolicyName="own", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return access.AccessKey(key["AccessKeyId"], key["SecretAccessKey"])


@pytest.fixture(scope="module")
def stranger(cloud: LocalCloud) -> access.AccessKey:
    """Another IAM principal of the account, with no policy of its own."""
    return _user(cloud, "curious-colleague")


def _topic(cloud: LocalCloud) -> str:
    return next(
        e["Value"]
        for e in cloud.client("cloudformation").list_exports()["Exports"]
        if e["Name"] == "gro-foundation-EventsConsumedTopicArn"
    )


def _as(cloud: LocalCloud, key: access.AccessKey | None, service: str) -> Any:
    assert cloud.moto is not None
    return cloud.moto.client(service, key)


def _enrich(client: Any, event_id: str) -> dict[str, Any]:
    answer = client.invoke(FunctionName=ENRICH, Payload=json.dumps({"id": event_id}).encode())
    assert "FunctionError" not in answer
    body: dict[str, Any] = json.loads(answer["Payload"].read())
    return body


def _held(cloud: LocalCloud, event_id: str) -> bool:
    item = cloud.client("dynamodb").get_item(
        TableName="gro-temporary-store", Key={"id": {"S": event_id}}, ConsistentRead=True
    )
    return "Item" in item


@pytest.fixture
def stored(cloud: LocalCloud) -> Iterator[str]:
    """A record in the temporary store, as the publisher leaves it; its event id."""
    from contracts.stored import StoredEvent
    from servicekit.store import Store
    from transformer.core import Transformed, transform_fragment

    registration = f"{REGISTRATION_ID}{next(_records):03d}"
    out = transform_fragment(fragment(record(registration_id=registration)), key=b"access")
    assert isinstance(out, Transformed)
    store = Store(cloud.client("dynamodb"), "gro-temporary-store")
    store.put_if_absent(
        StoredEvent(
            id=out.event.source_id, event=out.event, expires_at=2**31, file_id="f", ordinal=1
        )
    )
    try:
        yield out.event.source_id
    finally:
        store.delete(out.event.source_id)


def _settled(cloud: LocalCloud) -> None:
    """Long enough for a consumed notice, had one been accepted, to reach the reaper."""
    assert cloud.pollers is not None
    time.sleep(3)
    deadline = time.monotonic() + 30
    while not cloud.pollers.idle() and time.monotonic() < deadline:
        time.sleep(0.2)


def _enrich_counts(cloud: LocalCloud) -> float:
    publisher = cloud.metrics().get("publisher", {})
    return publisher.get("EnrichHits", 0) + publisher.get("EnrichMisses", 0)


def test_the_deployed_policies_allow_the_platforms_principal_and_nobody_else(
    cloud: LocalCloud,
) -> None:
    policy = json.loads(cloud.client("lambda").get_policy(FunctionName=ENRICH)["Policy"])
    principals = [s["Principal"] for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert principals in ([access.PLATFORM_ARN], [{"AWS": access.PLATFORM_ARN}])
    attributes = cloud.client("sns").get_topic_attributes(TopicArn=_topic(cloud))["Attributes"]
    publishers = [
        s["Principal"]
        for s in json.loads(attributes["Policy"])["Statement"]
        if s["Effect"] == "Allow" and "sns:publish" in json.dumps(s.get("Action")).lower()
    ]
    assert publishers == [{"AWS": access.PLATFORM_ARN}]


def test_the_platforms_invoke_of_enrichment_answers_200_with_the_event_and_404_when_unknown(
    cloud: LocalCloud, stored: str
) -> None:
    platform = cloud.platform_client("lambda")
    served = _enrich(platform, stored)
    assert served["statusCode"] == 200
    assert served["payload"]["registrationId"].startswith(REGISTRATION_ID)
    assert served["payload"]["surname"] == SURNAME
    assert _enrich(platform, "gro1-" + "0" * 64) == {"statusCode": 404}


def test_another_principal_is_refused_by_enrichment_and_learns_nothing_of_the_record(
    cloud: LocalCloud, stored: str, stranger: access.AccessKey
) -> None:
    before = _enrich_counts(cloud)
    with pytest.raises(ClientError) as refused:
        _enrich(_as(cloud, stranger, "lambda"), stored)
    answer = refused.value.response
    assert answer["Error"]["Code"] == "AccessDeniedException"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "curious-colleague" in answer["Error"]["Message"]
    said = json.dumps(answer, default=str)
    assert REGISTRATION_ID not in said and SURNAME not in said and "payload" not in said
    assert _enrich_counts(cloud) == before  # refused before the function ran
    assert _enrich(cloud.platform_client("lambda"), stored)["statusCode"] == 200


def test_another_principal_is_refused_by_the_consumed_topic_and_no_record_is_deleted(
    cloud: LocalCloud, stored: str, stranger: access.AccessKey
) -> None:
    notice = json.dumps({"id": stored})
    with pytest.raises(ClientError) as refused:
        _as(cloud, stranger, "sns").publish(TopicArn=_topic(cloud), Message=notice)
    answer = refused.value.response
    assert answer["Error"]["Code"] == "AuthorizationError"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 403
    _settled(cloud)
    assert _held(cloud, stored)
    assert _enrich(cloud.platform_client("lambda"), stored)["statusCode"] == 200


def test_the_platforms_consumed_notice_deletes_the_record(cloud: LocalCloud, stored: str) -> None:
    cloud.platform_client("sns").publish(TopicArn=_topic(cloud), Message=json.dumps({"id": stored}))
    deadline = time.monotonic() + 60
    while _held(cloud, stored) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _held(cloud, stored)


def test_a_request_signed_with_the_platforms_key_id_but_another_secret_is_refused(
    cloud: LocalCloud, stored: str
) -> None:
    assert cloud.platform_key is not None
    forged = access.AccessKey(cloud.platform_key.key_id, "not-the-secret")
    with pytest.raises(ClientError) as refused:
        _enrich(_as(cloud, forged, "lambda"), stored)
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError):
        _as(cloud, forged, "sns").publish(
            TopicArn=_topic(cloud), Message=json.dumps({"id": stored})
        )
    _settled(cloud)
    assert _held(cloud, stored)


def test_the_accounts_root_may_invoke_enrichment_but_the_topics_explicit_deny_refuses_it(
    cloud: LocalCloud, stored: str
) -> None:
    # moto's dummy credentials are the account's root, which holds every permission in its own
    # account whatever a resource policy allows (the operator's direct invokes keep working),
    # but not against an explicit deny: the topic denies every publisher but the platform
    assert _enrich(cloud.client("lambda"), stored)["statusCode"] == 200
    with pytest.raises(ClientError) as refused:
        cloud.client("sns").publish(TopicArn=_topic(cloud), Message=json.dumps({"id": stored}))
    assert refused.value.response["Error"]["Code"] == "AuthorizationError"
    _settled(cloud)
    assert _held(cloud, stored)


def test_a_principal_whose_own_identity_policy_grants_it_is_let_in_as_aws_does_in_one_account(
    cloud: LocalCloud, stored: str
) -> None:
    # the resource policy does not stop a principal of the pipeline's own account that an
    # identity policy allows: least-privilege identity policies are the other half of the rule
    function_arn = cloud.client("lambda").get_function(FunctionName=ENRICH)["Configuration"][
        "FunctionArn"
    ]
    allowed = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": access.INVOKE, "Resource": function_arn}],
    }
    insider = _user(cloud, "granted-insider", allowed)
    assert _enrich(_as(cloud, insider, "lambda"), stored)["statusCode"] == 200
    denied = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "lambda:*", "Resource": "*"}],
    }
    cloud.client("iam").put_user_policy(
        UserName="data-exchange-platform", PolicyName="deny", PolicyDocument=json.dumps(denied)
    )
    try:  # an explicit deny wins over the resource policy's allow
        with pytest.raises(ClientError) as refused:
            _enrich(cloud.platform_client("lambda"), stored)
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    finally:
        cloud.client("iam").delete_user_policy(UserName="data-exchange-platform", PolicyName="deny")


def test_a_redeploy_keeps_the_grant_and_one_naming_another_principal_moves_it(
    cloud: LocalCloud, stored: str, stranger: access.AccessKey
) -> None:
    stranger_arn = "arn:aws:iam::123456789012:user/curious-colleague"
    try:
        deploy.deploy(cloud.client, "publisher", parameters={"PlatformInvokerArn": stranger_arn})
        assert _enrich(_as(cloud, stranger, "lambda"), stored)["statusCode"] == 200
        with pytest.raises(ClientError):
            _enrich(cloud.platform_client("lambda"), stored)
    finally:
        deploy.deploy(cloud.client, "publisher")  # as `ingest deploy publisher` does
    assert _enrich(cloud.platform_client("lambda"), stored)["statusCode"] == 200
    with pytest.raises(ClientError):
        _enrich(_as(cloud, stranger, "lambda"), stored)
