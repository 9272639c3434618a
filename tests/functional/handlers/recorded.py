"""Recorded AWS events and a fake Lambda context, for calling handlers in-process.

The envelopes (SQS, EventBridge, SNS) are kept as recorded JSON under `events/`; the message
bodies are the contract's golden samples under `contracts/samples/v1/`. A helper only puts a
body into a recorded envelope, so the shape Powertools parses stays the one AWS documents.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).parent / "events"
SAMPLES = Path(__file__).parents[3] / "contracts" / "samples" / "v1"
ACCOUNT = "123456789012"
REGION = "us-east-1"


@functools.cache
def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def event(name: str) -> dict[str, Any]:
    """A recorded event from `events/` (a fresh copy: handlers may not share mutations)."""
    out: dict[str, Any] = copy.deepcopy(_read(EVENTS / name))
    return out


def sample(name: str) -> dict[str, Any]:
    """A golden sample of the contracts, as JSON (a fresh copy)."""
    out: dict[str, Any] = copy.deepcopy(_read(SAMPLES / f"{name}.json"))
    return out


def sample_text(name: str) -> str:
    """A golden sample of the contracts, as its file's text (a message body)."""
    return (SAMPLES / f"{name}.json").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Message:
    """One SQS message to put in a batch."""

    body: str
    receive_count: int = 1
    message_id: str | None = None


def sqs_record(
    body: str, *, queue: str, receive_count: int = 1, message_id: str | None = None
) -> dict[str, Any]:
    """The recorded SQS record with `body`, from `queue`, on its `receive_count`-th receipt."""
    record: dict[str, Any] = event("sqs_event.json")["Records"][0]
    record["messageId"] = message_id or str(uuid.uuid4())
    record["receiptHandle"] = f"{record['receiptHandle'][:64]}{record['messageId']}"
    record["body"] = body
    record["md5OfBody"] = hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    record["eventSourceARN"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"
    return record


def sqs_event(*messages: Message | str, queue: str) -> dict[str, Any]:
    """An SQS event for a Lambda event source mapping, one record per message, in order."""
    records = []
    for m in messages:
        m = m if isinstance(m, Message) else Message(m)
        records.append(
            sqs_record(m.body, queue=queue, receive_count=m.receive_count, message_id=m.message_id)
        )
    return {"Records": records}


def object_created(
    *, bucket: str = "landing", key: str | None = None, version_id: str | None = None
) -> str:
    """The recorded EventBridge "Object Created" event, as the body EventBridge puts on SQS."""
    out = event("s3_object_created.json")
    out["detail"]["bucket"]["name"] = bucket
    out["resources"] = [f"arn:aws:s3:::{bucket}"]
    if key is not None:
        out["detail"]["object"]["key"] = key
    if version_id is not None:
        out["detail"]["object"]["version-id"] = version_id
    return json.dumps(out)


def sns_envelope(message: str) -> str:
    """The recorded SNS notification envelope around `message` (SNS -> SQS, not raw)."""
    out = event("sns_notification.json")
    out["Message"] = message
    return json.dumps(out)


class FakeLambdaContext:
    """What a Lambda handler is given as its context; the time left is fixed."""

    def __init__(self, function_name: str, *, remaining_millis: int = 300_000) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2022/03/01/[$LATEST]0123456789abcdef0123456789abcdef"
        self._remaining_millis = remaining_millis

    def get_remaining_time_in_millis(self) -> int:
        return self._remaining_millis
