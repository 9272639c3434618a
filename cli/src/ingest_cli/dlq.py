"""`ingest dlq list | show | redrive`: the pipeline's dead-letter queues, for an operator.

Works on the running local cloud (`ingest up`) by default, on another one with
`--endpoint-url URL`, and with neither on AWS with the default boto3 session (as `ingest deploy`).

The DLQs are found from the queues themselves: every `gro-` queue's RedrivePolicy names its DLQ.
Messages are looked at by receiving them with a short visibility timeout and releasing them at
once (ChangeMessageVisibilityBatch, VisibilityTimeout 0): a peek, so a sample on a busy queue.

Nothing of a record or an event is ever printed: a body is decoded into its contract and only
ids are picked from it (file id and key, ordinal, event id); a body that does not decode is
"undecodable", and nothing of it is shown.

Who gave up, why, after how many attempts and since when come from the message attributes a
consumer sets when it dead-letters a message itself (`contracts.deadletter`). A message SQS moved
after `maxReceiveCount` receives has none: its attempts are SQS's receive count (which a peek
also raises: this one is not counted, earlier ones are) and its `dead_lettered_at`, SQS's
SentTimestamp, is when it was first sent, not when it was moved.

Needs the `cloud` extra; `ingest_cli.cloud_parsers` holds the arguments and imports this module
only when a `dlq` command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from contracts.deadletter import DeadLetterAttributes
from contracts.messages import EventsConsumed, EventToPublish, FileRef, RecordToTransform, file_id
from ingest_cli.cloud_commands import _clients_for, running_cloud

PREFIX = "gro-"
DLQ_SUFFIX = "-dlq"
LIST_PEEK = 100  # messages peeked per DLQ by `dlq list` (for the oldest one's age)
PEEK_VISIBILITY = 30  # seconds a peeked message would stay hidden if we failed to release it
POLL_SECONDS = 1.0
SETTLE_SECONDS = 600  # --wait: the longest a redrive waits for its messages to be handled
CANCEL_WAIT_SECONDS = 30.0  # after Ctrl-C, how long to wait for the task to stop
LOST_SECONDS = 30.0  # how long a task may be missing from ListMessageMoveTasks
NO_REASON = "moved by the queue's redrive policy (no reason recorded)"
UNDECODABLE = "undecodable"
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# --- finding the DLQs --------------------------------------------------------------------------


@dataclass(frozen=True)
class Queue:
    name: str
    url: str
    arn: str


@dataclass(frozen=True)
class Dlq:
    """A dead-letter queue of the pipeline and the queues that redrive to it."""

    name: str  # short: `gro-events-to-publish-dlq` -> `events-to-publish`
    queue: Queue
    sources: tuple[Queue, ...]

    @property
    def source(self) -> str:
        return ",".join(s.name for s in self.sources)


def short_name(queue_name: str) -> str:
    return queue_name.removeprefix(PREFIX).removesuffix(DLQ_SUFFIX)


def discover(sqs: Any) -> list[Dlq]:
    """Every DLQ named by the RedrivePolicy of a `gro-` queue, by short name."""
    pages = sqs.get_paginator("list_queues").paginate(QueueNamePrefix=PREFIX)
    urls = [url for page in pages for url in page.get("QueueUrls", [])]
    queues: dict[str, Queue] = {}  # by ARN
    targets: dict[str, list[Queue]] = {}  # DLQ ARN -> its sources
    for url in urls:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["QueueArn", "RedrivePolicy"]
        )["Attributes"]
        queue = Queue(name=url.rsplit("/", 1)[-1], url=url, arn=attributes["QueueArn"])
        queues[queue.arn] = queue
        policy = attributes.get("RedrivePolicy")
        if policy:
            target = json.loads(policy).get("deadLetterTargetArn")
            if target:
                targets.setdefault(target, []).append(queue)
    found = []
    for arn, sources in targets.items():
        dead = queues.get(arn)
        if dead is None:  # a DLQ outside the prefix
            _, _, _, _, account, name = arn.split(":", 5)
            url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            dead = Queue(name=name, url=url, arn=arn)
        ordered = tuple(sorted(sources, key=lambda q: q.name))
        found.append(Dlq(name=short_name(dead.name), queue=dead, sources=ordered))
    return sorted(found, key=lambda d: d.name)


def _pick(dlqs: list[Dlq], wanted: str, command: str) -> Dlq | None:
    for dlq in dlqs:
        if wanted in (dlq.name, dlq.queue.name, dlq.queue.url, dlq.queue.arn):
            return dlq
    names = ", ".join(d.name for d in dlqs) or f"none found (no {PREFIX}* queue has a DLQ)"
    _say(f"ingest dlq {command}: no dead-letter queue {wanted!r}; valid names: {names}")
    return None


# --- looking at messages -----------------------------------------------------------------------


def depth(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages on a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
    )


def peek(sqs: Any, url: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` messages, received and at once made visible again (a sample)."""
    seen: dict[str, dict[str, Any]] = {}
    handles: list[str] = []
    empty = 0
    try:
        while len(seen) < limit and empty < 2:  # short polling may miss a few: try twice
            got = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, limit - len(seen)),
                VisibilityTimeout=PEEK_VISIBILITY,
                WaitTimeSeconds=0,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],  # (MessageSystemAttributeNames needs a newer boto3)
            ).get("Messages", [])
            empty = 0 if got else empty + 1
            for message in got:
                handles.append(message["ReceiptHandle"])
                seen.setdefault(message["MessageId"], message)
    finally:
        _release(sqs, url, handles)
    return list(seen.values())[:limit]


def _release(sqs: Any, url: str, handles: list[str]) -> None:
    for start in range(0, len(handles), 10):
        entries = [
            {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
            for i, handle in enumerate(handles[start : start + 10])
        ]
        sqs.change_message_visibility_batch(QueueUrl=url, Entries=entries)


def _iso(epoch_ms: int | str | None) -> str | None:
    if epoch_ms is None:
        return None
    moment = datetime.fromtimestamp(int(epoch_ms) / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- what a body may say: ids only -------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    contract: str
    event_id: str | None = None
    file_id: str | None = None
    key: str | None = None
    ordinal: int | None = None


def _file(ref: FileRef) -> dict[str, Any]:
    return {"file_id": file_id(ref), "key": ref.key}


def _record_to_transform(body: bytes) -> Ids:
    message = msgspec.json.decode(body, type=RecordToTransform)
    return Ids("RecordToTransform", ordinal=message.ordinal, **_file(message.file))


def _event_to_publish(body: bytes) -> Ids:
    message = msgspec.json.decode(body, type=EventToPublish)
    return Ids(
        "EventToPublish",
        event_id=message.event.source_id,
        ordinal=message.ordinal,
        **_file(message.file),
    )


def _events_consumed(body: bytes) -> Ids:
    return Ids("EventsConsumed", event_id=msgspec.json.decode(body, type=EventsConsumed).id)


class _S3Bucket(msgspec.Struct):
    name: str


class _S3Object(msgspec.Struct):
    key: str
    version_id: str | None = msgspec.field(default=None, name="version-id")


class _S3Detail(msgspec.Struct):
    bucket: _S3Bucket
    object: _S3Object


class _ObjectCreated(msgspec.Struct):
    """EventBridge's S3 "Object Created" event, as it lands on gro-file-arrivals (ids only)."""

    detail: _S3Detail


def _file_arrival(body: bytes) -> Ids:
    detail = msgspec.json.decode(body, type=_ObjectCreated).detail
    version = None if detail.object.version_id in (None, "null") else detail.object.version_id
    ref = FileRef(bucket=detail.bucket.name, key=detail.object.key, version_id=version)
    return Ids("S3ObjectCreated", **_file(ref))


# the body each queue carries, by the queue's short name
DECODERS: dict[str, Callable[[bytes], Ids]] = {
    "file-arrivals": _file_arrival,
    "records-to-transform": _record_to_transform,
    "events-to-publish": _event_to_publish,
    "events-consumed": _events_consumed,
}


def ids(queue: str, body: str) -> Ids | None:
    """The ids a body names, decoded with its queue's contract (any of ours for a queue we do
    not know); None when it does not decode. Never says why: the error may quote the body."""
    decoders = [DECODERS[queue]] if queue in DECODERS else list(DECODERS.values())
    for decode in decoders:
        try:
            return decode(body.encode())
        except (msgspec.DecodeError, UnicodeError):
            continue
    return None


def describe(queue: str, message: dict[str, Any]) -> dict[str, Any]:
    """One dead-lettered message: ids, who gave up, why, when. Nothing of the record."""
    system = message.get("Attributes", {})
    try:
        dead = DeadLetterAttributes.from_sqs(message.get("MessageAttributes", {}))
    except (msgspec.ValidationError, TypeError, ValueError):
        dead = None
    found = ids(queue, message.get("Body", ""))
    out: dict[str, Any] = {
        "message_id": message["MessageId"],
        "contract": UNDECODABLE if found is None else found.contract,
        "event_id": found and found.event_id,
        "file_id": found and found.file_id,
        "key": found and found.key,
        "ordinal": found and found.ordinal,
    }
    if dead is not None:
        out |= {
            "failed_by": dead.failed_by,
            "failed_by_version": dead.failed_by_version,
            "reason": dead.reason,
            "attempts": dead.attempts,
            "first_failure_at": _iso(dead.first_received_at),
        }
    else:  # moved by SQS after maxReceiveCount receives: only SQS's own counts
        received = int(system.get("ApproximateReceiveCount", 1))
        out |= {
            "failed_by": None,
            "failed_by_version": None,
            "reason": NO_REASON,
            "attempts": max(received - 1, 0),  # this peek's receive is not an attempt
            "first_failure_at": None,
        }
    out["dead_lettered_at"] = _iso(system.get("SentTimestamp"))
    return out


# --- the commands ------------------------------------------------------------------------------


def _sqs(args: argparse.Namespace, command: str) -> Any | None:
    """An SQS client on --endpoint-url, else the running local cloud, else AWS."""
    if args.endpoint_url:
        return _clients_for(args.endpoint_url)("sqs")
    state = running_cloud()
    if state is not None:
        return _clients_for(state["endpoint"])("sqs")
    import boto3

    session = boto3.session.Session()
    if session.get_credentials() is None:
        _say(
            f"ingest dlq {command}: no local cloud is running, no --endpoint-url and no AWS "
            "credentials: nothing to look at"
        )
        return None
    return session.client("sqs")


def _guarded(command: str, work: Callable[[Any], int], args: argparse.Namespace) -> int:
    sqs = _sqs(args, command)
    if sqs is None:
        return 1
    try:
        return work(sqs)
    except (BotoCoreError, ClientError) as err:  # AWS's messages name no message content
        _say(f"ingest dlq {command}: {err}")
        return 1


def _table(rows: list[list[str]]) -> Iterator[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()


def list_dlqs(args: argparse.Namespace) -> int:
    """`ingest dlq list`: every DLQ, its depth, the age of its oldest message, its source."""

    def work(sqs: Any) -> int:
        dlqs = discover(sqs)
        rows: list[dict[str, Any]] = []
        now = time.time()
        for dlq in dlqs:
            visible, in_flight = depth(sqs, dlq.queue.url)
            sent = [
                int(m["Attributes"]["SentTimestamp"])
                for m in (peek(sqs, dlq.queue.url, LIST_PEEK) if visible else [])
                if "SentTimestamp" in m.get("Attributes", {})
            ]
            rows.append(
                {
                    "name": dlq.name,
                    "depth": visible + in_flight,
                    "oldest_age_seconds": max(0, int(now - min(sent) / 1000)) if sent else None,
                    "source": dlq.source,
                    "queue": dlq.queue.name,
                    "url": dlq.queue.url,
                    "arn": dlq.queue.arn,
                }
            )
        if args.json:
            print(json.dumps(rows))
        elif rows:
            header = ["NAME", "DEPTH", "OLDEST_AGE_S", "SOURCE"]
            cells = [
                [r["name"], str(r["depth"]), _or_dash(r["oldest_age_seconds"]), r["source"]]
                for r in rows
            ]
            print("\n".join(_table([header, *cells])))
        if not rows:
            _say(f"ingest dlq list: no {PREFIX}* queue has a dead-letter queue here")
            return 1
        return 0

    return _guarded("list", work, args)


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def show(args: argparse.Namespace) -> int:
    """`ingest dlq show QUEUE`: each message's ids and why it was dead-lettered."""
    if args.limit < 1:
        _say("ingest dlq show: --limit must be 1 or more")
        return 2

    def work(sqs: Any) -> int:
        dlq = _pick(discover(sqs), args.queue, "show")
        if dlq is None:
            return 2
        visible, in_flight = depth(sqs, dlq.queue.url)
        messages = [describe(dlq.name, m) for m in peek(sqs, dlq.queue.url, args.limit)]
        reasons = Counter(m["reason"] for m in messages)
        summary = [{"reason": r, "count": n} for r, n in reasons.most_common()]
        if args.json:
            report = {
                "name": dlq.name,
                "queue": dlq.queue.name,
                "source": dlq.source,
                "depth": visible + in_flight,
                "shown": len(messages),
                "messages": messages,
                "reasons": summary,
            }
            print(json.dumps(report))
            return 0
        print(
            f"{dlq.queue.name}: depth {visible + in_flight}, {len(messages)} shown "
            f"(peeked: a sample), redrives to {dlq.source}"
        )
        for m in messages:
            print(f"\n{m['message_id']}")
            for label, value in _lines(m):
                print(f"  {label:<15} {value}")
        if summary:
            print("\nreasons:")
            for row in summary:
                print(f"  {row['count']:>5}  {row['reason']}")
        return 0

    return _guarded("show", work, args)


def _lines(m: dict[str, Any]) -> Iterator[tuple[str, str]]:
    if m["contract"] == UNDECODABLE:
        yield "body", UNDECODABLE
    if m["event_id"]:
        yield "event", m["event_id"]
    if m["file_id"]:
        yield "file", f"{m['file_id']} ({m['key']})"
    if m["ordinal"] is not None:
        yield "record", str(m["ordinal"])
    if m["failed_by"]:
        version = f" {m['failed_by_version']}" if m["failed_by_version"] else ""
        yield "failed by", f"{m['failed_by']}{version}"
    yield "attempts", str(m["attempts"])
    if m["first_failure_at"]:
        yield "first failure", m["first_failure_at"]
    yield "dead-lettered", _or_dash(m["dead_lettered_at"])
    yield "reason", m["reason"]


def redrive(args: argparse.Namespace) -> int:
    """`ingest dlq redrive QUEUE`: move every message back to the queue it was dead-lettered
    from, with SQS's message-move task, and follow it to the end."""
    rate = args.max_per_second
    if rate is not None and not 1 <= rate <= 500:
        _say("ingest dlq redrive: --max-per-second must be between 1 and 500")
        return 2

    def work(sqs: Any) -> int:
        dlq = _pick(discover(sqs), args.queue, "redrive")
        if dlq is None:
            return 2
        if len(dlq.sources) != 1:
            _say(
                f"ingest dlq redrive: {dlq.queue.name} is the DLQ of {len(dlq.sources)} queues "
                f"({dlq.source}): which one to send its messages to is not known"
            )
            return 2
        destination = dlq.sources[0]
        result = {"queue": dlq.name, "destination": destination.name, "moved": 0}
        if sum(depth(sqs, dlq.queue.url)) == 0:
            _say(f"{dlq.queue.name} is empty: nothing to redrive")
            return _report(args, result | {"status": "COMPLETED", "to_move": 0})
        start: dict[str, Any] = {"SourceArn": dlq.queue.arn, "DestinationArn": destination.arn}
        if rate is not None:
            start["MaxNumberOfMessagesPerSecond"] = rate
        try:
            handle = sqs.start_message_move_task(**start)["TaskHandle"]
        except ClientError as err:
            if "UnsupportedOperation" not in err.response.get("Error", {}).get("Code", ""):
                raise
            _say(f"ingest dlq redrive: a move task is already running on {dlq.queue.name}")
            return 1
        _say(f"redriving {dlq.queue.name} to {destination.name} (Ctrl-C cancels)")
        task = _follow(sqs, dlq, handle)
        result |= {
            "moved": int(task.get("ApproximateNumberOfMessagesMoved", 0)),
            "status": task["Status"],
            "to_move": task.get("ApproximateNumberOfMessagesToMove"),
        }
        if task.get("FailureReason"):
            result["failure_reason"] = task["FailureReason"]
        if args.wait and task["Status"] == "COMPLETED":
            result |= _settle(sqs, dlq, destination)
        return _report(args, result)

    return _guarded("redrive", work, args)


def _settle(sqs: Any, dlq: Dlq, destination: Any) -> dict[str, Any]:
    """Wait until the destination queue is empty (every redriven message handled: done, or
    back in the DLQ), twice in a row; then say how many came back to the DLQ."""
    deadline = time.monotonic() + SETTLE_SECONDS
    empty_polls = 0
    while time.monotonic() < deadline:
        waiting = sum(depth(sqs, destination.url))
        empty_polls = empty_polls + 1 if waiting == 0 else 0
        if empty_polls >= 2:
            back = sum(depth(sqs, dlq.queue.url))
            _say(f"{destination.name} has handled them; {back} back in {dlq.queue.name}")
            return {"settled": True, "back_in_dlq": back}
        _say(f"{destination.name}: {waiting} still to handle")
        time.sleep(POLL_SECONDS)
    return {"settled": False}


def _follow(sqs: Any, dlq: Dlq, handle: str) -> dict[str, Any]:
    """Poll the task until it ends, printing progress; Ctrl-C cancels it (then waits for it)."""
    started: int | None = None
    cancel_by: float | None = None
    seen = time.monotonic()
    while True:
        try:
            tasks = sqs.list_message_move_tasks(SourceArn=dlq.queue.arn, MaxResults=10)
            task = _ours(tasks.get("Results", []), handle, started)
            if task is None and time.monotonic() - seen > LOST_SECONDS:
                return {"Status": "UNKNOWN", "FailureReason": "the move task is no longer listed"}
            if task is not None:
                seen = time.monotonic()
                started = task.get("StartedTimestamp", started)
                _say(
                    f"{dlq.name}: {task.get('ApproximateNumberOfMessagesMoved', 0)} of "
                    f"{_or_dash(task.get('ApproximateNumberOfMessagesToMove'))} moved "
                    f"({task['Status']})"
                )
                if task["Status"] in TERMINAL:
                    return task
            if cancel_by is not None and time.monotonic() > cancel_by:
                return {"Status": "CANCELLING", **(task or {})}
            time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            if cancel_by is not None:
                raise  # a second Ctrl-C: stop waiting
            _say(f"cancelling the move task on {dlq.queue.name}...")
            with contextlib.suppress(ClientError):  # it ended meanwhile
                sqs.cancel_message_move_task(TaskHandle=handle)
            cancel_by = time.monotonic() + CANCEL_WAIT_SECONDS


def _ours(results: list[dict[str, Any]], handle: str, started: int | None) -> dict[str, Any] | None:
    """Our task among the source's most recent ones: by handle while it runs (AWS gives the
    handle of RUNNING tasks only), then by its start time; else the most recent."""
    for task in results:
        if task.get("TaskHandle") == handle:
            return task
    for task in results:
        if started is not None and task.get("StartedTimestamp") == started:
            return task
    return results[0] if results and started is None else None


def _report(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        print(json.dumps(result))
    else:
        reason = f" ({result['failure_reason']})" if result.get("failure_reason") else ""
        print(
            f"{result['queue']}: {result['moved']} moved to {result['destination']}, "
            f"{result['status'].lower()}{reason}"
        )
        if result.get("settled"):
            print(f"handled: {result['back_in_dlq']} back in the dead-letter queue")
        elif "settled" in result:
            print(f"not all handled within {SETTLE_SECONDS} s: see `ingest dlq list`")
    return 0 if result["status"] == "COMPLETED" else 1
