"""Package and deploy one stack (the foundation, or one service), to AWS or to a local cloud.

The same path for both: the service's bundle goes to the artifacts bucket, the template goes to
CloudFormation as it is in the repository, and CloudFormation's own waiters say when it is done.
A local cloud adds its own step after the deploy (`after`), for what its emulator does not do.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from botocore.exceptions import WaiterError

from deploytools import bundle, releases
from deploytools.stacks import STACKS, TEMPLATES, stack_name

Clients = Callable[[str], Any]


class DeployError(Exception):
    """A stack did not deploy; the message says which and why."""


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
    for_aws: bool = True,
    log: Callable[[str], None] = lambda _: None,
    after: Callable[[Clients, str, str], Iterable[str]] | None = None,
    poll_seconds: float = 5.0,
    timeout_seconds: float = 3600.0,
    version: str | None = None,
) -> dict[str, str]:
    """Create or update one stack and wait for it; returns its outputs.

    A service is deployed as a release: `version` names it (default: the package version and
    the commit). A version that was released before is deployed again as it was (its recorded
    bundle: a rollback); any other label builds the checkout and records it under that label.
    `after(clients, stack_name, stack)` runs once the stack is complete; each line it yields is
    logged.
    """
    if stack not in TEMPLATES:
        raise DeployError(f"unknown stack {stack!r}; one of {', '.join(STACKS)}")
    params = dict(parameters or {})
    stack_tags: list[dict[str, str]] = []
    if stack != "foundation":
        bucket = code_bucket(clients)
        s3 = clients("s3")
        earlier = releases.find(s3, bucket, stack, version) if version else None
        if earlier is not None:
            release = earlier
            log(f"{stack}: {release.label} was released before: deploying it as it was")
        else:
            label = version or releases.default_label(stack)
            built = bundle.build(stack, for_aws=for_aws)
            key = f"{stack}/{built.sha256}.zip"
            s3.upload_file(str(built.zip_path), bucket, key)
            release = releases.record(s3, bucket, stack, label, key)
            size = built.zip_path.stat().st_size
            log(f"{stack}: {label}: package {built.zip_path.name} ({size} bytes)")
        params.update(
            {"CodeBucket": bucket, "CodeKey": release.code_key, "ServiceVersion": release.label}
        )
        stack_tags = releases.tags(release)
    cfn = clients("cloudformation")
    name = stack_name(stack)
    args: dict[str, Any] = {
        "StackName": name,
        "TemplateBody": TEMPLATES[stack].read_text(),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()],
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        "Tags": stack_tags,
    }
    try:
        previous = cfn.describe_stacks(StackName=name)["Stacks"][0].get("Parameters", [])
        exists = True
    except cfn.exceptions.ClientError:
        previous, exists = [], False
    # only what the template being deployed still declares can be carried over
    declared = {
        p["ParameterKey"]
        for p in cfn.get_template_summary(TemplateBody=args["TemplateBody"]).get("Parameters", [])
    }
    waiter = "stack_update_complete" if exists else "stack_create_complete"
    changed = True
    try:
        if exists:
            # a parameter not given again keeps its deployed value (a platform URL, say)
            # (its value passed back: moto's UsePreviousValue fails on parameters left at
            # their defaults, and no parameter of ours is NoEcho)
            args["Parameters"] += [
                {"ParameterKey": p["ParameterKey"], "ParameterValue": p["ParameterValue"]}
                for p in previous
                if p["ParameterKey"] not in params
                and p["ParameterKey"] in declared
                and "ParameterValue" in p
            ]
            cfn.update_stack(**args)
        else:
            cfn.create_stack(**args)
    except cfn.exceptions.ClientError as err:
        if "No updates are to be performed" not in str(err):
            raise DeployError(f"{name}: {err}") from None
        changed = False
    if changed:
        try:
            cfn.get_waiter(waiter).wait(
                StackName=name,
                WaiterConfig={
                    "Delay": poll_seconds,
                    "MaxAttempts": max(1, math.ceil(timeout_seconds / poll_seconds)),
                },
            )
        except WaiterError:
            described = cfn.describe_stacks(StackName=name)["Stacks"][0]
            reason = described.get("StackStatusReason", "")
            raise DeployError(f"{name}: {described['StackStatus']} {reason}".strip()) from None
    described = cfn.describe_stacks(StackName=name)["Stacks"][0]
    if after is not None:
        for line in after(clients, name, stack):
            log(f"{stack}: {line}")
    log(f"{stack}: {described['StackStatus']}")
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
