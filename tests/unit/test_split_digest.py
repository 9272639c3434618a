"""The file's SHA-256 and size, taken by the splitter while it checks the file: the whole
file's, whatever the read sizes, however many steps the split takes, and after a check that
died part way and started again."""

from __future__ import annotations

import contextlib
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO

import pytest

from contracts.messages import FileRef, RecordToTransform
from contracts.steps import Cursor, SplitStepInput
from splitter.digest import FileDigest
from splitter.ingest import split_step
from tests.builders import extract, record

FILE = FileRef(bucket="landing", key="incoming/DWP_D_20220301.xml", version_id="v1")
BODY = extract(*(record(registration_id=str(500000 + i)) for i in range(40))) + b"\n\n  \n"


class Trickle(io.RawIOBase):
    """A stream that answers at most `most` bytes a read, and can die after `die_after`."""

    def __init__(self, data: bytes, most: int, die_after: int | None = None) -> None:
        self._data, self._most, self._die_after, self.pos = data, most, die_after, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._die_after is not None and self.pos >= self._die_after:
            raise TimeoutError("the invocation ran out of time")
        n = min(len(buffer), self._most, len(self._data) - self.pos)
        buffer[:n] = self._data[self.pos : self.pos + n]
        self.pos += n
        return n


@dataclass
class Files:
    """The landing bucket: one object, served in short reads; the first open may die."""

    most: int = 997
    die_first_after: int | None = None
    opened: int = 0

    @contextlib.contextmanager
    def open(self, file: FileRef) -> Iterator[BinaryIO]:
        self.opened += 1
        die = self.die_first_after if self.opened == 1 else None
        yield io.BufferedReader(Trickle(BODY, self.most, die), buffer_size=64)

    def exists(self, file: FileRef) -> bool:
        return True

    def arrived(self, file: FileRef) -> datetime:
        return datetime(2022, 3, 1, tzinfo=UTC)

    def quarantine(self, file: FileRef, reason: str) -> None:
        raise AssertionError("a good file is not quarantined")


@dataclass
class Ledger:
    checked: list[tuple[int, str | None, int | None]] = field(default_factory=list)
    split: list[int] = field(default_factory=list)

    def file_started(self, ref: FileRef) -> None:
        pass

    def file_checked(
        self, ref: FileRef, records: int, *, sha256: str | None = None, size: int | None = None
    ) -> None:
        self.checked.append((records, sha256, size))

    def file_split(self, ref: FileRef, emitted: int) -> None:
        self.split.append(emitted)

    def file_refused(self, ref: FileRef, reason: str) -> None:
        raise AssertionError("a good file is not refused")


@dataclass
class Sink:
    ordinals: list[int] = field(default_factory=list)

    def emit(self, message: RecordToTransform) -> None:
        self.ordinals.append(message.ordinal)

    def reject(self, file: FileRef, ordinal: int, reason: str) -> None:
        raise AssertionError("no record is rejected here")

    def flush(self) -> None:
        pass


class Clock:
    """Each reading is one second later: a budget of N seconds lets about N readings by."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def run_to_the_end(files: Files, ledger: Ledger, sink: Sink, budget: float) -> int:
    """Split step after step, as the state machine does, until done; returns the steps."""
    state = SplitStepInput(file=FILE)
    for steps in range(1, 200):
        out = split_step(
            state,
            files=files,
            ledger=ledger,
            sink=sink,
            budget_seconds=budget,
            default_wait_seconds=10,
            clock=Clock(),
        )
        if out.done:
            return steps
        state = SplitStepInput(file=FILE, cursor=out.cursor)
    raise AssertionError("the split never ended")


@pytest.mark.parametrize("most", [1, 7, 4096, 1 << 20])
def test_the_digest_is_the_whole_streams_whatever_the_read_sizes(most: int) -> None:
    # given a reader that takes part of the stream in odd sizes, as the parser does
    digest = FileDigest(lambda: contextlib.nullcontext(io.BufferedReader(Trickle(BODY, most))))

    # when
    with digest.open() as stream:
        stream.read(5)
        stream.read(1000)
        sha256, size = digest.result()

    # then the rest was read for the digest: it is the file's
    assert (sha256, size) == (hashlib.sha256(BODY).hexdigest(), len(BODY))


def test_only_the_first_stream_opened_is_hashed() -> None:
    opened: list[Trickle] = []

    def open_stream() -> contextlib.AbstractContextManager[BinaryIO]:
        opened.append(Trickle(BODY, 100))
        return contextlib.nullcontext(io.BufferedReader(opened[-1]))

    digest = FileDigest(open_stream)
    with digest.open() as first:
        first.read()
        expected = digest.result()
    with digest.open() as second:
        second.read(10)

    assert digest.result() == expected == (hashlib.sha256(BODY).hexdigest(), len(BODY))
    with pytest.raises(RuntimeError, match="not read"):
        FileDigest(open_stream).result()


def test_a_split_over_many_steps_records_the_whole_files_sha256_and_size_once() -> None:
    # given a budget that lets only a few records out per step
    files, ledger, sink = Files(), Ledger(), Sink()

    # when
    steps = run_to_the_end(files, ledger, sink, budget=6)

    # then
    assert steps > 3
    assert ledger.checked == [(40, hashlib.sha256(BODY).hexdigest(), len(BODY))]
    assert sink.ordinals == list(range(1, 41))
    assert ledger.split == [40]


def test_a_check_that_died_part_way_is_hashed_again_from_the_first_byte() -> None:
    # given a first invocation that dies a third of the way into the check
    files, ledger, sink = Files(die_first_after=len(BODY) // 3), Ledger(), Sink()
    with pytest.raises(TimeoutError):
        split_step(
            SplitStepInput(file=FILE, cursor=Cursor()),
            files=files,
            ledger=ledger,
            sink=sink,
            budget_seconds=1000,
            default_wait_seconds=10,
        )
    assert ledger.checked == []

    # when the state machine retries the step from the same cursor
    run_to_the_end(files, ledger, sink, budget=1000)

    # then
    assert ledger.checked == [(40, hashlib.sha256(BODY).hexdigest(), len(BODY))]
