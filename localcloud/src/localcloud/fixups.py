"""After a stack is deployed into moto: apply, through the ordinary APIs, what moto's
CloudFormation skips or ignores (listed in shared/reference/local-aws.md). All of it in one
place, driven by the same template, so the template stays the single source of truth:

- AWS::SNS::Subscription and AWS::SecretsManager::Secret: skipped by moto -> created via API;
- S3 versioning and EventBridgeConfiguration, DynamoDB TTL, Lambda TracingConfig: ignored ->
  set via API;
- AWS::StepFunctions::StateMachine: invisible to execution once execute mode is on ->
  (re)created via the Step Functions API from the template's DefinitionString.
"""

from __future__ import annotations

import json
import secrets
import string
from typing import Any

from deploytools.stacks import TEMPLATES


class _Resolver:
    """Just enough of CloudFormation's intrinsic functions for the resources above."""

    def __init__(self, clients: Any, stack: str) -> None:
        cfn = clients("cloudformation")
        self._clients = clients
        self.physical: dict[str, str] = {}
        self.types: dict[str, str] = {}
        for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
            for r in page["StackResourceSummaries"]:
                self.physical[r["LogicalResourceId"]] = r.get("PhysicalResourceId", "")
                self.types[r["LogicalResourceId"]] = r["ResourceType"]
        self.exports = {
            e["Name"]: e["Value"]
            for page in cfn.get_paginator("list_exports").paginate()
            for e in page.get("Exports", [])
        }
        described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        self.params = {
            p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])
        }

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        if isinstance(value, list):
            return [self(v) for v in value]
        if "Ref" in value:
            name = value["Ref"]
            return self.params.get(name) or self.physical.get(name, "")
        if "Fn::ImportValue" in value:
            return self.exports[self(value["Fn::ImportValue"])]
        if "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            return self._get_att(logical, attribute)
        if "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
            return value["Fn::Sub"]
        return {k: self(v) for k, v in value.items()}

    def _get_att(self, logical: str, attribute: str) -> str:
        physical = self.physical[logical]
        kind = self.types[logical]
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            attrs = self._clients("sqs").get_queue_attributes(
                QueueUrl=physical, AttributeNames=["QueueArn"]
            )
            return str(attrs["Attributes"]["QueueArn"])
        if kind == "AWS::IAM::Role" and attribute == "Arn":
            return str(self._clients("iam").get_role(RoleName=physical)["Role"]["Arn"])
        raise NotImplementedError(f"Fn::GetAtt {logical}.{attribute} ({kind})")


def _generate_secret(props: dict[str, Any]) -> str:
    spec = props.get("GenerateSecretString")
    if spec is None:
        return str(props.get("SecretString", ""))
    alphabet = string.ascii_letters + string.digits
    value = "".join(secrets.choice(alphabet) for _ in range(int(spec.get("PasswordLength", 32))))
    if "SecretStringTemplate" in spec:
        body = json.loads(spec["SecretStringTemplate"])
        body[
            spec["GenerateSecretKey"] if "GenerateSecretKey" in spec else spec["GenerateStringKey"]
        ] = value
        return json.dumps(body)
    return value


def apply(clients: Any, stack: str, service: str) -> list[str]:
    """Make a freshly deployed stack behave as on AWS; returns what was done, for the log."""
    # cfn-lint's own loader: short-form tags (`!Ref`, `!Sub`) as their long forms (imported
    # here: it takes seconds, and only a deploy needs it)
    from cfnlint.decode.cfn_yaml import load as load_template

    template = load_template(str(TEMPLATES[service]))
    resolve = _Resolver(clients, stack)
    done: list[str] = []
    for logical, resource in template["Resources"].items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if kind == "AWS::SNS::Subscription":
            sns = clients("sns")
            topic, endpoint = resolve(props["TopicArn"]), resolve(props["Endpoint"])
            pages = sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
            existing = [s for page in pages for s in page.get("Subscriptions", [])]
            if not any(s["Endpoint"] == endpoint for s in existing):
                raw = str(props.get("RawMessageDelivery", False)).lower()
                sns.subscribe(
                    TopicArn=topic,
                    Protocol=props["Protocol"],
                    Endpoint=endpoint,
                    Attributes={"RawMessageDelivery": raw},
                )
                done.append(f"subscribed {logical}")
        elif kind == "AWS::SecretsManager::Secret":
            sm = clients("secretsmanager")
            try:
                sm.describe_secret(SecretId=props["Name"])
            except sm.exceptions.ResourceNotFoundException:
                sm.create_secret(Name=props["Name"], SecretString=_generate_secret(props))
                done.append(f"created secret {props['Name']}")
        elif kind == "AWS::S3::Bucket":
            versioning = props.get("VersioningConfiguration")
            if versioning:
                clients("s3").put_bucket_versioning(
                    Bucket=resolve.physical[logical], VersioningConfiguration=versioning
                )
                done.append(f"versioning on {logical}")
            bridge = props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration")
            if bridge and bridge.get("EventBridgeEnabled"):
                clients("s3").put_bucket_notification_configuration(
                    Bucket=resolve.physical[logical],
                    NotificationConfiguration={"EventBridgeConfiguration": {}},
                )
                done.append(f"EventBridge on {logical}")
        elif kind == "AWS::DynamoDB::Table" and "TimeToLiveSpecification" in props:
            ttl = props["TimeToLiveSpecification"]
            db = clients("dynamodb")
            table = resolve.physical[logical]
            current = db.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
            if current.get("TimeToLiveStatus") != "ENABLED":
                db.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
                done.append(f"TTL on {logical}")
        elif kind == "AWS::Lambda::Function" and "TracingConfig" in props:
            clients("lambda").update_function_configuration(
                FunctionName=resolve.physical[logical], TracingConfig=props["TracingConfig"]
            )
        elif kind == "AWS::StepFunctions::StateMachine":
            done.append(_state_machine(clients, resolve, props))
    return done


def _state_machine(clients: Any, resolve: _Resolver, props: dict[str, Any]) -> str:
    sfn = clients("stepfunctions")
    name = props["StateMachineName"]
    definition = resolve(props["DefinitionString"])
    role = resolve(props["RoleArn"])
    machines = sfn.get_paginator("list_state_machines").paginate()
    for machine in (m for page in machines for m in page.get("stateMachines", [])):
        if machine["name"] == name:
            sfn.update_state_machine(
                stateMachineArn=machine["stateMachineArn"], definition=definition, roleArn=role
            )
            return f"updated state machine {name}"
    tracing = props.get("TracingConfiguration", {}).get("Enabled", False)
    sfn.create_state_machine(
        name=name,
        definition=definition,
        roleArn=role,
        tracingConfiguration={"enabled": bool(tracing)},
    )
    return f"created state machine {name}"
