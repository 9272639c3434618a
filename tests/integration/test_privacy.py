"""A conduit, not a store: after a run on the local cloud that publishes records, rejects one,
dead-letters it with its reason and quarantines a structurally bad file, nothing the pipeline
keeps or emits about that run holds a personal value of its input: not the functions' logs, not
the traces, not the metrics, not the dead-letter queues' attributes, not the quarantined object's
metadata, not the ledger, not the receipts, not the state machine's history.

Queue bodies and the temporary store are where records are allowed to be (in transit, under the
pipeline's key, for days at most); they are not scanned here, except to prove the scan reads the
pipeline's own data.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ingest_cli.sample import write_sample
from localcloud.cloud import LocalCloud
from tests.builders import extract, record
from tests.integration.runs import ingest, personal_values

# A name no generated record has: the rejected record carries it, and the bad file names an
# element after it (a file can name an element after a person).
REJECTED_SURNAME = "Wolstenholme"
ELEMENT_NAMED_AFTER_A_PERSON = "MargaretQuillfeatherby"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalCloud, dict[str, Any]]]:
    """One local cloud, one run: a good file with one rejected record, and a bad file."""
    tmp = tmp_path_factory.mktemp("privacy")
    logs = (tmp / "logs.jsonl").open("w")
    with LocalCloud(consumers=2, log_file=logs) as cloud:
        good = tmp / "DWP_D_20220307.xml"
        buf = io.BytesIO()
        write_sample(buf, 8, seed=41)
        rejected = record(
            registration_id="300000041",
            gender="<DeceasedGender>7</DeceasedGender>",  # a code the format does not define
            name=f"<DeceasedName><ns4:PersonGivenName>Albertina</ns4:PersonGivenName>"
            f"<ns4:PersonFamilyName>{REJECTED_SURNAME}</ns4:PersonFamilyName></DeceasedName>",
        )
        good.write_text(
            buf.getvalue()
            .decode()
            .replace(
                "    <RecordCount>8</RecordCount>", rejected + "    <RecordCount>9</RecordCount>"
            ),
            encoding="utf-8",
        )
        bad = tmp / "DWP_D_20220308.xml"
        person = f"<{ELEMENT_NAMED_AFTER_A_PERSON}>x</{ELEMENT_NAMED_AFTER_A_PERSON}>"
        bad.write_bytes(
            extract(record(registration_id="300000042"))
            .decode()
            .replace("<DeathRegistration>", f"<DeathRegistration>{person}", 1)
            .replace("</DeathRegistrationGroup>", f"{person}</DeathRegistrationGroup>")
            .encode()
        )
        summaries = {"good": ingest(cloud, good), "bad": ingest(cloud, bad)}
        assert cloud.xray is not None and cloud.xray.flush()
        logs.flush()
        yield (
            cloud,
            {
                "summaries": summaries,
                "values": personal_values(good) | {REJECTED_SURNAME, ELEMENT_NAMED_AFTER_A_PERSON},
                "logs": (tmp / "logs.jsonl").read_text(),
            },
        )
    logs.close()


def _leaked(text: str, values: set[str]) -> list[str]:
    return sorted(v for v in values if v in text)


def test_the_run_did_what_the_scans_rely_on(run: tuple[LocalCloud, dict[str, Any]]) -> None:
    _, seen = run
    good, bad = seen["summaries"]["good"], seen["summaries"]["bad"]
    assert (good.published, good.dead_lettered + good.rejected) == (8, 1)
    assert bad.status != "ingested" and bad.reason, bad
    assert len(seen["values"]) > 20


def test_no_log_line_of_any_function_holds_a_personal_value(
    run: tuple[LocalCloud, dict[str, Any]],
) -> None:
    _, seen = run
    text = seen["logs"]
    assert "record transformed" in text and "gro-reaper-consumed" in text  # really the logs
    assert _leaked(text, seen["values"]) == []


def test_no_trace_segment_holds_a_personal_value(run: tuple[LocalCloud, dict[str, Any]]) -> None:
    cloud, seen = run
    xray = cloud.client("xray")
    pages = xray.get_paginator("get_trace_summaries").paginate(
        StartTime=time.time() - 3600, EndTime=time.time() + 60
    )
    ids = [s["Id"] for page in pages for s in page["TraceSummaries"]]
    documents = []
    for start in range(0, len(ids), 5):
        for trace in xray.batch_get_traces(TraceIds=ids[start : start + 5])["Traces"]:
            documents += [segment["Document"] for segment in trace["Segments"]]
    text = "\n".join(documents)
    assert "event_id" in text
    assert _leaked(text, seen["values"]) == []


def test_no_metric_holds_a_personal_value(run: tuple[LocalCloud, dict[str, Any]]) -> None:
    cloud, seen = run
    text = json.dumps(cloud.metrics())
    assert "RecordsPublished" in text
    assert _leaked(text, seen["values"]) == []


def test_no_dead_letter_attribute_holds_a_personal_value_though_the_body_does(
    run: tuple[LocalCloud, dict[str, Any]],
) -> None:
    cloud, seen = run
    sqs = cloud.client("sqs")
    attributes, bodies = [], []
    for url in sqs.list_queues(QueueNamePrefix="gro-").get("QueueUrls", []):
        if not url.endswith("-dlq"):
            continue
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            VisibilityTimeout=0,
        )
        for message in got.get("Messages", []):
            attributes.append(json.dumps(message.get("MessageAttributes", {})))
            bodies.append(message["Body"])
    assert any("reason" in a for a in attributes)  # the rejected record is there, with why
    assert any(REJECTED_SURNAME in b for b in bodies)  # in transit, the body is the record
    assert _leaked("\n".join(attributes), seen["values"]) == []


def test_the_quarantined_files_metadata_and_tags_hold_no_personal_value(
    run: tuple[LocalCloud, dict[str, Any]],
) -> None:
    cloud, seen = run
    s3 = cloud.client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if "landing" in b["Name"])
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="quarantine/"
        )
        for o in page.get("Contents", [])
    ]
    assert keys
    texts = []
    for key in keys:
        head = s3.head_object(Bucket=bucket, Key=key)
        tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        texts.append(json.dumps({"metadata": head.get("Metadata", {}), "tags": tags}))
    text = "\n".join(texts)
    assert "reason" in text.lower()
    assert _leaked(text, seen["values"]) == []


def test_no_ledger_item_holds_a_personal_value(run: tuple[LocalCloud, dict[str, Any]]) -> None:
    cloud, seen = run
    dynamodb = cloud.client("dynamodb")
    (table,) = [t for t in dynamodb.list_tables()["TableNames"] if "ledger" in t]
    items = [
        item
        for page in dynamodb.get_paginator("scan").paginate(TableName=table)
        for item in page["Items"]
    ]
    text = json.dumps(items)
    assert "reason" in text
    assert _leaked(text, seen["values"]) == []


def test_no_receipt_holds_a_personal_value(run: tuple[LocalCloud, dict[str, Any]]) -> None:
    cloud, seen = run
    s3 = cloud.client("s3")
    bucket = next(b["Name"] for b in s3.list_buckets()["Buckets"] if "landing" in b["Name"])
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="receipts/").get("Contents", [])
    text = "\n".join(
        s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode() for o in listed
    )
    assert "sha256" in text
    assert _leaked(text, seen["values"]) == []


def test_no_state_machine_history_holds_a_personal_value(
    run: tuple[LocalCloud, dict[str, Any]],
) -> None:
    cloud, seen = run
    sfn = cloud.client("stepfunctions")
    events: list[Any] = []
    for machine in sfn.list_state_machines()["stateMachines"]:
        for page in sfn.get_paginator("list_executions").paginate(
            stateMachineArn=machine["stateMachineArn"]
        ):
            for execution in page["executions"]:
                for history in sfn.get_paginator("get_execution_history").paginate(
                    executionArn=execution["executionArn"]
                ):
                    events += history["events"]
    text = json.dumps(events, default=str)
    assert "ExecutionFailed" in text or "FailStateEntered" in text or "cause" in text.lower()
    assert _leaked(text, seen["values"]) == []
