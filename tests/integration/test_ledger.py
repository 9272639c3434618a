"""The ledger's counting on a real DynamoDB API (moto over HTTP): exactly once per record."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from contracts.messages import FileRef, file_id
from localcloud import deploy
from localcloud.moto_server import MotoServer
from servicekit.ledger import BLOCK, Ledger, RecordEnd, RecordStatus

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
    """A DynamoDB client that counts the ledger's write calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.exceptions = client.exceptions
        self.updates = 0

    def update_item(self, **kwargs: Any) -> Any:
        self.updates += 1
        return self._client.update_item(**kwargs)

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
