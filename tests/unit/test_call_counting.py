"""localcloud.calls: who made each AWS request, for which operation, in AWS's billing units.

The requests are the ones botocore really sends (captured before they leave, no socket); the
application behind the counter is a stand-in that answers what moto would.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import pytest
from botocore.config import Config

from localcloud.calls import Usage


class Captured(Exception):
    """Raised by the before-send hook: the request went no further."""

    def __init__(self, request: Any) -> None:
        self.request = request


def sent(
    service: str, call: Callable[[Any], Any], *, app: str | None = None, key: str = "testing"
) -> dict[str, Any]:
    """The WSGI environ of the request `call(client)` makes, as it would reach moto."""
    client = boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key="secret", region_name="eu-west-2"
    ).client(
        service,
        endpoint_url="http://127.0.0.1:9",
        config=Config(user_agent_appid=app, retries={"total_max_attempts": 1}),
    )

    def capture(request: Any, **_: Any) -> None:
        raise Captured(request)

    client.meta.events.register("before-send", capture)
    with pytest.raises(Captured) as caught:
        call(client)
    request = caught.value.request
    url = urlsplit(request.url)
    body = request.body or b""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = body.read()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "PATH_INFO": unquote(url.path) or "/",
        "QUERY_STRING": url.query,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in request.headers.items():
        value = value.decode() if isinstance(value, bytes) else value
        wsgi = name.upper().replace("-", "_")
        if wsgi in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[wsgi] = value
        else:
            environ[f"HTTP_{wsgi}"] = value
    return environ


def serve(usage: Usage, environ: dict[str, Any], answer: bytes = b"{}") -> bytes:
    """Pass one request through the counter to a stand-in application."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"].read()  # the application reads the body as moto does
        start_response("200 OK", [])
        return [answer]

    return b"".join(usage.middleware(app)(environ, lambda *_: None))


def counted(usage: Usage) -> dict[str, Any]:
    return dict(usage.since()["calls"])


def test_rest_operations_are_told_apart_by_method_uri_query_and_required_headers() -> None:
    usage = Usage()
    for call in (
        lambda s3: s3.put_object(Bucket="landing", Key="incoming/a.xml", Body=b"x"),
        lambda s3: s3.copy_object(
            Bucket="landing", Key="quarantine/a.xml", CopySource="landing/incoming/a.xml"
        ),
        lambda s3: s3.get_object(Bucket="landing", Key="incoming/a.xml"),
        lambda s3: s3.head_object(Bucket="landing", Key="incoming/a.xml"),
        lambda s3: s3.list_objects_v2(Bucket="landing", Prefix="incoming/"),
        lambda s3: s3.delete_object(Bucket="landing", Key="incoming/a.xml"),
        lambda s3: s3.delete_objects(Bucket="landing", Delete={"Objects": [{"Key": "a"}]}),
        lambda s3: s3.put_object_tagging(
            Bucket="landing", Key="a", Tagging={"TagSet": [{"Key": "k", "Value": "v"}]}
        ),
    ):
        serve(usage, sent("s3", call, app="gro-reaper-finish-file"))
    serve(
        usage,
        sent("lambda", lambda aws: aws.invoke(FunctionName="gro-publisher-enrich"), app="platform"),
    )

    assert counted(usage) == {
        "gro-reaper-finish-file": {
            f"s3.{op}": {"calls": 1}
            for op in (
                "PutObject",
                "CopyObject",
                "GetObject",
                "HeadObject",
                "ListObjectsV2",
                "DeleteObject",
                "DeleteObjects",
                "PutObjectTagging",
            )
        },
        "platform": {"lambda.Invoke": {"calls": 1}},
    }


def test_json_and_query_protocol_operations_are_named_from_the_target_and_the_action() -> None:
    usage = Usage()
    serve(
        usage,
        sent(
            "sns",
            lambda sns: sns.publish(TopicArn="arn:aws:sns:eu-west-2:1:t", Message="m"),
            app="platform",
        ),
    )
    serve(usage, sent("stepfunctions", lambda sfn: sfn.list_state_machines(), app="x"))
    serve(usage, sent("sts", lambda sts: sts.get_caller_identity()))

    assert counted(usage) == {
        "platform": {"sns.Publish": {"calls": 1, "billed": 1}},
        "x": {"stepfunctions.ListStateMachines": {"calls": 1}},
        "operator": {"sts.GetCallerIdentity": {"calls": 1}},
    }


def test_sqs_requests_are_billed_per_64_kb_chunk_and_batches_count_their_messages() -> None:
    usage = Usage()
    url = "http://127.0.0.1:9/123456789012/gro-records-to-transform"
    small = [{"Id": str(i), "MessageBody": "r" * 100} for i in range(10)]
    large = [{"Id": str(i), "MessageBody": "r" * 20_000} for i in range(10)]  # ~200 KB

    for entries in (small, large):
        serve(
            usage,
            sent(
                "sqs",
                lambda sqs, e=entries: sqs.send_message_batch(QueueUrl=url, Entries=e),
                app="gro-splitter-split",
            ),
        )

    (count,) = counted(usage)["gro-splitter-split"].values()
    assert count == {"calls": 2, "billed": 1 + 4, "messages": 20}


def test_an_empty_receive_is_counted_apart_from_the_messages_received() -> None:
    usage = Usage()
    url = "http://127.0.0.1:9/123456789012/gro-events-to-publish"
    messages = {"Messages": [{"MessageId": str(i), "Body": "b"} for i in range(3)]}

    for answer in (json.dumps(messages).encode(), b"{}"):
        environ = sent("sqs", lambda sqs: sqs.receive_message(QueueUrl=url), app="lambda-esm")
        assert serve(usage, environ, answer) == answer  # the answer goes through untouched

    assert counted(usage) == {
        "lambda-esm": {"sqs.ReceiveMessage": {"calls": 2, "billed": 2, "messages": 3, "empty": 1}}
    }


def test_step_functions_integrations_are_known_by_the_key_moto_signs_them_with() -> None:
    usage = Usage()

    invoke = sent("lambda", lambda aws: aws.invoke(FunctionName="gro-splitter-split"), key="ak")
    serve(usage, invoke)

    assert counted(usage) == {"states": {"lambda.Invoke": {"calls": 1}}}


def test_unsigned_requests_are_not_aws_calls_and_are_not_counted() -> None:
    usage = Usage()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/moto-api/reset",
        "QUERY_STRING": "",
        "CONTENT_LENGTH": "0",
        "wsgi.input": io.BytesIO(b""),
    }

    serve(usage, environ)

    assert counted(usage) == {}


def test_a_mark_keeps_what_came_before_out_of_what_came_after() -> None:
    usage = Usage()

    def get(s3: Any) -> Any:
        return s3.get_object(Bucket="b", Key="k")

    fetch, fetch_again = (sent("s3", get, app="gro-splitter-split") for _ in range(2))
    serve(usage, fetch)
    usage.invoked("gro-splitter-split", memory_mb=512, architecture="x86_64", duration_s=1.0)
    usage.logged("gro-splitter-split", "before")

    mark = usage.mark()
    serve(usage, fetch_again)
    usage.invoked("gro-splitter-split", memory_mb=512, architecture="x86_64", duration_s=0.25)
    usage.logged("gro-splitter-split", "after!")

    after = usage.since(mark)
    assert after["calls"] == {"gro-splitter-split": {"s3.GetObject": {"calls": 1}}}
    assert after["lambda"]["gro-splitter-split"]["invocations"] == 1
    assert after["logs"] == {"gro-splitter-split": {"bytes": 6, "events": 1}}
    assert usage.since()["calls"]["gro-splitter-split"]["s3.GetObject"] == {"calls": 2}
    with pytest.raises(KeyError, match="no such mark"):
        usage.since(mark + 1)


def test_lambda_time_is_billed_per_started_millisecond_times_the_configured_memory() -> None:
    usage = Usage()
    for seconds in (0.0101, 0.020, 0.030, 0.040, 1.000):
        usage.invoked(
            "gro-transformer-transform",
            memory_mb=256,
            architecture="arm64",
            duration_s=seconds,
            init_s=0.5 if seconds == 0.0101 else None,
        )
    usage.invoked(
        "gro-transformer-transform",
        memory_mb=256,
        architecture="arm64",
        duration_s=0.005,
        error=True,
    )

    stage = usage.since()["lambda"]["gro-transformer-transform"]

    billed_ms = 11 + 20 + 30 + 40 + 1000 + 5 + 500  # each rounded up, the init included
    assert stage["gb_seconds"] == pytest.approx(billed_ms / 1000 * 256 / 1024, abs=1e-4)
    assert (stage["invocations"], stage["errors"], stage["inits"]) == (6, 1, 1)
    assert (stage["memory_mb"], stage["architecture"]) == (256, "arm64")
    assert stage["p50_ms"] == pytest.approx(20.0)
    assert stage["p95_ms"] == pytest.approx(1000.0)
    assert stage["init_seconds"] == pytest.approx(0.5)


def test_traces_are_counted_once_each_and_metrics_once_per_name_and_dimensions() -> None:
    usage = Usage()
    first, second = "1-5f000000-aaaaaaaaaaaaaaaaaaaaaaaa", "1-5f000000-bbbbbbbbbbbbbbbbbbbbbbbb"
    usage.traced([first, first])  # two documents of one trace
    usage.traced([second])
    emf = {
        "_aws": {
            "CloudWatchMetrics": [
                {
                    "Namespace": "gro",
                    "Dimensions": [["service"]],
                    "Metrics": [{"Name": "RecordsPublished"}, {"Name": "BatchSize"}],
                }
            ]
        },
        "service": "publisher",
        "RecordsPublished": 3,
    }
    usage.logged("gro-publisher-publish", json.dumps(emf), emf)
    usage.logged("gro-publisher-publish", json.dumps(emf), emf)

    after = usage.since()
    assert after["xray_traces"] == 2
    assert after["metrics"] == 2
    assert after["logs"]["gro-publisher-publish"]["events"] == 2
