"""One owner releases a service and rolls it back on the local cloud; the pipeline keeps working
and every record says which release of which service ended it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.deadletter import DeadLetterAttributes
from ingest_cli.sample import write_sample
from localcloud import deploy
from localcloud.cloud import LocalCloud
from tests.builders import record
from tests.integration.cli import ingest_json
from tests.integration.runs import ingest

RELEASE = "0.2.0-release-test"


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(consumers=1) as running:
        yield running


def cli(cloud: LocalCloud, tmp_path: Path, *args: str) -> dict[str, Any] | list[Any]:
    out: dict[str, Any] | list[Any] = ingest_json(cloud.endpoint, tmp_path / "state", *args)
    return out


def versions(cloud: LocalCloud, tmp_path: Path) -> dict[str, str]:
    answer = cli(cloud, tmp_path, "versions")
    assert isinstance(answer, dict) and answer["warnings"] == []
    return {row["service"]: row["version"] for row in answer["services"]}


def file_with_one_bad_record(tmp_path: Path, name: str, seed: int) -> Path:
    buf = io.BytesIO()
    write_sample(buf, 6, seed=seed)
    bad = record(registration_id="91", gender="<DeceasedGender>7</DeceasedGender>")
    body = (
        buf.getvalue()
        .decode()
        .replace("    <RecordCount>6</RecordCount>", bad + "    <RecordCount>7</RecordCount>")
    )
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return path


def rejected_versions(cloud: LocalCloud) -> list[str | None]:
    sqs = cloud.client("sqs")
    url = sqs.get_queue_url(QueueName="gro-records-to-transform-dlq")["QueueUrl"]
    found = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return found
        for m in got:
            found.append(DeadLetterAttributes.from_sqs(m["MessageAttributes"]).failed_by_version)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def test_a_release_and_a_rollback_each_leave_the_pipeline_working_with_versions_visible(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    # given every service deployed at its default label (package version + commit)
    before = versions(cloud, tmp_path)
    assert all(label and label.startswith("0.1.0+") for label in before.values()), before
    previous = before["transformer"]

    # when the transformer's owner releases a new version, alone
    deploy.deploy(cloud.client, "transformer", version=RELEASE)
    after_release = versions(cloud, tmp_path)

    # then it runs, the others are untouched, and records say which release ended them
    assert after_release == {**before, "transformer": RELEASE}
    first = ingest(cloud, file_with_one_bad_record(tmp_path, "after-release.xml", seed=41))
    assert first.ok and (first.published, first.rejected) == (6, 1)
    assert rejected_versions(cloud) == [RELEASE]
    status = cli(cloud, tmp_path, "status", "after-release.xml")
    assert isinstance(status, list)
    assert f"transformer {RELEASE}" in status[0]["handled_by"]
    assert f"publisher {before['publisher']}" in status[0]["handled_by"]

    # when the owner rolls back to the previous release
    deploy.deploy(cloud.client, "transformer", version=previous)

    # then the previous release runs again, as it was, and the pipeline still works
    assert versions(cloud, tmp_path) == before
    second = ingest(cloud, file_with_one_bad_record(tmp_path, "after-rollback.xml", seed=42))
    assert second.ok and (second.published, second.rejected) == (6, 1)
    assert rejected_versions(cloud) == [previous]
    code = cloud.client("lambda").get_function(FunctionName="gro-transformer-transform")
    assert code["Configuration"]["Environment"]["Variables"]["SERVICE_VERSION"] == previous
