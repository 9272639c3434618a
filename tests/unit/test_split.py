"""Splitting a file in steps: check once, emit from a cursor, stop on time, resume exactly."""

from __future__ import annotations

import io
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import BinaryIO

import pytest

from contracts.messages import FileRef, RecordToTransform
from splitter.extract import FileRejectedError
from splitter.split import Cursor, split_file
from tests.builders import extract, record

FILE = FileRef(bucket="landing", key="incoming/DWP_D_20220301.xml", version_id="v1")


class Sink:
    def __init__(self) -> None:
        self.sent: list[RecordToTransform] = []
        self.pending: list[RecordToTransform] = []
        self.rejected: list[tuple[int, str]] = []

    def emit(self, message: RecordToTransform) -> None:
        self.pending.append(message)

    def reject(self, file: FileRef, ordinal: int, reason: str) -> None:
        self.rejected.append((ordinal, reason))

    def flush(self) -> None:
        self.sent.extend(self.pending)
        self.pending.clear()


def opener(data: bytes) -> Callable[[], AbstractContextManager[BinaryIO]]:
    return lambda: io.BytesIO(data)


def after(n: int) -> Callable[[], bool]:
    calls = iter(range(10**6))
    return lambda: next(calls) >= n


def test_steps_resume_from_the_cursor_and_emit_every_record_exactly_once() -> None:
    data = extract(*(record(registration_id=str(i)) for i in range(1, 8)))
    sink, cursor, steps, checked = Sink(), Cursor(), 0, []
    while True:
        steps += 1
        result = split_file(
            opener(data), FILE, cursor, sink, out_of_time=after(3), on_checked=checked.append
        )
        cursor = result.cursor
        assert not sink.pending  # everything emitted was flushed before handing back a cursor
        if result.done:
            break
    assert [m.ordinal for m in sink.sent] == list(range(1, 8))
    assert checked == [7] and result.records == 7 and steps > 2


def test_a_bad_file_is_refused_before_any_record_is_emitted() -> None:
    data = extract(record(), record(), count=5)
    sink = Sink()
    with pytest.raises(FileRejectedError, match="RecordCount says 5"):
        split_file(opener(data), FILE, Cursor(), sink, out_of_time=lambda: False)
    assert sink.sent == [] and sink.pending == []


def test_an_oversized_record_is_accounted_for_and_the_others_still_go() -> None:
    huge = "<DeceasedMaidenName>" + "x" * 300_000 + "</DeceasedMaidenName>"
    data = extract(
        record(registration_id="1"),
        record(registration_id="2", rest=huge),
        record(registration_id="3"),
    )
    sink = Sink()
    result = split_file(
        opener(data), FILE, Cursor(), sink, out_of_time=lambda: False, trace_header="Root=1-0-0"
    )
    assert result.done
    assert [m.ordinal for m in sink.sent] == [1, 3]
    assert [o for o, _ in sink.rejected] == [2]
    assert "over the 262144-byte limit" in sink.rejected[0][1]
    assert all(m.trace_header == "Root=1-0-0" and m.file == FILE for m in sink.sent)
