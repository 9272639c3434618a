"""Package and deploy one stack (the foundation, or one service) to a local cloud or to AWS."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from localcloud import bundle, fixups
from localcloud.template import TEMPLATES

STACKS = tuple(TEMPLATES)
STACK_PREFIX = "gro-"
_DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE")
_FAILED = (
    "CREATE_FAILED",
    "ROLLBACK_COMPLETE",
    "ROLLBACK_FAILED",
    "UPDATE_ROLLBACK_FAILED",
    "DELETE_COMPLETE",
)

# Small timeouts and fast polling, so a local run shows retries and resumes within seconds.
LOCAL_PARAMETERS: dict[str, dict[str, str]] = {
    "foundation": {"VisibilityTimeoutSeconds": "30", "PublishMaxReceiveCount": "5"},
    "splitter": {
        "SplitTimeoutSeconds": "300",
        "QueueConsumerTimeoutSeconds": "5",
        "SplitTimeBudgetSeconds": "60",
        "RecordWaitSeconds": "1",
        # moto's SQS scans every message on every call: keep the records queue shallow
        "MaxQueueDepth": "300",
    },
    "transformer": {"FunctionTimeoutSeconds": "5"},
    "publisher": {"FunctionTimeoutSeconds": "5"},
    "reaper": {"FunctionTimeoutSeconds": "5", "StallSeconds": "120"},
}

Clients = Callable[[str], Any]


class DeployError(Exception):
    """A stack did not deploy; the message says which and why."""


def stack_name(stack: str) -> str:
    """The CloudFormation stack name of `stack`."""
    return STACK_PREFIX + stack


def code_bucket(clients: Clients) -> str:
    """The bucket deployment packages go to (made on first use, like `cdk bootstrap`)."""
    account = clients("sts").get_caller_identity()["Account"]
    s3 = clients("s3")
    region = s3.meta.region_name
    name = f"gro-artifacts-{account}-{region}"
    try:
        s3.head_bucket(Bucket=name)
    except s3.exceptions.ClientError:
        kwargs: dict[str, Any] = {"Bucket": name}
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**kwargs)
    return name


def deploy(
    clients: Clients,
    stack: str,
    *,
    parameters: dict[str, str] | None = None,
    local: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, str]:
    """Create or update one stack and wait for it; returns its outputs."""
    if stack not in TEMPLATES:
        raise DeployError(f"unknown stack {stack!r}; one of {', '.join(STACKS)}")
    params = dict(LOCAL_PARAMETERS[stack] if local else {})
    params.update(parameters or {})
    if stack != "foundation":
        built = bundle.build(stack, for_aws=not local)
        bucket = code_bucket(clients)
        key = f"{stack}/{built.sha256}.zip"
        clients("s3").upload_file(str(built.zip_path), bucket, key)
        params.update({"CodeBucket": bucket, "CodeKey": key})
        log(f"{stack}: package {built.zip_path.name} ({built.zip_path.stat().st_size} bytes)")
    cfn = clients("cloudformation")
    name = stack_name(stack)
    body = TEMPLATES[stack].read_text()
    args: dict[str, Any] = {
        "StackName": name,
        "TemplateBody": body,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
    }
    try:
        previous = cfn.describe_stacks(StackName=name)["Stacks"][0].get("Parameters", [])
        exists = True
    except cfn.exceptions.ClientError:
        previous, exists = [], False
    try:
        if exists:
            # a parameter not given again keeps its deployed value (a platform URL, say)
            # (its value passed back: moto's UsePreviousValue fails on parameters left at
            # their defaults, and no parameter of ours is NoEcho)
            args["Parameters"] += [
                {"ParameterKey": p["ParameterKey"], "ParameterValue": p["ParameterValue"]}
                for p in previous
                if p["ParameterKey"] not in params and "ParameterValue" in p
            ]
            cfn.update_stack(**args)
        else:
            cfn.create_stack(**args)
    except cfn.exceptions.ClientError as err:
        if "No updates are to be performed" not in str(err):
            raise DeployError(f"{name}: {err}") from None
    described = _wait(cfn, name)
    if local:
        for line in fixups.apply(clients, name, stack):
            log(f"{stack}: {line}")
    log(f"{stack}: {described['StackStatus']}")
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


def _wait(cfn: Any, name: str, timeout: float = 1800) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
        status = described["StackStatus"]
        if status in _DONE:
            return described
        if status in _FAILED:
            reason = described.get("StackStatusReason", "")
            raise DeployError(f"{name}: {status} {reason}".strip())
        if time.monotonic() > deadline:
            raise DeployError(f"{name}: still {status} after {timeout:.0f} s")
        time.sleep(0.2)
