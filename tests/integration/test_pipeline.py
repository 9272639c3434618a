"""The whole pipeline on the local cloud, over HTTP on 127.0.0.1: real templates, real bundles,
real pollers, the platform simulator with two consumers."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.deadletter import REASON
from ingest_cli.follow import Summary, follow, upload
from ingest_cli.sample import write_sample
from localcloud import deploy
from localcloud.cloud import LocalCloud
from tests.builders import extract, record
from tests.role_actions import refused

NAME_IN_BAD_RECORDS = "Quillfeatherby"


@pytest.fixture(scope="module")
def log_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "functions.jsonl"


@pytest.fixture(scope="module")
def cloud(log_path: Path) -> Iterator[LocalCloud]:
    with open(log_path, "w") as logs, LocalCloud(consumers=2, log_file=logs) as running:
        yield running


def ingest(cloud: LocalCloud, path: Path, key: str | None = None) -> Summary:
    platform = cloud.platform
    assert platform is not None and cloud.pollers is not None
    pollers = cloud.pollers
    return follow(
        cloud.client,
        upload(cloud.client, path, key),
        platform_stats=platform.stats,
        timeout=240,
        progress=lambda _: None,
        settled=lambda: platform.wait_idle(0) and pollers.idle(),
    )


def queue_messages(cloud: LocalCloud, name: str) -> list[dict]:
    sqs = cloud.client("sqs")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    out: list[dict] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages", [])
        if not got:
            return out
        out.extend(got)
        for m in got:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_a_mixed_file_ends_with_every_record_accounted_for(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    # given 30 generated records and two that break a rule, in the middle of the file
    buf = io.BytesIO()
    write_sample(buf, 30, seed=3)
    good = buf.getvalue().decode()
    bad = record(
        registration_id="71",
        timestamps="",
        name=f"<DeceasedName><ns4:PersonFamilyName>{NAME_IN_BAD_RECORDS}"
        "</ns4:PersonFamilyName></DeceasedName>",
    ) + record(registration_id="72", gender="<DeceasedGender>7</DeceasedGender>")
    body = good.replace(
        "    <RecordCount>30</RecordCount>", bad + "    <RecordCount>32</RecordCount>"
    )
    path = tmp_path / "DWP_D_20220301.xml"
    path.write_text(body, encoding="utf-8")
    before = cloud.platform.stats() if cloud.platform else None
    assert before is not None

    # when
    summary = ingest(cloud, path)

    # then every record reached a terminal state, with the bad ones rejected with reasons
    assert summary.ok, summary
    assert (summary.records, summary.published, summary.rejected) == (32, 30, 2)
    assert summary.source_deleted and summary.stored == 0
    after = cloud.platform.stats()
    new_ids = after.event_ids[len(before.event_ids) :]
    assert len(new_ids) == 30 and len(set(new_ids)) == 30  # each published exactly once
    assert after.consumed - before.consumed == 30
    busy = {q: n for q, n in summary.queues.items() if n}
    assert busy == {"gro-records-to-transform-dlq": 2}
    dead = queue_messages(cloud, "gro-records-to-transform-dlq")
    reasons = sorted(m["MessageAttributes"][REASON]["StringValue"] for m in dead)
    assert any("neither RecordLockedDateTime" in r for r in reasons)
    assert any("DeceasedGender is not one of 1, 2, 9" in r for r in reasons)
    assert all(NAME_IN_BAD_RECORDS not in r for r in reasons)
    receipt = (
        cloud.client("s3")
        .get_object(Bucket=upload_bucket(cloud), Key=f"receipts/{summary.file_id}.json")["Body"]
        .read()
    )
    assert json.loads(receipt)["published"] == 30
    assert NAME_IN_BAD_RECORDS.encode() not in receipt


def upload_bucket(cloud: LocalCloud) -> str:
    exports = cloud.client("cloudformation").list_exports()["Exports"]
    return next(e["Value"] for e in exports if e["Name"] == "gro-foundation-LandingBucketName")


def test_a_structurally_bad_file_is_quarantined_and_no_record_is_emitted(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    path = tmp_path / "truncated.xml"
    path.write_bytes(extract(record(), record())[:-60])
    created = cloud.platform.stats().created if cloud.platform else 0
    assert cloud.moto is not None
    mark = cloud.moto.usage.mark()

    summary = ingest(cloud, path)

    assert not summary.ok
    assert summary.status == "FAILED"
    assert summary.emitted == 0
    assert "truncated" in (summary.reason or "")
    s3 = cloud.client("s3")
    head = s3.head_object(Bucket=upload_bucket(cloud), Key="quarantine/incoming/truncated.xml")
    assert "truncated" in head["Metadata"]["refusal-reason"]
    assert summary.source_deleted
    assert cloud.platform is not None and cloud.platform.stats().created == created
    assert not any(summary.queues.values())
    # every call on the way (the start, the check that refuses and moves it) is one its role
    # allows
    made = cloud.moto.usage.since(mark)["calls"]
    assert {"gro-splitter-start", "gro-splitter-split"} <= set(made)
    assert refused(made) == {}


def test_a_file_with_no_records_completes_cleanly(cloud: LocalCloud, tmp_path: Path) -> None:
    path = tmp_path / "noDeathRegistrations.xml"
    path.write_bytes(extract())
    summary = ingest(cloud, path)
    assert summary.ok, summary
    assert (summary.records, summary.published, summary.source_deleted) == (0, 0, True)
    assert not any(summary.queues.values())


def test_ingesting_the_same_records_again_creates_no_second_event(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    path = tmp_path / "again.xml"
    buf = io.BytesIO()
    write_sample(buf, 8, seed=11)
    path.write_bytes(buf.getvalue())
    first = ingest(cloud, path, key="incoming/again-1.xml")
    created = cloud.platform.stats().created if cloud.platform else 0

    second = ingest(cloud, path, key="incoming/again-2.xml")

    assert first.ok and second.ok
    assert second.published == 8  # the platform already had them: 409 counts as published
    assert cloud.platform is not None and cloud.platform.stats().created == created
    assert second.stored == 0
    assert not any(second.queues.values())


@pytest.mark.parametrize("service", ["splitter", "transformer", "publisher", "reaper"])
def test_redeploying_one_service_alone_leaves_the_pipeline_working(
    cloud: LocalCloud, tmp_path: Path, service: str
) -> None:
    # given the service's stack updated on its own (the transformer with a new batch size)
    parameters = {"BatchSize": "5"} if service == "transformer" else {}
    outputs = deploy.deploy(cloud.client, service, parameters=parameters)
    assert outputs
    if service == "transformer":
        mappings = cloud.client("lambda").list_event_source_mappings(
            FunctionName="gro-transformer-transform"
        )["EventSourceMappings"]
        assert [m["BatchSize"] for m in mappings] == [5]
    path = tmp_path / f"after-redeploying-{service}.xml"
    buf = io.BytesIO()
    write_sample(buf, 6, seed=100 + len(service))
    path.write_bytes(buf.getvalue())

    summary = ingest(cloud, path)

    assert summary.ok, summary
    assert summary.published == 6
    assert not any(summary.queues.values())


def test_a_file_too_big_for_one_invocation_resumes_where_it_stopped(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    # given a splitter allowed a few dozen milliseconds per invocation
    deploy.deploy(cloud.client, "splitter", parameters={"SplitTimeBudgetSeconds": "0.05"})
    path = tmp_path / "long.xml"
    buf = io.BytesIO()
    write_sample(buf, 300, seed=8)
    path.write_bytes(buf.getvalue())
    created = cloud.platform.stats().created if cloud.platform else 0
    try:
        summary = ingest(cloud, path)
    finally:
        deploy.deploy(cloud.client, "splitter")

    assert summary.ok, summary
    assert summary.published == 300
    assert cloud.platform is not None and cloud.platform.stats().created - created == 300
    sfn = cloud.client("stepfunctions")
    machine = next(m for m in sfn.list_state_machines()["stateMachines"])
    arn = machine["stateMachineArn"].replace(":stateMachine:", ":execution:")
    history = sfn.get_execution_history(executionArn=f"{arn}:{summary.file_id}")
    splits = [
        e
        for e in history["events"]
        if e["type"] == "TaskStateEntered" and e["stateEnteredEventDetails"]["name"] == "Split"
    ]
    assert len(splits) >= 3  # the check, then at least two emitting steps
    # records never travel in state: no event carries one, and the history stays far below
    # Step Functions' 25,000 (its length depends on how fast this machine is, not on records)
    assert len(history["events"]) < 5000
    text = json.dumps(history["events"], default=str)
    assert "fragment" not in text and "DeathRegistration" not in text
    assert max(len(json.dumps(e, default=str)) for e in history["events"]) < 4096


def test_function_logs_carry_ids_and_counts_but_no_record_content(
    cloud: LocalCloud, log_path: Path, tmp_path: Path
) -> None:
    path = tmp_path / "named.xml"
    family = f"<ns4:PersonFamilyName>{NAME_IN_BAD_RECORDS}</ns4:PersonFamilyName>"
    name = f"<DeceasedName>{family}</DeceasedName>"
    path.write_bytes(extract(record(name=name), record(name=name, timestamps="")))
    assert ingest(cloud, path).ok
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    functions = {line.get("function") for line in lines}
    for name in (
        "gro-splitter-split",
        "gro-transformer-transform",
        "gro-publisher-publish",
        "gro-publisher-enrich",
        "gro-reaper-consumed",
        "gro-reaper-finish-file",
    ):
        assert name in functions, name
    text = log_path.read_text()
    assert NAME_IN_BAD_RECORDS not in text
    assert any("event_id" in line for line in lines)


def test_enrichment_serves_the_platforms_fields_and_404s_what_it_does_not_hold(
    cloud: LocalCloud,
) -> None:
    from contracts.stored import StoredEvent
    from servicekit.store import Store
    from tests.builders import fragment
    from transformer.core import Transformed, transform_fragment

    out = transform_fragment(fragment(record(registration_id="4242")), key=b"k")
    assert isinstance(out, Transformed)
    store = Store(cloud.client("dynamodb"), "gro-temporary-store")
    store.put_if_absent(
        StoredEvent(
            id=out.event.source_id, event=out.event, expires_at=2**31, file_id="f", ordinal=1
        )
    )

    def enrich(payload: dict) -> dict:  # as the platform asks
        answer = cloud.platform_client("lambda").invoke(
            FunctionName="gro-publisher-enrich", Payload=json.dumps(payload).encode()
        )
        assert "FunctionError" not in answer
        return json.loads(answer["Payload"].read())

    try:
        served = enrich({"id": out.event.source_id})
        assert served["statusCode"] == 200
        body = served["payload"]
        for field in (
            "sourceId",
            "registrationId",
            "eventTime",
            "sex",
            "dateOfDeath",
            "forenames",
            "surname",
        ):
            assert field in body, field
        assert (body["registrationId"], body["surname"]) == ("4242", "LEE")
        assert enrich({"id": "gro1-" + "0" * 64}) == {"statusCode": 404}
        assert enrich({"id": "not an id of ours!"}) == {"statusCode": 404}
        assert enrich({"nothing": 1}) == {"statusCode": 400}
    finally:
        store.delete(out.event.source_id)
    assert enrich({"id": out.event.source_id}) == {"statusCode": 404}  # gone once deleted
