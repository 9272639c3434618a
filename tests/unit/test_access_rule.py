"""The local cloud's access rule (localcloud.access.decide): resource and identity policies as
AWS evaluates them for a principal of the resource's own account, conservative where unsure."""

from __future__ import annotations

from typing import Any

import pytest

from localcloud.access import INVOKE, PLATFORM_ARN, PUBLISH, Caller, decide, root

ACCOUNT = "123456789012"
FUNCTION = f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:gro-publisher-enrich"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:gro-events-consumed"
PLATFORM = Caller(PLATFORM_ARN, ACCOUNT)
STRANGER = Caller(f"arn:aws:iam::{ACCOUNT}:user/curious-colleague", ACCOUNT)
ROOT = root(ACCOUNT)


def allow(principal: Any, action: str = INVOKE, resource: str = FUNCTION, **extra: Any) -> dict:
    return {
        "Effect": "Allow",
        "Principal": principal,
        "Action": action,
        "Resource": resource,
        **extra,
    }


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


# what moto stores for AWS::Lambda::Permission (the Principal as given) and what AWS shows
PERMISSIONS = [policy(allow(PLATFORM_ARN)), policy(allow({"AWS": PLATFORM_ARN}))]

# the events-consumed topic's policy: the platform may publish, everybody else is denied
TOPIC_POLICY = policy(
    allow({"AWS": PLATFORM_ARN}, PUBLISH, TOPIC),
    {
        "Effect": "Deny",
        "Principal": "*",
        "Action": PUBLISH,
        "Resource": TOPIC,
        "Condition": {"ArnNotEquals": {"aws:PrincipalArn": PLATFORM_ARN}},
    },
)


@pytest.mark.parametrize("permissions", PERMISSIONS)
def test_the_principal_a_permission_names_may_invoke_and_another_may_not(
    permissions: dict,
) -> None:
    assert decide(PLATFORM, INVOKE, FUNCTION, permissions).allowed
    refused = decide(STRANGER, INVOKE, FUNCTION, permissions)
    assert not refused.allowed
    assert refused.reason == (
        "no identity-based or resource-based policy allows the lambda:InvokeFunction action"
    )


def test_a_permission_for_another_action_or_resource_grants_nothing() -> None:
    assert not decide(
        PLATFORM, INVOKE, FUNCTION, policy(allow(PLATFORM_ARN, "lambda:GetPolicy"))
    ).allowed
    elsewhere = policy(allow(PLATFORM_ARN, resource=FUNCTION + "-other"))
    assert not decide(PLATFORM, INVOKE, FUNCTION, elsewhere).allowed


def test_actions_match_without_case_and_with_wildcards() -> None:
    assert decide(
        PLATFORM, PUBLISH, TOPIC, policy(allow(PLATFORM_ARN, "SNS:Publish", TOPIC))
    ).allowed
    assert decide(PLATFORM, INVOKE, FUNCTION, policy(allow(PLATFORM_ARN, "lambda:*"))).allowed
    assert decide(PLATFORM, INVOKE, FUNCTION, policy(allow(PLATFORM_ARN, resource="*"))).allowed


def test_nothing_but_root_gets_in_without_a_policy_that_allows_it() -> None:
    assert not decide(STRANGER, INVOKE, FUNCTION, None).allowed
    assert decide(ROOT, INVOKE, FUNCTION, None).allowed
    assert decide(ROOT, INVOKE, FUNCTION, PERMISSIONS[0]).allowed


def test_an_account_named_as_principal_lets_in_its_root_and_nobody_else_by_itself() -> None:
    for named in (ACCOUNT, f"arn:aws:iam::{ACCOUNT}:root", {"AWS": ACCOUNT}):
        account_wide = policy(allow(named))
        assert decide(ROOT, INVOKE, FUNCTION, account_wide).allowed
        assert not decide(STRANGER, INVOKE, FUNCTION, account_wide).allowed


def test_the_topic_lets_the_platform_publish_and_denies_everybody_else_root_included() -> None:
    assert decide(PLATFORM, PUBLISH, TOPIC, TOPIC_POLICY).allowed
    for caller in (STRANGER, ROOT):
        refused = decide(caller, PUBLISH, TOPIC, TOPIC_POLICY)
        assert not refused.allowed
        assert refused.reason == "of an explicit deny in a resource-based policy"


def test_an_identity_policy_that_allows_lets_a_principal_of_the_account_in() -> None:
    own = policy({"Effect": "Allow", "Action": "lambda:Invoke*", "Resource": FUNCTION})
    assert decide(STRANGER, INVOKE, FUNCTION, PERMISSIONS[0], [own]).allowed
    assert not decide(STRANGER, PUBLISH, TOPIC, TOPIC_POLICY, [own]).allowed


def test_an_explicit_deny_in_an_identity_policy_wins_over_a_resource_policys_allow() -> None:
    deny = policy({"Effect": "Deny", "Action": "*", "Resource": "*"})
    refused = decide(PLATFORM, INVOKE, FUNCTION, PERMISSIONS[0], [deny])
    assert not refused.allowed
    assert refused.reason == "of an explicit deny in an identity-based policy"


def test_a_role_named_as_principal_lets_in_its_sessions() -> None:
    role = f"arn:aws:iam::{ACCOUNT}:role/platform"
    session = Caller(f"arn:aws:sts::{ACCOUNT}:assumed-role/platform/consumer-1", ACCOUNT, role)
    assert decide(session, INVOKE, FUNCTION, policy(allow({"AWS": role}))).allowed
    assert not decide(session, INVOKE, FUNCTION, policy(allow({"AWS": PLATFORM_ARN}))).allowed


def test_a_service_principal_never_matches_a_caller_of_the_api() -> None:
    by_events = policy(allow("events.amazonaws.com"), allow({"Service": "events.amazonaws.com"}))
    assert not decide(STRANGER, INVOKE, FUNCTION, by_events).allowed


def test_an_allow_that_names_everybody_lets_everybody_in() -> None:
    assert decide(STRANGER, INVOKE, FUNCTION, policy(allow("*"))).allowed
    assert decide(STRANGER, INVOKE, FUNCTION, policy(allow({"AWS": "*"}))).allowed


def test_what_cannot_be_evaluated_never_allows_and_always_denies() -> None:
    unknown_key = {"ArnLike": {"AWS:SourceArn": "arn:aws:events:*"}}
    assert not decide(
        PLATFORM, INVOKE, FUNCTION, policy(allow(PLATFORM_ARN, Condition=unknown_key))
    ).allowed
    unknown_operator = {"DateLessThan": {"aws:CurrentTime": "2999-01-01T00:00:00Z"}}
    assert not decide(
        PLATFORM, INVOKE, FUNCTION, policy(allow(PLATFORM_ARN, Condition=unknown_operator))
    ).allowed
    not_principal = {"Effect": "Allow", "NotPrincipal": {"AWS": PLATFORM_ARN}, "Action": INVOKE}
    assert not decide(STRANGER, INVOKE, FUNCTION, policy(not_principal)).allowed
    deny_unknown = {**allow("*", Condition=unknown_key), "Effect": "Deny"}
    assert not decide(PLATFORM, INVOKE, FUNCTION, policy(allow(PLATFORM_ARN), deny_unknown)).allowed
    assert not decide(ROOT, INVOKE, FUNCTION, policy(deny_unknown)).allowed


def test_the_conditions_the_local_cloud_knows_are_evaluated() -> None:
    in_account = {"StringEquals": {"aws:PrincipalAccount": ACCOUNT}}
    assert decide(STRANGER, INVOKE, FUNCTION, policy(allow("*", Condition=in_account))).allowed
    other_account = {"StringEquals": {"aws:PrincipalAccount": "210987654321"}}
    assert not decide(
        STRANGER, INVOKE, FUNCTION, policy(allow("*", Condition=other_account))
    ).allowed
    # loopback stands in for TLS: the usual "deny unless TLS" statement does not refuse
    no_tls = {"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"}
    no_tls["Condition"] = {"Bool": {"aws:SecureTransport": "false"}}
    assert decide(PLATFORM, INVOKE, FUNCTION, policy(allow(PLATFORM_ARN), no_tls)).allowed
    like = {"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:user/data-*"}}
    assert decide(PLATFORM, INVOKE, FUNCTION, policy(allow("*", Condition=like))).allowed
    assert not decide(STRANGER, INVOKE, FUNCTION, policy(allow("*", Condition=like))).allowed
    if_exists = {"StringEqualsIfExists": {"aws:SourceAccount": ACCOUNT}}
    assert decide(
        PLATFORM, INVOKE, FUNCTION, policy(allow(PLATFORM_ARN, Condition=if_exists))
    ).allowed


def test_a_single_statement_policy_is_read_like_a_list_of_one() -> None:
    single = {"Version": "2012-10-17", "Statement": allow(PLATFORM_ARN)}
    assert decide(PLATFORM, INVOKE, FUNCTION, single).allowed
    assert not decide(STRANGER, INVOKE, FUNCTION, single).allowed
