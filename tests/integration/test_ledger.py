"""The ledger's counting on a real DynamoDB API (moto over HTTP): exactly once per record."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from contracts.messages import FileRef, file_id
from localcloud import deploy
from localcloud.moto_server import MotoServer
from servicekit.ledger import Ledger, RecordStatus

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


def test_file_ids_are_stable_execution_names_and_differ_per_version() -> None:
    fid = file_id(REF)
    assert fid == file_id(FileRef(bucket="landing", key=REF.key, version_id="v1"))
    assert fid != file_id(FileRef(bucket="landing", key=REF.key, version_id="v2"))
    assert len(fid) <= 80 and all(c.isalnum() or c in "-_" for c in fid)
