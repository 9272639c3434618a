"""The local cloud runs deployed Lambda code: Invoke, Step Functions tasks and SQS mappings."""

from __future__ import annotations

import base64
import io
import json
import os
import textwrap
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from localcloud.moto_server import MotoServer
from localcloud.pollers import EventSourcePollers

pytestmark = pytest.mark.timeout(60)

PROBE_HANDLER = textwrap.dedent(
    '''
    """Probe functions deployed by the integration tests."""
    import importlib
    import json
    import os
    import time

    CALLS = 0  # module state: survives warm invocations, reset by a cold start


    def echo(event, context):
        global CALLS
        CALLS += 1
        print("echo called")  # the function's log, never the result
        return {
            "event": event,
            "stage": os.environ["STAGE"],
            "calls": CALLS,
            "pid": os.getpid(),
            "function_name": context.function_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        }


    def boom(event, context):
        raise ValueError("kaboom")


    def partial(event, context):
        with open(os.environ["CALL_LOG"], "a") as log:
            trace = os.environ.get("_X_AMZN_TRACE_ID")
            log.write(json.dumps({"records": event["Records"], "trace": trace}) + "\\n")
        failed = [r["messageId"] for r in event["Records"] if r["body"] == "fail"]
        return {"batchItemFailures": [{"itemIdentifier": m} for m in failed]}


    def sleepy(event, context):
        time.sleep(event.get("seconds", 30))
        return "awake"


    def imports(event, context):
        return importlib.import_module(event["module"]).__name__
    '''
)
ROLE = "arn:aws:iam::123456789012:role/probe"
TRACE = "Root=1-6745f0a1-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"


def probe_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("probe_handler.py", PROBE_HANDLER)
    return buffer.getvalue()


def deploy(
    cloud: MotoServer, name: str, func: str, env: dict[str, str] | None = None, timeout: int = 3
) -> None:
    iam = cloud.client("iam")
    if not iam.list_roles()["Roles"]:
        iam.create_role(RoleName="probe", AssumeRolePolicyDocument="{}")
    cloud.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler=f"probe_handler.{func}",
        Code={"ZipFile": probe_zip()},
        Timeout=timeout,
        Environment={"Variables": env or {}},
    )


def invoke(cloud: MotoServer, name: str, event: Any = None) -> tuple[dict[str, Any], Any]:
    response = cloud.client("lambda").invoke(
        FunctionName=name, Payload=json.dumps(event or {}), LogType="Tail"
    )
    return response, json.loads(response["Payload"].read())


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_invoke_runs_the_deployed_code_with_its_environment(cloud: MotoServer) -> None:
    deploy(cloud, "probe-echo", "echo", {"STAGE": "alpha"})

    cold, first = invoke(cloud, "probe-echo", {"x": 1})
    _, second = invoke(cloud, "probe-echo", {"x": 2})

    assert cold["StatusCode"] == 200
    assert "FunctionError" not in cold
    assert first["event"] == {"x": 1}
    assert first["stage"] == "alpha"
    assert first["function_name"] == "probe-echo"
    assert first["endpoint"] == cloud.endpoint
    assert 0 < first["remaining_ms"] <= 3000
    assert "echo called" in base64.b64decode(cold["LogResult"]).decode()
    # Its own process, kept warm with its module state; nothing leaks into this process.
    assert first["pid"] == second["pid"] != os.getpid()
    assert (first["calls"], second["calls"]) == (1, 2)
    assert "STAGE" not in os.environ


def test_a_handler_exception_is_an_unhandled_function_error(cloud: MotoServer) -> None:
    deploy(cloud, "probe-boom", "boom")

    response, payload = invoke(cloud, "probe-boom")

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ValueError"
    assert payload["errorMessage"] == "kaboom"
    assert "[ERROR] ValueError: kaboom" in base64.b64decode(response["LogResult"]).decode()


def test_concurrent_functions_each_see_their_own_environment(cloud: MotoServer) -> None:
    deploy(cloud, "probe-alpha", "echo", {"STAGE": "alpha"})
    deploy(cloud, "probe-beta", "echo", {"STAGE": "beta"})
    names = ["probe-alpha", "probe-beta"] * 12

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda name: invoke(cloud, name)[1], names))

    assert [r["stage"] for r in results] == [n.removeprefix("probe-") for n in names]


def test_a_handler_past_its_timeout_is_killed_with_sandbox_timedout(cloud: MotoServer) -> None:
    deploy(cloud, "probe-sleepy", "sleepy", timeout=1)

    started = time.monotonic()
    response, payload = invoke(cloud, "probe-sleepy", {"seconds": 30})
    elapsed = time.monotonic() - started

    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    assert 1.0 <= elapsed < 3.0
    # The killed container is replaced by a fresh one.
    assert invoke(cloud, "probe-sleepy", {"seconds": 0})[1] == "awake"


def test_the_bundle_sees_runtime_libraries_but_not_the_workspace(cloud: MotoServer) -> None:
    deploy(cloud, "probe-imports", "imports")

    assert invoke(cloud, "probe-imports", {"module": "boto3"})[1] == "boto3"
    for module in ("contracts", "localcloud", "pollers"):
        response, payload = invoke(cloud, "probe-imports", {"module": module})
        assert response["FunctionError"] == "Unhandled"
        assert payload["errorType"] == "ModuleNotFoundError"


def run_state_machine(cloud: MotoServer, name: str, definition: dict[str, Any]) -> dict[str, Any]:
    sfn = cloud.client("stepfunctions")
    arn = sfn.create_state_machine(
        name=name, definition=json.dumps(definition), roleArn=f"{ROLE}-sfn"
    )["stateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=arn, name=f"{name}-1", input='{"n": 7}')
    described: dict[str, Any] = {}

    def finished() -> bool:
        described.update(sfn.describe_execution(executionArn=execution["executionArn"]))
        return described["status"] != "RUNNING"

    wait_for(finished)
    return described


def test_a_step_functions_lambda_task_runs_the_handler(cloud: MotoServer) -> None:
    deploy(cloud, "probe-echo", "echo", {"STAGE": "sfn"})
    task = {
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {"FunctionName": "probe-echo", "Payload.$": "$"},
        "ResultSelector": {"stage.$": "$.Payload.stage", "event.$": "$.Payload.event"},
        "End": True,
    }

    execution = run_state_machine(cloud, "echo", {"StartAt": "Echo", "States": {"Echo": task}})

    assert execution["status"] == "SUCCEEDED"
    assert json.loads(execution["output"]) == {"stage": "sfn", "event": {"n": 7}}


def test_a_step_functions_catch_on_the_error_name_routes_to_fail(cloud: MotoServer) -> None:
    deploy(cloud, "probe-boom", "boom")
    definition = {
        "StartAt": "Boom",
        "States": {
            "Boom": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "probe-boom", "Payload.$": "$"},
                "Catch": [{"ErrorEquals": ["ValueError"], "Next": "Failed"}],
                "End": True,
            },
            "Failed": {"Type": "Fail", "Error": "CaughtValueError", "Cause": "caught"},
        },
    }

    execution = run_state_machine(cloud, "boom", definition)

    assert execution["status"] == "FAILED"
    assert execution["error"] == "CaughtValueError"


def test_sqs_mapping_deletes_successes_and_redrives_reported_failures(
    cloud: MotoServer, tmp_path: Path
) -> None:
    sqs, lam = cloud.client("sqs"), cloud.client("lambda")
    dlq_url = sqs.create_queue(QueueName="probe-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {"deadLetterTargetArn": dlq_arn["Attributes"]["QueueArn"], "maxReceiveCount": 2}
    queue_url = sqs.create_queue(
        QueueName="probe-work",
        Attributes={"VisibilityTimeout": "1", "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    queue_arn = queue_arn["Attributes"]["QueueArn"]
    call_log = tmp_path / "calls.jsonl"
    deploy(cloud, "probe-partial", "partial", {"CALL_LOG": str(call_log)})
    lam.create_event_source_mapping(
        EventSourceArn=queue_arn,
        FunctionName="probe-partial",
        BatchSize=10,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    for body in ["m1", "m2", "fail", "m3", "m4"]:
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "probe"}},
            MessageSystemAttributes={
                "AWSTraceHeader": {"DataType": "String", "StringValue": TRACE}
            },
        )

    # moto's own mapping would have invoked the function inside each SendMessage.
    assert not call_log.exists()
    depth = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert depth["ApproximateNumberOfMessages"] == "5"

    def dlq_depth() -> str:
        attributes = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["All"])
        return str(attributes["Attributes"]["ApproximateNumberOfMessages"])

    assert cloud.runtime is not None
    # One poller, so that the five messages arrive as one batch (two may split it, as on AWS).
    pollers = EventSourcePollers(
        sqs=sqs,
        lambda_client=lam,
        runtime=cloud.runtime,
        spec_for=cloud.spec_for,
        pollers_per_mapping=1,
    )
    pollers.sync()
    try:
        wait_for(lambda: dlq_depth() == "1" and pollers.idle())
    finally:
        pollers.stop()

    calls = [json.loads(line) for line in call_log.read_text().splitlines()]
    batches = [[r["body"] for r in call["records"]] for call in calls]
    assert batches == [["m1", "m2", "fail", "m3", "m4"], ["fail"]]
    first = calls[0]["records"][0]
    assert set(first) == {
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
        "md5OfMessageAttributes", "eventSource", "eventSourceARN", "awsRegion",
    }  # fmt: skip
    assert first["eventSource"] == "aws:sqs"
    assert first["eventSourceARN"] == queue_arn
    assert first["awsRegion"] == "us-east-1"
    assert first["messageAttributes"] == {
        "kind": {
            "stringValue": "probe",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
    }
    assert set(first["attributes"]) == {
        "ApproximateReceiveCount", "SentTimestamp", "SenderId",
        "ApproximateFirstReceiveTimestamp", "AWSTraceHeader",
    }  # fmt: skip
    assert calls[0]["trace"] == TRACE
    assert calls[1]["records"][0]["attributes"]["ApproximateReceiveCount"] == "2"
    depth = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert (
        depth["ApproximateNumberOfMessages"],
        depth["ApproximateNumberOfMessagesNotVisible"],
    ) == (
        "0",
        "0",
    )
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=dlq_url)["Messages"]] == ["fail"]
