"""Failures on the local cloud, one scenario each, injected with the same faults an operator
uses (`ingest fault`). Each ends with every record accounted for: published exactly once at
the platform, or dead-lettered with its reason; and with nothing else left behind (store empty
once consumed, no message anywhere unexpected)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.deadletter import DeadLetterAttributes
from ingest_cli.follow import Summary
from ingest_cli.sample import write_sample
from localcloud.cloud import LocalCloud
from localcloud.faults import Faults, parse
from tests.integration.cli import ingest_json
from tests.integration.runs import ingest, personal_values
from tests.role_actions import refused


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(consumers=2) as running:
        yield running


@pytest.fixture(autouse=True)
def _no_faults_left(cloud: LocalCloud) -> Iterator[None]:
    cloud.faults.set(Faults())
    yield
    cloud.faults.set(Faults())


def sample_file(tmp_path: Path, name: str, records: int, seed: int) -> Path:
    buf = io.BytesIO()
    write_sample(buf, records, seed=seed)
    path = tmp_path / name
    path.write_bytes(buf.getvalue())
    return path


def created_since(cloud: LocalCloud, before: int) -> list[str]:
    assert cloud.platform is not None
    return cloud.platform.stats().event_ids[before:]


def ids_before(cloud: LocalCloud) -> int:
    assert cloud.platform is not None
    return len(cloud.platform.stats().event_ids)


def depth(cloud: LocalCloud, queue: str) -> int:
    sqs = cloud.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    attrs = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


def dead_letters(cloud: LocalCloud, queue: str) -> list[DeadLetterAttributes]:
    """Every message of a DLQ, read and put back (visibility released)."""
    sqs = cloud.client("sqs")
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    seen: dict[str, DeadLetterAttributes] = {}
    handles = []
    for _ in range(50):
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            VisibilityTimeout=30,
        ).get("Messages", [])
        if not got:
            break
        for m in got:
            seen[m["MessageId"]] = DeadLetterAttributes.from_sqs(m["MessageAttributes"])
            handles.append(m["ReceiptHandle"])
    for handle in handles:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=0)
    return list(seen.values())


def redrive(cloud: LocalCloud, dlq: str, source: str) -> int:
    """What `ingest dlq redrive` does: one message-move task, followed to its end."""
    sqs = cloud.client("sqs")

    def arn(name: str) -> str:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attrs["Attributes"]["QueueArn"])

    sqs.start_message_move_task(SourceArn=arn(dlq), DestinationArn=arn(source))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        task = sqs.list_message_move_tasks(SourceArn=arn(dlq))["Results"][0]
        if task["Status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            assert task["Status"] == "COMPLETED", task
            return int(task["ApproximateNumberOfMessagesMoved"])
        time.sleep(0.5)
    raise AssertionError("the move task did not finish")


def wait_until(condition: Any, timeout: float = 180, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def settled_after_redrive(cloud: LocalCloud, summary: Summary, published: int) -> None:
    """Once a redrive has run: every record published, consumed, and gone from the store."""
    from servicekit.ledger import Ledger
    from servicekit.store import Store

    db = cloud.client("dynamodb")
    ledger, store = Ledger(db, "gro-ingest-ledger"), Store(db, "gro-temporary-store")
    platform, pollers = cloud.platform, cloud.pollers
    assert platform is not None and pollers is not None

    def done() -> bool:
        progress = ledger.progress(summary.file_id)
        return (
            progress.published == published
            and store.count_for_file(summary.file_id) == 0
            and platform.wait_idle(0)
            and pollers.idle()
        )

    wait_until(done, what="the redriven records to be published and consumed")


QUEUES = [
    name
    for queue in (
        "gro-file-arrivals",
        "gro-records-to-transform",
        "gro-events-to-publish",
        "gro-events-consumed",
    )
    for name in (queue, f"{queue}-dlq")
]


def assert_nothing_left(cloud: LocalCloud, except_queues: dict[str, int] | None = None) -> None:
    """No message anywhere but where expected, once the at-least-once redeliveries a fault
    caused (a crashed batch comes back after its visibility timeout) have been absorbed."""
    expected = except_queues or {}
    pollers, platform = cloud.pollers, cloud.platform
    assert pollers is not None and platform is not None

    def drained() -> bool:
        return (
            all(depth(cloud, name) == expected.get(name, 0) for name in QUEUES)
            and pollers.idle()
            and platform.wait_idle(0)
        )

    with contextlib.suppress(AssertionError):  # which queue is said just below
        wait_until(drained, timeout=150, what="the queues to drain")
    for name in QUEUES:
        assert depth(cloud, name) == expected.get(name, 0), name


def test_platform_down_dead_letters_every_record_with_its_reason_then_a_redrive_publishes_each_once(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    # given a platform that is down for the whole run
    cloud.faults.set(parse(["platform=down"]))
    before = ids_before(cloud)
    path = sample_file(tmp_path, "down.xml", 12, seed=21)

    # when the file is ingested
    summary = ingest(cloud, path)

    # then every record is dead-lettered by the publisher, with why, and nothing is kept
    assert summary.status == "SUCCEEDED" and summary.emitted == 12
    assert (summary.published, summary.dead_lettered) == (0, 12)
    assert summary.stored == 0 and created_since(cloud, before) == []
    dead = dead_letters(cloud, "gro-events-to-publish-dlq")
    assert len(dead) == 12
    assert {d.failed_by for d in dead} == {"publisher"}
    assert all(d.reason.startswith("platform answered 503 after") for d in dead)
    assert all(d.failed_by_version and d.first_received_at for d in dead)

    # when the platform is back and the DLQ is redriven
    cloud.faults.set(Faults())
    assert redrive(cloud, "gro-events-to-publish-dlq", "gro-events-to-publish") == 12
    settled_after_redrive(cloud, summary, published=12)

    # then each record reached the platform exactly once, was consumed, and left the store
    new = created_since(cloud, before)
    assert len(new) == 12 and len(set(new)) == 12
    assert_nothing_left(cloud)

    # and a redriven record's trace shows both lives: dead-lettered, then published
    outcomes = [
        s["outcome"] for s in trace_of(cloud, new[0], tmp_path) if s["operation"] == "publish"
    ]
    assert "dead_lettered" in outcomes and outcomes[-1] == "published", outcomes


def test_a_redrive_while_the_platform_is_still_down_dead_letters_again_and_a_second_one_works(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    cloud.faults.set(parse(["platform=down"]))
    before = ids_before(cloud)
    summary = ingest(cloud, sample_file(tmp_path, "twice.xml", 6, seed=22))
    assert summary.dead_lettered == 6

    # a redrive too soon: every message fails again, with fresh attempts, back to the DLQ
    assert redrive(cloud, "gro-events-to-publish-dlq", "gro-events-to-publish") == 6
    wait_until(lambda: depth(cloud, "gro-events-to-publish-dlq") == 6, what="the DLQ again")
    wait_until(lambda: depth(cloud, "gro-events-to-publish") == 0, what="the queue to drain")
    assert created_since(cloud, before) == []

    # the redrive of the redrive, with the platform back
    cloud.faults.set(Faults())
    assert redrive(cloud, "gro-events-to-publish-dlq", "gro-events-to-publish") == 6
    settled_after_redrive(cloud, summary, published=6)
    new = created_since(cloud, before)
    assert len(new) == 6 and len(set(new)) == 6
    assert_nothing_left(cloud)


@pytest.mark.parametrize(
    ("fault", "seed"),
    [
        ("platform=flaky:0.3", 23),
        ("platform=accept-then-fail:0.3", 24),
        ("crash=transformer:0.5", 25),
        ("crash=publisher:0.5", 26),
        ("duplicate=s3-events", 27),
        ("duplicate=consumed", 28),
    ],
)
def test_transient_faults_end_with_every_record_published_exactly_once(
    cloud: LocalCloud, tmp_path: Path, fault: str, seed: int
) -> None:
    cloud.faults.set(parse([fault]))
    assert cloud.platform is not None
    stats_before = cloud.platform.stats()
    before = len(stats_before.event_ids)

    summary = ingest(cloud, sample_file(tmp_path, f"{fault.split('=')[0]}-{seed}.xml", 20, seed))

    assert summary.ok, summary
    assert (summary.published, summary.dead_lettered, summary.stored) == (20, 0, 0)
    assert_nothing_left(cloud)  # and every redelivery the fault caused was absorbed:
    new = created_since(cloud, before)
    assert len(new) == 20 and len(set(new)) == 20  # exactly once at the platform
    stats = cloud.platform.stats()
    if fault.startswith("platform="):
        assert stats.throttled > stats_before.throttled  # the fault really happened
    if "accept-then-fail" in fault:
        assert stats.duplicates > stats_before.duplicates  # retries met a 409, no second event
    if fault == "duplicate=s3-events":
        executions = cloud.client("stepfunctions").list_executions(
            stateMachineArn=_machine_arn(cloud)
        )["executions"]
        assert sum(e["name"] == summary.file_id for e in executions) == 1


def _machine_arn(cloud: LocalCloud) -> str:
    machines = cloud.client("stepfunctions").list_state_machines()["stateMachines"]
    return str(next(m["stateMachineArn"] for m in machines if m["name"] == "gro-ingest-file"))


def _history(cloud: LocalCloud, file_id: str) -> list[dict[str, Any]]:
    arn = _machine_arn(cloud).replace(":stateMachine:", ":execution:") + f":{file_id}"
    events: list[dict[str, Any]] = cloud.client("stepfunctions").get_execution_history(
        executionArn=arn
    )["events"]
    return events


def test_a_splitter_killed_mid_file_resumes_from_its_cursor_and_nothing_is_published_twice(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    # given a split step that dies after 15 of 40 records, once
    cloud.faults.set(parse(["kill=splitter:15"]))
    before = ids_before(cloud)

    summary = ingest(cloud, sample_file(tmp_path, "killed.xml", 40, seed=29))

    assert summary.ok, summary
    assert (summary.published, summary.dead_lettered) == (40, 0)
    assert_nothing_left(cloud)  # the records the dead step had sent were absorbed, not doubled
    new = created_since(cloud, before)
    assert len(new) == 40 and len(set(new)) == 40
    text = json.dumps(_history(cloud, summary.file_id), default=str)
    assert "Sandbox.Timedout" in text  # it really died, and the state machine retried


def test_a_split_that_keeps_failing_ends_with_the_file_quarantined_and_the_reason_recorded(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    cloud.faults.set(parse(["kill=splitter:5:always"]))
    assert cloud.moto is not None
    mark = cloud.moto.usage.mark()
    summary = ingest(cloud, sample_file(tmp_path, "doomed.xml", 30, seed=30))

    assert summary.status == "FAILED" and not summary.ok
    assert "SplitFailed" in (summary.reason or "") or "split failed" in (summary.reason or "")
    landing = next(
        e["Value"]
        for e in cloud.client("cloudformation").list_exports()["Exports"]
        if e["Name"] == "gro-foundation-LandingBucketName"
    )
    head = cloud.client("s3").head_object(Bucket=landing, Key="quarantine/incoming/doomed.xml")
    assert head["Metadata"]["refusal-reason"] == "the split failed: Sandbox.Timedout"
    assert summary.source_deleted  # not left silently in incoming/
    # the quarantine function's calls are ones its role allows
    made = cloud.moto.usage.since(mark)["calls"]
    assert "gro-splitter-quarantine" in made
    assert refused(made) == {}


def test_enrichment_after_deletion_is_a_404(cloud: LocalCloud, tmp_path: Path) -> None:
    before = ids_before(cloud)
    summary = ingest(cloud, sample_file(tmp_path, "then-gone.xml", 3, seed=31))
    assert summary.ok and summary.stored == 0
    for event_id in created_since(cloud, before):
        answer = cloud.platform_client("lambda").invoke(
            FunctionName="gro-publisher-enrich", Payload=json.dumps({"id": event_id}).encode()
        )
        assert json.loads(answer["Payload"].read()) == {"statusCode": 404}


def test_the_functions_metrics_count_what_the_run_summary_reports(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    before = cloud.metrics()
    summary = ingest(cloud, sample_file(tmp_path, "counted.xml", 15, seed=32))
    assert summary.ok

    def grew(service: str, name: str) -> float:
        return cloud.metrics().get(service, {}).get(name, 0) - before.get(service, {}).get(name, 0)

    assert grew("splitter", "RecordsEmitted") == summary.emitted == 15
    assert grew("transformer", "RecordsTransformed") == summary.transformed
    assert grew("publisher", "RecordsPublished") == summary.published
    assert grew("publisher", "EventsCreated") == summary.published
    assert grew("publisher", "EnrichHits") == 2 * summary.published  # two consumers each
    assert grew("reaper", "EventsDeleted") == summary.published
    assert grew("publisher", "PlatformLatency") > 0


# -- tracing ---------------------------------------------------------------------------------


def trace_of(cloud: LocalCloud, event_id: str, tmp_path: Path) -> list[dict[str, Any]]:
    """`ingest trace EVENT_ID --json`, as an operator runs it."""
    assert cloud.xray is not None and cloud.xray.flush()
    steps: list[dict[str, Any]] = ingest_json(
        cloud.endpoint, tmp_path / "state", "trace", event_id, timeout=120
    )
    return steps


def test_a_records_trace_shows_every_stage_in_time_order(cloud: LocalCloud, tmp_path: Path) -> None:
    before = ids_before(cloud)
    path = sample_file(tmp_path, "traced.xml", 4, seed=33)
    assert ingest(cloud, path).ok
    event_id = created_since(cloud, before)[0]

    steps = trace_of(cloud, event_id, tmp_path)

    for step in steps:
        assert {"service", "operation", "start", "duration_ms", "outcome"} <= set(step)
    starts = [s["start"] for s in steps]
    assert starts == sorted(starts)
    operations = [s["operation"] for s in steps]
    for operation in ("split", "transform", "publish", "platform_post", "enrich", "consumed"):
        assert operation in operations, operations
    first = {op: operations.index(op) for op in ("split", "transform", "publish", "consumed")}
    assert first["split"] < first["transform"] < first["publish"] < first["consumed"]
    services = {s["service"] for s in steps}
    assert {"splitter", "transformer", "publisher", "reaper"} <= services
    assert all(s.get("service_version") for s in steps if s.get("kind") == "step")


def test_no_stored_segment_holds_a_value_of_any_record(cloud: LocalCloud, tmp_path: Path) -> None:
    path = sample_file(tmp_path, "private.xml", 6, seed=34)
    assert ingest(cloud, path).ok
    assert cloud.xray is not None and cloud.xray.flush()
    xray = cloud.client("xray")
    summaries = xray.get_trace_summaries(StartTime=time.time() - 3600, EndTime=time.time() + 60)[
        "TraceSummaries"
    ]
    ids = [s["Id"] for s in summaries]
    assert ids
    documents = []
    for start in range(0, len(ids), 5):
        for trace in xray.batch_get_traces(TraceIds=ids[start : start + 5])["Traces"]:
            documents += [segment["Document"] for segment in trace["Segments"]]
    text = "\n".join(documents)
    assert "event_id" in text  # the scan really reads the pipeline's segments
    values = personal_values(path)
    assert values
    leaked = sorted(v for v in values if v in text)
    assert leaked == []


def test_the_platform_runs_in_a_process_of_its_own_and_a_fault_is_in_force_when_set_returns(
    cloud: LocalCloud,
) -> None:
    # given
    assert cloud.platform is not None
    assert cloud.platform.pid not in (0, os.getpid())
    assert os.path.exists(f"/proc/{cloud.platform.pid}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post_unauthenticated() -> int:
        assert cloud.platform is not None
        request = urllib.request.Request(  # noqa: S310 - the simulator, on loopback
            cloud.platform.url + "/events", data=b"{}", method="POST"
        )
        try:
            with opener.open(request, timeout=10) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as err:
            return int(err.code)

    # when / then: each answer follows the fault switch as soon as it is set
    cloud.faults.set(parse(["platform=down"]))
    assert post_unauthenticated() == 503
    cloud.faults.set(Faults())
    assert post_unauthenticated() == 401
