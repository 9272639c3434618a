"""Least privilege, read from the templates' own policies: who may reach records, through what.

Every policy of every template (the key policy, the bucket, topic, queue, secret and table
policies, the enrich function's permission, every role's statements) is read here and held to
the rules of the README's privacy section. The role names the foundation's policies list are
the ones the service templates give their roles, so a renamed role or a new reader fails here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load as load_template

from deploytools.stacks import TEMPLATES
from tests import role_actions

# plain dicts, lists and strings (the loader's node types compare as these)
T: dict[str, dict[str, Any]] = {
    name: json.loads(json.dumps(load_template(str(path)))) for name, path in TEMPLATES.items()
}
F = T["foundation"]["Resources"]
SERVICES = [n for n in T if n != "foundation"]

ACCOUNT_ROOT = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
ROLE_ARN = re.compile(r"^arn:\$\{AWS::Partition\}:iam::\$\{AWS::AccountId\}:role/(.+)$")
KEY_ARN = {"Fn::ImportValue": "gro-foundation-KeyArn"}
# roles the foundation names through its own parameters, not created by any stack of ours
PARAMETER_ROLES = {"${UploaderRoleName}": "uploader", "${OperatorRoleName}": "operator"}

# actions a role may allow on Resource "*", each with its reason
WILDCARD_RESOURCE_ACTIONS = {
    "xray:PutTraceSegments": "X-Ray's trace APIs take no resource",
    "xray:PutTelemetryRecords": "X-Ray's trace APIs take no resource",
    "xray:GetSamplingRules": "X-Ray's trace APIs take no resource",
    "xray:GetSamplingTargets": "X-Ray's trace APIs take no resource",
}
# what administering the key means: none of these encrypts, decrypts or grants
KEY_ADMINISTRATION = {
    "kms:DescribeKey",
    "kms:GetKeyPolicy",
    "kms:PutKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:EnableKeyRotation",
    "kms:DisableKeyRotation",
    "kms:RotateKeyOnDemand",
    "kms:ListKeyRotations",
    "kms:ListResourceTags",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:RevokeGrant",
    "kms:RetireGrant",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateKeyDescription",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:CreateAlias",
    "kms:UpdateAlias",
    "kms:DeleteAlias",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
}
# the services through which a key use can reach a record
RECORD_SERVICES = ("sqs", "s3", "sns", "dynamodb", "secretsmanager")


def resources(kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (stack, logical, res.get("Properties", {}))
        for stack, tpl in T.items()
        for logical, res in tpl["Resources"].items()
        if res["Type"] == kind
    ]


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_name(arn: Any) -> str:
    """The role an ARN of this account names, from its `!Sub` form; fails on anything else."""
    assert isinstance(arn, dict) and set(arn) == {"Fn::Sub"}, arn
    match = ROLE_ARN.match(arn["Fn::Sub"])
    assert match, f"{arn} is not a role of this account"
    return match.group(1)


def principals(statement: dict[str, Any]) -> list[Any]:
    """Every principal a statement names, both branches of an `!If` included."""
    principal = statement.get("Principal")
    if principal == "*":
        return ["*"]
    out: list[Any] = []
    for kind, value in principal.items():
        for v in listed(value):
            if isinstance(v, dict) and "Fn::If" in v:
                _condition, yes, no = v["Fn::If"]
                out.extend([*listed(yes), *listed(no)])
            else:
                out.append({kind: v} if kind == "Service" else v)
    return out


def account_wide(principal: Any) -> bool:
    return principal in ("*", ACCOUNT_ROOT, {"Ref": "AWS::AccountId"}) or (
        isinstance(principal, str)
        and (principal.endswith(":root") or re.fullmatch(r"\d{12}", principal) is not None)
    )


def principal_arn_condition(statement: dict[str, Any], operator: str) -> list[Any]:
    return listed(statement.get("Condition", {}).get(operator, {}).get("aws:PrincipalArn", []))


def resource_policies() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(stack, logical id, statement) for every statement of every resource policy."""
    documents = [
        (F["Key"]["Properties"]["KeyPolicy"], "foundation", "Key"),
        *[
            (props["PolicyDocument"], stack, logical)
            for kind in ("AWS::S3::BucketPolicy", "AWS::SNS::TopicPolicy", "AWS::SQS::QueuePolicy")
            for stack, logical, props in resources(kind)
        ],
        *[
            (props["ResourcePolicy"], stack, logical)
            for stack, logical, props in resources("AWS::SecretsManager::ResourcePolicy")
        ],
        *[
            (props["ResourcePolicy"]["PolicyDocument"], stack, logical)
            for stack, logical, props in resources("AWS::DynamoDB::Table")
            if "ResourcePolicy" in props
        ],
    ]
    for document, stack, logical in documents:
        for statement in document["Statement"]:
            yield stack, logical, statement


def role_statements() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for stack, logical, props in resources("AWS::IAM::Role"):
        for policy in props.get("Policies", []):
            for statement in policy["PolicyDocument"]["Statement"]:
                yield stack, logical, statement


def function_roles() -> dict[str, str]:
    """Role name -> the service stack that creates it, for every function's role."""
    return {
        props["RoleName"]: stack
        for stack, _, props in resources("AWS::IAM::Role")
        if stack != "foundation"
    }


def roles_allowed(action: str, resource: Any) -> set[str]:
    """The names of the roles whose own policy allows `action` on `resource` (as written)."""
    names = {
        (stack, logical): props["RoleName"] for stack, logical, props in resources("AWS::IAM::Role")
    }
    return {
        names[(stack, logical)]
        for stack, logical, st in role_statements()
        if st["Effect"] == "Allow"
        and action in listed(st["Action"])
        and resource in listed(st["Resource"])
    }


def bucket_resource(prefix: str) -> dict[str, Any]:
    return {
        "Fn::Sub": [
            f"${{Bucket}}/{prefix}*",
            {"Bucket": {"Fn::ImportValue": "gro-foundation-LandingBucketArn"}},
        ]
    }


def key_statement(sid: str) -> dict[str, Any]:
    (statement,) = [
        s for s in F["Key"]["Properties"]["KeyPolicy"]["Statement"] if s.get("Sid") == sid
    ]
    return statement


def via_services(statement: dict[str, Any]) -> set[str]:
    values = listed(
        statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService", [])
    )
    return {v["Fn::Sub"].split(".")[0] for v in values}


# -- nobody gets in by being in the account ----------------------------------------------------


def test_every_role_has_its_functions_name_so_the_foundation_can_name_it() -> None:
    roles = resources("AWS::IAM::Role")
    assert len(roles) == 10
    for stack, logical, props in roles:
        assert props.get("RoleName", "").startswith("gro-"), (stack, logical)
    functions = {
        (stack, props["Role"]["Fn::GetAtt"][0]): props["FunctionName"]
        for stack, _, props in resources("AWS::Lambda::Function")
    }
    for (stack, role), function in functions.items():
        assert T[stack]["Resources"][role]["Properties"]["RoleName"] == function, (stack, role)


def test_no_resource_policy_allows_anyone_in_the_account_to_reach_a_record() -> None:
    pipeline = set(function_roles()) | set(PARAMETER_ROLES)
    seen_account_wide = 0
    for stack, logical, st in resource_policies():
        if st["Effect"] != "Allow":
            continue
        for principal in principals(st):
            if isinstance(principal, dict) and "Service" in principal:
                # a service acts for a named resource of ours, never for any caller
                assert "Condition" in st, (stack, logical, st.get("Sid"))
                continue
            if not account_wide(principal):
                continue
            seen_account_wide += 1
            actions = set(listed(st["Action"]))
            assert logical == "Key", (stack, logical, "a resource policy allows the account")
            assert not any("*" in a for a in actions), (logical, st.get("Sid"), actions)
            named = principal_arn_condition(st, "ArnEquals")
            if named:
                # the account, narrowed to roles named one by one: the pipeline's own
                assert {role_name(arn) for arn in named} <= pipeline, st.get("Sid")
                continue
            # otherwise only the key's administration, and (through Lambda, DynamoDB and
            # Secrets Manager only) what attaching the key to resources and writing a secret
            # needs: nothing that reads a record
            uses = actions - KEY_ADMINISTRATION
            if not uses:
                continue
            services = via_services(st)
            assert services, (st.get("Sid"), "key use without kms:ViaService")
            assert not services & {"sqs", "s3", "sns"}, (st.get("Sid"), services)
            if "kms:Decrypt" in uses:
                assert services == {"lambda"}, (st.get("Sid"), "decrypts beyond settings")
            if "kms:CreateGrant" in uses:
                assert st["Condition"]["Bool"]["kms:GrantIsForAWSResource"] is True
            assert uses <= {"kms:CreateGrant", "kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"}
    assert seen_account_wide >= 4


def test_the_key_is_used_for_records_only_by_the_pipelines_roles_through_their_services() -> None:
    st = key_statement("PipelineRolesUseTheKeyThroughTheirServices")
    assert {role_name(arn) for arn in principal_arn_condition(st, "ArnEquals")} == set(
        function_roles()
    )
    assert set(listed(st["Action"])) == {"kms:Decrypt", "kms:GenerateDataKey"}
    assert via_services(st) == {"sqs", "s3", "dynamodb", "secretsmanager"}
    # and no other statement lets an AWS principal decrypt through a service that holds records
    for other in F["Key"]["Properties"]["KeyPolicy"]["Statement"]:
        if other is st or "kms:Decrypt" not in listed(other["Action"]):
            continue
        aws = [p for p in principals(other) if not (isinstance(p, dict) and "Service" in p)]
        if not aws:
            continue
        sid = other["Sid"]
        narrowed = other.get("Condition", {}).get("StringEquals", {})
        if via_services(other) & set(RECORD_SERVICES):
            # the platform through SNS (its own notices), the uploader through S3 (its own
            # files), the operators through SQS on the dead-letter queues only, and through S3
            # the receipts only (the bucket policy keeps them out of files: tested below)
            assert sid in {
                "PlatformPublishesToTheEncryptedTopic",
                "UploaderEncryptsFilesThroughS3",
                "OperatorsReadDeadLetters",
                "OperatorsReadReceipts",
            }, sid
        if sid == "OperatorsReadDeadLetters":
            contexts = [c["Fn::Sub"] for c in narrowed["kms:EncryptionContext:aws:sqs:arn"]]
            assert contexts and all(c.endswith("-dlq") for c in contexts), contexts


def test_the_key_administrators_are_a_parameter_defaulting_to_the_account_for_administration() -> (
    None
):
    param = T["foundation"]["Parameters"]["KeyAdministratorArns"]
    assert param["Type"] == "CommaDelimitedList"
    st = key_statement("KeyAdministratorsManageTheKey")
    assert st["Principal"]["AWS"]["Fn::If"] == [
        "AccountAdministersKey",
        ACCOUNT_ROOT,
        {"Ref": "KeyAdministratorArns"},
    ]
    assert set(listed(st["Action"])) <= KEY_ADMINISTRATION


def test_only_the_platform_may_invoke_the_enrich_function() -> None:
    permissions = resources("AWS::Lambda::Permission")
    enrich = [p for stack, _, p in permissions if p["FunctionName"] == {"Ref": "EnrichFunction"}]
    assert enrich == [
        {
            "FunctionName": {"Ref": "EnrichFunction"},
            "Action": "lambda:InvokeFunction",
            "Principal": {"Ref": "PlatformInvokerArn"},
        }
    ]
    # every other permission is a service's, tied to one source
    for _, logical, p in permissions:
        if p is not enrich[0]:
            assert p["Principal"].endswith(".amazonaws.com") and "SourceArn" in p, logical


def test_only_the_platform_may_publish_consumed_notices_and_everyone_else_is_refused() -> None:
    (policy,) = [p for _, _, p in resources("AWS::SNS::TopicPolicy")]
    assert policy["Topics"] == [{"Ref": "EventsConsumedTopic"}]
    allows = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Allow"]
    denies = [s for s in policy["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert [s["Principal"] for s in allows] == [{"AWS": {"Ref": "PlatformPublisherArn"}}]
    assert [s["Action"] for s in allows] == ["sns:Publish"]
    (deny,) = denies
    assert deny["Principal"] == "*" and deny["Action"] == "sns:Publish"
    assert principal_arn_condition(deny, "ArnNotEquals") == [{"Ref": "PlatformPublisherArn"}]
    # the topic's key lets the platform in through SNS, and nobody else through SNS
    st = key_statement("PlatformPublishesToTheEncryptedTopic")
    assert st["Principal"] == {"AWS": {"Ref": "PlatformPublisherArn"}}
    assert via_services(st) == {"sns"}
    for other in F["Key"]["Properties"]["KeyPolicy"]["Statement"]:
        if other is not st and "sns" in via_services(other):
            pytest.fail(f"{other['Sid']} uses the key through SNS")


@pytest.mark.parametrize(
    ("stack", "name"), [("foundation", "PlatformPublisherArn"), ("publisher", "PlatformInvokerArn")]
)
def test_the_platforms_principal_is_required_and_must_be_a_role_not_an_account(
    stack: str, name: str
) -> None:
    param = T[stack]["Parameters"][name]
    assert "Default" not in param
    pattern = re.compile(param["AllowedPattern"])
    assert pattern.match("arn:aws:iam::210987654321:role/platform-enrichment")
    for refused in ("", "123456789012", "arn:aws:iam::123456789012:root", "*"):
        assert not pattern.match(refused), refused
    # nothing falls back to the account when it is absent
    assert name not in json.dumps(T[stack].get("Conditions", {}))


# -- everything that can hold a record is under the pipeline's key -----------------------------


def test_every_queue_topic_and_table_is_under_the_pipelines_key() -> None:
    queues = resources("AWS::SQS::Queue")
    topics = resources("AWS::SNS::Topic")
    tables = resources("AWS::DynamoDB::Table")
    assert (len(queues), len(topics), len(tables)) == (8, 2, 2)
    for _, logical, props in queues + topics:
        assert props["KmsMasterKeyId"] == {"Ref": "Key"}, logical
    for _, logical, props in tables:
        assert props["SSESpecification"] == {
            "SSEEnabled": True,
            "SSEType": "KMS",
            "KMSMasterKeyId": {"Ref": "Key"},
        }, logical


def test_every_log_group_function_environment_and_secret_is_under_the_pipelines_key() -> None:
    groups = resources("AWS::Logs::LogGroup")
    functions = resources("AWS::Lambda::Function")
    secrets = resources("AWS::SecretsManager::Secret")
    assert (len(groups), len(functions), len(secrets)) == (9, 9, 2)
    for _, logical, props in groups:
        assert props["KmsKeyId"] == KEY_ARN, logical
    for _, logical, props in functions:
        assert props["KmsKeyArn"] == KEY_ARN, logical
    for _, logical, props in secrets:
        assert props["KmsKeyId"] == KEY_ARN, logical


def test_the_key_lets_cloudwatch_logs_encrypt_exactly_the_pipelines_log_groups() -> None:
    st = key_statement("LogsEncryptThePipelinesLogGroups")
    assert st["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    pattern = st["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]["Fn::Sub"]
    prefix = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    assert pattern.startswith(prefix)
    for _, logical, props in resources("AWS::Logs::LogGroup"):
        assert fnmatchcase(props["LogGroupName"], pattern.removeprefix(prefix)), logical
    assert not fnmatchcase("/aws/lambda/someone-else", pattern.removeprefix(prefix))


# -- retention, deliberately ---------------------------------------------------------------------


def _store_retention_default() -> int:
    return int(T["publisher"]["Parameters"]["StoreRetentionSeconds"]["Default"])


def test_the_store_keeps_an_event_7_days_at_most_by_default() -> None:
    assert _store_retention_default() == 7 * 24 * 3600


def test_no_dead_letter_queue_keeps_a_message_longer_than_the_store_keeps_an_event() -> None:
    queues = {props["QueueName"]: props for _, _, props in resources("AWS::SQS::Queue")}
    dlqs = {name: q for name, q in queues.items() if name.endswith("-dlq")}
    assert len(dlqs) == 4
    for name, q in dlqs.items():
        assert int(q["MessageRetentionPeriod"]) <= _store_retention_default(), name


def test_every_queue_sets_its_retention_and_a_main_queue_keeps_no_longer_than_its_dlq() -> None:
    queues = {logical: props for _, logical, props in resources("AWS::SQS::Queue")}
    for logical, q in queues.items():
        assert isinstance(q.get("MessageRetentionPeriod"), int), logical
        if "RedrivePolicy" in q:
            # a standard queue's message keeps its first enqueue time in the DLQ: a DLQ that
            # keeps less than its queue would drop late dead letters at once
            dlq = queues[q["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]]
            assert q["MessageRetentionPeriod"] <= dlq["MessageRetentionPeriod"], logical


@pytest.mark.parametrize("name", ["QuarantineRetentionDays", "LandingRetentionDays"])
def test_a_file_is_kept_7_days_at_most_and_no_deploy_can_keep_it_longer(name: str) -> None:
    param = T["foundation"]["Parameters"][name]
    assert param["Default"] <= 7 and param["MaxValue"] <= 7
    rules = F["LandingBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any(r.get("ExpirationInDays") == {"Ref": name} for r in rules)


def test_incomplete_multipart_uploads_are_aborted_across_the_bucket() -> None:
    rules = F["LandingBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    (rule,) = [r for r in rules if "AbortIncompleteMultipartUpload" in r]
    assert rule["Status"] == "Enabled" and "Prefix" not in rule
    assert rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] <= 1


# -- roles --------------------------------------------------------------------------------------


def test_no_role_statement_allows_a_wildcard_action_or_an_unlisted_wildcard_resource() -> None:
    count = 0
    for stack, logical, st in role_statements():
        count += 1
        assert st["Effect"] == "Allow", (stack, logical)
        actions = listed(st["Action"])
        assert not any("*" in a for a in actions), (stack, logical, actions)
        if "*" in listed(st["Resource"]):
            unlisted = set(actions) - set(WILDCARD_RESOURCE_ACTIONS)
            assert not unlisted, (stack, logical, unlisted)
    assert count >= 40


# -- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "secret", "role"),
    [
        ("transformer", "EventIdKey", "gro-transformer-transform"),
        ("publisher", "PlatformClientSecret", "gro-publisher-publish"),
    ],
)
def test_a_secret_is_readable_only_by_the_role_of_the_function_that_uses_it(
    stack: str, secret: str, role: str
) -> None:
    assert roles_allowed("secretsmanager:GetSecretValue", {"Ref": secret}) == {role}
    (policy,) = [
        p
        for s, _, p in resources("AWS::SecretsManager::ResourcePolicy")
        if s == stack and p["SecretId"] == {"Ref": secret}
    ]
    assert policy["BlockPublicPolicy"] is True
    denies = [
        st
        for st in policy["ResourcePolicy"]["Statement"]
        if st["Effect"] == "Deny"
        and st["Principal"] == "*"
        and "secretsmanager:GetSecretValue" in listed(st["Action"])
    ]
    assert len(denies) == 1
    assert [role_name(a) for a in principal_arn_condition(denies[0], "ArnNotEquals")] == [role]
    assert not [st for st in policy["ResourcePolicy"]["Statement"] if st["Effect"] == "Allow"]


# -- the landing bucket -------------------------------------------------------------------------


def _bucket_statements() -> list[dict[str, Any]]:
    (policy,) = [p for _, _, p in resources("AWS::S3::BucketPolicy")]
    assert policy["Bucket"] == {"Ref": "LandingBucket"}
    statements: list[dict[str, Any]] = policy["PolicyDocument"]["Statement"]
    assert all(s["Effect"] == "Deny" and s["Principal"] == "*" for s in statements)
    return statements


def test_the_bucket_refuses_every_request_without_tls() -> None:
    (st,) = [s for s in _bucket_statements() if "aws:SecureTransport" in json.dumps(s)]
    assert st["Action"] == "s3:*"
    assert st["Condition"] == {"Bool": {"aws:SecureTransport": False}}
    assert st["Resource"] == [
        {"Fn::GetAtt": ["LandingBucket", "Arn"]},
        {"Fn::Sub": "${LandingBucket.Arn}/*"},
    ]


def test_the_bucket_refuses_a_put_encrypted_other_than_with_the_pipelines_key() -> None:
    puts = [
        s["Condition"]
        for s in _bucket_statements()
        if listed(s["Action"]) == ["s3:PutObject"]
        and s["Resource"] == {"Fn::Sub": "${LandingBucket.Arn}/*"}
    ]
    sse, key_id = (
        "s3:x-amz-server-side-encryption",
        "s3:x-amz-server-side-encryption-aws-kms-key-id",
    )
    # no header means the bucket's default, which is the key
    rule = F["LandingBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule[0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["Key", "Arn"]},
    }
    assert {"StringNotEqualsIfExists": {sse: "aws:kms"}} in puts  # SSE-S3, DSSE
    assert {"StringNotEqualsIfExists": {key_id: {"Fn::GetAtt": ["Key", "Arn"]}}} in puts
    assert {"StringEquals": {sse: "aws:kms"}, "Null": {key_id: True}} in puts  # aws/s3
    assert {"Null": {"s3:x-amz-server-side-encryption-customer-algorithm": False}} in puts


@pytest.mark.parametrize(
    ("actions", "prefixes", "extra"),
    [
        (["s3:GetObject", "s3:GetObjectVersion"], ["incoming/", "quarantine/"], {"uploader"}),
        (["s3:DeleteObject", "s3:DeleteObjectVersion"], [""], set()),
    ],
    ids=["reads", "deletes"],
)
def test_the_bucket_refuses_reads_and_deletes_by_anyone_but_the_roles_that_need_them(
    actions: list[str], prefixes: list[str], extra: set[str]
) -> None:
    resources_ = [{"Fn::Sub": f"${{LandingBucket.Arn}}/{p}*"} for p in prefixes]
    (st,) = [s for s in _bucket_statements() if set(actions) <= set(listed(s["Action"]))]
    assert sorted(map(json.dumps, listed(st["Resource"]))) == sorted(map(json.dumps, resources_))
    allowed = {role_name(a) for a in principal_arn_condition(st, "ArnNotEquals")}
    needed = {
        role
        for action in actions
        for prefix in ("incoming/", "quarantine/", "receipts/")
        for role in roles_allowed(action, bucket_resource(prefix))
    }
    assert needed, actions
    assert allowed == needed | {p for p, who in PARAMETER_ROLES.items() if who in extra}


# -- the temporary store ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sid", "actions"),
    [
        (
            "DenyReadingEventsButByThePipeline",
            ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Scan"],
        ),
        (
            "DenyWritingOrDeletingEventsButByThePipeline",
            ["dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"],
        ),
    ],
)
def test_the_store_refuses_reads_writes_and_deletes_by_anyone_but_the_roles_that_need_them(
    sid: str, actions: list[str]
) -> None:
    store = F["TemporaryStore"]["Properties"]
    (st,) = [s for s in store["ResourcePolicy"]["PolicyDocument"]["Statement"] if s["Sid"] == sid]
    assert st["Effect"] == "Deny" and st["Principal"] == "*"
    assert set(actions) <= set(listed(st["Action"]))
    allowed = {role_name(a) for a in principal_arn_condition(st, "ArnNotEquals")}
    store_arn = {"Fn::ImportValue": "gro-foundation-TemporaryStoreArn"}
    needed = {role for action in actions for role in roles_allowed(action, store_arn)}
    assert needed and allowed == needed


def test_the_role_check_of_a_runs_calls_names_what_a_role_does_not_allow() -> None:
    # the sweep deletes expired events 25 to a BatchWriteItem and never alone; Step Functions
    # is no function, so it is not looked at
    made = {
        "gro-reaper-sweep": {"dynamodb.BatchWriteItem": {}, "dynamodb.DeleteItem": {}},
        "gro-transformer-transform": {"sqs.SendMessageBatch": {}, "s3.PutObject": {}},
        "states": {"lambda.Invoke": {}},
    }

    assert role_actions.refused(made) == {
        "gro-reaper-sweep": ["dynamodb.DeleteItem"],
        "gro-transformer-transform": ["s3.PutObject"],
    }
