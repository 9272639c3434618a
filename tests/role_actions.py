"""What each function's role allows, read from the templates, against the calls it made.

The local cloud enforces IAM only where a resource policy decides (`localcloud/access.py`), so
a role that lacks an action its function calls deploys and runs locally, and fails on AWS.
The calls a run made are counted per function (`localcloud.calls`); this holds them against
the actions each function's role allows (action names only: the resources are tested apart,
in `tests/infra/test_least_privilege.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from cfnlint.decode.cfn_yaml import load as load_template

from deploytools.stacks import TEMPLATES

# Operations authorised by an action of another name (batch forms by their single form; a
# transaction item by item: ours update, or check a condition)
_AUTHORISED_BY = {
    "sqs.SendMessageBatch": ("sqs:sendmessage",),
    "sqs.DeleteMessageBatch": ("sqs:deletemessage",),
    "sqs.ChangeMessageVisibilityBatch": ("sqs:changemessagevisibility",),
    "s3.HeadObject": ("s3:getobject", "s3:getobjectversion"),
    "s3.GetObject": ("s3:getobject", "s3:getobjectversion"),
    "s3.DeleteObject": ("s3:deleteobject", "s3:deleteobjectversion"),
    "s3.CopyObject": ("s3:putobject",),  # and a read of the source, which a GetObject names
    "dynamodb.TransactWriteItems": ("dynamodb:updateitem", "dynamodb:conditioncheckitem"),
}
# IAM's name of a service, where the SDK's differs
_IAM_PREFIX = {"stepfunctions": "states"}


def _role_name(function: Mapping[str, Any]) -> str:
    role = function["Properties"]["Role"]["Fn::GetAtt"]
    return str(role[0] if isinstance(role, list) else role.split(".")[0])


@cache
def role_actions() -> dict[str, frozenset[str]]:
    """Each deployed function's name, with the actions its role allows (lower case)."""
    out: dict[str, frozenset[str]] = {}
    for path in TEMPLATES.values():
        resources = load_template(str(path))["Resources"]
        for resource in resources.values():
            if resource["Type"] != "AWS::Lambda::Function":
                continue
            role = resources[_role_name(resource)]["Properties"]
            actions: set[str] = set()
            for policy in role.get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    if statement["Effect"] != "Allow":
                        continue
                    named = statement["Action"]
                    actions.update(
                        a.lower() for a in ([named] if isinstance(named, str) else named)
                    )
            out[resource["Properties"]["FunctionName"]] = frozenset(actions)
    return out


def refused(calls_by_stage: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """The operations each function called that its role does not allow (`ingest run --json`'s
    `calls.by_stage`, or a usage document's `calls`); callers that are not functions (Step
    Functions, the pollers) are not looked at."""
    roles = role_actions()
    out: dict[str, list[str]] = {}
    for function, operations in calls_by_stage.items():
        if function not in roles:
            continue
        for operation in operations:
            service, _, name = operation.partition(".")
            prefix = _IAM_PREFIX.get(service, service)
            needed = _AUTHORISED_BY.get(operation, (f"{prefix}:{name}".lower(),))
            if not roles[function] & set(needed):
                out.setdefault(function, []).append(operation)
    return out
