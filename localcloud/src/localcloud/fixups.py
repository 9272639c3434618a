"""After a stack is deployed into moto: apply, through the ordinary APIs, what moto's
CloudFormation skips or ignores (listed in shared/reference/local-aws.md). All of it in one
place, driven by the same template, so the template stays the single source of truth:

- AWS::SNS::Subscription and AWS::SecretsManager::Secret: skipped by moto -> created via API;
- AWS::SNS::TopicPolicy: skipped by moto (the topic keeps moto's default policy) -> set as the
  topic's Policy attribute, which localcloud.access enforces;
- AWS::Lambda::Permission: created by moto, but never changed by a stack update -> the function's
  policy is made to hold exactly the template's permissions (a redeploy that names another
  principal moves the grant, as on AWS);
- S3 versioning and EventBridgeConfiguration, DynamoDB TTL, Lambda TracingConfig: ignored ->
  set via API;
- AWS::StepFunctions::StateMachine: invisible to execution once execute mode is on ->
  (re)created via the Step Functions API from the template's DefinitionString.

And, first, the stack's tables are copied into the process that serves DynamoDB
(localcloud.dynamodb_process: moto's CloudFormation made them in the main server's backend).
"""

from __future__ import annotations

import json
import re
import secrets
import string
import urllib.error
import urllib.request
from typing import Any

from deploytools.stacks import TEMPLATES
from localcloud.dynamodb_process import SYNC_PATH

_NO_VALUE = object()  # Ref AWS::NoValue: the property is left out


def _sync_tables(endpoint: str) -> list[str]:
    """Ask the local cloud to copy its tables into the DynamoDB process (a plain moto server
    serves DynamoDB itself, and has no such route: nothing to do)."""
    request = urllib.request.Request(endpoint + SYNC_PATH, data=b"{}", method="POST")  # noqa: S310
    # No proxy: this traffic must stay on loopback whatever HTTP(S)_PROXY says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as answer:
            synced = json.loads(answer.read())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return []
        raise
    return [f"table {name} served by the DynamoDB process" for name in synced.get("created", [])]


class _Resolver:
    """Just enough of CloudFormation's intrinsic functions for the resources above."""

    def __init__(self, clients: Any, stack: str, template: dict[str, Any] | None = None) -> None:
        cfn = clients("cloudformation")
        self._clients = clients
        self._stack = stack
        self._conditions: dict[str, Any] = (template or {}).get("Conditions", {})
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
            name: str(spec["Default"])
            for name, spec in (template or {}).get("Parameters", {}).items()
            if "Default" in spec
        }
        self.params.update(
            {p["ParameterKey"]: p["ParameterValue"] for p in described.get("Parameters", [])}
        )

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str | int | float | bool) or value is None:
            return value
        if isinstance(value, list):
            return [v for v in map(self, value) if v is not _NO_VALUE]
        if "Ref" in value:
            return self._ref(value["Ref"])
        if "Fn::ImportValue" in value:
            return self.exports[self(value["Fn::ImportValue"])]
        if "Fn::GetAtt" in value:
            logical, attribute = value["Fn::GetAtt"]
            return self._get_att(logical, attribute)
        if "Fn::If" in value:
            condition, if_true, if_false = value["Fn::If"]
            return self(if_true if self._condition(condition) else if_false)
        if "Fn::Sub" in value:
            return self._sub(value["Fn::Sub"])
        resolved = {k: self(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name == "AWS::AccountId":
            return str(self._clients("sts").get_caller_identity()["Account"])
        if name == "AWS::Region":
            return str(self._clients("sts").meta.region_name)
        if name == "AWS::Partition":
            return "aws"
        if name == "AWS::StackName":
            return self._stack
        return self.params.get(name) or self.physical.get(name, "")

    def _sub(self, spec: Any) -> str:
        text, variables = (spec, {}) if isinstance(spec, str) else (spec[0], spec[1])

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal}
            if name in variables:
                return str(self(variables[name]))
            if "." in name and not name.startswith("AWS::"):
                logical, attribute = name.split(".", 1)
                return self._get_att(logical, attribute)
            return str(self._ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def _condition(self, spec: Any) -> bool:
        """A condition by name, or a condition function (Fn::Equals, Not, And, Or)."""
        if isinstance(spec, str):
            return self._condition(self._conditions[spec])
        if isinstance(spec, bool):
            return spec
        if "Condition" in spec:
            return self._condition(spec["Condition"])
        if "Fn::Equals" in spec:
            left, right = (self(v) for v in spec["Fn::Equals"])
            return bool(str(left) == str(right))
        if "Fn::Not" in spec:
            return not self._condition(spec["Fn::Not"][0])
        if "Fn::And" in spec:
            return all(self._condition(c) for c in spec["Fn::And"])
        if "Fn::Or" in spec:
            return any(self._condition(c) for c in spec["Fn::Or"])
        raise NotImplementedError(f"condition {sorted(spec)}")

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
        if kind == "AWS::Events::Rule" and attribute == "Arn":
            return str(self._clients("events").describe_rule(Name=physical)["Arn"])
        if kind == "AWS::Lambda::Function" and attribute == "Arn":
            function = self._clients("lambda").get_function(FunctionName=physical)
            return str(function["Configuration"]["FunctionArn"])
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
    resolve = _Resolver(clients, stack, template)
    done: list[str] = []
    if any(r["Type"] == "AWS::DynamoDB::Table" for r in template["Resources"].values()):
        done.extend(_sync_tables(clients("cloudformation").meta.endpoint_url))
    permissions: dict[str, dict[tuple[str, str], tuple[str, dict[str, Any]]]] = {}
    for logical, resource in template["Resources"].items():
        kind = resource["Type"]
        props = resource.get("Properties", {})
        if "Condition" in resource and not resolve._condition(resource["Condition"]):
            continue
        if kind == "AWS::SNS::TopicPolicy":
            document = json.dumps(resolve(props["PolicyDocument"]))
            for topic in resolve(props["Topics"]):
                clients("sns").set_topic_attributes(
                    TopicArn=topic, AttributeName="Policy", AttributeValue=document
                )
            done.append(f"topic policy {logical}")
        elif kind == "AWS::Lambda::Permission":
            function = resolve(props["FunctionName"])
            key = (_principal_key(resolve(props["Principal"])), str(props["Action"]))
            permissions.setdefault(function, {})[key] = (logical, props)
        elif kind == "AWS::SNS::Subscription":
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
    for function, wanted in permissions.items():
        done.extend(_sync_permissions(clients, resolve, function, wanted))
    return done


def _principal_key(principal: Any) -> str:
    """A Lambda permission's principal, however it is spelled (an account id or its root ARN,
    a bare string or {"AWS": ...} / {"Service": ...})."""
    if isinstance(principal, dict):
        principal = next(iter(principal.values()), "")
    text = str(principal)
    root = re.fullmatch(r"arn:[^:]+:iam::(\d{12}):root", text)
    return root.group(1) if root else text


def _sync_permissions(
    clients: Any,
    resolve: _Resolver,
    function: str,
    wanted: dict[tuple[str, str], tuple[str, dict[str, Any]]],
) -> list[str]:
    """moto creates a function's AWS::Lambda::Permission statements but a stack update never
    changes them: leave exactly the template's (principal, action) pairs in the policy."""
    lam = clients("lambda")
    try:
        statements = json.loads(lam.get_policy(FunctionName=function)["Policy"])["Statement"]
    except lam.exceptions.ResourceNotFoundException:
        statements = []
    done: list[str] = []
    present = set()
    for statement in statements:
        key = (_principal_key(statement.get("Principal")), str(statement.get("Action")))
        if key in wanted:
            present.add(key)
        else:
            lam.remove_permission(FunctionName=function, StatementId=statement["Sid"])
            done.append(f"removed a stale permission from {function}")
    for key in wanted.keys() - present:
        logical, props = wanted[key]
        extra = {
            name: resolve(props[name])
            for name in ("SourceArn", "SourceAccount", "PrincipalOrgID")
            if name in props
        }
        lam.add_permission(
            FunctionName=function,
            StatementId=logical,
            Action=key[1],
            Principal=resolve(props["Principal"]),
            **extra,
        )
        done.append(f"permission {logical}")
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
