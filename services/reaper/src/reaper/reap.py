"""The reaper's decisions, as pure functions over ports: delete what every consumer has
consumed, finish a file once every record is accounted for, enforce retention, and keep each
file's deletion receipt true.

- A consumed notice deletes the stored event (idempotent: deleting what is gone is fine), and
  the ledger notes that the record has left the store. The store item says which file and
  ordinal it held (read without the event), so nothing is scanned per record. A batch of
  notices is done in a few calls: one read of where its events came from, their deletes 25 at
  a time, one ledger write per block; a notice whose part failed alone goes back to its queue.
- A file is finished when every emitted record has a terminal status in the ledger: then its
  source object version is deleted for good, the ledger starts watching which of its published
  records are still in the store, the ones the store no longer holds are noted as gone, and a
  deletion receipt (counts, times, the file's hash; no personal data) is written. Until then
  the state machine waits and asks again; if the count of terminal records stops moving for
  `stall_seconds`, the file fails loudly. Each check reads only the ledger blocks not already
  known complete (the step's state carries which are), and the waits between checks grow with
  the time spent checking (`next_wait`), so that a file of any size and pace keeps its
  execution's history small.
- When the last published record of a finished file leaves the store (a consumed notice, the
  sweep, or found gone), the receipt is written again: complete.
- The sweep deletes every stored event past its expiry, consumed or not (DynamoDB's TTL can
  lag 48 hours, so it is not relied on), and looks again at every file whose receipt waits:
  what the store no longer holds (TTL, a lost note) is noted as gone, and the receipt rewritten.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

import msgspec
from msgspec import UNSET

from contracts.messages import EventsConsumed, FileRef, file_id
from contracts.receipts import DeletionReceipt
from contracts.steps import FileCounts, FinishStepInput, FinishStepOutput, Settled
from servicekit.ledger import Left, LeftBy, LeftMany, ReceiptFacts, Watch
from servicekit.store import StoredRef

# The wait before the next check is this share of the time spent checking so far (between the
# base wait and the cap): a file that drains in a minute is finished within seconds of its last
# record, one that drains for hours is looked at every few minutes.
WAIT_SHARE = 20
MAX_WAIT_SECONDS = 600
# The sweep deletes expired events this many at a time: one BatchWriteItem (its limit), then
# one ledger write per block.
SWEEP_CHUNK = 25


def next_wait(base: int, checking: float, cap: int = MAX_WAIT_SECONDS) -> int:
    """Seconds to wait before the next check, after `checking` seconds of checks: 1/WAIT_SHARE
    of it, at least `base`, at most `cap` (but never below `base`). A file is finished at most
    that long after its last record is, and checked about WAIT_SHARE * ln(cap / base) + T / cap
    times in T seconds, whatever its size or pace (tests/infra/test_history.py counts)."""
    return max(base, min(cap, int(checking / WAIT_SHARE)))


class RecordsUnaccountedError(Exception):
    """A file's records stopped reaching terminal states: someone must look at the DLQs."""


class Progress(Protocol):
    """A file's standing in the ledger."""

    @property
    def complete(self) -> bool: ...
    @property
    def terminal(self) -> int: ...
    @property
    def settled(self) -> Settled: ...

    def counts(self) -> FileCounts: ...


class StoreLedger(Protocol):
    """The ledger, as the reaper notes records leaving the store and reads receipts."""

    def record_left(
        self, fid: str, ordinal: int, how: LeftBy, *, at: float | None = None
    ) -> Left: ...
    def records_left(
        self, fid: str, ordinals: Iterable[int], how: LeftBy, *, at: float | None = None
    ) -> LeftMany: ...
    def receipt_facts(self, fid: str) -> ReceiptFacts: ...
    def in_store(self, fid: str) -> set[int]: ...
    def settle(self, fid: str) -> bool: ...
    def open_files(self) -> list[str]: ...
    def store_closed(self, fid: str) -> None: ...


class FileLedger(StoreLedger, Protocol):
    """The ledger, as the reaper finishes files."""

    def progress(self, fid: str, *, settled: Settled | None = None) -> Progress: ...
    def file_finished(self, ref: FileRef) -> None: ...
    def source_deleted(self, ref: FileRef, at: int) -> int: ...
    def watch_store(
        self, fid: str, *, now: float | None = None, out_of_time: Callable[[], bool] = ...
    ) -> Watch: ...


class Receipts(Protocol):
    """Where receipts are kept (the landing bucket)."""

    def put_receipt(self, receipt: DeletionReceipt) -> None: ...


class Sources(Receipts, Protocol):
    """The landing bucket, as the reaper uses it."""

    def delete_source(self, file: FileRef) -> None:
        """Delete the object version for good (not a delete marker)."""
        ...


class Deletable(Protocol):
    """The temporary store, as the reaper empties it: by id and by expiry, reading only where
    an event came from (file, ordinal), never the event."""

    def delete_many(self, event_ids: Iterable[str]) -> Mapping[str, BaseException]: ...
    def locate_many(self, event_ids: Iterable[str]) -> Mapping[str, StoredRef]: ...
    def expired(self, now: float | None = None) -> Iterable[StoredRef]: ...


class Holdings(Protocol):
    """The temporary store, as the reaper asks what it holds of one file."""

    def ordinals_of(self, fid: str) -> set[int]: ...


class Retained(Deletable, Holdings, Protocol):
    """The temporary store, as the sweep sees it."""


class Swept(msgspec.Struct, frozen=True, kw_only=True):
    """What one sweep did."""

    deleted: int
    found_gone: int
    receipts: int


def consumed(
    notices: Sequence[EventsConsumed],
    *,
    store: Deletable,
    ledger: StoreLedger,
    receipts: Receipts,
    now: float,
) -> list[bool | BaseException]:
    """Every consumer is done with these events: they go, and their files' ledger says so. For
    each notice: True if it removed its event, False if the event was gone already (a repeated
    notice changes nothing), or the error that stopped it (the notice goes back to its queue;
    a redelivery finds its event gone and notes nothing, which the sweep catches as gone)."""
    try:
        where = store.locate_many(n.id for n in notices)
    except Exception as err:
        return [err] * len(notices)
    failed = leave(
        where, LeftBy.CONSUMED, store=store, ledger=ledger, receipts=receipts, now=now
    ).failed
    return [failed.get(n.id, n.id in where) for n in notices]


class Leaving(NamedTuple):
    """What `leave` did: the events it deleted, and those it could not delete or note (or
    whose receipt it could not write), with why."""

    deleted: frozenset[str]
    failed: dict[str, BaseException]


def leave(
    where: Mapping[str, StoredRef],
    how: LeftBy,
    *,
    store: Deletable,
    ledger: StoreLedger,
    receipts: Receipts,
    now: float,
) -> Leaving:
    """Delete these stored events, 25 to a call, and note each deleted one as left the store
    (`how`), one ledger write per block; write a file's receipt again if that made it due."""
    try:
        failed = dict(store.delete_many(where))
    except Exception as err:
        failed = dict.fromkeys(where, err)
    deleted = frozenset(where.keys() - failed.keys())
    by_file: dict[str, list[StoredRef]] = {}
    for ref in where.values():
        if ref.id in deleted:
            by_file.setdefault(ref.file_id, []).append(ref)
    for fid, refs in by_file.items():
        try:
            noted = ledger.records_left(fid, (r.ordinal for r in refs), how, at=now)
            failed.update(
                (r.id, noted.failed[r.ordinal]) for r in refs if r.ordinal in noted.failed
            )
            if noted.receipt_due:
                write_receipt(fid, ledger=ledger, receipts=receipts)
        except Exception as err:
            failed.update((r.id, failed.get(r.id, err)) for r in refs)
    return Leaving(deleted=deleted, failed=failed)


def finish_file(
    state: FinishStepInput,
    *,
    ledger: FileLedger,
    sources: Sources,
    store: Holdings,
    now: float,
    stall_seconds: int,
    max_wait_seconds: int = MAX_WAIT_SECONDS,
    out_of_time: Callable[[], bool] = lambda: False,
) -> FinishStepOutput:
    """If every emitted record is terminal: delete the source, watch the store, write the
    receipt, say finished. Raises `RecordsUnaccountedError` when nothing has moved for
    `stall_seconds`. A file with many blocks may take more than one call to watch: it says
    finished once watched. Reads only the blocks the state does not know complete (and all of
    them once, when the file is complete, for exact counts); says how long to wait before the
    next check (`next_wait`)."""
    file = state.file
    fid = file_id(file)
    base = state.wait_seconds if state.base_wait_seconds is UNSET else state.base_wait_seconds
    since = now if state.checks_since is UNSET else state.checks_since
    known = None if state.settled is UNSET else state.settled
    progress = ledger.progress(fid, settled=known)
    if progress.complete and known is not None and known.runs:
        progress = ledger.progress(fid)  # once: counts by status as they are now
    counts = progress.counts()
    terminal_seen, progress_at = state.terminal_seen, state.progress_at
    if progress.terminal != terminal_seen:
        terminal_seen, progress_at = progress.terminal, now
    finished = False
    if progress.complete:
        sources.delete_source(file)  # again on a later call: deleting what is gone is fine
        ledger.source_deleted(file, int(now))
        ledger.file_finished(file)
        finished = ledger.watch_store(fid, now=now, out_of_time=out_of_time).done
        if finished:
            reconcile(fid, ledger=ledger, store=store, receipts=sources, now=now)
        write_receipt(fid, ledger=ledger, receipts=sources)
    elif now - progress_at > stall_seconds:
        missing = (counts.emitted or 0) - counts.terminal
        raise RecordsUnaccountedError(
            f"{missing} records reached no terminal state in {stall_seconds} s: "
            "check the dead-letter queues"
        )
    return FinishStepOutput(
        file=file,
        wait_seconds=next_wait(base, now - since, max_wait_seconds),
        terminal_seen=terminal_seen,
        progress_at=progress_at,
        finished=finished,
        counts=counts,
        base_wait_seconds=base,
        checks_since=since,
        settled=progress.settled,
    )


def reconcile(
    fid: str, *, ledger: StoreLedger, store: Holdings, receipts: Receipts, now: float
) -> int:
    """Note as gone every published record of the file not yet seen leaving that the store no
    longer holds (the publisher deleted a duplicate, TTL deleted it, or a note was lost after
    the delete); returns how many."""
    waiting = ledger.in_store(fid)
    if not waiting:
        return 0
    gone = sorted(waiting - store.ordinals_of(fid))
    if not gone:
        return 0
    noted = ledger.records_left(fid, gone, LeftBy.GONE, at=now)  # one write per block
    if noted.receipt_due:
        write_receipt(fid, ledger=ledger, receipts=receipts)
    if noted.failed:  # the caller runs again (a state machine retry, the next sweep)
        raise next(iter(noted.failed.values()))
    return len(gone)


def sweep(*, store: Retained, ledger: StoreLedger, receipts: Receipts, now: float) -> Swept:
    """Delete every stored event past its expiry (as `leave` does, a chunk at a time); then
    look again at every file whose receipt waits for records to leave the store, and write
    its receipt.

    Deleting what has expired comes first, so a failure does not stop it: an event the store
    would not delete stays for the next sweep, one deleted but not noted (the ledger failed)
    is found gone at the next sweep's look at its file, a file whose receipt could not be
    brought up to date is looked at again next time, and the first error is raised once the
    rest is done. Only a chunk of which nothing could be deleted stops the sweep at once: the
    store is refusing, and the next sweep starts again."""
    deleted = 0
    errors: list[BaseException] = []
    expired = iter(store.expired(now))
    while chunk := list(itertools.islice(expired, SWEEP_CHUNK)):
        left = leave(
            {ref.id: ref for ref in chunk},
            LeftBy.EXPIRED,
            store=store,
            ledger=ledger,
            receipts=receipts,
            now=now,
        )
        if not left.deleted:
            raise next(iter(left.failed.values()))
        deleted += len(left.deleted)
        errors += left.failed.values()
    found_gone = written = 0
    for fid in ledger.open_files():
        try:
            if ledger.receipt_facts(fid).bucket is None:
                ledger.store_closed(fid)  # the ledger has forgotten the file (30 days)
                continue
            found_gone += reconcile(fid, ledger=ledger, store=store, receipts=receipts, now=now)
            ledger.settle(fid)
            if write_receipt(fid, ledger=ledger, receipts=receipts) is not None:
                written += 1
        except Exception as err:  # one file's trouble does not hold up the others' receipts
            errors.append(err)
    if errors:
        raise errors[0]
    return Swept(deleted=deleted, found_gone=found_gone, receipts=written)


def write_receipt(fid: str, *, ledger: StoreLedger, receipts: Receipts) -> DeletionReceipt | None:
    """Write the file's receipt as the ledger has it (nothing before its source is deleted).
    Receipts are rewritten whole, by whoever sees the ledger move: if it moved while this one
    was being written, write again, so that the last receipt written says the latest. A
    complete receipt takes the file off the sweep's list."""
    written = receipt(ledger.receipt_facts(fid))
    if written is None:
        return None
    for _ in range(3):
        receipts.put_receipt(written)
        again = receipt(ledger.receipt_facts(fid))
        if again is None or again == written:
            break
        written = again
    else:
        receipts.put_receipt(written)  # still moving: the latest seen is the last word here
    if written.complete:
        ledger.store_closed(fid)
    return written


def receipt(facts: ReceiptFacts) -> DeletionReceipt | None:
    """What was ingested, how it ended, that the source is gone and whether anything of it is
    left in the store: counts, times, ids and the file's hash, no personal data. None before
    the source is deleted."""
    if facts.source_deleted_at is None or facts.bucket is None or facts.key is None:
        return None
    return DeletionReceipt(
        file_id=facts.file_id,
        bucket=facts.bucket,
        key=facts.key,
        version_id=facts.version_id,
        records=facts.emitted,
        published=facts.published,
        rejected=facts.rejected,
        dead_lettered=facts.dead_lettered,
        source_deleted_at=facts.source_deleted_at,
        sha256=facts.sha256,
        size=facts.size,
        consumed=facts.consumed,
        expired=facts.expired,
        removed_otherwise=facts.gone,
        in_store=facts.in_store,
        started_at=facts.started_at,
        split_at=facts.split_at,
        published_at=facts.published_at,
        accounted_at=facts.accounted_at,
        last_left_store_at=facts.last_left_store_at,
        complete=facts.in_store == 0,
    )
