"""`ingest receipts`: every deletion receipt in the landing bucket, as a table or JSON; and the
reading of one file's receipt that `ingest status FILE` shows.

A receipt holds ids, counts, times and the file's hash: nothing of a record. On the running
local cloud (`ingest up`), `--endpoint-url URL`, and with neither on AWS with the default boto3
session (as `ingest dlq`): `ingest_cli.cloud_commands.receipts` says which, and calls `command`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
from botocore.exceptions import BotoCoreError, ClientError

from contracts.receipts import RECEIPTS_PREFIX, DeletionReceipt, receipt_key

Clients = Callable[[str], Any]
BUCKET_EXPORT = "gro-foundation-LandingBucketName"
_decode = msgspec.json.Decoder(DeletionReceipt).decode


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _aws() -> Clients | None:
    """AWS with the default boto3 session, if it has credentials."""
    import boto3

    session = boto3.session.Session()
    if session.get_credentials() is None:
        _say(
            "ingest receipts: no local cloud is running, no --endpoint-url and no AWS "
            "credentials: nothing to look at"
        )
        return None
    client: Clients = session.client
    return client


def landing_bucket(clients: Clients) -> str:
    """The landing bucket, from the foundation's exports."""
    pages = clients("cloudformation").get_paginator("list_exports").paginate()
    for page in pages:
        for export in page.get("Exports", []):
            if export["Name"] == BUCKET_EXPORT:
                return str(export["Value"])
    raise LookupError(f"no {BUCKET_EXPORT} export: is the foundation deployed here?")


def read(clients: Clients, bucket: str, fid: str) -> DeletionReceipt | None:
    """One file's receipt, or None if it has none (yet)."""
    s3 = clients("s3")
    try:
        body = s3.get_object(Bucket=bucket, Key=receipt_key(fid))["Body"].read()
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            return None
        raise
    return _decode(body)


def every(clients: Clients, bucket: str) -> Iterator[DeletionReceipt]:
    """Every receipt under the receipts prefix, every page."""
    s3 = clients("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=RECEIPTS_PREFIX)
    for page in pages:
        for entry in page.get("Contents", []):
            if entry["Key"].endswith(".json"):
                yield _decode(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())


def as_json(receipt: DeletionReceipt) -> dict[str, Any]:
    """A receipt as `--json` prints it: every field, `complete` always said."""
    out: dict[str, Any] = {f: getattr(receipt, f) for f in receipt.__struct_fields__}
    out["complete"] = bool(receipt.complete)
    return out


def when(epoch: int | None) -> str:
    """A receipt's time, for people: UTC, to the second."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


COLUMNS = (
    "file",
    "records",
    "published",
    "rejected",
    "dead-lettered",
    "consumed",
    "expired",
    "removed",
    "in store",
    "source deleted",
    "last left store",
    "complete",
)


def _cells(receipt: DeletionReceipt) -> list[str]:
    return [
        receipt.key,
        _n(receipt.records),
        str(receipt.published),
        str(receipt.rejected),
        str(receipt.dead_lettered),
        _n(receipt.consumed),
        _n(receipt.expired),
        _n(receipt.removed_otherwise),
        _n(receipt.in_store),
        when(receipt.source_deleted_at),
        when(receipt.last_left_store_at),
        "yes" if receipt.complete else "no",
    ]


def table(receipts: list[DeletionReceipt]) -> str:
    """The receipts as an aligned table, one line each."""
    rows = [list(COLUMNS), *(_cells(r) for r in receipts)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def describe(receipt: DeletionReceipt) -> list[str]:
    """One receipt, for `ingest status FILE`: what the file was, where its records went."""
    size = f"{receipt.size} bytes" if receipt.size is not None else "size unknown"
    return [
        f"  receipt {receipt_key(receipt.file_id)}: "
        + ("complete" if receipt.complete else "not complete"),
        f"    file: sha256 {receipt.sha256 or 'unknown'}, {size}",
        f"    records {_n(receipt.records)}: published {receipt.published}, rejected "
        f"{receipt.rejected}, dead-lettered {receipt.dead_lettered}",
        f"    left the store: consumed {_n(receipt.consumed)}, expired {_n(receipt.expired)}, "
        f"removed otherwise {_n(receipt.removed_otherwise)}; still in the store "
        f"{_n(receipt.in_store)}",
        f"    started {when(receipt.started_at)}, split {when(receipt.split_at)}, last "
        f"published {when(receipt.published_at)}, all accounted for "
        f"{when(receipt.accounted_at)}",
        f"    source deleted {when(receipt.source_deleted_at)}, last record left the store "
        f"{when(receipt.last_left_store_at)}",
    ]


def command(args: argparse.Namespace, local: Clients | None) -> int:
    """`ingest receipts`: every deletion receipt, newest source deletion first, from a local
    cloud's clients, else from AWS."""
    clients = local or _aws()
    if clients is None:
        return 1
    try:
        found = sorted(
            every(clients, landing_bucket(clients)),
            key=lambda r: (-r.source_deleted_at, r.key),
        )
    except (BotoCoreError, ClientError, LookupError) as err:  # names no record content
        _say(f"ingest receipts: {err}")
        return 1
    if args.json:
        print(msgspec.json.encode([as_json(r) for r in found]).decode())
    elif not found:
        print("no receipt yet: no file has finished")
    else:
        print(table(found))
    return 0
