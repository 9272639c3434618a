"""`ingest dlq list | show | redrive` as an operator types them, on the foundation's queues.

The messages are put on the DLQ directly, as a consumer that gives up does (golden bodies with
a name planted in the event): the commands must show ids and reasons, and never the name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.deadletter import DeadLetterAttributes
from localcloud import deploy
from localcloud.moto_server import MotoServer

SAMPLE = (
    Path(__file__).resolve().parents[2] / "contracts" / "samples" / "v1" / "EventToPublish.json"
)
PLANTED = "Quillfeather"  # a name no other output would hold
DLQ_NAMES = {"file-arrivals", "records-to-transform", "events-to-publish", "events-consumed"}
FIRST_RECEIVED_AT = 1646179200123  # 2022-03-02T00:00:00.123Z


def _ingest(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["INGEST_STATE_DIR"] = str(state_dir)  # no `ingest up` of the user's is found
    return subprocess.run(
        [sys.executable, "-m", "ingest_cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _event_body(ordinal: int) -> str:
    body = json.loads(SAMPLE.read_text())
    body["ordinal"] = ordinal
    body["event"]["sourceId"] = f"gro1-{ordinal:064x}"
    body["event"]["surname"] = PLANTED
    body["event"]["forenames"] = f"{PLANTED} Alice"
    return json.dumps(body)


@pytest.fixture
def dead_letters(cloud: MotoServer) -> dict[str, str]:
    """The foundation deployed, and on gro-events-to-publish-dlq: three events the publisher
    gave up on, one moved by the queue's redrive policy, one body that is not an event."""
    deploy.deploy(cloud.client, "foundation")
    sqs = cloud.client("sqs")
    url = sqs.get_queue_url(QueueName="gro-events-to-publish-dlq")["QueueUrl"]
    reasons = ["platform answered 503 after 10 attempts"] * 2 + ["platform refused: 400"]
    for ordinal, reason in enumerate(reasons, start=1):
        attributes = DeadLetterAttributes(
            reason=reason,
            failed_by="publisher",
            attempts=10 if "503" in reason else 1,
            failed_by_version="0.1.0",
            first_received_at=FIRST_RECEIVED_AT,
        )
        sqs.send_message(
            QueueUrl=url, MessageBody=_event_body(ordinal), MessageAttributes=attributes.to_sqs()
        )
    sqs.send_message(QueueUrl=url, MessageBody=_event_body(4))
    sqs.send_message(QueueUrl=url, MessageBody=f"not an event: {PLANTED}")
    return {"dlq": url, "source": sqs.get_queue_url(QueueName="gro-events-to-publish")["QueueUrl"]}


def test_list_show_and_redrive_a_dlq_without_printing_the_record(
    cloud: MotoServer, dead_letters: dict[str, str], tmp_path: Path
) -> None:
    sqs = cloud.client("sqs")
    where = ("--endpoint-url", cloud.endpoint)

    listed = _ingest(tmp_path, "dlq", "list", *where, "--json")
    table = _ingest(tmp_path, "dlq", "list", *where)
    shown = _ingest(tmp_path, "dlq", "show", "events-to-publish", *where, "--json")
    readable = _ingest(tmp_path, "dlq", "show", "events-to-publish", *where)

    # list: every DLQ of the pipeline, with its depth and the queue it redrives to
    assert listed.returncode == 0, listed.stderr
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == DLQ_NAMES
    mine = rows["events-to-publish"]
    assert (mine["depth"], mine["source"]) == (5, "gro-events-to-publish")
    assert isinstance(mine["oldest_age_seconds"], int) and mine["oldest_age_seconds"] >= 0
    assert mine["url"] == dead_letters["dlq"] and mine["arn"].endswith(":gro-events-to-publish-dlq")
    assert (rows["file-arrivals"]["depth"], rows["file-arrivals"]["oldest_age_seconds"]) == (
        0,
        None,
    )
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split() == ["NAME", "DEPTH", "OLDEST_AGE_S", "SOURCE"]
    assert any(line.split()[:2] == ["events-to-publish", "5"] for line in table.stdout.splitlines())
    assert _depth(sqs, dead_letters["dlq"]) == 5  # peeking took nothing away...
    visible = sqs.receive_message(
        QueueUrl=dead_letters["dlq"], MaxNumberOfMessages=10, VisibilityTimeout=0
    )
    assert len(visible.get("Messages", [])) >= 1  # ...and hid nothing

    # show: ids, who gave up and why; the reasons counted; never the record
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    by_ordinal = {m["ordinal"]: m for m in report["messages"] if m["ordinal"] is not None}
    assert set(by_ordinal) == {1, 2, 3, 4}
    first = by_ordinal[1]
    assert first["event_id"] == f"gro1-{1:064x}"
    assert first["contract"] == "EventToPublish"
    assert first["key"] == "incoming/DWP_D_20220301.xml"
    assert first["file_id"].startswith("DWP_D_20220301_xml-")
    assert (first["failed_by"], first["failed_by_version"], first["attempts"]) == (
        "publisher",
        "0.1.0",
        10,
    )
    assert first["reason"] == "platform answered 503 after 10 attempts"
    assert first["first_failure_at"] == "2022-03-02T00:00:00.123Z"
    assert first["dead_lettered_at"].endswith("Z")
    assert by_ordinal[4]["reason"] == "moved by the queue's redrive policy (no reason recorded)"
    assert by_ordinal[4]["failed_by"] is None
    undecodable = [m for m in report["messages"] if m["contract"] == "undecodable"]
    assert len(undecodable) == 1 and undecodable[0]["event_id"] is None
    assert {r["reason"]: r["count"] for r in report["reasons"]} == {
        "platform answered 503 after 10 attempts": 2,
        "platform refused: 400": 1,
        "moved by the queue's redrive policy (no reason recorded)": 2,
    }
    assert readable.returncode == 0, readable.stderr
    assert f"gro1-{1:064x}" in readable.stdout and "undecodable" in readable.stdout
    for done in (listed, table, shown, readable):
        assert PLANTED not in done.stdout + done.stderr
        assert "ÏSOLDE" not in done.stdout and "Smithfield" not in done.stdout

    # redrive: all of them back on the queue they came from, as new messages
    redriven = _ingest(tmp_path, "dlq", "redrive", "events-to-publish", *where, "--json")

    assert redriven.returncode == 0, redriven.stderr
    result = json.loads(redriven.stdout)
    assert result["moved"] == 5
    assert (result["status"], result["queue"], result["destination"]) == (
        "COMPLETED",
        "events-to-publish",
        "gro-events-to-publish",
    )
    assert _depth(sqs, dead_letters["source"]) == 5
    assert _depth(sqs, dead_letters["dlq"]) == 0
    assert "moved (COMPLETED)" in redriven.stderr  # progress goes to stderr
    assert PLANTED not in redriven.stdout + redriven.stderr
    moved = sqs.receive_message(QueueUrl=dead_letters["source"], MaxNumberOfMessages=10)
    bodies = [msgspec.json.decode(m["Body"]) for m in moved["Messages"] if m["Body"][0] == "{"]
    assert all(b["event"]["surname"] == PLANTED for b in bodies)  # bodies as they were


def test_an_unknown_queue_names_the_valid_ones_and_an_empty_dlq_needs_no_task(
    cloud: MotoServer, tmp_path: Path
) -> None:
    deploy.deploy(cloud.client, "foundation")
    where = ("--endpoint-url", cloud.endpoint)

    unknown = _ingest(tmp_path, "dlq", "show", "nope", *where)
    empty = _ingest(tmp_path, "dlq", "redrive", "gro-file-arrivals-dlq", *where, "--json")

    assert unknown.returncode == 2
    assert unknown.stdout == ""
    lines = unknown.stderr.splitlines()
    assert len(lines) == 1 and all(name in lines[0] for name in DLQ_NAMES), unknown.stderr
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout)["moved"] == 0
    source_arn = cloud.client("sqs").get_queue_attributes(
        QueueUrl=cloud.client("sqs").get_queue_url(QueueName="gro-file-arrivals-dlq")["QueueUrl"],
        AttributeNames=["QueueArn"],
    )["Attributes"]["QueueArn"]
    assert cloud.client("sqs").list_message_move_tasks(SourceArn=source_arn)["Results"] == []
