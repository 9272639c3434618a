"""The ingestion ledger: where each file stands and how each of its records ended.

No personal data lives here: file identity, ordinals, event ids, statuses, reasons that name
fields. Three kinds of item, each on its own partition key so that no single key takes every
write of a million-record file (DynamoDB allows about 1,000 writes/s per key):

- file item     pk=`file#{file_id}`                 what the file is and how far splitting got
- counter shard pk=`file#{file_id}#count#{n}`       terminal counts, sharded by ordinal
- record item   pk=`rec#{file_id}#{ordinal}`        the record's terminal status

Every write is idempotent under at-least-once delivery: a record's first terminal status adds 1
to `terminal` and to that status's count in the same transaction as the record item is written,
under a condition; a repeat finds the condition false and changes nothing; a move from one
terminal status to another (a dead-lettered record redriven and published) moves the count.
The client is any DynamoDB low-level client (boto3's), passed in: this module imports no SDK.
"""

from __future__ import annotations

import hashlib
import re
import time
from enum import StrEnum
from typing import Any, Protocol

import msgspec

from contracts.messages import FileRef

COUNTER_SHARDS = 16
LEDGER_RETENTION_SECONDS = 30 * 24 * 3600


class RecordStatus(StrEnum):
    """How a record ended. Every status here is terminal."""

    PUBLISHED = "published"
    REJECTED = "rejected"
    DEAD_LETTERED = "dead_lettered"


class FileStatus(StrEnum):
    """Where a file is."""

    SPLITTING = "splitting"
    SPLIT = "split"
    REFUSED = "refused"
    FINISHED = "finished"


class FileProgress(msgspec.Struct, frozen=True, kw_only=True):
    """A file's standing, summed over its counter shards."""

    file_id: str
    status: str | None = None
    emitted: int | None = None
    published: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    terminal: int = 0
    reason: str | None = None

    @property
    def complete(self) -> bool:
        """Every emitted record has reached a terminal status."""
        return self.emitted is not None and self.terminal >= self.emitted


class DynamoClient(Protocol):
    """The part of a boto3 DynamoDB client the ledger uses."""

    exceptions: Any

    def transact_write_items(self, **kwargs: Any) -> Any: ...
    def get_item(self, **kwargs: Any) -> Any: ...
    def put_item(self, **kwargs: Any) -> Any: ...
    def update_item(self, **kwargs: Any) -> Any: ...
    def batch_get_item(self, **kwargs: Any) -> Any: ...


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def file_id(ref: FileRef) -> str:
    """A stable id for one version of one object: usable as a Step Functions execution name.

    A readable tail of the key, then a hash of bucket, key and version, within 80 characters
    of `[A-Za-z0-9_-]`.
    """
    digest = hashlib.sha256(f"{ref.bucket}\0{ref.key}\0{ref.version_id or ''}".encode()).hexdigest()
    tail = _UNSAFE.sub("_", ref.key.rsplit("/", 1)[-1])[-40:]
    return f"{tail}-{digest[:32]}"


def _file_pk(fid: str) -> str:
    return f"file#{fid}"


def _shard_pk(fid: str, ordinal: int) -> str:
    return f"file#{fid}#count#{ordinal % COUNTER_SHARDS}"


def _record_pk(fid: str, ordinal: int) -> str:
    return f"rec#{fid}#{ordinal}"


def _expiry(now: float | None = None) -> str:
    return str(int((now or time.time()) + LEDGER_RETENTION_SECONDS))


def file_started(client: DynamoClient, table: str, ref: FileRef) -> None:
    """Record that splitting of a file has begun (idempotent: keeps what an earlier run wrote)."""
    fid = file_id(ref)
    client.update_item(
        TableName=table,
        Key={"pk": {"S": _file_pk(fid)}},
        UpdateExpression=(
            "SET #b = :b, #k = :k, #v = :v, #x = :x, "
            "#s = if_not_exists(#s, :s), #t = if_not_exists(#t, :t)"
        ),
        # every name through a placeholder: DynamoDB reserves hundreds of words (bucket, key...)
        ExpressionAttributeNames={
            "#b": "bucket",
            "#k": "key",
            "#v": "version_id",
            "#x": "expires_at",
            "#s": "status",
            "#t": "started_at",
        },
        ExpressionAttributeValues={
            ":b": {"S": ref.bucket},
            ":k": {"S": ref.key},
            ":v": {"S": ref.version_id or ""},
            ":x": {"N": _expiry()},
            ":s": {"S": FileStatus.SPLITTING},
            ":t": {"N": str(int(time.time()))},
        },
    )


def file_split(client: DynamoClient, table: str, ref: FileRef, emitted: int) -> None:
    """Record that every record of the file has been emitted, and how many there were."""
    client.update_item(
        TableName=table,
        Key={"pk": {"S": _file_pk(file_id(ref))}},
        UpdateExpression="SET #n = :n, #s = :s",
        ExpressionAttributeNames={"#s": "status", "#n": "emitted"},
        ExpressionAttributeValues={":n": {"N": str(emitted)}, ":s": {"S": FileStatus.SPLIT}},
    )


def file_ended(
    client: DynamoClient, table: str, ref: FileRef, status: FileStatus, reason: str | None = None
) -> None:
    """Record that a file was refused or finished (with a reason that quotes no content)."""
    values: dict[str, Any] = {":s": {"S": status}, ":t": {"N": str(int(time.time()))}}
    expression = "SET #s = :s, #e = :t"
    names = {"#s": "status", "#e": "ended_at"}
    if reason is not None:
        expression += ", #r = :r"
        values[":r"] = {"S": reason}
        names["#r"] = "reason"
    client.update_item(
        TableName=table,
        Key={"pk": {"S": _file_pk(file_id(ref))}},
        UpdateExpression=expression,
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )


def _is_condition_failure(client: DynamoClient, err: Exception) -> bool:
    if not isinstance(err, client.exceptions.TransactionCanceledException):
        return False
    reasons = getattr(err, "response", {}).get("CancellationReasons", [])
    return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons) or not reasons


def record_ended(
    client: DynamoClient,
    table: str,
    ref: FileRef,
    ordinal: int,
    status: RecordStatus,
    *,
    event_id: str | None = None,
    reasons: tuple[str, ...] = (),
) -> bool:
    """Record a record's terminal status; True if this call changed anything."""
    fid = file_id(ref)
    record_key = {"pk": {"S": _record_pk(fid, ordinal)}}
    shard_key = {"pk": {"S": _shard_pk(fid, ordinal)}}
    values: dict[str, Any] = {
        ":s": {"S": status},
        ":x": {"N": _expiry()},
        ":t": {"N": str(int(time.time()))},
        ":r": {"L": [{"S": r} for r in reasons]},
        ":e": {"S": event_id or ""},
    }
    set_record = "SET #s = :s, #x = :x, #u = :t, #r = :r, #e = :e"
    names = {
        "#s": "status",
        "#x": "expires_at",
        "#u": "updated_at",
        "#r": "reasons",
        "#e": "event_id",
    }
    for _ in range(3):
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": table,
                            "Key": record_key,
                            "UpdateExpression": set_record,
                            "ConditionExpression": "attribute_not_exists(#s)",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    },
                    {
                        "Update": {
                            "TableName": table,
                            "Key": shard_key,
                            "UpdateExpression": "ADD #t :one, #c :one SET #x = :x",
                            "ExpressionAttributeNames": {
                                "#t": "terminal",
                                "#c": status.value,
                                "#x": "expires_at",
                            },
                            "ExpressionAttributeValues": {
                                ":one": {"N": "1"},
                                ":x": values[":x"],
                            },
                        }
                    },
                ]
            )
            return True
        except Exception as err:
            if not _is_condition_failure(client, err):
                raise
        current = client.get_item(TableName=table, Key=record_key, ConsistentRead=True)
        old = current.get("Item", {}).get("status", {}).get("S")
        if old is None:
            continue  # raced with a delete; try again
        if old == status:
            return False
        try:
            client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": table,
                            "Key": record_key,
                            "UpdateExpression": set_record,
                            "ConditionExpression": "#s = :old",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": {**values, ":old": {"S": old}},
                        }
                    },
                    {
                        "Update": {
                            "TableName": table,
                            "Key": shard_key,
                            "UpdateExpression": "ADD #c :one, #o :minus",
                            "ExpressionAttributeNames": {"#c": status.value, "#o": old},
                            "ExpressionAttributeValues": {
                                ":one": {"N": "1"},
                                ":minus": {"N": "-1"},
                            },
                        }
                    },
                ]
            )
            return True
        except Exception as err:
            if not _is_condition_failure(client, err):
                raise
    raise RuntimeError(f"ledger: record {ordinal} kept changing under us")


def _n(item: dict[str, Any], name: str) -> int:
    return int(item.get(name, {}).get("N", "0"))


def progress(client: DynamoClient, table: str, fid: str) -> FileProgress:
    """Sum a file's counter shards; read its file item."""
    keys = [{"pk": {"S": _file_pk(fid)}}] + [
        {"pk": {"S": f"file#{fid}#count#{n}"}} for n in range(COUNTER_SHARDS)
    ]
    items: list[dict[str, Any]] = []
    request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
    while request:
        answer = client.batch_get_item(RequestItems=request)
        items.extend(answer.get("Responses", {}).get(table, []))
        request = answer.get("UnprocessedKeys") or {}
    file_item: dict[str, Any] = {}
    totals = {"published": 0, "rejected": 0, "dead_lettered": 0, "terminal": 0}
    for item in items:
        if item["pk"]["S"] == _file_pk(fid):
            file_item = item
            continue
        for name in totals:
            totals[name] += _n(item, name)
    emitted = file_item.get("emitted", {}).get("N")
    return FileProgress(
        file_id=fid,
        status=file_item.get("status", {}).get("S"),
        emitted=int(emitted) if emitted is not None else None,
        reason=file_item.get("reason", {}).get("S"),
        **totals,
    )
