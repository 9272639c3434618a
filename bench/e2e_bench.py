"""End-to-end records/s on the local cloud, next to the emulator's own ceiling for the same calls.

    uv run python bench/e2e_bench.py [--records 10000] [--consumers 2] [--ceiling-records 300]

One local cloud serves both measurements, in this order:

1. **End to end**: a generated file of `--records` records goes through the whole pipeline
   (state machine, splitter, transformer, publisher, the simulated platform's consumers,
   enrichment, the consumed notices, the reaper) and is followed until every record is terminal
   and consumption has settled. Records/s counts from the upload to that moment.
2. **The emulator's ceiling**: the AWS calls that run made (counted where they reach moto by
   `localcloud.calls`: the functions', Step Functions', the pollers' and the platform's; and
   the X-Ray daemon's documents, which it stores in process, in batches of 50), divided by the
   records, are replayed for `--ceiling-records` records from
   one client in a tight loop against the same moto server: each operation with a payload of
   the run's average size and batch size (DynamoDB batches sized from the request units, SQS
   batches from the entries), on bench tables, a bench queue, a bench topic subscribed to it,
   and a no-op function for Lambda's Invoke (so an Invoke costs what the emulator adds, not
   what the pipeline's handler does). DynamoDB is served by a moto server in a process of its
   own (localcloud.dynamodb_process), in parallel with the main one: each server's share of the
   calls is timed apart, and the busier server's time per record sets the ceiling. The
   pipeline's own code, its waits and its queues' depth are not in it: the pipeline cannot beat
   this rate, and the ratio says how much of the time is the emulator's and how much is ours.
   Receives that found a queue empty (pollers idling) are not replayed; operations the replay
   does not know are listed with their share of the calls.

Prints both rates and their ratio; writes them to bench/out/e2e.json.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest_cli.follow import follow, upload
from ingest_cli.sample import write_sample
from localcloud.calls import LOCALCLOUD, OPERATOR
from localcloud.cloud import LocalCloud
from localcloud.xray_daemon import BATCH

OUT = Path(__file__).resolve().parent / "out"
NOT_REPLAYED_CALLERS = frozenset({OPERATOR, LOCALCLOUD})  # following the run, deploying
_NOOP = "def handler(event, context):\n    return {'statusCode': 200}\n"
_TABLE = "bench-ceiling"
_QUEUE = "bench-ceiling"
_FUNCTION = "bench-ceiling-noop"
_TRACE_STORE = "xray.PutTraceSegments (the daemon's, in process)"


# --- the run's call mix ---------------------------------------------------------------------------


def call_mix(usage: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per operation, over every caller that is not the operator or the local cloud's glue:
    calls (empty receives left out), and the entries and request units they carried."""
    mix: dict[str, dict[str, float]] = {}
    for caller, operations in (usage.get("calls") or {}).items():
        if caller in NOT_REPLAYED_CALLERS:
            continue
        for operation, count in operations.items():
            total = mix.setdefault(
                operation, {"calls": 0, "messages": 0, "read_units": 0, "write_units": 0}
            )
            total["calls"] += int(count.get("calls", 0)) - int(count.get("empty", 0))
            for name in ("messages", "read_units", "write_units"):
                total[name] += float(count.get(name, 0))
    return {op: t for op, t in mix.items() if t["calls"] > 0}


# --- replaying it ---------------------------------------------------------------------------------


class Replay:
    """One client making each kind of call the pipeline made, with its average shape."""

    def __init__(
        self, cloud: LocalCloud, mix: dict[str, dict[str, float]], records: int, replayed: int
    ) -> None:
        self.cloud = cloud
        self.replayed = replayed
        self.db = cloud.client("dynamodb")
        self.sqs = cloud.client("sqs")
        self.sns = cloud.client("sns")
        self.lam = cloud.client("lambda")
        self.mix = mix
        self.records = records
        self._serial = 0
        self._received: list[str] = []
        self.calls: dict[str, Callable[[], None]] = {
            "dynamodb.GetItem": self.get_item,
            "dynamodb.PutItem": self.put_item,
            "dynamodb.UpdateItem": self.update_item,
            "dynamodb.DeleteItem": self.delete_item,
            "dynamodb.BatchGetItem": self.batch_get_item,
            "dynamodb.BatchWriteItem": self.batch_write_item,
            "dynamodb.TransactWriteItems": self.transact_write_items,
            "dynamodb.Query": self.query,
            "sqs.SendMessage": self.send_message,
            "sqs.SendMessageBatch": self.send_message_batch,
            "sqs.ReceiveMessage": self.receive_message,
            "sqs.DeleteMessageBatch": self.delete_message_batch,
            "sqs.DeleteMessage": self.delete_message,
            "sqs.GetQueueAttributes": self.get_queue_attributes,
            "sqs.GetQueueUrl": self.get_queue_url,
            "sns.Publish": self.publish,
            "lambda.Invoke": self.invoke,
            _TRACE_STORE: self.put_trace_segments,
        }

    # shapes: the run's averages

    def _per_call(self, operation: str, name: str, cap: int) -> int:
        count = self.mix.get(operation, {})
        calls = count.get("calls") or 1
        return max(1, min(cap, round(float(count.get(name, 0)) / calls)))

    def _item(self, key: str) -> dict[str, Any]:
        # the store's items are a full event (~1.3 KB): write units per PutItem say how big
        size = 1024 * self._per_call("dynamodb.PutItem", "write_units", 400)
        return {"pk": {"S": key}, "n": {"N": "0"}, "body": {"S": "x" * max(1, size - 200)}}

    def _key(self) -> str:
        self._serial += 1
        return f"k{self._serial}"

    def setup(self) -> None:
        self.db.create_table(
            TableName=_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        self.queue = self.sqs.create_queue(QueueName=_QUEUE)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])
        topic = self.sns.create_topic(Name=_QUEUE)["TopicArn"]
        self.sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=arn["Attributes"]["QueueArn"],
            Attributes={"RawMessageDelivery": "true"},
        )
        self.topic = topic
        for i in range(200):
            self.db.put_item(TableName=_TABLE, Item=self._item(f"seed{i}"))
        iam = self.cloud.client("iam")
        role = iam.create_role(RoleName=_FUNCTION, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as zipped:
            zipped.writestr("noop.py", _NOOP)
        self.lam.create_function(
            FunctionName=_FUNCTION,
            Runtime="python3.11",
            Role=role,
            Handler="noop.handler",
            Code={"ZipFile": archive.getvalue()},
            Timeout=30,
        )
        self.invoke()  # its cold start is not the emulator's per-call cost

    # the calls

    def get_item(self) -> None:
        self.db.get_item(TableName=_TABLE, Key={"pk": {"S": f"seed{self._serial % 200}"}})

    def put_item(self) -> None:
        self.db.put_item(
            TableName=_TABLE,
            Item=self._item(self._key()),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def update_item(self) -> None:
        self.db.update_item(
            TableName=_TABLE,
            Key={"pk": {"S": f"counter{self._serial % 50}"}},
            UpdateExpression="ADD n :one SET updated = :now",
            ConditionExpression="attribute_not_exists(gone)",
            ExpressionAttributeValues={":one": {"N": "1"}, ":now": {"N": str(time.time())}},
        )

    def delete_item(self) -> None:
        self.db.delete_item(TableName=_TABLE, Key={"pk": {"S": f"k{self._serial}"}})

    def batch_get_item(self) -> None:
        n = self._per_call("dynamodb.BatchGetItem", "read_units", 100)
        keys = [{"pk": {"S": f"seed{(self._serial + i) % 200}"}} for i in range(n)]
        self.db.batch_get_item(RequestItems={_TABLE: {"Keys": keys}})

    def batch_write_item(self) -> None:
        n = self._per_call("dynamodb.BatchWriteItem", "write_units", 25)
        writes = [{"PutRequest": {"Item": self._item(self._key())}} for _ in range(n)]
        self.db.batch_write_item(RequestItems={_TABLE: writes})

    def transact_write_items(self) -> None:
        key = {"pk": {"S": f"counter{self._serial % 50}"}}
        self.db.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": _TABLE,
                        "Key": key,
                        "UpdateExpression": "ADD n :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                }
            ]
        )

    def query(self) -> None:
        self.db.query(
            TableName=_TABLE,
            KeyConditionExpression="pk = :k",
            ExpressionAttributeValues={":k": {"S": "seed0"}},
        )

    # the SQS payloads are one record's XML or one event's JSON: about 1.5 KB
    _BODY = "x" * 1500

    def send_message(self) -> None:
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=self._BODY)

    def send_message_batch(self) -> None:
        n = self._per_call("sqs.SendMessageBatch", "messages", 10)
        self.sqs.send_message_batch(
            QueueUrl=self.queue,
            Entries=[{"Id": str(i), "MessageBody": self._BODY} for i in range(n)],
        )

    def receive_message(self) -> None:
        n = self._per_call("sqs.ReceiveMessage", "messages", 10)
        got = self.sqs.receive_message(
            QueueUrl=self.queue,
            MaxNumberOfMessages=n,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        self._received.extend(m["ReceiptHandle"] for m in got)

    def _handles(self, n: int) -> list[str]:
        if len(self._received) < n:
            self.send_message_batch_of(n - len(self._received))
        handles, self._received = self._received[:n], self._received[n:]
        return handles

    def send_message_batch_of(self, n: int) -> None:
        # a delete needs a message received: top up outside the timed mix's count (rare)
        for start in range(0, n, 10):
            self.sqs.send_message_batch(
                QueueUrl=self.queue,
                Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(min(10, n - start))],
            )
        got = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10)
        self._received.extend(m["ReceiptHandle"] for m in got.get("Messages", []))

    def delete_message_batch(self) -> None:
        handles = self._handles(self._per_call("sqs.DeleteMessageBatch", "messages", 10))
        if handles:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)],
            )

    def delete_message(self) -> None:
        handles = self._handles(1)
        if handles:
            self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=handles[0])

    def get_queue_attributes(self) -> None:
        self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["All"])

    def get_queue_url(self) -> None:
        self.sqs.get_queue_url(QueueName=_QUEUE)

    def publish(self) -> None:
        self.sns.publish(TopicArn=self.topic, Message=json.dumps({"id": self._key()}))

    def invoke(self) -> None:
        self.lam.invoke(FunctionName=_FUNCTION, Payload=b'{"id": "x"}')

    def put_trace_segments(self) -> None:
        n = max(1, min(BATCH, round(self.mix.get(_TRACE_STORE, {}).get("documents", 1))))
        now = time.time()
        documents = [
            json.dumps(
                {
                    "id": f"{self._serial:08x}{i:08x}",
                    "trace_id": f"1-{int(now):08x}-{self._serial:024x}",
                    "name": "bench",
                    "start_time": now,
                    "end_time": now + 0.01,
                }
            )
            for i in range(n)
        ]
        assert self.cloud.moto is not None
        self.cloud.moto.put_trace_segments(documents)

    # the loop

    def plan(self) -> tuple[list[str], dict[str, float]]:
        """The calls for `records` records, interleaved as the run made them (each operation
        spread evenly), and the per-record share of the run's calls that is not replayed."""
        per_record = {op: c["calls"] / self.records for op, c in self.mix.items()}
        unknown = {op: n for op, n in per_record.items() if op not in self.calls}
        owed = dict.fromkeys(self.calls, 0.0)
        order: list[str] = []
        for _ in range(self.replayed):
            for op, n in per_record.items():
                if op in self.calls:
                    owed[op] += n
                    while owed[op] >= 1:
                        owed[op] -= 1
                        order.append(op)
        return order, unknown

    def run(self, order: list[str]) -> tuple[float, dict[str, float]]:
        """Seconds for the whole plan, and per operation (the share of the time each took)."""
        spent = dict.fromkeys(set(order), 0.0)
        clock = time.perf_counter
        started = clock()
        for op in order:
            before = clock()
            self.calls[op]()
            spent[op] += clock() - before
        return clock() - started, spent


def ceiling(
    cloud: LocalCloud, usage: dict[str, Any], records: int, replayed: int, documents: int
) -> dict[str, Any]:
    """Records/s the emulator alone serves for the run's calls per record."""
    mix = call_mix(usage)
    if documents:
        # the daemon stores its batches in process (no HTTP call is counted): replay as many
        # batches of the real daemon's size, through the same store
        mix[_TRACE_STORE] = {"calls": math.ceil(documents / BATCH), "documents": BATCH}
    replay = Replay(cloud, mix, records, replayed)
    replay.setup()
    order, unknown = replay.plan()
    seconds, spent = replay.run(order)
    # (the daemon's in-process stores are replayed, but they are not calls)
    total = sum(c["calls"] for op, c in mix.items() if op != _TRACE_STORE) / records
    # DynamoDB is served by a process of its own (localcloud.dynamodb_process), in parallel with
    # the main server: each serves its share of the calls, and the busier one sets the pace
    per_server = {
        server: sum(t for op, t in spent.items() if _server_of(op) == server)
        for server in ("main", "dynamodb")
    }
    busiest = max(per_server.values())
    return {
        "records_per_second": replayed / busiest,
        "calls_per_record": round(total, 3),
        "calls_replayed": len(order),
        "seconds": round(seconds, 2),
        "server_seconds": {server: round(t, 2) for server, t in per_server.items()},
        # where the emulator's time per record goes, by operation (ms per record)
        "ms_per_record": {
            op: round(1000 * t / replayed, 2)
            for op, t in sorted(spent.items(), key=lambda kv: -kv[1])
        },
        "not_replayed_per_record": {op: round(n, 4) for op, n in sorted(unknown.items())},
    }


def _server_of(operation: str) -> str:
    return "dynamodb" if operation.startswith("dynamodb.") else "main"


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--ceiling-records", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    path = OUT / f"e2e-{args.records}.xml"
    with open(path, "wb") as f:
        write_sample(f, args.records, seed=args.records)

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    with LocalCloud(consumers=args.consumers, say=say) as cloud:
        platform, pollers, moto, xray = cloud.platform, cloud.pollers, cloud.moto, cloud.xray
        assert platform is not None and pollers is not None and moto is not None
        assert xray is not None
        mark = moto.usage.mark()
        stored = xray.stats()["stored"]
        started = time.monotonic()
        summary = follow(
            cloud.client,
            upload(cloud.client, path),
            platform_stats=lambda: platform.stats(with_ids=False),
            timeout=args.timeout,
            progress=say,
            started=started,
            settled=lambda: platform.wait_idle(0) and pollers.idle(),
        )
        xray.flush()
        usage = moto.usage.since(mark)
        documents = xray.stats()["stored"] - stored
        say(f"end to end done in {summary.seconds:,.1f} s; replaying its calls")
        limit = ceiling(cloud, usage, args.records, args.ceiling_records, documents)
    rate = args.records / summary.seconds
    top = limit["records_per_second"]
    result = {
        "records": args.records,
        "ok": summary.ok,
        "seconds": round(summary.seconds, 1),
        "records_per_second": round(rate, 2),
        "ceiling": {**limit, "records_per_second": round(top, 2)},
        "ratio": round(rate / top, 3),
        "consumers": args.consumers,
    }
    (OUT / "e2e.json").write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"end to end: {args.records:,} records {'ok' if summary.ok else 'NOT OK'} in "
        f"{summary.seconds:,.1f} s = {rate:,.1f} records/s ({args.consumers} consumers)"
    )
    missing = limit["not_replayed_per_record"]
    print(
        f"emulator ceiling for the same calls ({limit['calls_per_record']:g} per record, "
        f"{limit['calls_replayed']:,} replayed from one client, one server after the other:"
        f" main {limit['server_seconds']['main']:,.1f} s, DynamoDB"
        f" {limit['server_seconds']['dynamodb']:,.1f} s; the busier sets the pace):"
        f" {top:,.1f} records/s"
        + (
            f"; not replayed: {', '.join(f'{op} {n:g}/record' for op, n in missing.items())}"
            if missing
            else ""
        )
    )
    shares = list(limit["ms_per_record"].items())[:6]
    print("  the ceiling's ms per record: " + ", ".join(f"{op} {ms:g}" for op, ms in shares))
    print(f"end to end = {rate / top:.2f} of the emulator's ceiling")
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
