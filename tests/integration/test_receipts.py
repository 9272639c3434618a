"""Deletion receipts on a real DynamoDB API and on the whole local cloud: the ledger notes each
record leaving the temporary store once, knows from one block and one file item when the last
has gone, and `ingest receipts` / `ingest status FILE` show a receipt an auditor can check
against the file: its SHA-256 and size, counts that add up, when the source was deleted and
when the last record left the store."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.messages import FileRef, file_id
from contracts.receipts import receipt_key
from ingest_cli.follow import follow, upload
from ingest_cli.sample import write_sample
from localcloud import deploy
from localcloud.cloud import LocalCloud
from servicekit.ledger import BLOCK, Ledger, LeftBy, RecordStatus
from servicekit.store import Store
from tests.builders import record
from tests.role_actions import refused

from .cli import ingest_json

TABLE = "gro-ingest-ledger"
NAME_IN_THE_FILE = "Quillfeatherby"


@pytest.fixture(scope="module")
def pipeline() -> Iterator[LocalCloud]:
    """One local cloud for the module (one moto server at a time): the ledger tests use its
    ledger table, each with a file of its own."""
    with LocalCloud(consumers=2) as running:
        yield running


@pytest.fixture
def db(pipeline: LocalCloud) -> Any:
    return pipeline.client("dynamodb")


@pytest.fixture
def ref(request: pytest.FixtureRequest) -> FileRef:
    return FileRef(bucket="landing", key=f"incoming/{request.node.name}.xml", version_id="v1")


def published_file(
    db: Any, ref: FileRef, records: int, *, rejected: tuple[int, ...] = ()
) -> Ledger:
    """A split file whose records all ended: published, but for `rejected`."""
    ledger = Ledger(db, TABLE)
    ledger.file_started(ref)
    ledger.file_checked(ref, records, sha256="ab" * 32, size=4096)

    def end(ordinal: int) -> bool:
        status = RecordStatus.REJECTED if ordinal in rejected else RecordStatus.PUBLISHED
        return ledger.record_ended(ref, ordinal, status)

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(end, range(1, records + 1)))
    ledger.file_split(ref, records)
    ledger.source_deleted(ref, 1_700_000_000)
    return ledger


# -- the ledger ---------------------------------------------------------------------------------


def test_each_record_leaves_once_whatever_tells_it_and_the_last_makes_the_receipt_due_once(
    db: Any, ref: FileRef
) -> None:
    fid = file_id(ref)
    # given a finished file of two blocks, watched, every published record still stored
    records = BLOCK + 20
    ledger = published_file(db, ref, records, rejected=(7, BLOCK + 1))
    assert ledger.watch_store(fid).done
    assert ledger.receipt_facts(fid).open_blocks == 2
    assert fid in ledger.open_files()
    published = [o for o in range(1, records + 1) if o not in (7, BLOCK + 1)]

    # when every record is said to have left twice, concurrently: consumed and swept at once
    def leave(args: tuple[int, LeftBy]) -> tuple[bool, bool]:
        left = Ledger(db, TABLE).record_left(fid, args[0], args[1], at=1_700_000_100)
        return left.changed, left.receipt_due

    told = [(o, LeftBy.CONSUMED) for o in published] + [(o, LeftBy.EXPIRED) for o in published]
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(leave, told))

    # then each counted once, and exactly one call saw the last go
    assert [changed for changed, _ in outcomes].count(True) == len(published)
    assert [due for _, due in outcomes].count(True) == 1
    facts = ledger.receipt_facts(fid)
    assert facts.consumed + facts.expired == len(published) == facts.published
    assert (facts.gone, facts.in_store, facts.open_blocks, facts.rejected) == (0, 0, 0, 2)
    assert facts.last_left_store_at == 1_700_000_100
    assert (facts.sha256, facts.size, facts.emitted) == ("ab" * 32, 4096, records)
    assert None not in (facts.started_at, facts.split_at, facts.accounted_at, facts.published_at)


def test_a_batchs_records_leave_in_one_write_per_block_and_the_last_makes_the_receipt_due_once(
    db: Any, ref: FileRef
) -> None:
    fid = file_id(ref)
    # given a finished, watched file of two blocks, every record published and still stored
    records = BLOCK + 30
    ledger = published_file(db, ref, records)
    assert ledger.watch_store(fid).done

    # when batches of ten are noted consumed, while others are noted expired one by one,
    # and a batch is redelivered
    batches = [list(range(o, min(o + 10, records + 1))) for o in range(1, records + 1, 10)]
    batches.append(batches[3])

    def consumed(ordinals: list[int]) -> tuple[int, bool, int]:
        left = Ledger(db, TABLE).records_left(fid, ordinals, LeftBy.CONSUMED, at=1_700_000_100)
        return len(left.changed), left.receipt_due, len(left.failed)

    def expired(ordinal: int) -> tuple[int, bool, int]:
        left = Ledger(db, TABLE).record_left(fid, ordinal, LeftBy.EXPIRED, at=1_700_000_100)
        return int(left.changed), left.receipt_due, 0

    outcomes = [expired(5), expired(12)]  # two batches' folds will find one of theirs gone
    with ThreadPoolExecutor(4) as pool:
        by_batch = pool.map(consumed, batches)
        one_by_one = pool.map(expired, range(5, records + 1, 7))
        outcomes += [*by_batch, *one_by_one]

    # then each record counted once, none failed, and exactly one call saw the last go
    assert sum(changed for changed, _, _ in outcomes) == records
    assert [due for _, due, _ in outcomes].count(True) == 1
    assert sum(failed for _, _, failed in outcomes) == 0
    facts = ledger.receipt_facts(fid)
    assert facts.consumed + facts.expired == records and facts.expired >= 2
    assert (facts.in_store, facts.open_blocks) == (0, 0)


def test_the_store_finds_and_deletes_a_batch_of_events_a_call_for_many(
    pipeline: LocalCloud, ref: FileRef
) -> None:
    from contracts.events import DeathNotification
    from contracts.stored import StoredEvent

    # given 30 events of a file in the temporary store
    db = pipeline.client("dynamodb")
    store = Store(db, "gro-temporary-store")
    event = msgspec.json.decode(
        (Path(__file__).parents[2] / "contracts/samples/v1/EventToPublish.json").read_bytes(),
        type=dict,
    )["event"]
    fid = file_id(ref)
    ids = [f"gro1-{n:064x}" for n in range(1, 31)]
    for ordinal, event_id in enumerate(ids, start=1):
        notification = msgspec.convert({**event, "source_id": event_id}, DeathNotification)
        stored = StoredEvent(
            id=event_id, event=notification, expires_at=2_000_000_000, file_id=fid, ordinal=ordinal
        )
        assert store.put_if_absent(stored)

    # when they are located (with an id it never held, and one twice) and deleted, twice
    unknown = "gro1-" + "f" * 64
    where = store.locate_many([*ids, unknown, ids[0]])
    assert store.delete_many([*ids, ids[0]]) == {}
    assert store.delete_many(ids) == {}  # deleting what is gone is fine

    # then each was found with its file and ordinal, and none is left
    assert sorted(where) == sorted(ids)
    assert [(where[i].file_id, where[i].ordinal) for i in ids] == [(fid, o) for o in range(1, 31)]
    assert store.locate_many(ids) == {}
    assert store.ordinals_of(fid) == set()


def test_a_watch_cut_short_resumes_and_records_that_left_meanwhile_are_not_counted_open(
    db: Any, ref: FileRef
) -> None:
    fid = file_id(ref)
    # given a finished file of two blocks; the watch stops after its first block
    records = BLOCK + 10
    ledger = published_file(db, ref, records)
    calls = iter([False, True])
    assert not ledger.watch_store(fid, out_of_time=lambda: next(calls, False)).done

    # when every record of the second block leaves before the watch resumes
    for ordinal in range(BLOCK + 1, records + 1):
        assert not ledger.record_left(fid, ordinal, LeftBy.CONSUMED).receipt_due
    assert ledger.watch_store(fid).done

    # then only the first block is open; its records make the receipt due, once, at the last
    assert ledger.receipt_facts(fid).open_blocks == 1

    def leave(ordinal: int) -> bool:
        return ledger.record_left(fid, ordinal, LeftBy.CONSUMED).receipt_due

    with ThreadPoolExecutor(4) as pool:
        dues = list(pool.map(leave, range(1, BLOCK + 1)))
    assert dues.count(True) == 1
    assert ledger.receipt_facts(fid).in_store == 0


def test_a_record_published_after_its_file_emptied_makes_the_receipt_due_when_it_leaves(
    db: Any, ref: FileRef
) -> None:
    fid = file_id(ref)
    # given a finished, emptied file with one record dead-lettered (the platform was down)
    ledger = published_file(db, ref, 3)
    ledger.record_ended(ref, 3, RecordStatus.DEAD_LETTERED, reasons=("platform answered 503",))
    ledger.watch_store(fid)
    assert [ledger.record_left(fid, o, LeftBy.CONSUMED).receipt_due for o in (1, 2)] == [
        False,
        True,
    ]

    # when it is redriven, published, and consumed
    ledger.record_ended(ref, 3, RecordStatus.PUBLISHED)
    assert ledger.receipt_facts(fid).in_store == 1

    # then
    assert ledger.record_left(fid, 3, LeftBy.CONSUMED).receipt_due
    facts = ledger.receipt_facts(fid)
    assert (facts.published, facts.dead_lettered, facts.consumed, facts.in_store) == (3, 0, 3, 0)


def test_settling_closes_a_block_whose_last_record_was_noted_but_not_counted(
    db: Any, ref: FileRef
) -> None:
    fid = file_id(ref)
    # given a watched file whose only record was noted gone by a writer that died before it
    # could take the block out of the file's open count
    ledger = published_file(db, ref, 1)
    ledger.watch_store(fid)
    db.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"file#{fid}#blk#0"}},
        UpdateExpression="ADD gc :o, nv :one",
        ExpressionAttributeValues={":o": {"NS": ["1"]}, ":one": {"N": "1"}},
    )
    assert ledger.receipt_facts(fid).open_blocks == 1

    # when / then
    assert ledger.settle(fid)
    assert ledger.receipt_facts(fid).open_blocks == 0
    ledger.store_closed(fid)
    assert fid not in ledger.open_files()


def test_the_deployed_sweep_deletes_what_expired_notes_it_and_completes_the_receipt(
    pipeline: LocalCloud, db: Any
) -> None:
    from contracts.events import DeathNotification
    from contracts.stored import StoredEvent

    (bucket,) = [
        b["Name"]
        for b in pipeline.client("s3").list_buckets()["Buckets"]
        if b["Name"].startswith("gro-landing-")
    ]
    ref = FileRef(bucket=bucket, key="incoming/DWP_D_20220307.xml", version_id="v1")
    fid = file_id(ref)
    # given a finished, watched file whose 30 records are still in the store, past their expiry
    # (and no other file waiting for its receipt: this module's others name no real bucket)
    ledger = published_file(db, ref, 30)
    for other in ledger.open_files():
        ledger.store_closed(other)
    assert ledger.watch_store(fid).done
    event = msgspec.json.decode(
        (Path(__file__).parents[2] / "contracts/samples/v1/EventToPublish.json").read_bytes(),
        type=dict,
    )["event"]
    store = Store(db, "gro-temporary-store")
    for ordinal in range(1, 31):
        event_id = f"gro1-{ordinal:04x}{fid[:60]}"
        notification = msgspec.convert({**event, "source_id": event_id}, DeathNotification)
        stored = StoredEvent(
            id=event_id, event=notification, expires_at=1_700_000_000, file_id=fid, ordinal=ordinal
        )
        assert store.put_if_absent(stored)
    assert pipeline.moto is not None
    mark = pipeline.moto.usage.mark()

    # when the hourly schedule invokes the deployed sweep
    answer = pipeline.client("lambda").invoke(
        FunctionName="gro-reaper-sweep",
        Payload=json.dumps({"source": "aws.events", "detail-type": "Scheduled Event"}),
    )
    out = json.loads(answer["Payload"].read())

    # then each went, was noted expired, and the receipt is complete
    assert "FunctionError" not in answer, out
    assert out["deleted"] >= 30
    assert store.ordinals_of(fid) == set()
    facts = ledger.receipt_facts(fid)
    assert (facts.expired, facts.in_store, facts.open_blocks) == (30, 0, 0)
    assert fid not in ledger.open_files()
    receipt = json.loads(
        pipeline.client("s3").get_object(Bucket=bucket, Key=receipt_key(fid))["Body"].read()
    )
    assert (receipt["expired"], receipt["in_store"], receipt["complete"]) == (30, 0, True)
    # in a few batched calls, each one the sweep's role allows on AWS
    made = pipeline.moto.usage.since(mark)["calls"]["gro-reaper-sweep"]
    assert made["dynamodb.BatchWriteItem"]["calls"] <= 3
    assert "dynamodb.DeleteItem" not in made
    assert refused({"gro-reaper-sweep": made}) == {}


# -- the whole pipeline ---------------------------------------------------------------------


def split_steps(cloud: LocalCloud, fid: str) -> int:
    """How many Split steps the file's execution took."""
    sfn = cloud.client("stepfunctions")
    (machine,) = sfn.list_state_machines()["stateMachines"]
    arn = machine["stateMachineArn"].replace(":stateMachine:", ":execution:")
    events = sfn.get_execution_history(executionArn=f"{arn}:{fid}", maxResults=1000)["events"]
    return sum(
        e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Split"
        for e in events
    )


def test_a_files_receipt_shows_its_hash_size_and_every_record_out_of_the_store(
    pipeline: LocalCloud, tmp_path: Path
) -> None:
    # given 24 records and one that breaks a rule, split over many steps (the check, then a
    # record a step: the hash must be the whole file's all the same)
    buf = io.BytesIO()
    write_sample(buf, 24, seed=5)
    bad = record(
        registration_id="77",
        gender="<DeceasedGender>7</DeceasedGender>",
        name=f"<DeceasedName><ns4:PersonFamilyName>{NAME_IN_THE_FILE}"
        "</ns4:PersonFamilyName></DeceasedName>",
    )
    body = (
        buf.getvalue()
        .decode()
        .replace("    <RecordCount>24</RecordCount>", bad + "    <RecordCount>25</RecordCount>")
    )
    path = tmp_path / "DWP_D_20220306.xml"
    path.write_text(body, encoding="utf-8")
    data = path.read_bytes()
    # A budget of 0: the first step only checks the file, and each later one emits one record,
    # however fast the machine (with 0.05 s a fast run could split 25 records in one step).
    deploy.deploy(pipeline.client, "splitter", parameters={"SplitTimeBudgetSeconds": "0"})
    platform, pollers = pipeline.platform, pipeline.pollers
    assert platform is not None and pollers is not None
    try:
        summary = follow(
            pipeline.client,
            upload(pipeline.client, path),
            platform_stats=platform.stats,
            timeout=240,
            progress=lambda _: None,
            settled=lambda: platform.wait_idle(0) and pollers.idle(),
        )
    finally:
        deploy.deploy(pipeline.client, "splitter")
    assert summary.ok, summary
    assert split_steps(pipeline, summary.file_id) >= 2

    # when the operator lists the receipts, and asks for the file's status
    listed = ingest_json(pipeline.endpoint, tmp_path / "state", "receipts")
    (status,) = ingest_json(pipeline.endpoint, tmp_path / "state", "status", path.name)
    by_id = ingest_json(pipeline.endpoint, tmp_path / "state", "status", summary.file_id)

    # then
    (receipt,) = [r for r in listed if r["file_id"] == summary.file_id]
    assert status["receipt"] == receipt == by_id[0]["receipt"]
    assert receipt["key"] == f"incoming/{path.name}"
    assert receipt["sha256"] == hashlib.sha256(data).hexdigest()
    assert receipt["size"] == len(data)
    assert receipt["records"] == 25
    assert (receipt["published"], receipt["rejected"], receipt["dead_lettered"]) == (24, 1, 0)
    assert receipt["published"] + receipt["rejected"] + receipt["dead_lettered"] == 25
    left = receipt["consumed"] + receipt["expired"] + receipt["removed_otherwise"]
    assert left + receipt["in_store"] == receipt["published"]
    assert (receipt["consumed"], receipt["in_store"]) == (24, 0)
    assert receipt["complete"] is True
    for stage in ("started_at", "split_at", "published_at", "accounted_at"):
        assert isinstance(receipt[stage], int), stage
    assert receipt["started_at"] <= receipt["split_at"] <= receipt["accounted_at"]
    assert receipt["source_deleted_at"] >= receipt["accounted_at"]
    assert isinstance(receipt["last_left_store_at"], int)
    assert NAME_IN_THE_FILE not in json.dumps(listed)

    # and as people read them: a table row, and the receipt under the file's status
    table = ingest_text(pipeline.endpoint, tmp_path / "state", "receipts")
    (row,) = [line for line in table.splitlines() if line.startswith(receipt["key"])]
    assert row.split()[1:5] == ["25", "24", "1", "0"] and row.split()[-1] == "yes"
    detail = ingest_text(pipeline.endpoint, tmp_path / "state", "status", path.name)
    assert f"receipts/{summary.file_id}.json: complete" in detail
    assert hashlib.sha256(data).hexdigest() in detail


def ingest_text(endpoint: str, state_dir: Path, *args: str) -> str:
    """`ingest ARGS --endpoint-url ENDPOINT`, as people read it."""
    done = subprocess.run(
        [sys.executable, "-m", "ingest_cli.main", *args, "--endpoint-url", endpoint],
        env={**os.environ, "INGEST_STATE_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
