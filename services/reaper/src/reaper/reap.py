"""The reaper's decisions, as pure functions over ports: delete what every consumer has
consumed, finish a file once every record is accounted for, and enforce retention.

- A consumed notice deletes the stored event (idempotent: deleting what is gone is fine).
- A file is finished when every emitted record has a terminal status in the ledger: then its
  source object version is deleted for good, a deletion receipt (counts, no personal data) is
  written, and the ledger says finished. Until then the state machine waits and asks again;
  if the count of terminal records stops moving for `stall_seconds`, the file fails loudly.
- The sweep deletes every stored event past its expiry, consumed or not: DynamoDB's TTL can
  lag 48 hours, so it is not relied on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from contracts.messages import EventsConsumed, FileRef, file_id
from contracts.receipts import DeletionReceipt
from contracts.steps import FileCounts, FinishStepInput, FinishStepOutput


class RecordsUnaccountedError(Exception):
    """A file's records stopped reaching terminal states: someone must look at the DLQs."""


class Progress(Protocol):
    """A file's standing in the ledger."""

    @property
    def complete(self) -> bool: ...
    @property
    def terminal(self) -> int: ...

    def counts(self) -> FileCounts: ...


class FileLedger(Protocol):
    """The ledger, as the reaper reads and writes it."""

    def progress(self, fid: str) -> Progress: ...
    def file_finished(self, ref: FileRef) -> None: ...


class Sources(Protocol):
    """The landing bucket, as the reaper uses it."""

    def delete_source(self, file: FileRef) -> None:
        """Delete the object version for good (not a delete marker)."""
        ...

    def put_receipt(self, receipt: DeletionReceipt) -> None: ...


class Deletable(Protocol):
    """The temporary store, as the reaper empties it."""

    def delete(self, event_id: str) -> None: ...
    def expired_ids(self, now: float | None = None) -> Iterable[str]: ...


def consumed(notice: EventsConsumed, *, store: Deletable) -> None:
    """Every consumer is done with the event: it goes."""
    store.delete(notice.id)


def finish_file(
    state: FinishStepInput,
    *,
    ledger: FileLedger,
    sources: Sources,
    now: float,
    stall_seconds: int,
) -> FinishStepOutput:
    """If every emitted record is terminal: delete the source, write the receipt, say finished.
    Raises `RecordsUnaccountedError` when nothing has moved for `stall_seconds`."""
    file = state.file
    progress = ledger.progress(file_id(file))
    counts = progress.counts()
    terminal_seen, progress_at = state.terminal_seen, state.progress_at
    if progress.terminal != terminal_seen:
        terminal_seen, progress_at = progress.terminal, now
    if progress.complete:
        sources.delete_source(file)
        sources.put_receipt(receipt(file, counts, deleted_at=int(now)))
        ledger.file_finished(file)
    elif now - progress_at > stall_seconds:
        missing = (counts.emitted or 0) - counts.terminal
        raise RecordsUnaccountedError(
            f"{missing} records reached no terminal state in {stall_seconds} s: "
            "check the dead-letter queues"
        )
    return FinishStepOutput(
        file=file,
        wait_seconds=state.wait_seconds,
        terminal_seen=terminal_seen,
        progress_at=progress_at,
        finished=progress.complete,
        counts=counts,
    )


def receipt(file: FileRef, counts: FileCounts, *, deleted_at: int) -> DeletionReceipt:
    """What was ingested and that the source is gone: counts and ids, no personal data."""
    return DeletionReceipt(
        file_id=file_id(file),
        bucket=file.bucket,
        key=file.key,
        version_id=file.version_id,
        records=counts.emitted,
        published=counts.published,
        rejected=counts.rejected,
        dead_lettered=counts.dead_lettered,
        source_deleted_at=deleted_at,
    )


def sweep(*, store: Deletable, now: float) -> int:
    """Delete every stored event past its expiry; returns how many."""
    deleted = 0
    for event_id in store.expired_ids(now):
        store.delete(event_id)
        deleted += 1
    return deleted
