"""Tracing on the local cloud: the SDK's datagrams reach moto's X-Ray through the local daemon,
SendMessageBatch keeps each entry's AWSTraceHeader, and a deployed function's own subsegments
and the function segment the runtime emits for it are stored and found by `ingest trace`."""

from __future__ import annotations

import io
import json
import secrets
import sysconfig
import textwrap
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_xray_sdk.core.emitters.udp_emitter import UDPEmitter
from aws_xray_sdk.core.models.segment import Segment
from aws_xray_sdk.core.models.subsegment import Subsegment

from ingest_cli import traces
from localcloud.moto_server import MotoServer
from localcloud.pollers import EventSourcePollers
from localcloud.xray_daemon import SegmentDocument, XRayDaemon

pytestmark = pytest.mark.timeout(90)

ROLE = "arn:aws:iam::123456789012:role/probe"
PROBE_HANDLER = textwrap.dedent(
    '''
    """A traced probe: X-Ray SDK subsegments, and Powertools' tracer, as the services use them."""
    import json
    import os

    from aws_lambda_powertools import Tracer
    from aws_xray_sdk.core import xray_recorder

    tracer = Tracer(service="probe", auto_patch=False)


    @tracer.capture_lambda_handler(capture_response=False)
    def consume(event, context):
        headers = []
        for record in event["Records"]:
            body = json.loads(record["body"])
            with xray_recorder.in_subsegment("record") as sub:
                sub.put_annotation("service", "probe")
                sub.put_annotation("service_version", "0.0.1")
                sub.put_annotation("operation", "probe")
                sub.put_annotation("event_id", body["event_id"])
                sub.put_annotation("outcome", "ok")
            headers.append(record["attributes"].get("AWSTraceHeader"))
        with open(os.environ["CALL_LOG"], "a") as log:
            line = {
                "trace": os.environ.get("_X_AMZN_TRACE_ID"),
                "headers": headers,
                "tracer_disabled": tracer.disabled,
                "daemon": os.environ.get("AWS_XRAY_DAEMON_ADDRESS"),
            }
            log.write(json.dumps(line) + "\\n")
        return {"batchItemFailures": []}


    @tracer.capture_lambda_handler(capture_response=False)
    def boom(event, context):
        raise ValueError("kaboom")
    '''
)


@pytest.fixture(scope="module")
def xray_daemon() -> Iterator[XRayDaemon]:
    holder: dict[str, MotoServer] = {}

    def put(documents: list[SegmentDocument]) -> dict[str, Any]:
        return holder["server"].put_trace_segments([d.text for d in documents])

    daemon = XRayDaemon(put)
    daemon.start()
    daemon.holder = holder  # type: ignore[attr-defined]
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def moto_server(xray_daemon: XRayDaemon) -> Iterator[MotoServer]:
    """This module's MotoServer (overriding conftest's): its functions trace to the daemon."""
    server = MotoServer(
        runtime_path=[Path(sysconfig.get_paths()["purelib"])],
        xray_daemon_address=xray_daemon.address,
    )
    server.start()
    xray_daemon.holder["server"] = server  # type: ignore[attr-defined]
    yield server
    server.stop()


def trace_id() -> str:
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


def stored(cloud: MotoServer, *trace_ids: str) -> list[dict[str, Any]]:
    answer = cloud.client("xray").batch_get_traces(TraceIds=list(trace_ids))
    return [
        json.loads(segment["Document"])
        for trace in answer["Traces"]
        for segment in trace["Segments"]
    ]


def wait_for(condition: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_the_sdk_s_datagrams_end_up_in_batch_get_traces(
    cloud: MotoServer, xray_daemon: XRayDaemon
) -> None:
    before = xray_daemon.stats()
    emitter = UDPEmitter(xray_daemon.address)
    segment = Segment("probe-segment", traceid=trace_id())
    child = Subsegment("streamed-child", "local", segment)
    segment.add_subsegment(child)  # sets its parent_id, as the recorder does
    child.put_annotation("event_id", "evt-datagram")
    child.close()
    segment.remove_subsegment(child)  # streamed out on its own, as in Lambda mode
    segment.put_annotation("file_id", "f-1")
    segment.close()

    emitter.send_entity(child)
    emitter.send_entity(segment)
    emitter._send_data("not a segment document")  # counted, not stored
    assert xray_daemon.flush()

    documents = wait_for(lambda: stored(cloud, segment.trace_id))
    by_id = {d["id"]: d for d in documents}
    assert by_id.keys() == {segment.id, child.id}
    assert by_id[child.id]["type"] == "subsegment"
    assert by_id[child.id]["parent_id"] == segment.id
    assert by_id[child.id]["annotations"] == {"event_id": "evt-datagram"}
    after = xray_daemon.stats()
    assert after["stored"] - before["stored"] == 2
    assert after["malformed"] - before["malformed"] == 1
    assert after["unprocessed"] == after["failed"] == 0
    # and `ingest trace`'s local read (no filter: moto refuses one) finds them in the window
    found = traces.fetch(cloud.client("xray"), since_s=600, filter_expression=None, local=True)
    assert {segment.id, child.id} <= {d["id"] for d in found}


def test_the_daemon_s_in_process_store_answers_as_put_trace_segments_does(
    cloud: MotoServer,
) -> None:
    # given one good document and one X-Ray refuses (no name)
    trace = trace_id()
    segment = Segment("stored-in-process", traceid=trace)
    segment.close()
    bad = {"id": "0123456789abcdef", "trace_id": trace, "start_time": time.time()}

    # when the daemon's store is given both
    answer = cloud.put_trace_segments([segment.serialize(), json.dumps(bad)])

    # then the good one is stored, readable over the API, and the bad one refused by its id,
    # as PutTraceSegments answers
    assert [d["id"] for d in stored(cloud, trace)] == [segment.id]
    refused = answer["UnprocessedTraceSegments"]
    assert [(r["Id"], r["ErrorCode"]) for r in refused] == [("0123456789abcdef", "MissingParam")]


def test_send_message_batch_keeps_each_entry_s_aws_trace_header(cloud: MotoServer) -> None:
    sqs = cloud.client("sqs")
    url = sqs.create_queue(QueueName="probe-headers")["QueueUrl"]
    headers = {
        str(n): f"Root={trace_id()};Parent={secrets.token_hex(8)};Sampled=1" for n in range(3)
    }
    entries: list[dict[str, Any]] = [
        {
            "Id": n,
            "MessageBody": f"m{n}",
            "MessageSystemAttributes": {
                "AWSTraceHeader": {"DataType": "String", "StringValue": header}
            },
        }
        for n, header in headers.items()
    ]
    entries.append({"Id": "bare", "MessageBody": "mbare"})
    sent = sqs.send_message_batch(QueueUrl=url, Entries=entries)
    assert len(sent["Successful"]) == 4

    received: dict[str, Any] = {}
    while len(received) < 4:
        for message in sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["AWSTraceHeader"]
        ).get("Messages", []):
            received[message["Body"]] = message.get("Attributes", {}).get("AWSTraceHeader")

    assert received == {**{f"m{n}": h for n, h in headers.items()}, "mbare": None}


def deploy(cloud: MotoServer, name: str, handler: str, env: dict[str, str]) -> None:
    iam = cloud.client("iam")
    if not iam.list_roles()["Roles"]:
        iam.create_role(RoleName="probe", AssumeRolePolicyDocument="{}")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("traced_probe.py", PROBE_HANDLER)
    cloud.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler=f"traced_probe.{handler}",
        Code={"ZipFile": buffer.getvalue()},
        Timeout=10,
        Environment={"Variables": env},
        TracingConfig={"Mode": "Active"},
    )


def test_a_traced_function_s_segment_and_subsegments_are_stored_and_found(
    cloud: MotoServer, xray_daemon: XRayDaemon, tmp_path: Path
) -> None:
    lost_before = xray_daemon.stats()["lost"]
    sqs, lam = cloud.client("sqs"), cloud.client("lambda")
    url = sqs.create_queue(QueueName="probe-traced", Attributes={"VisibilityTimeout": "5"})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    call_log = tmp_path / "calls.jsonl"
    deploy(cloud, "probe-traced", "consume", {"CALL_LOG": str(call_log)})
    lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="probe-traced",
        BatchSize=10,
        MaximumBatchingWindowInSeconds=1,
        FunctionResponseTypes=["ReportBatchItemFailures"],
    )
    # one producer's trace; each record's header names its own sending subsegment as Parent
    root, senders = trace_id(), [secrets.token_hex(8) for _ in range(3)]
    headers = [f"Root={root};Parent={sender};Sampled=1" for sender in senders]
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": str(n),
                "MessageBody": json.dumps({"event_id": f"evt-{n}"}),
                "MessageSystemAttributes": {
                    "AWSTraceHeader": {"DataType": "String", "StringValue": header}
                },
            }
            for n, header in enumerate(headers)
        ],
    )
    pollers = EventSourcePollers(
        sqs=sqs, lambda_client=lam, runtime=cloud.runtime, spec_for=cloud.spec_for
    )
    pollers.sync()
    try:
        wait_for(
            lambda: (
                call_log.exists()
                and sum(
                    len(json.loads(line)["headers"]) for line in call_log.read_text().splitlines()
                )
                >= 3
            )
        )
    finally:
        pollers.stop()
    calls = [json.loads(line) for line in call_log.read_text().splitlines()]

    # Powertools' tracer is on in the container, and the SDK sends to the local daemon
    assert all(c["tracer_disabled"] is False for c in calls)
    assert {c["daemon"] for c in calls} == {xray_daemon.address}
    # every record carries its own header; the invocation continues the first record's trace,
    # under a Parent of its own: the function segment's id
    first = calls[0]
    assert first["headers"] == headers[: len(first["headers"])]
    invocation = dict(part.split("=", 1) for part in first["trace"].split(";"))
    assert invocation["Root"] == root
    assert invocation["Parent"] not in senders

    def documents() -> list[dict[str, Any]] | None:
        xray_daemon.flush(1.0)
        docs = stored(cloud, root)
        names = {d["name"] for d in docs}
        wanted = {"probe-traced", "record", "## consume"}
        return (
            docs
            if wanted <= names and len([d for d in docs if d["name"] == "record"]) >= 3
            else None
        )

    docs = wait_for(documents)
    [function] = [d for d in docs if d.get("origin") == "AWS::Lambda::Function"]
    assert function["id"] == invocation["Parent"]
    assert function["parent_id"] == senders[0]
    assert function["trace_id"] == root
    assert function["end_time"] > function["start_time"]
    assert "fault" not in function
    assert function["aws"]["function_arn"].endswith(":function:probe-traced")
    # Powertools' handler subsegment (ColdStart, Service) hangs off the function segment
    handler = next(d for d in docs if d["name"] == "## consume")
    assert handler["parent_id"] == function["id"]
    assert handler["annotations"]["Service"] == "probe"

    # and `ingest trace`'s query layer finds the record's steps from the local cloud's X-Ray
    found = traces.fetch(cloud.client("xray"), since_s=600, filter_expression=None, local=True)
    record = traces.record_steps(found, "evt-0")
    assert [(s.kind, s.service, s.operation, s.outcome) for s in record.steps] == [
        ("function", "probe", "invocation", "ok"),
        ("step", "probe", "probe", "ok"),
    ]
    assert record.steps[0].function == "probe-traced"
    assert record.steps[0].service_version == "0.0.1"
    assert xray_daemon.stats()["lost"] == lost_before


def test_a_failed_invocation_s_segment_is_a_fault(
    cloud: MotoServer, xray_daemon: XRayDaemon
) -> None:
    deploy(cloud, "probe-boom", "boom", {})
    root = trace_id()

    lam = cloud.client("lambda")
    lam.meta.events.register(
        "before-send.lambda.Invoke",
        lambda request, **_: request.headers.__setitem__(
            "X-Amzn-Trace-Id", f"Root={root};Parent={secrets.token_hex(8)};Sampled=1"
        ),
    )
    try:
        answer = lam.invoke(FunctionName="probe-boom", Payload=b"{}")
    finally:
        lam.meta.events.unregister("before-send.lambda.Invoke")
    assert answer["FunctionError"] == "Unhandled"

    def function() -> dict[str, Any] | None:
        xray_daemon.flush(1.0)
        return next(
            (d for d in stored(cloud, root) if d.get("origin") == "AWS::Lambda::Function"), None
        )

    segment = wait_for(function)
    assert segment["fault"] is True
    assert segment["cause"]["exceptions"][0]["type"] == "ValueError"
    assert "kaboom" not in json.dumps(segment)  # the error's type only, never its message


def test_what_the_daemon_cannot_store_is_counted_not_dropped_silently() -> None:
    answers: list[Any] = [
        {"UnprocessedTraceSegments": [{"Id": "x", "ErrorCode": "InvalidSegment"}]},
        ConnectionError("moto is gone"),
    ]

    def put(documents: list[SegmentDocument]) -> dict[str, Any]:
        answer = answers.pop(0) if answers else {}
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)

    daemon = XRayDaemon(put, batch=2)
    daemon.start()
    try:
        emitter = UDPEmitter(daemon.address)
        for n in range(4):
            segment = Segment(f"s{n}", traceid=trace_id())
            segment.close()
            emitter.send_entity(segment)
            assert daemon.flush(), "each datagram on its own batch"
        stats = daemon.stats()
    finally:
        daemon.stop()

    assert stats["received"] == 4
    # moto left the first call's document unprocessed, the second call failed (its document
    # lost), the last two were stored
    assert (stats["unprocessed"], stats["failed"], stats["stored"]) == (1, 1, 2)
    assert stats["lost"] >= 2
