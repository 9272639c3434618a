"""The ingestion ledger: where each file stands and how each of its records ended.

No personal data lives here: file identity, ordinals, event ids, statuses, reasons that name
fields. Three kinds of item, each on its own partition key so that no single key takes every
write of a million-record file (DynamoDB allows about 1,000 writes/s per key):

- file item   pk=`file#{file_id}`             what the file is, how many records it holds
- block item  pk=`file#{file_id}#blk#{n}`     ordinals n*256+1.. by terminal status, and counts
- record item pk=`rec#{file_id}#{ordinal}`    why a record was rejected or dead-lettered

Every write is idempotent under at-least-once delivery (see `record_ended`).
The client is any DynamoDB low-level client (boto3's), passed in: this module imports no SDK.
Every service that writes the ledger goes through here, and so do the operator's tools that
read it, so the item layout is known in one place.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any, Protocol

import msgspec

from contracts.messages import FileRef, file_id
from contracts.steps import FileCounts

# Records are counted in blocks of this many consecutive ordinals, one item (and one partition
# key) per block: small items, cheap writes, and no single key takes a whole file's writes.
BLOCK = 256
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
    record_count: int = 0
    published: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    terminal: int = 0
    reason: str | None = None
    handled_by: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Every emitted record has reached a terminal status."""
        return self.emitted is not None and self.terminal >= self.emitted

    def counts(self) -> FileCounts:
        """The counts, as the state machine and the operator see them."""
        return FileCounts(
            emitted=self.emitted,
            terminal=self.terminal,
            published=self.published,
            rejected=self.rejected,
            dead_lettered=self.dead_lettered,
        )


class RecordEnding(msgspec.Struct, frozen=True, kw_only=True):
    """One record's ending as the ledger keeps it: no content, only why."""

    ordinal: int
    status: str
    reasons: tuple[str, ...] = ()
    event_id: str | None = None
    moved_from: str | None = None
    handled_by: str | None = None


class DynamoClient(Protocol):
    """The part of a boto3 DynamoDB client the ledger uses."""

    exceptions: Any

    def get_item(self, **kwargs: Any) -> Any: ...
    def put_item(self, **kwargs: Any) -> Any: ...
    def update_item(self, **kwargs: Any) -> Any: ...
    def batch_get_item(self, **kwargs: Any) -> Any: ...
    def get_paginator(self, operation: str) -> Any: ...


def _file_pk(fid: str) -> str:
    return f"file#{fid}"


def _record_pk(fid: str, ordinal: int) -> str:
    return f"rec#{fid}#{ordinal}"


def _expiry(now: float | None = None) -> str:
    return str(int((now or time.time()) + LEDGER_RETENTION_SECONDS))


def _block_pk(fid: str, ordinal: int) -> str:
    return f"file#{fid}#blk#{(ordinal - 1) // BLOCK}"


_SETS = {RecordStatus.PUBLISHED: "p", RecordStatus.REJECTED: "r", RecordStatus.DEAD_LETTERED: "d"}
_COUNTS = {
    RecordStatus.PUBLISHED: "np",
    RecordStatus.REJECTED: "nr",
    RecordStatus.DEAD_LETTERED: "nd",
}


def _n(item: dict[str, Any], name: str) -> int:
    return int(item.get(name, {}).get("N", "0"))


class Ledger:
    """The ledger table, through any DynamoDB low-level client."""

    def __init__(self, client: DynamoClient, table: str) -> None:
        self._client = client
        self._table = table

    def file_started(self, ref: FileRef) -> None:
        """Record that splitting has begun (idempotent: keeps what an earlier run wrote)."""
        fid = file_id(ref)
        self._client.update_item(
            TableName=self._table,
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

    def file_checked(self, ref: FileRef, records: int) -> None:
        """Record that the file passed its structural check, and how many records it holds."""
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _file_pk(file_id(ref))}},
            UpdateExpression="SET #n = :n",
            ExpressionAttributeNames={"#n": "record_count"},
            ExpressionAttributeValues={":n": {"N": str(records)}},
        )

    def file_split(self, ref: FileRef, emitted: int) -> None:
        """Record that every record of the file has been emitted, and how many there were."""
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _file_pk(file_id(ref))}},
            UpdateExpression="SET #n = :n, #s = :s",
            ExpressionAttributeNames={"#s": "status", "#n": "emitted"},
            ExpressionAttributeValues={":n": {"N": str(emitted)}, ":s": {"S": FileStatus.SPLIT}},
        )

    def file_ended(self, ref: FileRef, status: FileStatus, reason: str | None = None) -> None:
        """Record that a file was refused or finished (with a reason that quotes no content)."""
        values: dict[str, Any] = {":s": {"S": status}, ":t": {"N": str(int(time.time()))}}
        expression = "SET #s = :s, #e = :t"
        names = {"#s": "status", "#e": "ended_at"}
        if reason is not None:
            expression += ", #r = :r"
            values[":r"] = {"S": reason}
            names["#r"] = "reason"
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _file_pk(file_id(ref))}},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def file_refused(self, ref: FileRef, reason: str) -> None:
        """Record that a file was refused whole (structurally bad)."""
        self.file_ended(ref, FileStatus.REFUSED, reason)

    def file_finished(self, ref: FileRef) -> None:
        """Record that every record of a file is accounted for and its source is deleted."""
        self.file_ended(ref, FileStatus.FINISHED)

    def record_ended(
        self,
        ref: FileRef,
        ordinal: int,
        status: RecordStatus,
        *,
        event_id: str | None = None,
        reasons: tuple[str, ...] = (),
        handled_by: str | None = None,
    ) -> bool:
        """Record a record's terminal status; True if this call changed anything.

        `handled_by` ("publisher 0.1.0+3f2a1c9") goes on the record's item and into its block's
        set of releases, so an operator can tell which version of which service ended it.

        The record's ordinal goes into its block's set for that status, and the block's count for
        that status goes up, in one conditional UpdateItem: a repeat finds the ordinal already in
        the set and changes nothing; a move (dead-lettered, then redriven and published) takes it
        out of one set and count and puts it in another. One item, one write: no transaction.
        """
        fid = file_id(ref)
        key = {"pk": {"S": _block_pk(fid, ordinal)}}
        expiry = {"N": _expiry()}
        if status is not RecordStatus.PUBLISHED or reasons:
            # the why, for an operator; counting never reads it
            self._client.put_item(
                TableName=self._table,
                Item={
                    "pk": {"S": _record_pk(fid, ordinal)},
                    "status": {"S": status.value},
                    "reasons": {"L": [{"S": r} for r in reasons]},
                    "event_id": {"S": event_id or ""},
                    "by": {"S": handled_by or ""},
                    "expires_at": expiry,
                    "updated_at": {"N": str(int(time.time()))},
                },
            )
        member = {"NS": [str(ordinal)]}
        value = {"N": str(ordinal)}
        names = {"#p": "p", "#r": "r", "#d": "d", "#x": "expires_at"}
        absent = " AND ".join(
            f"(attribute_not_exists({n}) OR NOT contains({n}, :ov))" for n in ("#p", "#r", "#d")
        )
        new_set, new_count = _SETS[status], _COUNTS[status]
        # the release that ended it, added to the block's set of releases (a set: no growth)
        by_names = {"#v": "v"} if handled_by else {}
        by_values = {":v": {"SS": [handled_by]}} if handled_by else {}
        add_by = ", #v :v" if handled_by else ""
        conditional_failure = self._client.exceptions.ConditionalCheckFailedException
        for _ in range(3):
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression=f"ADD #new :o, #newn :one{add_by} SET #x = :x",
                    ConditionExpression=absent,
                    ExpressionAttributeNames={
                        **names,
                        **by_names,
                        "#new": new_set,
                        "#newn": new_count,
                    },
                    ExpressionAttributeValues={
                        ":o": member,
                        ":ov": value,
                        ":one": {"N": "1"},
                        ":x": expiry,
                        **by_values,
                    },
                )
                return True
            except conditional_failure:
                pass
            item = self._client.get_item(TableName=self._table, Key=key, ConsistentRead=True).get(
                "Item", {}
            )
            old = next(
                (
                    st
                    for st, name in _SETS.items()
                    if str(ordinal) in item.get(name, {}).get("NS", [])
                ),
                None,
            )
            if old is status:
                return False
            if old is None:
                continue  # moved under us: look again
            try:
                self._client.update_item(
                    TableName=self._table,
                    Key=key,
                    UpdateExpression=(
                        f"ADD #new :o, #newn :one, #oldn :minus{add_by} DELETE #old :o"
                    ),
                    ConditionExpression="contains(#old, :ov)",
                    ExpressionAttributeNames={
                        **by_names,
                        "#new": new_set,
                        "#newn": new_count,
                        "#old": _SETS[old],
                        "#oldn": _COUNTS[old],
                    },
                    ExpressionAttributeValues={
                        ":o": member,
                        ":ov": value,
                        ":one": {"N": "1"},
                        ":minus": {"N": "-1"},
                        **by_values,
                    },
                )
            except conditional_failure:
                continue
            # say on the record's own item that it moved (a redrive), for the operator
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _record_pk(fid, ordinal)}},
                UpdateExpression="SET #s = :s, #m = :m, #u = :u, #x = :x, #b = :b",
                ExpressionAttributeNames={
                    "#s": "status",
                    "#m": "moved_from",
                    "#u": "updated_at",
                    "#x": "expires_at",
                    "#b": "by",
                },
                ExpressionAttributeValues={
                    ":s": {"S": status.value},
                    ":m": {"S": old.value},
                    ":u": {"N": str(int(time.time()))},
                    ":x": expiry,
                    ":b": {"S": handled_by or ""},
                },
            )
            return True
        raise RuntimeError(f"ledger: record {ordinal} kept changing under us")

    def record_endings(self, fid: str) -> list[RecordEnding]:
        """Why each of a file's records that was not simply published ended as it did (and
        which moved after a redrive). A scan over every page: an operator's question."""
        pages = self._client.get_paginator("scan").paginate(
            TableName=self._table,
            FilterExpression="begins_with(pk, :p)",
            ExpressionAttributeValues={":p": {"S": f"rec#{fid}#"}},
        )
        endings = []
        for page in pages:
            for item in page.get("Items", []):
                endings.append(
                    RecordEnding(
                        ordinal=int(item["pk"]["S"].rsplit("#", 1)[1]),
                        status=item.get("status", {}).get("S", ""),
                        reasons=tuple(r["S"] for r in item.get("reasons", {}).get("L", [])),
                        event_id=item.get("event_id", {}).get("S") or None,
                        moved_from=item.get("moved_from", {}).get("S"),
                        handled_by=item.get("by", {}).get("S") or None,
                    )
                )
        return sorted(endings, key=lambda e: e.ordinal)

    def progress(self, fid: str) -> FileProgress:
        """A file's standing: its file item, and the counts summed over its blocks."""
        file_item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _file_pk(fid)}}, ConsistentRead=True
        ).get("Item", {})
        emitted = file_item.get("emitted", {}).get("N")
        known = int(emitted or file_item.get("record_count", {}).get("N", "0"))
        totals = {"published": 0, "rejected": 0, "dead_lettered": 0}
        releases: set[str] = set()
        keys = [{"pk": {"S": f"file#{fid}#blk#{b}"}} for b in range((known + BLOCK - 1) // BLOCK)]
        for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys[start : start + 100],
                    "ConsistentRead": True,
                    "ProjectionExpression": "np, nr, nd, v",
                }
            }
            while request:
                answer = self._client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    totals["published"] += _n(item, "np")
                    totals["rejected"] += _n(item, "nr")
                    totals["dead_lettered"] += _n(item, "nd")
                    releases.update(item.get("v", {}).get("SS", []))
                request = answer.get("UnprocessedKeys") or {}
        return FileProgress(
            file_id=fid,
            status=file_item.get("status", {}).get("S"),
            emitted=int(emitted) if emitted is not None else None,
            record_count=known,
            reason=file_item.get("reason", {}).get("S"),
            terminal=sum(totals.values()),
            handled_by=tuple(sorted(releases)),
            **totals,
        )
