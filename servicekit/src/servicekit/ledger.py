"""The ingestion ledger: where each file stands and how each of its records ended.

No personal data lives here: file identity, ordinals, event ids, statuses, reasons that name
fields. Three kinds of item, each on its own partition key so that no single key takes every
write of a million-record file (DynamoDB allows about 1,000 writes/s per key):

- file item   pk=`file#{file_id}`             what the file is, how many records it holds
- block item  pk=`file#{file_id}#blk#{n}`     ordinals n*256+1.. by terminal status, and counts
- record item pk=`rec#{file_id}#{ordinal}`    why a record was rejected or dead-lettered
- one item    pk=`receipts#open`              files whose receipt waits for records to leave
                                              the temporary store (the sweep looks at them)

Every write is idempotent under at-least-once delivery (see `record_ended`, `record_left`,
and their forms folded per block for a batch, `records_ended`, `records_left`).

What a deletion receipt is made of lives here too: the file's hash and size (from the
splitter), when each stage finished, and, per block, which published records have left the
temporary store and how (`record_left`). Once a file is finished, `watch_store` counts its
blocks that still have a published record in the store on the file item (`open`); the write
that takes a block's last record out brings the count down, so "the last record of the file
has left the store" is known from one block and one file item, never from a scan.

The client is any DynamoDB low-level client (boto3's), passed in: this module imports no SDK.
Every service that writes the ledger goes through here, and so do the operator's tools that
read it, so the item layout is known in one place.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

import msgspec

from contracts.messages import FileRef, file_id
from contracts.steps import FileCounts, Run, Settled

# Records are counted in blocks of this many consecutive ordinals, one item (and one partition
# key) per block: small items, cheap writes, and no single key takes a whole file's writes.
BLOCK = 256
LEDGER_RETENTION_SECONDS = 30 * 24 * 3600
# `progress` remembers at most this many runs of settled blocks (a run is ~30 bytes of the
# state machine's state, which holds 256 KiB): a block that would start one more is read again.
MAX_SETTLED_RUNS = 200
# At most this many ordinals are folded into one conditional write (`records_ended`,
# `records_left`): its condition names each of them three times, and DynamoDB takes
# expressions of up to 4 KB.
FOLD = 25


class RecordStatus(StrEnum):
    """How a record ended. Every status here is terminal."""

    PUBLISHED = "published"
    REJECTED = "rejected"
    DEAD_LETTERED = "dead_lettered"


class LeftBy(StrEnum):
    """How a record's copy left the temporary store."""

    CONSUMED = "consumed"  # every consumer has consumed it: the reaper deleted it
    EXPIRED = "expired"  # past its expiry: the reaper's sweep deleted it
    # found gone by the reaper: the publisher deleted it (the platform had the event from an
    # earlier ingestion, or the message was given up on), or DynamoDB's TTL did
    GONE = "gone"


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
    # the blocks known complete (each of their records terminal), for the next call to skip
    settled: Settled = Settled()

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


class Left(msgspec.Struct, frozen=True, kw_only=True):
    """What `record_left` did: whether it changed anything, and whether the file's receipt is
    now due to be written again (its last record has left the store, or a record that was
    published after its block had emptied has left)."""

    changed: bool
    receipt_due: bool = False


class Watch(msgspec.Struct, frozen=True, kw_only=True):
    """What `watch_store` did: done, or stopped for time (call it again)."""

    done: bool


class ReceiptFacts(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a file's deletion receipt says, as the ledger has it now. No personal data:
    identities, counts, times (Unix seconds), the file's hash and size."""

    file_id: str
    bucket: str | None = None
    key: str | None = None
    version_id: str | None = None
    status: str | None = None
    emitted: int | None = None
    published: int = 0
    rejected: int = 0
    dead_lettered: int = 0
    # of the published records: how they left the temporary store, and how many have not
    consumed: int = 0
    expired: int = 0
    gone: int = 0
    in_store: int = 0
    sha256: str | None = None
    size: int | None = None
    started_at: int | None = None
    split_at: int | None = None
    published_at: int | None = None
    accounted_at: int | None = None
    source_deleted_at: int | None = None
    last_left_store_at: int | None = None
    # the store watch is set up (every block with a record in the store counted in `open`)
    watched: bool = False
    open_blocks: int = 0


class RecordEnd(NamedTuple):
    """One record's terminal status, for `records_ended` (reasons go one by one)."""

    file: FileRef
    ordinal: int
    status: RecordStatus
    event_id: str | None = None


class LeftMany(NamedTuple):
    """What `records_left` did: the ordinals it noted (not noted before), whether the file's
    receipt is now due to be written again, and the ordinals it could not note, with why."""

    changed: frozenset[int]
    receipt_due: bool
    failed: Mapping[int, BaseException]


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
    def transact_write_items(self, **kwargs: Any) -> Any: ...
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
# a block's sets of ordinals whose copy left the temporary store, by how
_LEFT = {LeftBy.CONSUMED: "gc", LeftBy.EXPIRED: "gx", LeftBy.GONE: "gg"}
OPEN_FILES_PK = "receipts#open"
_COUNTS = {
    RecordStatus.PUBLISHED: "np",
    RecordStatus.REJECTED: "nr",
    RecordStatus.DEAD_LETTERED: "nd",
}


def _n(item: dict[str, Any], name: str) -> int:
    return int(item.get(name, {}).get("N", "0"))


def _maybe_n(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name, {}).get("N")
    return int(value) if value is not None else None


def _ordinals(item: dict[str, Any], name: str) -> set[int]:
    return {int(o) for o in item.get(name, {}).get("NS", [])}


def _gone(item: dict[str, Any]) -> set[int]:
    return set().union(*(_ordinals(item, name) for name in _LEFT.values()))


def _in_store(item: dict[str, Any]) -> set[int]:
    """A block's published records not yet seen leaving the temporary store."""
    return _ordinals(item, "p") - _gone(item)


def _none_in(sets: Iterable[str], values: Sequence[str]) -> str:
    """A condition: none of the values (placeholders) is in any of the sets (placeholders)."""
    clauses = []
    for name in sets:
        any_in = " OR ".join(f"contains({name}, {value})" for value in values)
        clauses.append(f"(attribute_not_exists({name}) OR NOT ({any_in}))")
    return " AND ".join(clauses)


def _folds(ordinals: Iterable[int]) -> list[list[int]]:
    """Distinct ordinals, in runs of at most FOLD that each lie in one block."""
    blocks: dict[int, list[int]] = {}
    for ordinal in sorted(set(ordinals)):
        blocks.setdefault((ordinal - 1) // BLOCK, []).append(ordinal)
    return [ords[i : i + FOLD] for ords in blocks.values() for i in range(0, len(ords), FOLD)]


def _unchanged(item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A condition that holds while the block is as `item` shows it (its version `nv` goes up
    with every record that leaves the store), with its value."""
    if "nv" in item:
        return "#nv = :nv", {":nv": item["nv"]}
    return "attribute_not_exists(#nv)", {}


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

    def file_checked(
        self, ref: FileRef, records: int, *, sha256: str | None = None, size: int | None = None
    ) -> None:
        """Record that the file passed its structural check, how many records it holds, and
        (for its receipt) the SHA-256 of its bytes and its size."""
        expression = "SET #n = :n"
        names = {"#n": "record_count"}
        values: dict[str, Any] = {":n": {"N": str(records)}}
        if sha256 is not None:
            expression += ", #h = :h"
            names["#h"] = "sha256"
            values[":h"] = {"S": sha256}
        if size is not None:
            expression += ", #z = :z"
            names["#z"] = "size"  # a reserved word
            values[":z"] = {"N": str(size)}
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _file_pk(file_id(ref))}},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def file_split(self, ref: FileRef, emitted: int) -> None:
        """Record that every record of the file has been emitted, and how many there were."""
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _file_pk(file_id(ref))}},
            UpdateExpression="SET #n = :n, #s = :s, #t = if_not_exists(#t, :t)",
            ExpressionAttributeNames={"#s": "status", "#n": "emitted", "#t": "split_at"},
            ExpressionAttributeValues={
                ":n": {"N": str(emitted)},
                ":s": {"S": FileStatus.SPLIT},
                ":t": {"N": str(int(time.time()))},
            },
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
        # when the block's last record ended (and was published): the receipt's stage times
        ended_names = {"#te": "te", **({"#tp": "tp"} if status is RecordStatus.PUBLISHED else {})}
        set_ended = "".join(f", {n} = :now" for n in ended_names)
        now = {":now": {"N": str(int(time.time()))}}
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
                    UpdateExpression=f"ADD #new :o, #newn :one{add_by} SET #x = :x{set_ended}",
                    ConditionExpression=absent,
                    ExpressionAttributeNames={
                        **names,
                        **by_names,
                        **ended_names,
                        "#new": new_set,
                        "#newn": new_count,
                    },
                    ExpressionAttributeValues={
                        ":o": member,
                        ":ov": value,
                        ":one": {"N": "1"},
                        ":x": expiry,
                        **by_values,
                        **now,
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
                        f"ADD #new :o, #newn :one, #oldn :minus{add_by} DELETE #old :o "
                        f"SET {set_ended.removeprefix(', ')}"
                    ),
                    ConditionExpression="contains(#old, :ov)",
                    ExpressionAttributeNames={
                        **by_names,
                        **ended_names,
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
                        **now,
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

    def records_ended(
        self, endings: Sequence[RecordEnd], *, handled_by: str | None = None
    ) -> list[BaseException | None]:
        """Record many records' terminal statuses (a batch's); for each, None, or the error
        that stopped its write.

        Folded: the ordinals of one block that ended the same way go into the block's set and
        count in one conditional UpdateItem, on condition that none of them is in any of the
        block's three sets yet, which is `record_ended`'s own condition for all of them at
        once. If it fails (one of them is counted already: a redelivery, a move after a
        redrive, a concurrent write), nothing was written and each goes through `record_ended`
        alone, which counts only what it has not counted. So a record is counted once however
        often, and in whatever company, it is delivered. A record that ended two ways in one
        batch goes alone too.
        """
        out: list[BaseException | None] = [None] * len(endings)
        ways: dict[tuple[str, int], set[RecordStatus]] = {}
        for e in endings:
            ways.setdefault((file_id(e.file), e.ordinal), set()).add(e.status)
        groups: dict[tuple[str, RecordStatus], list[int]] = {}
        alone: list[int] = []
        for i, e in enumerate(endings):
            fid = file_id(e.file)
            if len(ways[(fid, e.ordinal)]) > 1:
                alone.append(i)
            else:
                groups.setdefault((fid, e.status), []).append(i)
        for (fid, status), indices in groups.items():
            for run in _folds(endings[i].ordinal for i in indices):
                mine = [i for i in indices if endings[i].ordinal in run]
                if len(run) == 1:
                    alone += mine
                    continue
                try:
                    folded = self._fold_ended(fid, run, status, handled_by)
                except Exception as err:
                    for i in mine:
                        out[i] = err
                    continue
                if not folded:
                    alone += mine
        for i in sorted(alone):
            e = endings[i]
            try:
                self.record_ended(
                    e.file, e.ordinal, e.status, event_id=e.event_id, handled_by=handled_by
                )
            except Exception as err:
                out[i] = err
        return out

    def _fold_ended(
        self, fid: str, ordinals: list[int], status: RecordStatus, handled_by: str | None
    ) -> bool:
        """One block's ordinals into its set for `status`, counted, if none of them is in any
        of its sets; False (nothing written) if one is."""
        values = {f":o{k}": {"N": str(o)} for k, o in enumerate(ordinals)}
        ended = {"#te": "te", **({"#tp": "tp"} if status is RecordStatus.PUBLISHED else {})}
        by_names = {"#v": "v"} if handled_by else {}
        by_values = {":v": {"SS": [handled_by]}} if handled_by else {}
        add_by = ", #v :v" if handled_by else ""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _block_pk(fid, ordinals[0])}},
                UpdateExpression=(
                    f"ADD #new :os, #newn :k{add_by} SET #x = :x"
                    + "".join(f", {n} = :now" for n in ended)
                ),
                ConditionExpression=_none_in(("#p", "#r", "#d"), list(values)),
                ExpressionAttributeNames={
                    "#p": "p",
                    "#r": "r",
                    "#d": "d",
                    "#x": "expires_at",
                    "#new": _SETS[status],
                    "#newn": _COUNTS[status],
                    **ended,
                    **by_names,
                },
                ExpressionAttributeValues={
                    **values,
                    ":os": {"NS": [str(o) for o in ordinals]},
                    ":k": {"N": str(len(ordinals))},
                    ":x": {"N": _expiry()},
                    ":now": {"N": str(int(time.time()))},
                    **by_values,
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

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

    def progress(self, fid: str, *, settled: Settled | None = None) -> FileProgress:
        """A file's standing: its file item, and the counts summed over its blocks.

        `settled` (the `settled` of an earlier answer) spares the blocks it covers: they are not
        read again, their counts are taken from it. A complete block (every one of its records
        terminal) stays complete: a record is counted once, and a redrive only moves it from
        one terminal status to another within its block. So a file polled until it is complete
        has each block read about once after it completes, not once per poll. The answer's
        `settled` adds every block found complete now (up to `MAX_SETTLED_RUNS` runs of them).
        With `settled`, the counts by status of the blocks it covers are as they were when
        last read (their sum, `terminal`, is exact) and `handled_by` names the releases of
        the blocks read; without it, every block is read."""
        file_item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _file_pk(fid)}}, ConsistentRead=True
        ).get("Item", {})
        emitted = file_item.get("emitted", {}).get("N")
        known = int(emitted or file_item.get("record_count", {}).get("N", "0"))
        size = _sizer(int(emitted) if emitted is not None else None)
        count = _block_count(known)
        skipped = _covered(settled, count, size) if settled is not None else None
        base = settled if skipped is not None and settled is not None else Settled()
        skipped = skipped or set()
        totals = {
            "published": base.published,
            "rejected": base.rejected,
            "dead_lettered": base.dead_lettered,
        }
        releases: set[str] = set()
        complete: dict[int, tuple[int, int, int]] = {}
        to_read = (b for b in range(count) if b not in skipped)
        for item in self._read_blocks(fid, to_read, ("pk", "np", "nr", "nd", "v")):
            ended = (_n(item, "np"), _n(item, "nr"), _n(item, "nd"))
            totals["published"] += ended[0]
            totals["rejected"] += ended[1]
            totals["dead_lettered"] += ended[2]
            releases.update(item.get("v", {}).get("SS", []))
            block = int(item["pk"]["S"].rsplit("#", 1)[1])
            if sum(ended) >= size(block):
                complete[block] = ended
        return FileProgress(
            file_id=fid,
            status=file_item.get("status", {}).get("S"),
            emitted=int(emitted) if emitted is not None else None,
            record_count=known,
            reason=file_item.get("reason", {}).get("S"),
            terminal=sum(totals.values()),
            handled_by=tuple(sorted(releases)),
            settled=_settle(base, skipped, complete, size),
            **totals,
        )

    def _blocks(self, fid: str, records: int, attributes: tuple[str, ...]) -> Iterator[Any]:
        """The block items of a file of `records` records (those that exist), read strongly
        consistent, with the given attributes only."""
        return self._read_blocks(fid, range(_block_count(records)), attributes)

    def _read_blocks(
        self, fid: str, blocks: Iterable[int], attributes: tuple[str, ...]
    ) -> Iterator[Any]:
        """The items of the given blocks of a file (those that exist), read strongly
        consistent, with the given attributes only."""
        keys = [{"pk": {"S": f"file#{fid}#blk#{b}"}} for b in blocks]
        names = {f"#a{i}": name for i, name in enumerate(attributes)}
        for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys[start : start + 100],
                    "ConsistentRead": True,
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                }
            }
            while request:
                answer = self._client.batch_get_item(RequestItems=request)
                yield from answer.get("Responses", {}).get(self._table, [])
                request = answer.get("UnprocessedKeys") or {}

    # -- the temporary store, for the deletion receipt -------------------------------------

    def source_deleted(self, ref: FileRef, at: int) -> int:
        """Record when the source object was deleted; the first time recorded stays (a retried
        finish deletes again and changes nothing). Returns the time recorded."""
        answer = self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": _file_pk(file_id(ref))}},
            UpdateExpression="SET #d = if_not_exists(#d, :t)",
            ExpressionAttributeNames={"#d": "source_deleted_at"},
            ExpressionAttributeValues={":t": {"N": str(int(at))}},
            ReturnValues="ALL_NEW",
        )
        return int(answer["Attributes"]["source_deleted_at"]["N"])

    def record_left(self, fid: str, ordinal: int, how: LeftBy, *, at: float | None = None) -> Left:
        """Record that a record's copy has left the temporary store, and how; idempotent.

        The ordinal goes into its block's set for `how`, unless it is in one of the three sets
        already (a repeated notice, or the sweep finding gone what a notice took): one
        conditional UpdateItem. If the file's store watch is set up and this was the last of
        the block's published records in the store, the block leaves the file's `open` count
        (one transaction over the block and the file item, conditional on the block's version),
        and if that was the file's last open block, the receipt is due: exactly one of the calls
        that close the file's blocks says so, however many run at once.
        """
        key = {"pk": {"S": _block_pk(fid, ordinal)}}
        absent = " AND ".join(
            f"(attribute_not_exists({n}) OR NOT contains({n}, :ov))" for n in ("#c", "#x", "#g")
        )
        try:
            item = self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="ADD #how :o, #nv :one SET #t = :t, #e = :e",
                ConditionExpression=absent,
                ExpressionAttributeNames={
                    "#c": _LEFT[LeftBy.CONSUMED],
                    "#x": _LEFT[LeftBy.EXPIRED],
                    "#g": _LEFT[LeftBy.GONE],
                    "#how": _LEFT[how],
                    "#nv": "nv",
                    "#t": "tg",
                    "#e": "expires_at",
                },
                ExpressionAttributeValues={
                    ":o": {"NS": [str(ordinal)]},
                    ":ov": {"N": str(ordinal)},
                    ":one": {"N": "1"},
                    ":t": {"N": str(int(at or time.time()))},
                    ":e": {"N": _expiry()},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except self._client.exceptions.ConditionalCheckFailedException:
            return Left(changed=False)
        if "w" not in item or ordinal not in _ordinals(item, "p"):
            return Left(changed=True)  # not watched yet: the finish will count what is left
        if "o" not in item:
            # a record published after its block had emptied (a redrive after the file
            # finished) has left: the receipt's counts have moved
            return Left(changed=True, receipt_due=self._store_emptied(fid))
        return Left(changed=True, receipt_due=self._close_block(fid, key, item))

    def records_left(
        self, fid: str, ordinals: Iterable[int], how: LeftBy, *, at: float | None = None
    ) -> LeftMany:
        """`record_left` for many records of one file (a batch's), folded: the ordinals of
        one block go into its set for `how` in one conditional UpdateItem, on condition that
        none of them is in any of its three sets yet (`record_left`'s own condition, for all
        of them at once); if it fails, nothing was written and each goes through
        `record_left` alone. Then, as `record_left` does, the block leaves the file's `open`
        count if that took its last published record out of the store.
        """
        changed: set[int] = set()
        failed: dict[int, BaseException] = {}
        due = False
        alone: list[int] = []
        for run in _folds(ordinals):
            if len(run) == 1:
                alone += run
                continue
            try:
                noted = self._fold_left(fid, run, how, at)
            except Exception as err:
                failed.update(dict.fromkeys(run, err))
                continue
            if noted is None:
                alone += run
            else:
                changed.update(run)
                due = due or noted
        for ordinal in alone:
            try:
                left = self.record_left(fid, ordinal, how, at=at)
            except Exception as err:
                failed[ordinal] = err
                continue
            due = due or left.receipt_due
            if left.changed:
                changed.add(ordinal)
        return LeftMany(changed=frozenset(changed), receipt_due=due, failed=failed)

    def _fold_left(
        self, fid: str, ordinals: list[int], how: LeftBy, at: float | None
    ) -> bool | None:
        """One block's ordinals into its set for `how`, if none of them is in any of its
        three sets: whether the receipt is now due; None (nothing written) if one of them is."""
        key = {"pk": {"S": _block_pk(fid, ordinals[0])}}
        values = {f":o{k}": {"N": str(o)} for k, o in enumerate(ordinals)}
        try:
            item = self._client.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="ADD #how :os, #nv :k SET #t = :t, #e = :e",
                ConditionExpression=_none_in(("#c", "#x", "#g"), list(values)),
                ExpressionAttributeNames={
                    "#c": _LEFT[LeftBy.CONSUMED],
                    "#x": _LEFT[LeftBy.EXPIRED],
                    "#g": _LEFT[LeftBy.GONE],
                    "#how": _LEFT[how],
                    "#nv": "nv",
                    "#t": "tg",
                    "#e": "expires_at",
                },
                ExpressionAttributeValues={
                    **values,
                    ":os": {"NS": [str(o) for o in ordinals]},
                    ":k": {"N": str(len(ordinals))},
                    ":t": {"N": str(int(at or time.time()))},
                    ":e": {"N": _expiry()},
                },
                ReturnValues="ALL_NEW",
            )["Attributes"]
        except self._client.exceptions.ConditionalCheckFailedException:
            return None
        if "w" not in item or not set(ordinals) & _ordinals(item, "p"):
            return False  # not watched yet: the finish will count what is left
        if "o" not in item:
            # records published after their block had emptied (a redrive after the file
            # finished) have left: the receipt's counts have moved
            return self._store_emptied(fid)
        return self._close_block(fid, key, item)

    def _close_block(self, fid: str, key: dict[str, Any], item: dict[str, Any]) -> bool:
        """Take the block out of the file's `open` count if none of its published records is
        left in the store; True if the file then has none left either."""
        for _ in range(5):
            if "o" not in item or _in_store(item):
                return False
            unchanged, value = _unchanged(item)
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": key,
                                "UpdateExpression": "REMOVE #o",
                                "ConditionExpression": f"attribute_exists(#o) AND {unchanged}",
                                "ExpressionAttributeNames": {"#o": "o", "#nv": "nv"},
                                **({"ExpressionAttributeValues": value} if value else {}),
                            }
                        },
                        self._count_open(fid, -1),
                    ]
                )
            except self._client.exceptions.TransactionCanceledException:
                item = self._client.get_item(
                    TableName=self._table, Key=key, ConsistentRead=True
                ).get("Item", {})
                continue
            return self._claim_last_close(fid)
        raise RuntimeError(f"ledger: a block of file {fid} kept changing under us")

    def _claim_last_close(self, fid: str) -> bool:
        """True for exactly one of the calls that close a block once the file has none open.

        The transaction that closes a block cannot say what the count became, and reading it
        afterwards lets two closers of the last two blocks both read 0. So whoever finds it 0
        claims it on the file item (`lc`), on condition that nobody has: one conditional
        UpdateItem, in place of the read."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={"pk": {"S": _file_pk(fid)}},
                UpdateExpression="SET #lc = :t",
                ConditionExpression=(
                    "attribute_exists(#wd) AND #open = :zero AND attribute_not_exists(#lc)"
                ),
                ExpressionAttributeNames={"#lc": "lc", "#wd": "wd", "#open": "open"},
                ExpressionAttributeValues={
                    ":t": {"N": str(int(time.time()))},
                    ":zero": {"N": "0"},
                },
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _count_open(self, fid: str, by: int) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": _file_pk(fid)}},
                "UpdateExpression": "ADD #open :by",
                "ExpressionAttributeNames": {"#open": "open"},
                "ExpressionAttributeValues": {":by": {"N": str(by)}},
            }
        }

    def _store_emptied(self, fid: str) -> bool:
        """The file's store watch is set up and none of its blocks is open."""
        item = self._client.get_item(
            TableName=self._table,
            Key={"pk": {"S": _file_pk(fid)}},
            ConsistentRead=True,
            ProjectionExpression="#wd, #open",
            ExpressionAttributeNames={"#wd": "wd", "#open": "open"},
        ).get("Item", {})
        return "wd" in item and _n(item, "open") == 0

    def watch_store(
        self, fid: str, *, now: float | None = None, out_of_time: Callable[[], bool] = lambda: False
    ) -> Watch:
        """Once a file is finished: count on its file item (`open`) each block that still has a
        published record in the temporary store, so that `record_left` knows when the last one
        has gone. Resumable (the next block to look at is kept on the file item) and
        idempotent; the count is held one above its true value until every block is counted,
        so that it cannot reach 0 early. Also lists the file among those the sweep looks at."""
        file_key = {"pk": {"S": _file_pk(fid)}}
        at = {":t": {"N": str(int(now or time.time()))}}
        item = self._client.get_item(TableName=self._table, Key=file_key, ConsistentRead=True).get(
            "Item", {}
        )
        if "wd" in item:
            return Watch(done=True)
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": OPEN_FILES_PK}},
            UpdateExpression="ADD #f :f",
            ExpressionAttributeNames={"#f": "files"},
            ExpressionAttributeValues={":f": {"SS": [fid]}},
        )
        conditional_failure = self._client.exceptions.ConditionalCheckFailedException
        if "wg" not in item:
            with contextlib.suppress(conditional_failure):  # an earlier attempt took it
                self._client.update_item(
                    TableName=self._table,
                    Key=file_key,
                    UpdateExpression="SET #wg = :t ADD #open :one",
                    ConditionExpression="attribute_not_exists(#wg)",
                    ExpressionAttributeNames={"#wg": "wg", "#open": "open"},
                    ExpressionAttributeValues={**at, ":one": {"N": "1"}},
                )
        records = int(item.get("emitted", item.get("record_count", {"N": "0"}))["N"])
        for block in range(_n(item, "wn"), _block_count(records)):
            if out_of_time():
                self._client.update_item(
                    TableName=self._table,
                    Key=file_key,
                    UpdateExpression="SET #wn = :n",
                    ExpressionAttributeNames={"#wn": "wn"},
                    ExpressionAttributeValues={":n": {"N": str(block)}},
                )
                return Watch(done=False)
            self._watch_block(fid, block)
        with contextlib.suppress(conditional_failure):  # an earlier attempt released it
            self._client.update_item(
                TableName=self._table,
                Key=file_key,
                UpdateExpression="SET #wd = :t ADD #open :minus",
                ConditionExpression="attribute_not_exists(#wd)",
                ExpressionAttributeNames={"#wd": "wd", "#open": "open"},
                ExpressionAttributeValues={**at, ":minus": {"N": "-1"}},
            )
        return Watch(done=True)

    def _watch_block(self, fid: str, block: int) -> None:
        key = {"pk": {"S": f"file#{fid}#blk#{block}"}}
        item = self._client.update_item(
            TableName=self._table,
            Key=key,
            UpdateExpression="SET #w = :one, #e = if_not_exists(#e, :e)",
            ExpressionAttributeNames={"#w": "w", "#e": "expires_at"},
            ExpressionAttributeValues={":one": {"N": "1"}, ":e": {"N": _expiry()}},
            ReturnValues="ALL_NEW",
        )["Attributes"]
        for _ in range(5):
            if "o" in item or not _in_store(item):
                return
            unchanged, value = _unchanged(item)
            try:
                self._client.transact_write_items(
                    TransactItems=[
                        {
                            "Update": {
                                "TableName": self._table,
                                "Key": key,
                                "UpdateExpression": "SET #o = :one",
                                "ConditionExpression": f"attribute_not_exists(#o) AND {unchanged}",
                                "ExpressionAttributeNames": {"#o": "o", "#nv": "nv"},
                                "ExpressionAttributeValues": {":one": {"N": "1"}, **value},
                            }
                        },
                        self._count_open(fid, 1),
                    ]
                )
                return
            except self._client.exceptions.TransactionCanceledException:
                item = self._client.get_item(
                    TableName=self._table, Key=key, ConsistentRead=True
                ).get("Item", {})
        raise RuntimeError(f"ledger: block {block} of file {fid} kept changing under us")

    def in_store(self, fid: str) -> set[int]:
        """The ordinals of a file's published records not yet seen leaving the store."""
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _file_pk(fid)}}, ConsistentRead=True
        ).get("Item", {})
        records = int(item.get("emitted", item.get("record_count", {"N": "0"}))["N"])
        out: set[int] = set()
        for block in self._blocks(fid, records, ("p", *_LEFT.values())):
            out |= _in_store(block)
        return out

    def settle(self, fid: str) -> bool:
        """Take out of the file's `open` count every block none of whose published records is
        left in the store (a drain lost to a failure after the record was marked); True if the
        file then has none left. The sweep's backstop; idempotent."""
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _file_pk(fid)}}, ConsistentRead=True
        ).get("Item", {})
        records = int(item.get("emitted", item.get("record_count", {"N": "0"}))["N"])
        for block in self._blocks(fid, records, ("pk", "p", "o", "nv", *_LEFT.values())):
            if "o" in block and not _in_store(block):
                self._close_block(fid, {"pk": block["pk"]}, block)
        return self._store_emptied(fid)

    def open_files(self) -> list[str]:
        """The files whose receipt waits for records to leave the store, oldest id first."""
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": OPEN_FILES_PK}}, ConsistentRead=True
        ).get("Item", {})
        return sorted(item.get("files", {}).get("SS", []))

    def store_closed(self, fid: str) -> None:
        """Take a file off the sweep's list: nothing of it is left in the store."""
        self._client.update_item(
            TableName=self._table,
            Key={"pk": {"S": OPEN_FILES_PK}},
            UpdateExpression="DELETE #f :f",
            ExpressionAttributeNames={"#f": "files"},
            ExpressionAttributeValues={":f": {"SS": [fid]}},
        )

    def receipt_facts(self, fid: str) -> ReceiptFacts:
        """What a file's receipt says, from its file item and its blocks."""
        item = self._client.get_item(
            TableName=self._table, Key={"pk": {"S": _file_pk(fid)}}, ConsistentRead=True
        ).get("Item", {})
        emitted = _maybe_n(item, "emitted")
        records = emitted if emitted is not None else _n(item, "record_count")
        counts = {"published": 0, "rejected": 0, "dead_lettered": 0}
        left = dict.fromkeys(_LEFT, 0)
        in_store = 0
        times: dict[str, list[int]] = {"te": [], "tp": [], "tg": []}
        attributes = ("np", "nr", "nd", "p", *_LEFT.values(), *times)
        for block in self._blocks(fid, records, attributes):
            counts["published"] += _n(block, "np")
            counts["rejected"] += _n(block, "nr")
            counts["dead_lettered"] += _n(block, "nd")
            published = _ordinals(block, "p")
            for how, name in _LEFT.items():
                left[how] += len(_ordinals(block, name) & published)
            in_store += len(_in_store(block))
            for name, seen in times.items():
                if name in block:
                    seen.append(_n(block, name))
        return ReceiptFacts(
            file_id=fid,
            bucket=item.get("bucket", {}).get("S"),
            key=item.get("key", {}).get("S"),
            version_id=item.get("version_id", {}).get("S") or None,
            status=item.get("status", {}).get("S"),
            emitted=emitted,
            **counts,
            consumed=left[LeftBy.CONSUMED],
            expired=left[LeftBy.EXPIRED],
            gone=left[LeftBy.GONE],
            in_store=in_store,
            sha256=item.get("sha256", {}).get("S"),
            size=_maybe_n(item, "size"),
            started_at=_maybe_n(item, "started_at"),
            split_at=_maybe_n(item, "split_at"),
            published_at=max(times["tp"], default=None),
            accounted_at=max(times["te"], default=None),
            source_deleted_at=_maybe_n(item, "source_deleted_at"),
            last_left_store_at=max(times["tg"], default=None),
            watched="wd" in item,
            open_blocks=_n(item, "open"),
        )


def _block_count(records: int) -> int:
    return (records + BLOCK - 1) // BLOCK


def _sizer(emitted: int | None) -> Callable[[int], int]:
    """How many records a block holds once the file is split: BLOCK, but the last one fewer.
    Before `emitted` is known only a full block can be known complete."""

    def size(block: int) -> int:
        if emitted is None:
            return BLOCK
        return max(0, min(BLOCK, emitted - block * BLOCK))

    return size


def _span(block: int, size: Callable[[int], int]) -> tuple[int, int]:
    """A block's first and last ordinals."""
    return block * BLOCK + 1, block * BLOCK + size(block)


def _covered(settled: Settled, count: int, size: Callable[[int], int]) -> set[int] | None:
    """The blocks (of a file of `count` blocks) that `settled` covers whole; None if its runs
    are not exactly whole blocks of this file, or its counts are not theirs (then it is not to
    be trusted: read them all)."""
    blocks: set[int] = set()
    for run in settled.runs:
        block = (run.first - 1) // BLOCK
        while block < count and _span(block, size)[0] <= run.last:
            first, last = _span(block, size)
            if first < run.first or last > run.last or size(block) == 0:
                return None
            blocks.add(block)
            block += 1
    counted = settled.published + settled.rejected + settled.dead_lettered
    if not sum(size(b) for b in blocks) == settled.terminal == counted:
        return None
    return blocks


def _settle(
    base: Settled,
    blocks: set[int],
    complete: Mapping[int, tuple[int, int, int]],
    size: Callable[[int], int],
) -> Settled:
    """`base` (covering `blocks`) with the blocks found complete added, and their counts; a
    block that would start a run beyond `MAX_SETTLED_RUNS` is left out (read again)."""
    blocks = set(blocks)
    runs = sum(1 for b in blocks if b - 1 not in blocks)
    published, rejected, dead_lettered = base.published, base.rejected, base.dead_lettered
    for block in sorted(complete):
        joins = (block - 1 in blocks) + (block + 1 in blocks)
        if joins == 0 and runs >= MAX_SETTLED_RUNS:
            continue
        runs += 1 - joins
        blocks.add(block)
        p, r, d = complete[block]
        published, rejected, dead_lettered = published + p, rejected + r, dead_lettered + d
    spans: list[Run] = []
    for block in sorted(blocks):
        first, last = _span(block, size)
        if spans and spans[-1].last + 1 == first:
            spans[-1] = Run(first=spans[-1].first, last=last)
        else:
            spans.append(Run(first=first, last=last))
    return Settled(
        runs=tuple(spans), published=published, rejected=rejected, dead_lettered=dead_lettered
    )
