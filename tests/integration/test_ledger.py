"""The ledger's counting on a real DynamoDB API (moto over HTTP): exactly once per record."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import servicekit.ledger as ledger_module
from contracts.messages import FileRef, file_id
from contracts.steps import Run, Settled
from ingest_cli.follow import LedgerLooks
from localcloud import deploy
from localcloud.moto_server import MotoServer
from servicekit.ledger import BLOCK, Ledger, LeftBy, RecordEnd, RecordStatus

REF = FileRef(bucket="landing", key="incoming/DWP_D_20220301.xml", version_id="v1")
TABLE = "gro-ingest-ledger"


def test_each_record_counts_once_whatever_the_redeliveries(cloud: MotoServer) -> None:
    deploy.deploy(cloud.client, "foundation")
    db = cloud.client("dynamodb")
    Ledger(db, TABLE).file_started(REF)
    Ledger(db, TABLE).file_checked(REF, 600)

    # given every record delivered twice, concurrently, across three blocks
    def end(ordinal: int) -> bool:
        return Ledger(db, TABLE).record_ended(REF, ordinal, RecordStatus.PUBLISHED)

    with ThreadPoolExecutor(4) as pool:
        changed = list(pool.map(end, [*range(1, 601), *range(1, 601)]))
    Ledger(db, TABLE).file_split(REF, 600)

    progress = Ledger(db, TABLE).progress(file_id(REF))
    assert changed.count(True) == 600
    assert (progress.published, progress.terminal, progress.emitted) == (600, 600, 600)
    assert progress.complete


def test_a_dead_lettered_record_redriven_and_published_moves_its_count(cloud: MotoServer) -> None:
    deploy.deploy(cloud.client, "foundation")
    db = cloud.client("dynamodb")
    Ledger(db, TABLE).file_checked(REF, 3)
    Ledger(db, TABLE).record_ended(REF, 1, RecordStatus.REJECTED, reasons=("DeceasedGender",))
    Ledger(db, TABLE).record_ended(REF, 2, RecordStatus.DEAD_LETTERED, reasons=("503",))
    before = Ledger(db, TABLE).progress(file_id(REF))
    assert (before.rejected, before.dead_lettered, before.terminal, before.complete) == (
        1,
        1,
        2,
        False,
    )

    assert Ledger(db, TABLE).record_ended(REF, 2, RecordStatus.PUBLISHED)
    assert not Ledger(db, TABLE).record_ended(REF, 2, RecordStatus.PUBLISHED)
    Ledger(db, TABLE).record_ended(REF, 3, RecordStatus.PUBLISHED)
    Ledger(db, TABLE).file_split(REF, 3)

    after = Ledger(db, TABLE).progress(file_id(REF))
    assert (after.published, after.rejected, after.dead_lettered, after.terminal) == (2, 1, 0, 3)
    assert after.complete


class Counting:
    """A DynamoDB client that counts the ledger's write calls, and the block keys it reads."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self.updates = 0
        self.blocks_read: list[int] = []

    def update_item(self, **kwargs: Any) -> Any:
        self.updates += 1
        return self._client.update_item(**kwargs)

    def batch_get_item(self, **kwargs: Any) -> Any:
        for request in kwargs["RequestItems"].values():
            self.blocks_read += [int(k["pk"]["S"].rsplit("#", 1)[1]) for k in request["Keys"]]
        return self._client.batch_get_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def published(*ordinals: int) -> list[RecordEnd]:
    return [RecordEnd(REF, o, RecordStatus.PUBLISHED, f"gro1-{o:064x}") for o in ordinals]


def test_a_batchs_endings_take_one_write_per_block_and_count_once_whatever_the_redeliveries(
    cloud: MotoServer,
) -> None:
    deploy.deploy(cloud.client, "foundation")
    db = Counting(cloud.client("dynamodb"))
    Ledger(db, TABLE).file_checked(REF, 600)
    db.updates = 0

    # given 600 records in batches of ten, two of which straddle blocks (251-260, 511-520)
    assert BLOCK == 256
    batches = [published(*range(start, start + 10)) for start in range(1, 601, 10)]
    firsts = [Ledger(db, TABLE).records_ended(b, handled_by="publisher 1.0.0") for b in batches]
    writes = db.updates

    # when every record is delivered again, in other batches, concurrently, some twice in one
    rng = random.Random(7)
    again = [*range(1, 601), *rng.sample(range(1, 601), 100)]
    rng.shuffle(again)
    redelivered = [published(*again[i : i + 10]) for i in range(0, len(again), 10)]
    with ThreadPoolExecutor(4) as pool:
        seconds = list(pool.map(lambda b: Ledger(db, TABLE).records_ended(b), redelivered))
    Ledger(db, TABLE).file_split(REF, 600)

    # then the first pass wrote once per batch and block, and nothing failed
    assert writes == len(batches) + 2  # the two straddling blocks: two writes each
    assert all(e is None for outcomes in firsts + seconds for e in outcomes)
    progress = Ledger(db, TABLE).progress(file_id(REF))
    assert (progress.published, progress.terminal, progress.complete) == (600, 600, True)
    assert progress.handled_by == ("publisher 1.0.0",)


def test_a_fold_moves_a_redriven_record_and_counts_a_repeated_one_once(cloud: MotoServer) -> None:
    deploy.deploy(cloud.client, "foundation")
    db = cloud.client("dynamodb")
    ledger = Ledger(db, TABLE)
    ledger.file_checked(REF, 4)
    ledger.record_ended(REF, 2, RecordStatus.DEAD_LETTERED, reasons=("503",))

    # when a batch ends 1..4 published, 3 twice, and 4 both rejected and published
    outcomes = ledger.records_ended(
        [
            *published(1, 2, 3, 3),
            RecordEnd(REF, 4, RecordStatus.REJECTED),
            *published(4),
        ]
    )

    # then
    assert outcomes == [None] * 6
    ledger.file_split(REF, 4)
    after = ledger.progress(file_id(REF))
    assert (after.published, after.rejected, after.dead_lettered, after.terminal) == (4, 0, 0, 4)
    (moved,) = [e for e in ledger.record_endings(file_id(REF)) if e.ordinal == 2]
    assert (moved.status, moved.moved_from) == ("published", "dead_lettered")


def test_file_ids_are_stable_execution_names_and_differ_per_version() -> None:
    fid = file_id(REF)
    assert fid == file_id(FileRef(bucket="landing", key=REF.key, version_id="v1"))
    assert fid != file_id(FileRef(bucket="landing", key=REF.key, version_id="v2"))
    assert len(fid) <= 80 and all(c.isalnum() or c in "-_" for c in fid)


# -- polling a file's progress: blocks known complete are not read again ---------------------

SMALL = 16


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 16 records instead of 256, so that a file of many blocks is quick to write."""
    monkeypatch.setattr(ledger_module, "BLOCK", SMALL)


def ended(status: RecordStatus, *ordinals: int) -> list[RecordEnd]:
    return [RecordEnd(REF, o, status, f"gro1-{o:064x}") for o in ordinals]


def split_file(cloud: MotoServer, records: int) -> tuple[Counting, Ledger, str]:
    """A file of `records` records, checked and split, in a ledger on a counting client."""
    deploy.deploy(cloud.client, "foundation")
    db = Counting(cloud.client("dynamodb"))
    ledger = Ledger(db, TABLE)
    ledger.file_checked(REF, records)
    ledger.file_split(REF, records)
    return db, ledger, file_id(REF)


@pytest.mark.usefixtures("small_blocks")
def test_a_poll_reads_only_the_blocks_not_yet_known_complete_and_counts_stay_exact(
    cloud: MotoServer,
) -> None:
    records = 5 * SMALL + 10  # six blocks, the last one of 10
    db, ledger, fid = split_file(cloud, records)
    # blocks 0, 1 and 3 complete (block 1 with a dead-lettered record), 2 missing one, 4 and
    # 5 empty; every ending delivered twice
    done = [*range(1, 2 * SMALL + 1), *range(3 * SMALL + 1, 4 * SMALL + 1)]
    ledger.records_ended(ended(RecordStatus.PUBLISHED, *(o for o in done if o != 20)))
    ledger.records_ended(ended(RecordStatus.DEAD_LETTERED, 20))
    ledger.records_ended(ended(RecordStatus.PUBLISHED, *range(2 * SMALL + 1, 3 * SMALL)))
    again = [*(o for o in done if o != 20), *range(2 * SMALL + 1, 3 * SMALL)]
    ledger.records_ended(ended(RecordStatus.PUBLISHED, *again))

    # when polled from nothing known
    first = ledger.progress(fid, settled=Settled())

    # then every block was read; the complete ones are settled
    assert sorted(db.blocks_read) == [0, 1, 2, 3, 4, 5]
    assert first.settled.runs == (
        Run(first=1, last=2 * SMALL),
        Run(first=3 * SMALL + 1, last=4 * SMALL),
    )
    assert (first.terminal, first.published, first.dead_lettered) == (
        4 * SMALL - 1,
        4 * SMALL - 2,
        1,
    )
    assert not first.complete

    # when the rest end, record 20 is redriven and published, a duplicate comes again, and
    # the next poll carries what the first one settled
    ledger.record_ended(REF, 20, RecordStatus.PUBLISHED)
    rest = [3 * SMALL, *range(4 * SMALL + 1, records + 1)]
    ledger.records_ended(ended(RecordStatus.REJECTED, *rest))
    ledger.records_ended(ended(RecordStatus.PUBLISHED, 5))
    db.blocks_read.clear()
    second = ledger.progress(fid, settled=first.settled)

    # then only the blocks not known complete were read, and the file is complete: the sum is
    # exact, the redriven record is still counted where the first poll saw it
    assert sorted(db.blocks_read) == [2, 4, 5]
    assert second.complete
    assert second.terminal == records
    assert second.settled.runs == (Run(first=1, last=records),)
    assert (second.published, second.rejected, second.dead_lettered) == (
        4 * SMALL - 2,
        SMALL + 10 + 1,
        1,
    )
    # and a poll without `settled` reads every block: the redrive shows
    db.blocks_read.clear()
    exact = ledger.progress(fid)
    assert sorted(db.blocks_read) == [0, 1, 2, 3, 4, 5]
    assert (exact.published, exact.rejected, exact.dead_lettered) == (4 * SMALL - 1, SMALL + 11, 0)

    # and a poll carrying all of it reads nothing but the file item
    db.blocks_read.clear()
    assert ledger.progress(fid, settled=second.settled).complete
    assert db.blocks_read == []


@pytest.mark.usefixtures("small_blocks")
def test_following_a_file_reads_each_complete_block_once_and_its_summary_whole(
    cloud: MotoServer,
) -> None:
    records = 3 * SMALL  # three blocks
    db, ledger, fid = split_file(cloud, records)
    # given the first two blocks complete, one record of them dead-lettered
    ledger.records_ended(ended(RecordStatus.PUBLISHED, *range(2, 2 * SMALL + 1)))
    ledger.records_ended(ended(RecordStatus.DEAD_LETTERED, 1))
    looks = LedgerLooks(ledger, fid)

    # when `ingest run` follows it for three looks, the dead-lettered record being redriven
    # and published after the first
    first = looks.look()
    ledger.record_ended(REF, 1, RecordStatus.PUBLISHED)
    db.blocks_read.clear()
    looks.look()
    second = looks.look()

    # then the first look read every block, the next ones only the block not yet complete
    assert first.terminal == 2 * SMALL
    assert sorted(db.blocks_read) == [2, 2]
    assert (second.terminal, second.dead_lettered) == (2 * SMALL, 1)  # as first seen
    # and the summary's read takes every block once: the redrive shows
    db.blocks_read.clear()
    exact = looks.exact()
    assert sorted(db.blocks_read) == [0, 1, 2]
    assert (exact.terminal, exact.published, exact.dead_lettered) == (2 * SMALL, 2 * SMALL, 0)


@pytest.mark.usefixtures("small_blocks")
def test_a_settled_state_that_does_not_fit_the_files_blocks_is_not_trusted(
    cloud: MotoServer,
) -> None:
    deploy.deploy(cloud.client, "foundation")
    db = Counting(cloud.client("dynamodb"))
    ledger = Ledger(db, TABLE)
    ledger.file_checked(REF, 2 * SMALL)
    ledger.file_split(REF, 2 * SMALL)
    ledger.records_ended(ended(RecordStatus.PUBLISHED, *range(1, SMALL + 1)))

    # when told of a run that is not whole blocks, or whose counts do not add up
    for wrong in (
        Settled(runs=(Run(first=1, last=100),), published=100),
        Settled(runs=(Run(first=1, last=2 * SMALL),), published=10),
    ):
        db.blocks_read.clear()
        progress = ledger.progress(file_id(REF), settled=wrong)

        # then it reads every block, as without it
        assert sorted(db.blocks_read) == [0, 1]
        assert (progress.terminal, progress.published) == (SMALL, SMALL)
        assert progress.settled.runs == (Run(first=1, last=SMALL),)


@pytest.mark.usefixtures("small_blocks")
def test_the_settled_runs_a_poll_remembers_are_bounded(
    cloud: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy.deploy(cloud.client, "foundation")
    monkeypatch.setattr(ledger_module, "MAX_SETTLED_RUNS", 3)
    db = Counting(cloud.client("dynamodb"))
    ledger = Ledger(db, TABLE)
    blocks = 10
    ledger.file_checked(REF, blocks * SMALL)
    ledger.file_split(REF, blocks * SMALL)
    # every other block complete (0, 2, 4, 6, 8): each would be a run of its own
    for b in range(0, blocks, 2):
        ledger.records_ended(
            ended(RecordStatus.PUBLISHED, *range(b * SMALL + 1, (b + 1) * SMALL + 1))
        )

    progress = ledger.progress(file_id(REF), settled=Settled())

    # then it remembers three runs, and counts only what they hold as settled
    assert len(progress.settled.runs) == 3
    assert (progress.settled.terminal, progress.settled.published) == (3 * SMALL, 3 * SMALL)
    assert progress.terminal == 5 * SMALL
    # and the next poll reads the blocks left out again, counting nothing twice
    db.blocks_read.clear()
    again = ledger.progress(file_id(REF), settled=progress.settled)
    assert len(db.blocks_read) == blocks - 3
    assert again.terminal == 5 * SMALL


class ClosingTogether:
    """A DynamoDB client on which every transaction (a block closing) waits, once done, for
    the other closer's: both closers then look at a file whose blocks are all closed."""

    def __init__(self, client: Any, closers: int) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self._both_closed = threading.Barrier(closers, timeout=30)

    def transact_write_items(self, **kwargs: Any) -> Any:
        answer = self._client.transact_write_items(**kwargs)
        self._both_closed.wait()
        return answer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_two_blocks_closing_at_once_make_the_receipt_due_for_one_of_them(
    cloud: MotoServer,
) -> None:
    deploy.deploy(cloud.client, "foundation")
    db = cloud.client("dynamodb")
    fid = file_id(REF)
    # given a finished, watched file of two blocks, each with one published record in the store
    records = BLOCK + 1
    ledger = Ledger(db, TABLE)
    ledger.file_checked(REF, records)
    for ordinal in range(1, records + 1):
        ledger.record_ended(REF, ordinal, RecordStatus.PUBLISHED)
    ledger.file_split(REF, records)
    for ordinal in range(2, BLOCK + 1):
        ledger.record_left(fid, ordinal, LeftBy.CONSUMED)
    assert ledger.watch_store(fid).done
    assert ledger.receipt_facts(fid).open_blocks == 2

    # when the last record of each block leaves at once, and both blocks close before either
    # closer looks at the file
    racing = Ledger(ClosingTogether(db, 2), TABLE)  # type: ignore[arg-type]
    with ThreadPoolExecutor(2) as pool:
        lefts = list(pool.map(lambda o: racing.record_left(fid, o, LeftBy.CONSUMED), [1, records]))

    # then both were noted, and only one was told the receipt is due
    assert [left.changed for left in lefts] == [True, True]
    assert [left.receipt_due for left in lefts].count(True) == 1
    assert ledger.receipt_facts(fid).open_blocks == 0
