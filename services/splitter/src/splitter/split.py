"""Split one file: check it whole, then emit its records from a cursor until a deadline.

Pure domain logic: the file, the record sink and the clock come in through small ports, so the
same code runs over an S3 body in Lambda and over a local file in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import BinaryIO, Protocol

import msgspec

from contracts.messages import FileRef, RecordToTransform
from contracts.steps import Cursor
from splitter.extract import ExtractReader, Fragment, OversizedRecord


class RecordSink(Protocol):
    """Where records go."""

    def emit(self, message: RecordToTransform) -> None:
        """Send one record on (may buffer). A record the transport cannot carry (too large
        once encoded) is for the sink to `reject`, not to raise: the split goes on."""

    def reject(self, file: FileRef, ordinal: int, reason: str) -> None:
        """Account for a record that cannot be sent at all."""

    def flush(self) -> None:
        """Make sure everything emitted so far has been sent."""


class SplitResult(msgspec.Struct, frozen=True, kw_only=True):
    """The cursor to resume from, and whether the file is done."""

    cursor: Cursor
    done: bool
    records: int | None = None


def split_file(
    open_stream: Callable[[], AbstractContextManager[BinaryIO]],
    file: FileRef,
    cursor: Cursor,
    sink: RecordSink,
    *,
    out_of_time: Callable[[], bool],
    trace_header: str | None = None,
    on_checked: Callable[[int], None] = lambda _records: None,
    file_arrived: datetime | None = None,
) -> SplitResult:
    """Check the file (once), then emit records after the cursor until done or out of time.

    Every record carries `file_arrived`, the file's arrival time (its object version's
    LastModified): the transformer chooses the event-id key version by it.

    Raises `FileRejectedError` when the file is structurally bad: nothing has been emitted then.
    """
    if not cursor.checked:
        with open_stream() as stream:
            on_checked(ExtractReader(stream).check().records)
        cursor = Cursor(emitted=cursor.emitted, checked=True)
        if out_of_time():
            return SplitResult(cursor=cursor, done=False)
    last = cursor.emitted
    with open_stream() as stream:
        reader = ExtractReader(stream)
        for item in reader.records(skip=cursor.emitted):
            if isinstance(item, Fragment):
                sink.emit(
                    RecordToTransform(
                        file=file,
                        ordinal=item.ordinal,
                        fragment=item.xml.decode(),
                        trace_header=trace_header,
                        file_arrived=file_arrived,
                    )
                )
            elif isinstance(item, OversizedRecord):
                sink.reject(file, item.ordinal, item.reason)
            last = item.ordinal
            if out_of_time():
                sink.flush()
                return SplitResult(cursor=Cursor(emitted=last, checked=True), done=False)
        sink.flush()
        return SplitResult(
            cursor=Cursor(emitted=reader.records_seen, checked=True),
            done=True,
            records=reader.records_seen,
        )
