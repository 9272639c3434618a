"""Send record messages to SQS in batches of ten, several batches at once, retrying failures.

A batch is also bounded in bytes: SQS refuses a SendMessageBatch whose bodies (and attributes)
add up to more than 262,144 bytes, whatever each message's own size, so a batch goes out early
when the next message would take it over.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

BATCH = 10  # SendMessageBatch's limit
# SendMessageBatch's limit on the sum of its messages' sizes (bodies as UTF-8, and attributes:
# we send none). The queue's MaximumMessageSize is the same figure (infra/foundation.yaml).
MAX_BATCH_BYTES = 262_144
_RETRIES = 5
DEPTH_CHECK_EVERY = 10  # batches
MAX_PAUSE_SECONDS = 5.0


class SendError(Exception):
    """Some messages could not be sent after retries."""


class BatchSender:
    """Parallel SendMessageBatch with bounded in-flight work and per-entry retries."""

    def __init__(
        self, sqs: Any, queue_url: str, concurrency: int, *, max_queue_depth: int = 0
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._max_depth = max_queue_depth
        self._batches = 0
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="send")
        self._limit = concurrency * 2
        self._inflight: set[Future[None]] = set()
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0

    def add(self, entry_id: str, body: bytes, trace_header: str | None = None) -> None:
        """Queue one message (UTF-8 JSON); a batch goes out once it holds ten, or as soon as
        this message would take it past MAX_BATCH_BYTES.

        A message over MAX_BATCH_BYTES on its own can never be sent: the caller checks sizes
        first (`QueueSink` rejects such a record), so this raises ValueError.
        """
        size = len(body)
        if size > MAX_BATCH_BYTES:
            raise ValueError(
                f"message {entry_id} is {size} bytes, over SQS's {MAX_BATCH_BYTES}-byte limit"
            )
        if self._pending and self._pending_bytes + size > MAX_BATCH_BYTES:
            self._submit()
        entry: dict[str, Any] = {"Id": entry_id, "MessageBody": body.decode()}
        if trace_header:  # per message: each record's trace goes on with it
            entry["MessageSystemAttributes"] = {
                "AWSTraceHeader": {"DataType": "String", "StringValue": trace_header}
            }
        self._pending.append(entry)
        self._pending_bytes += size
        if len(self._pending) == BATCH:
            self._submit()

    def _submit(self) -> None:
        entries, self._pending = self._pending, []
        self._pending_bytes = 0
        self._batches += 1
        if self._max_depth and self._batches % DEPTH_CHECK_EVERY == 0:
            self._wait_for_room()
        while len(self._inflight) >= self._limit:
            done, self._inflight = wait(self._inflight, return_when=FIRST_COMPLETED)
            for f in done:
                f.result()
        self._inflight.add(self._pool.submit(self._send, entries))

    def _send(self, entries: Iterable[dict[str, str]]) -> None:
        todo = list(entries)
        for attempt in range(_RETRIES):
            answer = self._sqs.send_message_batch(QueueUrl=self._queue_url, Entries=todo)
            failed = {f["Id"] for f in answer.get("Failed", [])}
            if not failed:
                return
            todo = [e for e in todo if e["Id"] in failed]
            time.sleep(0.1 * 2**attempt)
        raise SendError(f"{len(todo)} messages could not be sent to the records queue")

    def _wait_for_room(self) -> None:
        """Flow control, off unless asked for: pause while the queue is deeper than allowed.

        SQS does not care how deep a queue is; emulators whose every call scans the queue do.
        Bounded: after MAX_PAUSE_SECONDS the caller gets control back to check its deadline.
        """
        paused = 0.0
        while paused < MAX_PAUSE_SECONDS:
            attrs = self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]
            if int(attrs["ApproximateNumberOfMessages"]) <= self._max_depth:
                return
            time.sleep(0.25)
            paused += 0.25

    def flush(self) -> None:
        """Send what is queued and wait for every batch in flight."""
        if self._pending:
            self._submit()
        for f in self._inflight:
            f.result()
        self._inflight.clear()

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=True)
