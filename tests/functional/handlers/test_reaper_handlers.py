"""The reaper's entry points, `consumed`, `finish_file` and `sweep`, called as Lambda calls
them: recorded events (SQS, SNS, EventBridge schedule, state machine steps), a Lambda context,
and in-memory ports. The deletion receipt: written when a file finishes, written again when
its last record leaves the store (consumed, swept at expiry, or found gone)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import msgspec
import pytest
from botocore.exceptions import ClientError

import reaper.app
from contracts.events import DeathNotification
from contracts.messages import FileRef, file_id
from contracts.receipts import DeletionReceipt
from contracts.steps import FileCounts, FinishStepInput, FinishStepOutput, Run, Settled
from contracts.stored import StoredEvent
from reaper import handler
from reaper.app import ConsumedApp, FinishApp, S3Sources, SweepApp
from reaper.reap import MAX_WAIT_SECONDS, RecordsUnaccountedError
from reaper.settings import ConsumedSettings, FinishSettings, SweepSettings
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import (
    BLOCK,
    FileProgress,
    Ledger,
    Left,
    LeftBy,
    LeftMany,
    ReceiptFacts,
    Watch,
)
from servicekit.settings import SettingsError
from servicekit.store import Store, StoredRef

from .environment import function_environment
from .fakes import DeadLetter, FakeDeadLetters, FakeSources, FakeStore
from .recorded import (
    FakeLambdaContext,
    Message,
    event,
    sample,
    sample_text,
    sns_envelope,
    sqs_event,
)

QUEUE = "gro-events-consumed"
MAX_RECEIVE_COUNT = 5
NOW = 1_700_000_000.0
EVENT = msgspec.json.decode(sample_text("EventToPublish"), type=dict)["event"]
NOTIFICATION = msgspec.convert(EVENT, DeathNotification)
EVENT_ID = NOTIFICATION.source_id
FILE = FileRef(
    bucket="landing",
    key="incoming/DWP_D_20220301.xml",
    version_id="3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
)
FID = file_id(FILE)
SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SIZE = 1_234_567
STARTED = int(NOW) - 600


def item(event_id: str, expires_at: int, ordinal: int = 1) -> StoredEvent:
    return StoredEvent(
        id=event_id,
        event=msgspec.structs.replace(NOTIFICATION, source_id=event_id),
        expires_at=expires_at,
        file_id=FID,
        ordinal=ordinal,
    )


# -- in-memory ports for store tracking and receipts ----------------------------------------


@dataclass
class FileBook:
    """One file in the in-memory ledger: its item, how its records ended, which left the store."""

    ref: FileRef
    emitted: int | None
    published: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)
    dead_lettered: set[int] = field(default_factory=set)
    left: dict[int, LeftBy] = field(default_factory=dict)
    sha256: str | None = SHA256
    size: int | None = SIZE
    source_deleted_at: int | None = None
    watched: bool = False
    last_left_at: int | None = None
    finished_calls: int = 0

    def in_store(self) -> set[int]:
        return self.published - set(self.left)


@dataclass
class BookLedger:
    """The ledger as the reaper uses it, in memory, with `servicekit.ledger.Ledger`'s rules:
    a record leaves the store once whatever tells it, and once a file is watched the receipt
    is due when its last published record has left."""

    books: dict[str, FileBook] = field(default_factory=dict)
    open: set[str] = field(default_factory=set)
    watch_calls: int = 0
    left_calls: list[list[int]] = field(default_factory=list)
    left_fails: bool = False
    progress_reads: list[Settled | None] = field(default_factory=list)

    def book(self, ref: FileRef, *, published: int, rejected: int = 0, dead: int = 0) -> FileBook:
        ordinals = iter(range(1, published + rejected + dead + 1))
        entry = FileBook(
            ref=ref,
            emitted=published + rejected + dead,
            published={next(ordinals) for _ in range(published)},
            rejected={next(ordinals) for _ in range(rejected)},
            dead_lettered={next(ordinals) for _ in range(dead)},
        )
        self.books[file_id(ref)] = entry
        return entry

    def progress(self, fid: str, *, settled: Settled | None = None) -> FileProgress:
        """As the ledger's: the records `settled` covers are counted as it says, not looked at;
        the answer settles every whole block of BLOCK records that is all terminal."""
        self.progress_reads.append(settled)
        b = self.books[fid]
        base = settled or Settled()
        covered = {o for run in base.runs for o in range(run.first, run.last + 1)}
        ends = (b.published, b.rejected, b.dead_lettered)
        counts = [len(ordinals - covered) for ordinals in ends]
        known = [base.published, base.rejected, base.dead_lettered]
        terminal = set().union(*ends)
        blocks = set()
        for block in range(((b.emitted or 0) + BLOCK - 1) // BLOCK):
            span = set(range(block * BLOCK + 1, min((block + 1) * BLOCK, b.emitted or 0) + 1))
            if span <= terminal:
                blocks.add(block)
                if not span <= covered:
                    known = [
                        k + len(ordinals & span) for k, ordinals in zip(known, ends, strict=True)
                    ]
        runs: list[Run] = []
        for block in sorted(blocks):
            first, last = block * BLOCK + 1, min((block + 1) * BLOCK, b.emitted or 0)
            if runs and runs[-1].last + 1 == first:
                runs[-1] = Run(first=runs[-1].first, last=last)
            else:
                runs.append(Run(first=first, last=last))
        totals = [k + c for k, c in zip(base_counts(base), counts, strict=True)]
        return FileProgress(
            file_id=fid,
            status="split",
            emitted=b.emitted,
            record_count=b.emitted or 0,
            published=totals[0],
            rejected=totals[1],
            dead_lettered=totals[2],
            terminal=sum(totals),
            settled=Settled(
                runs=tuple(runs), published=known[0], rejected=known[1], dead_lettered=known[2]
            ),
        )

    def file_finished(self, ref: FileRef) -> None:
        self.books[file_id(ref)].finished_calls += 1

    def source_deleted(self, ref: FileRef, at: int) -> int:
        b = self.books[file_id(ref)]
        b.source_deleted_at = b.source_deleted_at or at
        return b.source_deleted_at

    def watch_store(
        self, fid: str, *, now: float | None = None, out_of_time: Callable[[], bool] = lambda: False
    ) -> Watch:
        self.watch_calls += 1
        self.open.add(fid)
        if out_of_time():
            return Watch(done=False)
        self.books[fid].watched = True
        return Watch(done=True)

    def record_left(self, fid: str, ordinal: int, how: LeftBy, *, at: float | None = None) -> Left:
        b = self.books[fid]
        if ordinal in b.left:
            return Left(changed=False)
        b.left[ordinal] = how
        b.last_left_at = int(at or 0)
        due = b.watched and ordinal in b.published and not b.in_store()
        return Left(changed=True, receipt_due=due)

    def records_left(
        self, fid: str, ordinals: Iterable[int], how: LeftBy, *, at: float | None = None
    ) -> LeftMany:
        ordinals = list(ordinals)
        self.left_calls.append(ordinals)
        if self.left_fails:
            return LeftMany(
                changed=frozenset(),
                receipt_due=False,
                failed=dict.fromkeys(ordinals, ConnectionError("ledger down")),
            )
        changed, due = set(), False
        for ordinal in ordinals:
            outcome = self.record_left(fid, ordinal, how, at=at)
            due = due or outcome.receipt_due
            if outcome.changed:
                changed.add(ordinal)
        return LeftMany(changed=frozenset(changed), receipt_due=due, failed={})

    def in_store(self, fid: str) -> set[int]:
        return self.books[fid].in_store()

    def settle(self, fid: str) -> bool:
        return self.books[fid].watched and not self.books[fid].in_store()

    def open_files(self) -> list[str]:
        return sorted(self.open)

    def store_closed(self, fid: str) -> None:
        self.open.discard(fid)

    def receipt_facts(self, fid: str) -> ReceiptFacts:
        if fid not in self.books:  # forgotten: its items expired
            return ReceiptFacts(file_id=fid)
        b = self.books[fid]
        how = [b.left.get(o) for o in b.published]
        return ReceiptFacts(
            file_id=fid,
            bucket=b.ref.bucket,
            key=b.ref.key,
            version_id=b.ref.version_id,
            emitted=b.emitted,
            published=len(b.published),
            rejected=len(b.rejected),
            dead_lettered=len(b.dead_lettered),
            consumed=how.count(LeftBy.CONSUMED),
            expired=how.count(LeftBy.EXPIRED),
            gone=how.count(LeftBy.GONE),
            in_store=len(b.in_store()),
            sha256=b.sha256,
            size=b.size,
            started_at=STARTED,
            split_at=STARTED + 5,
            published_at=STARTED + 30,
            accounted_at=STARTED + 31,
            source_deleted_at=b.source_deleted_at,
            last_left_store_at=b.last_left_at,
            watched=b.watched,
        )


class TrackedStore(FakeStore):
    """The temporary store, answering where an event came from and what a file left there."""

    def expired(self, now: float | None = None) -> Iterator[StoredRef]:
        cutoff = int(now or 0)
        found = [i for i in self.items.values() if i.expires_at <= cutoff]
        return iter([StoredRef(i.id, i.file_id, i.ordinal) for i in found])

    def ordinals_of(self, fid: str) -> set[int]:
        return {item.ordinal for item in self.items.values() if item.file_id == fid}


@dataclass
class WrittenReceipts(FakeSources):
    """The landing bucket, keeping every receipt written, in order."""

    written: list[DeletionReceipt] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # file ids whose receipt cannot be written

    def put_receipt(self, receipt: DeletionReceipt) -> None:
        if receipt.file_id in self.refused:
            raise RuntimeError("NoSuchBucket")
        super().put_receipt(receipt)
        self.written.append(receipt)

    def last(self) -> DeletionReceipt:
        raw = self.receipts[f"receipts/{FID}.json"]
        return msgspec.json.decode(raw, type=DeletionReceipt)


def base_counts(settled: Settled) -> list[int]:
    return [settled.published, settled.rejected, settled.dead_lettered]


def event_id(n: int) -> str:
    return f"gro1-{n:064x}"


def notice(n: int) -> str:
    return json.dumps({"id": event_id(n)})


def store_published(store: TrackedStore, book: FileBook, expires_at: int) -> None:
    """Put each published record of the file in the store, its event id numbered by ordinal."""
    for ordinal in sorted(book.published):
        store.items[event_id(ordinal)] = item(event_id(ordinal), expires_at, ordinal=ordinal)


@dataclass
class Reaper:
    """The three functions' ports, shared, as in one account."""

    ledger: BookLedger = field(default_factory=BookLedger)
    store: TrackedStore = field(default_factory=TrackedStore)
    bucket: WrittenReceipts = field(default_factory=WrittenReceipts)
    dead_letters: FakeDeadLetters = field(default_factory=FakeDeadLetters)
    remaining_millis: int = 50_000
    now: float = NOW  # the finish's clock


STALL_SECONDS = 3600


@pytest.fixture
def reaper_(monkeypatch: pytest.MonkeyPatch) -> Reaper:
    ports = Reaper()
    consumed_app = ConsumedApp(
        settings=ConsumedSettings(
            store_table="gro-temporary-store",
            consumed_dlq_url="https://sqs.us-east-1.amazonaws.com/123456789012/gro-events-consumed-dlq",
            ledger_table="gro-ingest-ledger",
            max_receive_count=MAX_RECEIVE_COUNT,
        ),
        store=ports.store,
        dead_letters=ports.dead_letters,
        ledger=ports.ledger,
        receipts=ports.bucket,
        clock=lambda: NOW + 60,
    )
    finish_app = FinishApp(
        settings=FinishSettings(
            ledger_table="gro-ingest-ledger",
            store_table="gro-temporary-store",
            stall_seconds=STALL_SECONDS,
        ),
        ledger=ports.ledger,
        sources=ports.bucket,
        store=ports.store,
        clock=lambda: ports.now,
    )
    sweep_app = SweepApp(
        settings=SweepSettings(store_table="gro-temporary-store", ledger_table="gro-ingest-ledger"),
        store=ports.store,
        ledger=ports.ledger,
        receipts=ports.bucket,
        clock=lambda: NOW + 7200,
    )
    monkeypatch.setattr(reaper.app, "consumed_app", lambda: consumed_app)
    monkeypatch.setattr(reaper.app, "finish_app", lambda: finish_app)
    monkeypatch.setattr(reaper.app, "sweep_app", lambda: sweep_app)
    return ports


def consumed_context() -> FakeLambdaContext:
    return FakeLambdaContext("gro-reaper-consumed")


def finish_context(remaining_millis: int = 50_000) -> FakeLambdaContext:
    return FakeLambdaContext("gro-reaper-finish-file", remaining_millis=remaining_millis)


def sweep_context() -> FakeLambdaContext:
    return FakeLambdaContext("gro-reaper-sweep")


# -- consumed -------------------------------------------------------------------------------


@pytest.fixture
def consumed(reaper_: Reaper) -> Reaper:
    reaper_.ledger.book(FILE, published=1)
    reaper_.store.items[EVENT_ID] = item(EVENT_ID, int(NOW) + 3600)
    return reaper_


def test_a_consumed_notice_delivered_raw_deletes_the_stored_event(consumed: Reaper) -> None:
    # given: SNS raw message delivery: the body is the platform's notice itself
    body = sample_text("EventsConsumed")

    # when
    response = handler.consumed(sqs_event(body, queue=QUEUE), consumed_context())

    # then
    assert response == {"batchItemFailures": []}
    assert consumed.store.deleted == [EVENT_ID]
    assert consumed.store.items == {}
    assert consumed.dead_letters.sent == []
    assert consumed.ledger.books[FID].left == {1: LeftBy.CONSUMED}


def test_a_consumed_notice_in_an_sns_envelope_deletes_the_stored_event(
    consumed: Reaper,
) -> None:
    # given: SNS -> SQS without raw delivery: the notice is the envelope's Message
    body = sns_envelope(sample_text("EventsConsumed"))
    assert json.loads(body)["Type"] == "Notification"

    # when
    response = handler.consumed(sqs_event(body, queue=QUEUE), consumed_context())

    # then
    assert response == {"batchItemFailures": []}
    assert consumed.store.deleted == [EVENT_ID]
    assert consumed.dead_letters.sent == []


def test_a_notice_for_an_event_already_gone_is_fine(consumed: Reaper) -> None:
    consumed.store.items.clear()

    response = handler.consumed(
        sqs_event(sample_text("EventsConsumed"), queue=QUEUE), consumed_context()
    )

    assert response == {"batchItemFailures": []}
    assert consumed.store.deleted == []  # nothing held (a consistent read): nothing to delete
    assert consumed.ledger.books[FID].left == {}


def test_a_batch_of_notices_costs_one_read_one_delete_call_and_one_ledger_write(
    reaper_: Reaper,
) -> None:
    # given three published records of a file in the store
    book = reaper_.ledger.book(FILE, published=3)
    store_published(reaper_.store, book, int(NOW) + 3600)

    # when their notices come in one batch
    response = handler.consumed(
        sqs_event(notice(1), notice(2), notice(3), queue=QUEUE), consumed_context()
    )

    # then one read says where they came from, one call deletes them, one write notes them
    assert response == {"batchItemFailures": []}
    ids = [event_id(1), event_id(2), event_id(3)]
    assert reaper_.store.locate_calls == [ids]
    assert reaper_.store.delete_calls == [ids]
    assert reaper_.ledger.left_calls == [[1, 2, 3]]
    assert book.left == dict.fromkeys((1, 2, 3), LeftBy.CONSUMED)


def test_a_delete_left_unprocessed_sends_back_that_notice_alone_and_notes_the_others(
    reaper_: Reaper,
) -> None:
    book = reaper_.ledger.book(FILE, published=3)
    store_published(reaper_.store, book, int(NOW) + 3600)
    reaper_.store.unprocessed = frozenset({event_id(2)})

    response = handler.consumed(
        sqs_event(
            *(Message(notice(n), receive_count=2, message_id=f"m-{n}") for n in (1, 2, 3)),
            queue=QUEUE,
        ),
        consumed_context(),
    )

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-2"}]}
    assert book.left == {1: LeftBy.CONSUMED, 3: LeftBy.CONSUMED}  # 2 is still in the store
    assert event_id(2) in reaper_.store.items and reaper_.dead_letters.sent == []


def test_a_ledger_note_that_fails_sends_back_the_notices_it_was_for(reaper_: Reaper) -> None:
    book = reaper_.ledger.book(FILE, published=2)
    store_published(reaper_.store, book, int(NOW) + 3600)
    reaper_.ledger.left_fails = True

    response = handler.consumed(
        sqs_event(
            Message(notice(1), message_id="m-1"),
            Message("not json", message_id="dead"),
            Message(notice(2), message_id="m-2"),
            queue=QUEUE,
        ),
        consumed_context(),
    )

    assert response == {"batchItemFailures": [{"itemIdentifier": "m-1"}, {"itemIdentifier": "m-2"}]}
    assert [d.body for d in reaper_.dead_letters.sent] == ["not json"]


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        '{"event": "consumed"}',
        sns_envelope('{"identifier": "x"}'),
        json.dumps({"Type": "SubscriptionConfirmation", "Message": "confirm"}),
    ],
    ids=["not-json", "not-a-notice", "envelope-without-a-notice", "not-a-notification"],
)
def test_an_undecodable_notice_is_dead_lettered_and_deletes_nothing(
    consumed: Reaper, body: str
) -> None:
    # when
    response = handler.consumed(sqs_event(body, queue=QUEUE), consumed_context())

    # then
    assert response == {"batchItemFailures": []}
    (dead,) = consumed.dead_letters.sent
    assert dead.body == body
    assert dead.reason.startswith("the body is not events-consumed.v1")
    assert dead.attempts == 1
    assert consumed.store.deleted == []
    assert EVENT_ID in consumed.store.items


def test_a_store_failure_before_the_last_attempt_is_retried(consumed: Reaper) -> None:
    # given: the store fails for this batch; the second message is not ours to retry
    consumed.store.fail_with = ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
        "DeleteItem",
    )
    event_ = sqs_event(
        Message(sample_text("EventsConsumed"), receive_count=2, message_id="retry-me"),
        Message("not json", message_id="dead"),
        queue=QUEUE,
    )

    # when
    response = handler.consumed(event_, consumed_context())

    # then
    assert response == {"batchItemFailures": [{"itemIdentifier": "retry-me"}]}
    assert [d.body for d in consumed.dead_letters.sent] == ["not json"]


def test_a_store_failure_on_the_last_attempt_is_dead_lettered_with_the_reason(
    consumed: Reaper,
) -> None:
    # given
    consumed.store.fail_with = ClientError(
        {"Error": {"Code": "InternalServerError", "Message": "try again"}}, "DeleteItem"
    )
    body = sample_text("EventsConsumed")

    # when
    response = handler.consumed(
        sqs_event(Message(body, receive_count=MAX_RECEIVE_COUNT), queue=QUEUE),
        consumed_context(),
    )

    # then
    assert response == {"batchItemFailures": []}
    assert consumed.dead_letters.sent == [
        DeadLetter(body, f"ClientError after {MAX_RECEIVE_COUNT} attempts", MAX_RECEIVE_COUNT)
    ]
    assert EVENT_ID in consumed.store.items


# -- finish_file ----------------------------------------------------------------------------


def test_a_complete_file_has_its_source_deleted_a_receipt_written_and_is_finished(
    reaper_: Reaper,
) -> None:
    # given: all 2400 emitted records ended one way or another; the published ones are in
    # the store, not yet consumed
    book = reaper_.ledger.book(FILE, published=2390, rejected=7, dead=3)
    store_published(reaper_.store, book, int(NOW) + 3600)

    # when
    out = handler.finish_file(sample("FinishStepInput"), finish_context())

    # then
    step = msgspec.convert(out, FinishStepOutput)
    assert step.finished is True
    assert step.file == FILE
    assert step.counts == FileCounts(
        emitted=2400, terminal=2400, published=2390, rejected=7, dead_lettered=3
    )
    assert reaper_.bucket.deleted == [FILE]
    assert book.finished_calls == 1
    assert reaper_.ledger.open_files() == [FID]  # the sweep looks at it until it is complete
    (key,) = reaper_.bucket.receipts
    assert key == f"receipts/{FID}.json"
    assert reaper_.bucket.last() == DeletionReceipt(
        file_id=FID,
        bucket=FILE.bucket,
        key=FILE.key,
        version_id=FILE.version_id,
        records=2400,
        published=2390,
        rejected=7,
        dead_lettered=3,
        source_deleted_at=int(NOW),
        sha256=SHA256,
        size=SIZE,
        consumed=0,
        expired=0,
        removed_otherwise=0,
        in_store=2390,
        started_at=STARTED,
        split_at=STARTED + 5,
        published_at=STARTED + 30,
        accounted_at=STARTED + 31,
        last_left_store_at=None,
        complete=False,
    )


def test_a_receipt_holds_counts_times_hashes_and_identities_only(reaper_: Reaper) -> None:
    reaper_.ledger.book(FILE, published=1)

    handler.finish_file(sample("FinishStepInput"), finish_context())

    (raw,) = reaper_.bucket.receipts.values()
    fields = set(json.loads(raw))
    assert fields == set(sample("DeletionReceipt.complete"))
    assert set(sample("DeletionReceipt")) < fields
    assert fields == {
        "file_id",
        "bucket",
        "key",
        "version_id",
        "records",
        "published",
        "rejected",
        "dead_lettered",
        "source_deleted_at",
        "sha256",
        "size",
        "consumed",
        "expired",
        "removed_otherwise",
        "in_store",
        "started_at",
        "split_at",
        "published_at",
        "accounted_at",
        "last_left_store_at",
        "complete",
    }


def test_published_records_the_store_no_longer_holds_are_counted_gone_at_the_finish(
    reaper_: Reaper,
) -> None:
    # given: 5 published, of which the publisher deleted 2 itself (the platform had them from an
    # earlier ingestion) and 3 were consumed before the file finished
    book = reaper_.ledger.book(FILE, published=5, rejected=1)
    for ordinal in (1, 2, 3):
        reaper_.ledger.record_left(FID, ordinal, LeftBy.CONSUMED, at=NOW - 5)

    # when
    handler.finish_file(sample("FinishStepInput"), finish_context())

    # then
    receipt = reaper_.bucket.last()
    assert (receipt.consumed, receipt.removed_otherwise, receipt.in_store) == (3, 2, 0)
    assert receipt.complete is True
    assert receipt.last_left_store_at == int(NOW)
    assert book.in_store() == set()
    assert reaper_.ledger.open_files() == []


def test_the_last_consumed_record_makes_the_receipt_complete_and_a_repeat_counts_nothing(
    reaper_: Reaper,
) -> None:
    # given a finished file whose 3 published records are still in the store
    book = reaper_.ledger.book(FILE, published=3, rejected=1)
    store_published(reaper_.store, book, int(NOW) + 3600)
    handler.finish_file(sample("FinishStepInput"), finish_context())
    assert reaper_.bucket.last().in_store == 3
    written = len(reaper_.bucket.written)

    # when two are consumed, one of them notified twice (in one batch, then again)
    handler.consumed(sqs_event(notice(1), notice(2), notice(1), queue=QUEUE), consumed_context())
    handler.consumed(sqs_event(notice(2), queue=QUEUE), consumed_context())

    # then: no receipt yet, nothing counted twice
    assert len(reaper_.bucket.written) == written
    assert book.left == {1: LeftBy.CONSUMED, 2: LeftBy.CONSUMED}

    # when the last one is consumed, and its notice comes again
    handler.consumed(sqs_event(notice(3), queue=QUEUE), consumed_context())
    handler.consumed(sqs_event(notice(3), queue=QUEUE), consumed_context())

    # then the receipt is written once more: complete, at the consumed time
    assert len(reaper_.bucket.written) == written + 1
    receipt = reaper_.bucket.last()
    assert (receipt.published, receipt.consumed, receipt.in_store) == (3, 3, 0)
    assert receipt.complete is True
    assert receipt.last_left_store_at == int(NOW) + 60
    assert receipt.source_deleted_at == int(NOW)
    assert reaper_.store.items == {}
    assert reaper_.ledger.open_files() == []


def test_a_file_watched_over_several_calls_says_finished_only_when_watched(
    reaper_: Reaper,
) -> None:
    # given a file finishing in a call with almost no time left
    book = reaper_.ledger.book(FILE, published=2)
    store_published(reaper_.store, book, int(NOW) + 3600)

    # when
    first = handler.finish_file(sample("FinishStepInput"), finish_context(remaining_millis=500))
    second = handler.finish_file(first, finish_context())

    # then: the source went at once, with a receipt; the step finished on the second call
    assert msgspec.convert(first, FinishStepOutput).finished is False
    assert msgspec.convert(second, FinishStepOutput).finished is True
    assert reaper_.bucket.deleted == [FILE, FILE]
    assert book.source_deleted_at == int(NOW)
    assert reaper_.bucket.last().in_store == 2


def test_an_incomplete_file_is_not_finished_and_nothing_is_deleted(reaper_: Reaper) -> None:
    # given: 2 of 2400 records still on their way; progress since the last check
    reaper_.ledger.book(FILE, published=2395, rejected=3)
    reaper_.ledger.books[FID].emitted = 2400

    # when
    out = handler.finish_file(sample("FinishStepInput"), finish_context())

    # then
    step = msgspec.convert(out, FinishStepOutput)
    assert step.finished is False
    assert (step.terminal_seen, step.progress_at) == (2398, NOW)
    assert step.wait_seconds == 10
    assert reaper_.bucket.deleted == []
    assert reaper_.bucket.receipts == {}
    assert reaper_.ledger.watch_calls == 0
    # the state machine asks again with this output
    assert msgspec.convert(out, FinishStepInput).terminal_seen == 2398


def test_a_file_still_being_split_is_not_finished(reaper_: Reaper) -> None:
    reaper_.ledger.book(FILE, published=0)
    reaper_.ledger.books[FID].emitted = None

    out = handler.finish_file(sample("SplitStepOutput"), finish_context())

    assert msgspec.convert(out, FinishStepOutput).finished is False
    assert reaper_.bucket.deleted == []


def test_a_file_stalled_beyond_stall_seconds_raises_records_unaccounted(reaper_: Reaper) -> None:
    # given: no record has ended since the last check, which was over an hour ago
    reaper_.ledger.book(FILE, published=2398)
    reaper_.ledger.books[FID].emitted = 2400
    state = sample("FinishStepInput") | {
        "terminal_seen": 2398,
        "progress_at": NOW - STALL_SECONDS - 1,
    }

    # when
    with pytest.raises(RecordsUnaccountedError) as stalled:
        handler.finish_file(state, finish_context())

    # then: the state machine catches it by name
    assert type(stalled.value).__name__ == "RecordsUnaccountedError"
    assert "2 records" in str(stalled.value)
    assert reaper_.bucket.deleted == []
    assert reaper_.ledger.books[FID].finished_calls == 0


def test_a_file_waiting_less_than_stall_seconds_is_not_stalled(reaper_: Reaper) -> None:
    reaper_.ledger.book(FILE, published=2398)
    reaper_.ledger.books[FID].emitted = 2400
    state = sample("FinishStepInput") | {"terminal_seen": 2398, "progress_at": NOW - 60}

    out = handler.finish_file(state, finish_context())

    assert msgspec.convert(out, FinishStepOutput).progress_at == NOW - 60


def test_a_waiting_files_checks_come_further_apart_the_longer_it_waits_up_to_the_cap(
    reaper_: Reaper,
) -> None:
    # given a file whose last 2 records never end (until the stall)
    reaper_.ledger.book(FILE, published=2398)
    reaper_.ledger.books[FID].emitted = 2400
    state = sample("SplitStepOutput")  # the first check's input: the splitter's base wait

    # when the state machine checks, waits as told, and checks again, for four hours
    waits: list[int] = []
    while reaper_.now - NOW < 4 * 3600:
        state = handler.finish_file(state, finish_context())
        waits.append(state["wait_seconds"])
        reaper_.now += state["wait_seconds"]
        state["progress_at"] = reaper_.now  # keep it from stalling: a record ends now and then

    # then the waits start at the base, grow with the time spent (1/20 of it), reach the cap,
    # and four hours take under 120 checks, not 1,440
    assert waits[0] == 10
    assert waits == sorted(waits)
    assert waits[-1] == MAX_WAIT_SECONDS
    assert len(waits) < 120
    assert (state["base_wait_seconds"], state["checks_since"]) == (10, NOW)


def test_a_check_reads_only_what_is_not_settled_and_the_finish_counts_exactly(
    reaper_: Reaper,
) -> None:
    # given 2 blocks and a bit, the first block complete with a dead-lettered record
    emitted = 2 * BLOCK + 10
    book = reaper_.ledger.book(FILE, published=BLOCK - 1, dead=1)
    book.emitted = emitted
    book.dead_lettered, book.published = {1}, set(range(2, BLOCK + 1))

    # when checked
    first = handler.finish_file(sample("FinishStepInput"), finish_context())

    # then the first block is settled and carried on
    assert msgspec.convert(first["settled"], Settled) == Settled(
        runs=(Run(first=1, last=BLOCK),), published=BLOCK - 1, dead_lettered=1
    )
    assert reaper_.ledger.progress_reads == [None]

    # when record 1 is redriven and published, the rest end, and the file is checked again
    book.dead_lettered, book.published = set(), set(range(1, emitted + 1))
    reaper_.now += first["wait_seconds"]
    second = handler.finish_file(first, finish_context())

    # then the check carried what was settled, found the file complete, and read it all once
    # more for exact counts: the redriven record is counted published
    step = msgspec.convert(second, FinishStepOutput)
    assert reaper_.ledger.progress_reads == [None, msgspec.convert(first["settled"], Settled), None]
    assert step.finished is True
    assert step.counts == FileCounts(
        emitted=emitted, terminal=emitted, published=emitted, rejected=0, dead_lettered=0
    )
    assert reaper_.bucket.last().published == emitted


# -- sweep ----------------------------------------------------------------------------------


def test_the_sweep_deletes_exactly_the_expired_events_and_says_how_many(
    reaper_: Reaper,
) -> None:
    # given (the sweep runs at NOW + 7200)
    swept = reaper_.store
    reaper_.ledger.book(FILE, published=4)
    for n, (event_id_, expires_at) in enumerate(
        {
            "gro1-expired-long-ago": int(NOW) - 86_400,
            "gro1-expired-just-now": int(NOW) + 7200,
            "gro1-live": int(NOW) + 7201,
            "gro1-live-for-a-week": int(NOW) + 7 * 86_400,
        }.items(),
        start=1,
    ):
        swept.items[event_id_] = item(event_id_, expires_at, ordinal=n)
    scheduled = event("scheduled_event.json")

    # when
    out = handler.sweep(scheduled, sweep_context())

    # then
    assert out == {"deleted": 2, "found_gone": 0, "receipts": 0}
    assert sorted(swept.deleted) == ["gro1-expired-just-now", "gro1-expired-long-ago"]
    assert sorted(swept.items) == ["gro1-live", "gro1-live-for-a-week"]
    assert reaper_.ledger.books[FID].left == {1: LeftBy.EXPIRED, 2: LeftBy.EXPIRED}


def test_the_sweep_deletes_25_to_a_call_and_notes_them_once_a_block_at_a_time(
    reaper_: Reaper,
) -> None:
    # given 60 expired events of one file
    book = reaper_.ledger.book(FILE, published=60)
    store_published(reaper_.store, book, int(NOW) + 3600)

    # when the sweep runs past their expiry
    out = handler.sweep(event("scheduled_event.json"), sweep_context())

    # then three deletes of at most 25, three ledger writes, each ordinal noted once, expired
    assert out["deleted"] == 60
    assert [len(call) for call in reaper_.store.delete_calls] == [25, 25, 10]
    assert sorted(o for call in reaper_.ledger.left_calls for o in call) == list(range(1, 61))
    assert reaper_.ledger.books[FID].left == dict.fromkeys(range(1, 61), LeftBy.EXPIRED)
    assert reaper_.store.items == {}


def test_an_expired_event_the_store_would_not_delete_waits_for_the_next_sweep(
    reaper_: Reaper,
) -> None:
    # given 30 expired events, one of which the store leaves unprocessed
    book = reaper_.ledger.book(FILE, published=30)
    store_published(reaper_.store, book, int(NOW) + 3600)
    reaper_.store.unprocessed = frozenset({event_id(7)})

    # when the sweep runs, then fails, having done the rest
    with pytest.raises(RuntimeError, match="left unprocessed"):
        handler.sweep(event("scheduled_event.json"), sweep_context())
    assert sorted(reaper_.store.items) == [event_id(7)]
    assert sorted(reaper_.ledger.books[FID].left) == [o for o in range(1, 31) if o != 7]

    # and when the next sweep runs with the store well again
    reaper_.store.unprocessed = frozenset()
    out = handler.sweep(event("scheduled_event.json"), sweep_context())

    # then that one went too, noted once
    assert out["deleted"] == 1
    assert reaper_.store.items == {}
    assert reaper_.ledger.books[FID].left == dict.fromkeys(range(1, 31), LeftBy.EXPIRED)


def test_with_the_ledger_down_the_sweep_still_deletes_everything_expired_then_fails(
    reaper_: Reaper,
) -> None:
    # given 60 expired events, and a ledger that refuses every note
    book = reaper_.ledger.book(FILE, published=60)
    store_published(reaper_.store, book, int(NOW) + 3600)
    reaper_.ledger.left_fails = True

    # when the sweep runs
    with pytest.raises(ConnectionError, match="ledger down"):
        handler.sweep(event("scheduled_event.json"), sweep_context())

    # then nothing expired is kept for want of a note (the next sweep finds them gone)
    assert reaper_.store.items == {}
    assert len(reaper_.ledger.left_calls) == 3


def test_a_store_that_refuses_every_delete_stops_the_sweep_at_its_first_chunk(
    reaper_: Reaper,
) -> None:
    # given 60 expired events, and a store that refuses deletes
    book = reaper_.ledger.book(FILE, published=60)
    store_published(reaper_.store, book, int(NOW) + 3600)
    reaper_.store.unprocessed = frozenset(event_id(o) for o in range(1, 61))

    # when / then: one chunk tried, nothing noted, the store's error raised
    with pytest.raises(RuntimeError, match="left unprocessed"):
        handler.sweep(event("scheduled_event.json"), sweep_context())
    assert len(reaper_.store.delete_calls) == 1
    assert reaper_.ledger.left_calls == []
    assert len(reaper_.store.items) == 60


def test_a_sweep_with_nothing_expired_deletes_nothing(reaper_: Reaper) -> None:
    reaper_.store.items["gro1-live"] = item("gro1-live", int(NOW) + 7201)

    out = handler.sweep(event("scheduled_event.json"), sweep_context())

    assert out == {"deleted": 0, "found_gone": 0, "receipts": 0}
    assert reaper_.store.deleted == []


def test_records_swept_at_expiry_complete_the_receipt_with_their_count(reaper_: Reaper) -> None:
    # given a finished file: one record consumed, two never consumed and now past their expiry
    book = reaper_.ledger.book(FILE, published=3)
    store_published(reaper_.store, book, int(NOW) + 3600)
    handler.finish_file(sample("FinishStepInput"), finish_context())
    handler.consumed(sqs_event(notice(1), queue=QUEUE), consumed_context())
    assert reaper_.bucket.last().complete is False

    # when the hourly sweep runs past their expiry
    out = handler.sweep(event("scheduled_event.json"), sweep_context())

    # then
    assert out["deleted"] == 2
    receipt = reaper_.bucket.last()
    assert (receipt.consumed, receipt.expired, receipt.removed_otherwise) == (1, 2, 0)
    assert (receipt.in_store, receipt.complete) == (0, True)
    assert receipt.last_left_store_at == int(NOW) + 7200
    assert reaper_.ledger.open_files() == []


def test_a_file_whose_receipt_cannot_be_written_does_not_hold_up_the_others(
    reaper_: Reaper,
) -> None:
    # given a finished file whose last record TTL deleted without a notice, and, before it on
    # the sweep's list, a file whose receipt cannot be written (its bucket is gone)
    book = reaper_.ledger.book(FILE, published=2)
    store_published(reaper_.store, book, int(NOW) + 3600)
    handler.finish_file(sample("FinishStepInput"), finish_context())
    handler.consumed(sqs_event(notice(1), queue=QUEUE), consumed_context())
    del reaper_.store.items[event_id(2)]
    other = FileRef(bucket="gone", key="incoming/DWP_D_20220228.xml", version_id="v1")
    assert file_id(other) < FID
    reaper_.ledger.book(other, published=1).source_deleted_at = STARTED
    reaper_.ledger.open.add(file_id(other))
    reaper_.bucket.refused.add(file_id(other))

    # when the sweep runs, then fails
    with pytest.raises(RuntimeError, match="NoSuchBucket"):
        handler.sweep(event("scheduled_event.json"), sweep_context())

    # then the other file's receipt is complete all the same, and the broken one waits
    receipt = reaper_.bucket.last()
    assert (receipt.consumed, receipt.removed_otherwise, receipt.complete) == (1, 1, True)
    assert reaper_.ledger.open_files() == [file_id(other)]


def test_the_sweep_counts_as_gone_what_the_store_lost_without_a_notice(reaper_: Reaper) -> None:
    # given a finished file whose last record DynamoDB's TTL deleted before the sweep came
    book = reaper_.ledger.book(FILE, published=2)
    store_published(reaper_.store, book, int(NOW) + 3600)
    handler.finish_file(sample("FinishStepInput"), finish_context())
    handler.consumed(sqs_event(notice(1), queue=QUEUE), consumed_context())
    del reaper_.store.items[event_id(2)]

    # when
    out = handler.sweep(event("scheduled_event.json"), sweep_context())

    # then
    assert out == {"deleted": 0, "found_gone": 1, "receipts": 1}
    receipt = reaper_.bucket.last()
    assert (receipt.consumed, receipt.removed_otherwise, receipt.complete) == (1, 1, True)
    assert reaper_.ledger.open_files() == []


def test_the_sweep_lets_go_of_a_file_the_ledger_has_forgotten(reaper_: Reaper) -> None:
    # given a file on the sweep's list whose ledger items have expired
    reaper_.ledger.open.add("forgotten-file")

    # when
    out = handler.sweep(event("scheduled_event.json"), sweep_context())

    # then
    assert out == {"deleted": 0, "found_gone": 0, "receipts": 0}
    assert reaper_.ledger.open_files() == []
    assert reaper_.bucket.written == []


# -- the composition root -------------------------------------------------------------------


@pytest.fixture
def fresh_apps() -> Iterator[None]:
    builders = (reaper.app.consumed_app, reaper.app.finish_app, reaper.app.sweep_app)
    for build in builders:
        build.cache_clear()
    yield
    for build in builders:
        build.cache_clear()


@pytest.mark.usefixtures("fresh_apps")
def test_the_consumed_app_builds_from_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dlq = "https://sqs.us-east-1.amazonaws.com/123456789012/gro-events-consumed-dlq"
    function_environment(
        monkeypatch,
        ConsumedSettings,
        STORE_TABLE="gro-temporary-store",
        CONSUMED_DLQ_URL=dlq,
        LEDGER_TABLE="gro-ingest-ledger",
        MAX_RECEIVE_COUNT="3",
    )

    built = reaper.app.consumed_app()

    assert built.settings == ConsumedSettings(
        store_table="gro-temporary-store",
        consumed_dlq_url=dlq,
        ledger_table="gro-ingest-ledger",
        max_receive_count=3,
    )
    assert isinstance(built.store, Store)
    assert isinstance(built.dead_letters, DeadLetterQueue)
    assert isinstance(built.ledger, Ledger)
    assert isinstance(built.receipts, S3Sources)
    assert reaper.app.consumed_app() is built


@pytest.mark.usefixtures("fresh_apps")
def test_the_finish_and_sweep_apps_build_from_the_environment_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(
        monkeypatch,
        FinishSettings,
        LEDGER_TABLE="gro-ledger",
        STORE_TABLE="gro-temporary-store",
        STALL_SECONDS="60",
    )
    function_environment(
        monkeypatch, SweepSettings, STORE_TABLE="gro-temporary-store", LEDGER_TABLE="gro-ledger"
    )

    finish_app = reaper.app.finish_app()
    sweep_app = reaper.app.sweep_app()

    assert finish_app.settings == FinishSettings(
        ledger_table="gro-ledger", store_table="gro-temporary-store", stall_seconds=60
    )
    assert isinstance(finish_app.ledger, Ledger)
    assert isinstance(finish_app.sources, S3Sources)
    assert isinstance(finish_app.store, Store)
    assert sweep_app.settings == SweepSettings(
        store_table="gro-temporary-store", ledger_table="gro-ledger"
    )
    assert isinstance(sweep_app.store, Store)
    assert isinstance(sweep_app.ledger, Ledger)


@pytest.mark.usefixtures("fresh_apps")
def test_a_missing_variable_fails_the_consumed_app_at_build_time_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    function_environment(monkeypatch, ConsumedSettings, STORE_TABLE="gro-temporary-store")

    with pytest.raises(SettingsError, match="CONSUMED_DLQ_URL"):
        reaper.app.consumed_app()
