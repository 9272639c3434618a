"""Invariants of the CloudFormation templates, including the properties moto ignores."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import load as load_template

from deploytools.stacks import ROOT, TEMPLATES

T = {name: load_template(str(path)) for name, path in TEMPLATES.items()}
SERVICES = [n for n in T if n != "foundation"]


def resources(kind: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (stack, logical, res.get("Properties", {}))
        for stack, tpl in T.items()
        for logical, res in tpl["Resources"].items()
        if res["Type"] == kind
    ]


def walk(node: Any):
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def test_every_template_is_cfn_lint_clean() -> None:
    paths = [str(p) for p in TEMPLATES.values()]
    done = subprocess.run(
        [str(Path(sys.executable).with_name("cfn-lint")), *paths],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_queue_has_a_dead_letter_queue_and_every_dlq_keeps_messages_7_days() -> None:
    queues = resources("AWS::SQS::Queue")
    assert len(queues) >= 8
    for _, logical, props in queues:
        if props["QueueName"].endswith("-dlq"):
            assert props["MessageRetentionPeriod"] == 7 * 24 * 3600, logical
        else:
            assert "deadLetterTargetArn" in props["RedrivePolicy"], logical


def test_every_dead_letter_queue_has_an_alarm_that_tells_the_operators() -> None:
    dlqs = {
        logical
        for _, logical, props in resources("AWS::SQS::Queue")
        if props["QueueName"].endswith("-dlq")
    }
    watched = {
        props["Dimensions"][0]["Value"]["Fn::GetAtt"][0]: props
        for _, _, props in resources("AWS::CloudWatch::Alarm")
        if props.get("MetricName") == "ApproximateNumberOfMessagesVisible"
    }
    assert dlqs and dlqs <= set(watched), dlqs - set(watched)
    for logical in dlqs:
        alarm = watched[logical]
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        assert alarm["AlarmActions"] == [{"Ref": "OperatorAlerts"}]


def test_no_service_stack_reads_another_services_exports() -> None:
    for service in SERVICES:
        text = json.dumps(T[service])
        for name in re.findall(r'"Fn::ImportValue": "([^"]+)"', text):
            assert name.startswith("gro-foundation-"), (service, name)
        assert "Export" not in json.dumps(T[service].get("Outputs", {})), service


def test_every_event_source_mapping_reports_batch_item_failures() -> None:
    mappings = resources("AWS::Lambda::EventSourceMapping")
    assert len(mappings) == 4
    for _, logical, props in mappings:
        assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"], logical


# Lambda's default concurrency for an account; the enrichment API the platform calls draws on it
ACCOUNT_CONCURRENCY = 1000


def test_every_queue_consumer_is_capped_leaving_the_accounts_concurrency_to_enrichment() -> None:
    mappings = resources("AWS::Lambda::EventSourceMapping")
    caps = {}
    for stack, logical, props in mappings:
        parameter = props["ScalingConfig"]["MaximumConcurrency"]["Ref"]
        declared = T[stack]["Parameters"][parameter]
        assert 2 <= declared["MinValue"] <= declared["Default"] <= declared["MaxValue"] <= 1000
        caps[f"{stack}.{logical}"] = declared["Default"]
    assert len(caps) == 4
    # a backlog on every queue at once still leaves nine in ten for the platform's calls
    assert sum(caps.values()) <= ACCOUNT_CONCURRENCY // 10, caps
    # the publisher sets the pace: the transformer may be wider, never narrower
    assert caps["transformer.RecordsMapping"] >= caps["publisher.EventsMapping"], caps


def test_every_function_traces_and_logs_to_a_group_with_retention() -> None:
    functions = resources("AWS::Lambda::Function")
    assert len(functions) == 9
    for stack, logical, props in functions:
        assert props["TracingConfig"] == {"Mode": "Active"}, logical
        groups = {p["LogGroupName"]: p for _, _, p in resources("AWS::Logs::LogGroup")}
        group = groups[f"/aws/lambda/{props['FunctionName']}"]
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}, logical
        assert props["FunctionName"].startswith(f"gro-{stack}-"), logical


def test_queue_visibility_is_at_least_six_times_each_consumer_timeout() -> None:
    visibility = T["foundation"]["Parameters"]["VisibilityTimeoutSeconds"]["Default"]
    for stack in SERVICES:
        params = T[stack]["Parameters"]
        for name in ("FunctionTimeoutSeconds", "QueueConsumerTimeoutSeconds"):
            if name in params:
                assert visibility >= 6 * params[name]["Default"], (stack, name)


def test_every_imported_name_is_exported_by_the_foundation_and_only_by_it() -> None:
    exported = {
        out["Export"]["Name"] for out in T["foundation"]["Outputs"].values() if "Export" in out
    }
    for stack in SERVICES:
        imports = [
            n["Fn::ImportValue"]
            for n in walk(T[stack])
            if isinstance(n, dict) and "Fn::ImportValue" in n
        ]
        assert imports, stack
        for name in imports:
            assert name in exported, (stack, name)
        assert not any("Export" in out for out in T[stack].get("Outputs", {}).values()), (
            f"{stack} exports something: service stacks must not be imported from"
        )


def _statements(props: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for policy in props.get("Policies", []):
        out.extend(policy["PolicyDocument"]["Statement"])
    return out


def test_each_role_reaches_only_named_resources_with_named_actions() -> None:
    roles = resources("AWS::IAM::Role")
    assert len(roles) >= 9
    for stack, logical, props in roles:
        for st in _statements(props):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert not any(a.endswith("*") for a in actions), (stack, logical, actions)
            if st["Resource"] == "*":
                # X-Ray's trace APIs take no resource: the only wildcard allowed
                assert all(a.startswith("xray:") for a in actions), (stack, logical, actions)


def test_no_service_role_touches_another_services_functions_or_secrets() -> None:
    for stack in SERVICES:
        text = json.dumps(T[stack])
        for other in SERVICES:
            if other != stack:
                assert f"gro-{other}-" not in text, (stack, other)


def test_the_state_machine_definition_is_the_asl_file_verbatim() -> None:
    machine = T["foundation"]["Resources"]["IngestFileStateMachine"]["Properties"]
    asl = json.loads((ROOT / "infra" / "ingest-file.asl.json").read_text())
    assert json.loads(machine["DefinitionString"]) == asl


def test_the_state_machine_invokes_only_functions_that_exist_and_its_role_allows() -> None:
    asl = json.loads((ROOT / "infra" / "ingest-file.asl.json").read_text())
    invoked = {
        s["Parameters"]["FunctionName"]
        for s in asl["States"].values()
        if s.get("Resource") == "arn:aws:states:::lambda:invoke"
    }
    names = {p["FunctionName"] for _, _, p in resources("AWS::Lambda::Function")}
    assert invoked == {"gro-splitter-split", "gro-splitter-quarantine", "gro-reaper-finish-file"}
    assert invoked <= names
    role = T["foundation"]["Resources"]["StateMachineRole"]["Properties"]
    allowed = json.dumps(_statements(role))
    for name in invoked:
        assert f"function:{name}" in allowed


@pytest.mark.parametrize("table", ["TemporaryStore", "Ledger"])
def test_tables_expire_items_and_are_encrypted(table: str) -> None:
    props = T["foundation"]["Resources"][table]["Properties"]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True


def test_the_store_keeps_no_backups_of_deleted_personal_data() -> None:
    props = T["foundation"]["Resources"]["TemporaryStore"]["Properties"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is False
    assert props["SSESpecification"]["SSEType"] == "KMS"


def test_the_landing_bucket_is_private_encrypted_announces_files_and_expires_them() -> None:
    props = T["foundation"]["Resources"]["LandingBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    rule = props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert props["NotificationConfiguration"]["EventBridgeConfiguration"] == {
        "EventBridgeEnabled": True
    }
    prefixes = {r.get("Prefix") for r in props["LifecycleConfiguration"]["Rules"]}
    assert {"incoming/", "quarantine/"} <= prefixes


def test_every_queue_is_encrypted_with_the_pipelines_key() -> None:
    for _, logical, props in resources("AWS::SQS::Queue"):
        assert props["KmsMasterKeyId"] == {"Ref": "Key"}, logical
        assert "SqsManagedSseEnabled" not in props, logical


def test_local_deploys_only_set_parameters_the_templates_declare() -> None:
    from localcloud.deploy import LOCAL_PARAMETERS

    for stack, params in LOCAL_PARAMETERS.items():
        declared = set(T[stack].get("Parameters", {}))
        assert set(params) <= declared, (stack, set(params) - declared)
        for name, value in params.items():
            bounds = T[stack]["Parameters"][name]
            if "MinValue" in bounds:
                assert float(value) >= bounds["MinValue"], (stack, name)


def _functions() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (stack, logical, props)
        for stack, logical, props in resources("AWS::Lambda::Function")
        if stack in SERVICES
    ]


# read by the libraries themselves, not by our settings
_LIBRARY_VARIABLES = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_LOG_LEVEL"}


@pytest.mark.parametrize(
    ("stack", "logical", "props"), _functions(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_every_setting_a_function_reads_is_set_by_its_template_and_nothing_else(
    stack: str, logical: str, props: dict[str, Any]
) -> None:
    import importlib

    package, module, entry_point = props["Handler"].split(".")
    assert module == "handler", logical
    handler = importlib.import_module(f"{package}.handler")
    assert callable(getattr(handler, entry_point, None)), f"{props['Handler']} does not exist"
    settings = importlib.import_module(f"{package}.settings")
    read = settings.ENTRY_POINTS[entry_point]
    from servicekit.settings import variables

    wanted = set(variables(read))
    given = set(props["Environment"]["Variables"]) - _LIBRARY_VARIABLES
    assert wanted - given == set(), f"{logical} reads variables its template does not set"
    assert given - wanted == set(), f"{logical}'s template sets variables nothing reads"


def test_every_entry_point_a_service_declares_settings_for_is_deployed() -> None:
    import importlib

    deployed = {props["Handler"] for _stack, _logical, props in _functions()}
    for stack in SERVICES:
        settings = importlib.import_module(f"{stack}.settings")
        for entry_point in settings.ENTRY_POINTS:
            assert f"{stack}.handler.{entry_point}" in deployed, (stack, entry_point)


def test_receipts_are_written_where_the_reaper_may_write_and_the_lifecycle_keeps_them() -> None:
    from contracts.receipts import RECEIPTS_PREFIX

    puts = [
        statement["Resource"]["Fn::Sub"][0]
        for _stack, _logical, props in resources("AWS::IAM::Role")
        if _stack == "reaper"
        for policy in props.get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Action"] == "s3:PutObject"
    ]
    assert puts and set(puts) == {f"${{Bucket}}/{RECEIPTS_PREFIX}*"}
    (bucket,) = [p for _s, _l, p in resources("AWS::S3::Bucket") if "LifecycleConfiguration" in p]
    prefixes = {r.get("Prefix") for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert RECEIPTS_PREFIX in prefixes


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_readme_documents_its_interface_and_every_setting(service: str) -> None:
    readme = (ROOT / "services" / service / "README.md").read_text()
    for heading in (
        "## Inputs and outputs",
        "## Failures and dead letters",
        "## Settings",
        "## Metrics and alarms",
        "## Deploy it alone, roll it back",
    ):
        assert heading in readme, (service, heading)
    for _stack, _logical, props in resources("AWS::Lambda::Function"):
        if _stack != service:
            continue
        for variable in props["Environment"]["Variables"]:
            if not variable.startswith("POWERTOOLS_"):
                assert f"`{variable}`" in readme, (service, variable)
    for parameter in T[service].get("Parameters", {}):
        assert f"`{parameter}`" in readme, (service, parameter)
    declared = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    for name in [
        *declared["tool"]["gro"]["contracts"]["produces"],
        *declared["tool"]["gro"]["contracts"]["accepts"],
    ]:
        assert f"`{name}`" in readme, (service, name)


def test_a_file_that_fails_or_stalls_raises_an_alarm() -> None:
    (alarm,) = [
        props
        for _, _, props in resources("AWS::CloudWatch::Alarm")
        if props.get("Namespace") == "AWS/States"
    ]
    assert alarm["MetricName"] == "ExecutionsFailed"
    assert alarm["Dimensions"][0]["Value"] == {"Ref": "IngestFileStateMachine"}
    assert alarm["AlarmActions"] == [{"Ref": "OperatorAlerts"}]


def _stall_must_exceed(params: dict[str, Any]) -> dict[str, float]:
    """How long a record may legitimately go on retrying, per queue, from deploy values."""
    visibility = float(params["VisibilityTimeoutSeconds"])
    publish_cap = float(params["BackoffCapSeconds"])
    return {
        "records-to-transform": float(params["MaxReceiveCount"]) * visibility,
        "events-to-publish": float(params["PublishMaxReceiveCount"]) * max(visibility, publish_cap),
    }


@pytest.mark.parametrize("where", ["aws", "local"])
def test_a_file_is_not_called_stalled_while_its_records_may_still_be_retrying(where: str) -> None:
    from localcloud.deploy import LOCAL_PARAMETERS

    def value(stack: str, name: str) -> str:
        if where == "local" and name in LOCAL_PARAMETERS.get(stack, {}):
            return LOCAL_PARAMETERS[stack][name]
        return str(T[stack]["Parameters"][name]["Default"])

    params = {
        "VisibilityTimeoutSeconds": value("foundation", "VisibilityTimeoutSeconds"),
        "MaxReceiveCount": value("foundation", "MaxReceiveCount"),
        "PublishMaxReceiveCount": value("foundation", "PublishMaxReceiveCount"),
        "BackoffCapSeconds": value("publisher", "BackoffCapSeconds"),
    }
    stall = float(value("reaper", "StallSeconds"))
    for queue, longest in _stall_must_exceed(params).items():
        assert stall > longest, (where, queue, stall, longest)
