"""In-memory fakes of the services' ports: each records what it was asked to do.

They stand where a composition root would put the AWS adapters (Ledger, DeadLetterQueue,
Store, PlatformClient, S3Files, ...), so a handler runs whole with no SDK and no network.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, BinaryIO, NamedTuple

import msgspec
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from contracts.events import DeathNotification, MinimalEvent
from contracts.messages import EventToPublish, FileRef, RecordToTransform
from contracts.receipts import DeletionReceipt
from contracts.steps import SplitStepInput
from contracts.stored import StoredEvent
from servicekit.ledger import FileProgress, RecordEnd, RecordStatus
from servicekit.store import StoredRef

# -- the ledger -----------------------------------------------------------------------------


class RecordEnded(NamedTuple):
    """One `record_ended` call."""

    file: FileRef
    ordinal: int
    status: RecordStatus
    event_id: str | None
    reasons: tuple[str, ...]


@dataclass
class FakeLedger:
    """The ledger: file calls in order, record endings, and a preset progress per file id."""

    progress_of: dict[str, FileProgress] = field(default_factory=dict)
    file_calls: list[tuple[Any, ...]] = field(default_factory=list)
    records: list[RecordEnded] = field(default_factory=list)
    handled_by: list[str | None] = field(default_factory=list)
    digests: list[tuple[str | None, int | None]] = field(default_factory=list)
    ending_calls: int = 0  # records_ended calls (one per batch)

    def file_started(self, ref: FileRef) -> None:
        self.file_calls.append(("file_started", ref))

    def file_checked(
        self, ref: FileRef, records: int, *, sha256: str | None = None, size: int | None = None
    ) -> None:
        self.file_calls.append(("file_checked", ref, records))
        self.digests.append((sha256, size))

    def file_split(self, ref: FileRef, emitted: int) -> None:
        self.file_calls.append(("file_split", ref, emitted))

    def file_refused(self, ref: FileRef, reason: str) -> None:
        self.file_calls.append(("file_refused", ref, reason))

    def file_finished(self, ref: FileRef) -> None:
        self.file_calls.append(("file_finished", ref))

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
        self.records.append(RecordEnded(ref, ordinal, status, event_id, tuple(reasons)))
        self.handled_by.append(handled_by)
        return True

    def records_ended(
        self, endings: Sequence[RecordEnd], *, handled_by: str | None = None
    ) -> list[BaseException | None]:
        self.ending_calls += 1
        for e in endings:
            self.record_ended(
                e.file, e.ordinal, e.status, event_id=e.event_id, handled_by=handled_by
            )
        return [None] * len(endings)

    def progress(self, fid: str) -> FileProgress:
        return self.progress_of[fid]

    def names(self) -> list[str]:
        """The file calls' names, in order."""
        return [call[0] for call in self.file_calls]


# -- queues ---------------------------------------------------------------------------------


class DeadLetter(NamedTuple):
    """One message put on a dead-letter queue."""

    body: str
    reason: str
    attempts: int


@dataclass
class FakeDeadLetters:
    """A consumer's dead-letter queue."""

    sent: list[DeadLetter] = field(default_factory=list)
    first_received: list[int | None] = field(default_factory=list)

    def send(
        self, body: str, *, reason: str, attempts: int, first_received_at: int | None = None
    ) -> None:
        self.sent.append(DeadLetter(body, reason, attempts))
        self.first_received.append(first_received_at)


@dataclass
class FakeVisibility:
    """SQS ChangeMessageVisibility: which message was hidden, for how long."""

    hidden: list[tuple[str, int]] = field(default_factory=list)

    def hide(self, record: SQSRecord, seconds: int) -> None:
        self.hidden.append((record.message_id, seconds))


@dataclass
class FakeEventSink:
    """The events-to-publish queue; raises for the ordinals in `fail_for`. Sends at once: its
    `flush` (the batch's end) has nothing left to do."""

    sent: list[EventToPublish] = field(default_factory=list)
    fail_for: frozenset[int] = frozenset()
    flushes: int = 0

    def send(self, message: EventToPublish) -> None:
        if message.ordinal in self.fail_for:
            # what an SDK error could say: a value a reason must never quote
            raise RuntimeError(f"could not send {message.event.surname}")
        self.sent.append(message)

    def flush(self) -> dict[str, BaseException]:
        self.flushes += 1
        return {}

    def drop(self, message_id: str | None = None) -> None:
        return None


@dataclass
class FakeStepSink:
    """One split step's record sink; `out` is shared by every step's sink."""

    out: list[RecordToTransform]
    rejected_records: list[tuple[FileRef, int, str]] = field(default_factory=list)
    emitted: int = 0
    rejected: int = 0
    flushes: int = 0
    closed: bool = False

    def emit(self, message: RecordToTransform) -> None:
        assert not self.closed, "emitted after close"
        self.out.append(message)
        self.emitted += 1

    def reject(self, file: FileRef, ordinal: int, reason: str) -> None:
        self.rejected_records.append((file, ordinal, reason))
        self.rejected += 1

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


# -- the temporary store --------------------------------------------------------------------


@dataclass
class FakeStore:
    """The temporary store: items by id, honouring their expiry; `fail_with` breaks deletes."""

    items: dict[str, StoredEvent] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)
    fail_with: Exception | None = None
    unprocessed: frozenset[str] = frozenset()
    delete_calls: list[list[str]] = field(default_factory=list)
    locate_calls: list[list[str]] = field(default_factory=list)

    def put_if_absent(self, item: StoredEvent) -> bool:
        if item.id in self.items:
            return False
        self.items[item.id] = item
        return True

    def get_live(self, event_id: str, now: float | None = None) -> DeathNotification | None:
        item = self.items.get(event_id)
        if item is None or item.expires_at <= int(now or time.time()):
            return None
        return item.event

    def delete(self, event_id: str) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.deleted.append(event_id)
        self.items.pop(event_id, None)

    def delete_many(self, event_ids: Iterable[str]) -> dict[str, BaseException]:
        """Deletes each (a BatchWriteItem: `fail_with` fails the call); `unprocessed` ids are
        left, as DynamoDB leaves what it throttled after the adapter's retries."""
        if self.fail_with is not None:
            raise self.fail_with
        ids = list(event_ids)
        self.delete_calls.append(ids)
        failed: dict[str, BaseException] = {}
        for i in ids:
            if i in self.unprocessed:
                failed[i] = RuntimeError("left unprocessed")
            else:
                self.delete(i)
        return failed

    def locate(self, event_id: str) -> StoredRef | None:
        item = self.items.get(event_id)
        return StoredRef(item.id, item.file_id, item.ordinal) if item else None

    def locate_many(self, event_ids: Iterable[str]) -> dict[str, StoredRef]:
        ids = list(event_ids)
        self.locate_calls.append(ids)
        return {i: ref for i in ids if (ref := self.locate(i)) is not None}

    def expired_ids(self, now: float | None = None) -> Iterator[str]:
        cutoff = int(now or time.time())
        # a snapshot, as a scan's pages would be: deleting while iterating is the caller's right
        return iter([i for i, item in self.items.items() if item.expires_at <= cutoff])


# -- the platform ---------------------------------------------------------------------------


@dataclass
class FakePlatform:
    """POST /events: answers by event id (201 unless told), or raises what it is given."""

    answers: dict[str, int | Exception] = field(default_factory=dict)
    posted: list[MinimalEvent] = field(default_factory=list)

    def publish(self, event: MinimalEvent) -> int:
        self.posted.append(event)
        answer = self.answers.get(event.id, 201)
        if isinstance(answer, Exception):
            raise answer
        return answer


# -- S3 and Step Functions ------------------------------------------------------------------


@dataclass
class FakeFiles:
    """The landing bucket: object versions by FileRef; refused files move to `quarantined`."""

    objects: dict[FileRef, bytes] = field(default_factory=dict)
    quarantined: dict[FileRef, str] = field(default_factory=dict)
    asked: list[FileRef] = field(default_factory=list)
    opened: int = 0
    landed_at: datetime = datetime(2022, 3, 1, 23, 5, 0, tzinfo=UTC)

    @contextlib.contextmanager
    def open(self, file: FileRef) -> Iterator[BinaryIO]:
        self.opened += 1
        with io.BytesIO(self.objects[file]) as stream:
            yield stream

    def exists(self, file: FileRef) -> bool:
        self.asked.append(file)
        return file in self.objects

    def arrived(self, file: FileRef) -> datetime:
        return self.landed_at

    def quarantine(self, file: FileRef, reason: str) -> None:
        del self.objects[file]
        self.quarantined[file] = reason


@dataclass
class FakeExecutions:
    """The ingest-file state machine: a name starts one execution, once."""

    started: dict[str, SplitStepInput] = field(default_factory=dict)
    calls: int = 0

    def start(self, name: str, state: SplitStepInput) -> bool:
        self.calls += 1
        if name in self.started:
            return False
        self.started[name] = state
        return True


@dataclass
class FakeSources:
    """The landing bucket as the reaper sees it: deleted versions and receipts (as JSON)."""

    deleted: list[FileRef] = field(default_factory=list)
    receipts: dict[str, bytes] = field(default_factory=dict)

    def delete_source(self, file: FileRef) -> None:
        self.deleted.append(file)

    def put_receipt(self, receipt: DeletionReceipt) -> None:
        self.receipts[f"receipts/{receipt.file_id}.json"] = msgspec.json.encode(receipt)
