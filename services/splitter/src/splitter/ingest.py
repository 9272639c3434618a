"""The splitter's two steps, as pure functions over ports: start an ingest when a file lands,
and split a file from its cursor until the step's time budget is spent.

No AWS here: the object store, the ledger, the record sink and the state machine come in as
small Protocols, so the same code runs in Lambda, in tests with fakes, and anywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import BinaryIO, Protocol

from contracts.messages import FileRef, file_id
from contracts.steps import QuarantineStepInput, SplitStepInput, SplitStepOutput
from splitter.digest import FileDigest
from splitter.extract import FileRejectedError
from splitter.split import RecordSink, split_file


class FileRefusedError(Exception):
    """The file is structurally bad: moved to quarantine, no record emitted. The state machine
    catches this error by name."""


class Files(Protocol):
    """The landing bucket, as the splitter uses it."""

    def open(self, file: FileRef) -> AbstractContextManager[BinaryIO]:
        """A stream of the object version's bytes."""
        ...

    def exists(self, file: FileRef) -> bool:
        """Whether the object version is there."""
        ...

    def arrived(self, file: FileRef) -> datetime:
        """When the object version landed (its LastModified, which never changes)."""
        ...

    def quarantine(self, file: FileRef, reason: str) -> None:
        """Move a refused file aside, with its reason."""
        ...


class FileLedger(Protocol):
    """The ledger, as the splitter writes it."""

    def file_started(self, ref: FileRef) -> None: ...
    def file_checked(
        self, ref: FileRef, records: int, *, sha256: str | None = None, size: int | None = None
    ) -> None: ...
    def file_split(self, ref: FileRef, emitted: int) -> None: ...
    def file_refused(self, ref: FileRef, reason: str) -> None: ...


class Executions(Protocol):
    """The ingest-file state machine."""

    def start(self, name: str, state: SplitStepInput) -> bool:
        """Start an execution; False if one of that name exists already."""
        ...


def split_step(
    state: SplitStepInput,
    *,
    files: Files,
    ledger: FileLedger,
    sink: RecordSink,
    budget_seconds: float,
    default_wait_seconds: int,
    clock: Callable[[], float] = time.monotonic,
) -> SplitStepOutput:
    """One Split step: check the file (once), then emit records from the cursor until done or
    out of time. A structurally bad file is quarantined, recorded and refused whole."""
    file = state.file
    started = clock()
    if state.cursor.emitted == 0 and not state.cursor.checked:
        ledger.file_started(file)
    # the check reads the whole file in one step: its SHA-256 and size are taken on the way
    digest = FileDigest(lambda: files.open(file))
    open_stream = (lambda: files.open(file)) if state.cursor.checked else digest.open

    def checked(records: int) -> None:
        sha256, size = digest.result()
        ledger.file_checked(file, records, sha256=sha256, size=size)

    try:
        result = split_file(
            open_stream,
            file,
            state.cursor,
            sink,
            out_of_time=lambda: clock() - started > budget_seconds,
            on_checked=checked,
            file_arrived=files.arrived(file),
        )
    except FileRejectedError as err:
        reason = str(err)
        files.quarantine(file, reason)
        ledger.file_refused(file, reason)
        raise FileRefusedError(reason) from None
    if result.done:
        ledger.file_split(file, result.cursor.emitted)
    return SplitStepOutput(
        file=file,
        cursor=result.cursor,
        done=result.done,
        wait_seconds=state.wait_seconds or default_wait_seconds,
    )


def quarantine_failed(state: QuarantineStepInput, *, files: Files, ledger: FileLedger) -> str:
    """A split that failed for good (its retries did not clear it): the file goes to
    quarantine and the ledger says why, by the error's name only (its cause can quote
    anything). A file already moved, or gone, is only recorded. Returns the reason."""
    reason = f"the split failed: {state.error.error}"
    if files.exists(state.file):
        files.quarantine(state.file, reason)
    ledger.file_refused(state.file, reason)
    return reason


def start_ingest(
    candidates: Iterable[FileRef], *, files: Files, executions: Executions, wait_seconds: int
) -> tuple[str, bool] | None:
    """Start one execution for a landed file, named for its object version, so that a repeated
    event starts nothing new. The first candidate that exists is the file (an S3 key in an
    event may or may not be URL-encoded). Returns (file id, started), or None if it is gone."""
    for file in candidates:
        if files.exists(file):
            fid = file_id(file)
            started = executions.start(fid, SplitStepInput(file=file, wait_seconds=wait_seconds))
            return fid, started
    return None


def split_budget(
    configured_seconds: float, remaining_seconds: float, safety_seconds: float
) -> float:
    """How long a step may emit: its configured budget, or what the invocation has left less a
    margin to flush in-flight batches and answer, whichever is shorter."""
    return min(configured_seconds, remaining_seconds - safety_seconds)
