"""Deploy to the local cloud: the same templates and bundles as on AWS (`deploytools.deploy`),
with the local deploy parameters and the fix-ups for what moto's CloudFormation does not do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from deploytools import deploy as deployer
from deploytools.stacks import STACKS
from localcloud import access, fixups

__all__ = ["LOCAL_PARAMETERS", "STACKS", "deploy"]

# Small timeouts and fast polling, so a local run shows retries and resumes within seconds.
# Deploy parameters only: the code paths are the ones AWS runs. The platform's principal is the
# simulator's IAM user (`ingest up` makes it; localcloud.access): a static ARN in moto's one
# account, so that every deploy, a redeploy from another terminal included, names the same one.
LOCAL_PARAMETERS: dict[str, dict[str, str]] = {
    "foundation": {
        "VisibilityTimeoutSeconds": "30",
        "PublishMaxReceiveCount": "5",
        "PlatformPublisherArn": access.PLATFORM_ARN,
    },
    "splitter": {
        "SplitTimeoutSeconds": "300",
        "QueueConsumerTimeoutSeconds": "5",
        "SplitTimeBudgetSeconds": "60",
        "RecordWaitSeconds": "1",
        # moto's SQS scans every message on every call: keep the records queue shallow
        "MaxQueueDepth": "300",
    },
    "transformer": {"FunctionTimeoutSeconds": "5"},
    # a platform that is down dead-letters every record within a minute or two, not hours
    "publisher": {
        "FunctionTimeoutSeconds": "5",
        "BackoffBaseSeconds": "1",
        "BackoffCapSeconds": "4",
        "PlatformInvokerArn": access.PLATFORM_ARN,
    },
    # longer than a record may legitimately keep retrying here (5 receives x 30 s visibility)
    "reaper": {"FunctionTimeoutSeconds": "5", "StallSeconds": "300"},
}


def deploy(
    clients: Callable[[str], Any],
    stack: str,
    *,
    parameters: dict[str, str] | None = None,
    log: Callable[[str], None] = lambda _: None,
    version: str | None = None,
) -> dict[str, str]:
    """Create or update one stack on the local cloud; returns its outputs."""
    params = {**LOCAL_PARAMETERS.get(stack, {}), **(parameters or {})}
    return deployer.deploy(
        clients,
        stack,
        parameters=params,
        for_aws=False,
        log=log,
        after=fixups.apply,
        poll_seconds=0.2,
        version=version,
    )
