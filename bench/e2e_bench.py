"""End-to-end records/s on the local cloud, next to the emulator's own ceiling for the same calls.

    uv run python bench/e2e_bench.py [--sizes 1000 10000] [--consumers 2]

One local cloud serves every measurement in this run. The ceiling is what moto alone sustains
for the API calls one record costs the pipeline (queue hops, store and ledger writes, the
consumers' enrichment invokes, the consumed notice), made back to back from one client with no
pipeline code in between: the pipeline cannot beat it, so the ratio says how much of the time
is ours and how much is the emulator's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ingest_cli.follow import follow, upload
from ingest_cli.sample import write_sample
from localcloud.cloud import LocalCloud

OUT = Path(__file__).resolve().parent / "out"


def _ceiling(cloud: LocalCloud, records: int, consumers: int) -> float:
    """Records/s moto sustains for one record's worth of the pipeline's API calls."""
    sqs, db, sns, lam = (cloud.client(s) for s in ("sqs", "dynamodb", "sns", "lambda"))
    queue = sqs.create_queue(QueueName="bench-ceiling")["QueueUrl"]
    topic = sns.create_topic(Name="bench-ceiling")["TopicArn"]
    body = "x" * 1500
    started = time.perf_counter()
    for start in range(0, records, 10):
        n = min(10, records - start)
        # records-to-transform: batch send, receive, batch delete
        sqs.send_message_batch(
            QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": body} for i in range(n)]
        )
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
        sqs.delete_message_batch(
            QueueUrl=queue,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
        for i in range(n):
            key = f"bench-{start + i}"
            # events-to-publish: one send per record, received and deleted in batches
            sqs.send_message(QueueUrl=queue, MessageBody=body)
            db.put_item(
                TableName="gro-temporary-store",
                Item={"id": {"S": key}, "expires_at": {"N": "1"}, "event": {"S": body}},
            )
            db.update_item(
                TableName="gro-ingest-ledger",
                Key={"pk": {"S": key}},
                UpdateExpression="ADD n :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
            for _ in range(consumers):
                lam.invoke(
                    FunctionName="gro-publisher-enrich", Payload=json.dumps({"id": key}).encode()
                )
            sns.publish(TopicArn=topic, Message=json.dumps({"id": key}))
            db.delete_item(TableName="gro-temporary-store", Key={"id": {"S": key}})
        got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if got:
            sqs.delete_message_batch(
                QueueUrl=queue,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
                ],
            )
    seconds = time.perf_counter() - started
    sqs.delete_queue(QueueUrl=queue)
    return records / seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--ceiling-records", type=int, default=300)
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    rows = []
    with LocalCloud(consumers=args.consumers, say=lambda s: print(s, file=sys.stderr)) as cloud:
        platform, pollers = cloud.platform, cloud.pollers
        assert platform is not None and pollers is not None
        ceiling = _ceiling(cloud, args.ceiling_records, args.consumers)
        for size in args.sizes:
            path = OUT / f"e2e-{size}.xml"
            with open(path, "wb") as f:
                write_sample(f, size, seed=size)
            started = time.monotonic()
            summary = follow(
                cloud.client,
                upload(cloud.client, path),
                platform_stats=platform.stats,
                timeout=4 * 3600,
                progress=lambda line: print(line, file=sys.stderr),
                started=started,
                settled=lambda: platform.wait_idle(0) and pollers.idle(),
            )
            rows.append((size, summary.ok, summary.seconds, size / summary.seconds))
    print(
        f"emulator ceiling for one record's API calls: {ceiling:,.1f} records/s "
        f"({args.consumers} consumers)"
    )
    for size, ok, seconds, rate in rows:
        print(
            f"{size:>7} records: {'ok' if ok else 'NOT OK'} in {seconds:,.1f} s = "
            f"{rate:,.1f} records/s end to end = {rate / ceiling:.2f} of the ceiling"
        )
    return 0 if all(ok for _, ok, _, _ in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
