"""The ingest-file state machine's state between its steps: where a file is, never a record.

The state machine (infra/ingest-file.asl.json) passes each step's output on as the next step's
input, so these shapes are a contract between the foundation (which owns the state machine),
the splitter (the Split step) and the reaper (the CheckRecords step):

    execution input = SplitStepInput
    Split:        SplitStepInput  -> SplitStepOutput   (again from its own output until `done`)
    QuarantineFile: QuarantineStepInput                (when Split fails for good)
    CheckRecords: FinishStepInput -> FinishStepOutput  (first from SplitStepOutput, then from
                                                        its own output until `finished`)

A step reads the fields it knows and ignores the rest, so each output must decode as the next
step's input: a test proves it on the golden samples. Fields added after release are `UNSET`
until a step sets them, and are then left out of the JSON, so released samples read and write
as they were.
"""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType

from contracts.messages import FileRef

# How long the state machine waits between two completeness checks, unless told otherwise.
DEFAULT_WAIT_SECONDS = 10


class Cursor(msgspec.Struct, frozen=True, kw_only=True):
    """How far splitting got: records up to `emitted` are sent; `checked` = structure passed."""

    emitted: int = 0
    checked: bool = False


class SplitStepInput(msgspec.Struct, frozen=True, kw_only=True):
    """The Split step's input (and the execution's): the file, and where to resume."""

    file: FileRef
    cursor: Cursor = Cursor()
    wait_seconds: int | None = None


class SplitStepOutput(msgspec.Struct, frozen=True, kw_only=True):
    """The Split step's output: the cursor to resume from, and whether every record is out."""

    file: FileRef
    cursor: Cursor
    done: bool
    wait_seconds: int


class Run(msgspec.Struct, frozen=True, kw_only=True):
    """Consecutive ordinals, `first` to `last` inclusive."""

    first: int
    last: int


class Settled(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What earlier checks found settled, so that a check reads only the rest of the ledger:
    runs of records every one of which is terminal (a terminal record stays terminal: a
    redrive moves it from dead-lettered to published, never back to open), and their counts
    by status as they were when last read (so a redrive since may have moved a few between
    `dead_lettered` and `published`; their sum is exact)."""

    runs: tuple[Run, ...] = ()
    published: int = 0
    rejected: int = 0
    dead_lettered: int = 0

    @property
    def terminal(self) -> int:
        """How many records the runs hold: every one terminal."""
        return sum(run.last - run.first + 1 for run in self.runs)


class FinishStepInput(msgspec.Struct, frozen=True, kw_only=True):
    """The CheckRecords step's input: the file, and the progress seen at the last check."""

    file: FileRef
    wait_seconds: int = DEFAULT_WAIT_SECONDS
    terminal_seen: int = -1
    progress_at: float = 0.0
    # the wait the checks start from (the first check's `wait_seconds`, which the splitter set)
    base_wait_seconds: int | UnsetType = UNSET
    # when the first check ran: the waits grow with the time spent checking
    checks_since: float | UnsetType = UNSET
    settled: Settled | UnsetType = UNSET


class FileCounts(msgspec.Struct, frozen=True, kw_only=True):
    """A file's records by how they ended, from the ledger. Counts only: no personal data."""

    emitted: int | None
    terminal: int
    published: int
    rejected: int
    dead_lettered: int


class FinishStepOutput(msgspec.Struct, frozen=True, kw_only=True):
    """The CheckRecords step's output: finished (source deleted, receipt written) or not yet."""

    file: FileRef
    wait_seconds: int
    terminal_seen: int
    progress_at: float
    finished: bool
    counts: FileCounts
    base_wait_seconds: int | UnsetType = UNSET
    checks_since: float | UnsetType = UNSET
    settled: Settled | UnsetType = UNSET


class StepError(msgspec.Struct, frozen=True, kw_only=True):
    """What Step Functions puts at a Catch's ResultPath: the error's name and its cause."""

    error: str = msgspec.field(name="Error")
    cause: str | None = msgspec.field(default=None, name="Cause")


class QuarantineStepInput(msgspec.Struct, frozen=True, kw_only=True):
    """The QuarantineFile step's input: the file whose split failed for good, and why."""

    file: FileRef
    error: StepError
