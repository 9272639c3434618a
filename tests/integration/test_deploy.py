"""Deploying one stack over what is already there, on a real CloudFormation API (moto over HTTP)."""

from __future__ import annotations

import json
from typing import Any

from localcloud import deploy
from localcloud.moto_server import MotoServer

_OLD_FOUNDATION = {
    "Parameters": {"Retired": {"Type": "String", "Default": "x"}},
    "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
}


def test_a_parameter_the_new_template_no_longer_declares_is_not_carried_over(
    cloud: MotoServer,
) -> None:
    # given a foundation stack deployed from an older template, with a parameter since retired
    cfn = cloud.client("cloudformation")
    cfn.create_stack(
        StackName="gro-foundation",
        TemplateBody=json.dumps(_OLD_FOUNDATION),
        Parameters=[{"ParameterKey": "Retired", "ParameterValue": "kept"}],
    )

    sent: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(params)

    cfn.meta.events.register("provide-client-params.cloudformation.UpdateStack", capture)
    try:
        # when today's foundation is deployed over it
        outputs = deploy.deploy(cloud.client, "foundation")
    finally:
        cfn.meta.events.unregister("provide-client-params.cloudformation.UpdateStack", capture)

    # then the update names only parameters the template declares (AWS refuses any other;
    # moto does not, so what was sent is what is checked)
    (update,) = sent
    assert "Retired" not in {p["ParameterKey"] for p in update["Parameters"]}
    stack = cfn.describe_stacks(StackName="gro-foundation")["Stacks"][0]
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    assert "LandingBucketName" in outputs
