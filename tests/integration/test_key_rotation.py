"""An event-id key rotation on the local cloud, as the transformer's README tells an operator to
do it: the secret becomes a key set, version 2 is written ahead of its activation, and records
get the version that was active when their file arrived (the S3 LastModified the splitter
stamps on every message), whichever transformer container handles them and whenever.

The unit tests (`tests/unit/test_event_id_keys.py`) run the rotation through two containers
with differently aged caches; this one proves the parts only a running pipeline has: the
splitter's stamp from the real object, the transformer reading the real secret, and a redrive
after the activation keeping the id the record had before it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from contracts.messages import FileRef, RecordToTransform
from ingest_cli.follow import follow, upload
from localcloud.cloud import LocalCloud
from splitter.extract import ExtractReader, Fragment
from tests.builders import extract, record
from transformer.core import Transformed, transform_fragment

SECRET = "gro-transformer-event-id-key"
NEW_KEY = "VersionTwoKeyForTheRotationTest0123456789abcdefghijklmnopqrstuvw"
LEAD_SECONDS = 20  # an hour in the README; here only the rule is under test, not the margin


@pytest.fixture(scope="module")
def cloud() -> Iterator[LocalCloud]:
    with LocalCloud(consumers=1) as running:
        yield running


def a_file(tmp_path: Path, name: str, first_id: int) -> Path:
    path = tmp_path / name
    path.write_bytes(extract(*(record(registration_id=str(first_id + i)) for i in range(3))))
    return path


@dataclass(frozen=True)
class Ingested:
    ref: FileRef
    arrived: datetime  # the object version's LastModified, which the splitter stamps
    ids: list[str]  # the ids the platform created for its records, sorted


def ingest(cloud: LocalCloud, path: Path) -> Ingested:
    platform, pollers = cloud.platform, cloud.pollers
    assert platform is not None and pollers is not None
    before = len(platform.stats().event_ids)
    # as `follow.upload` does, then its LastModified, read before the pipeline deletes the file
    ref = upload(cloud.client, path)
    head = cloud.client("s3").head_object(Bucket=ref.bucket, Key=ref.key, VersionId=ref.version_id)
    summary = follow(
        cloud.client,
        ref,
        platform_stats=platform.stats,
        timeout=180,
        progress=lambda _: None,
        settled=lambda: platform.wait_idle(0) and pollers.idle(),
    )
    assert summary.ok, summary
    return Ingested(
        ref, head["LastModified"].astimezone(UTC), sorted(platform.stats().event_ids[before:])
    )


def fragments(path: Path) -> list[bytes]:
    with open(path, "rb") as stream:
        return [f.xml for f in ExtractReader(stream).records() if isinstance(f, Fragment)]


def expected_ids(path: Path, key: str, version: int) -> list[str]:
    out = []
    for xml in fragments(path):
        made = transform_fragment(xml, key=key.encode(), key_version=version)
        assert isinstance(made, Transformed)
        out.append(made.event.source_id)
    return sorted(out)


def test_a_rotation_gives_later_files_version_2_and_keeps_every_id_given_before(
    cloud: LocalCloud, tmp_path: Path
) -> None:
    sm = cloud.client("secretsmanager")
    old_key = sm.get_secret_value(SecretId=SECRET)["SecretString"]  # as the stack generated it
    assert not old_key.startswith("{") and len(old_key) >= 32

    # given: a file ingested under the plain key, the secret's first format: version 1 ids
    early = a_file(tmp_path, "DWP_D_20250701.xml", 1001)
    first = ingest(cloud, early)
    assert first.ids == expected_ids(early, old_key, 1)

    # when: the operator writes the key set, version 2 active LEAD_SECONDS from now
    active_from = (datetime.now(UTC) + timedelta(seconds=LEAD_SECONDS)).replace(microsecond=0)
    key_set = {
        "versions": [
            {"version": 1, "key": old_key},
            {"version": 2, "key": NEW_KEY, "active_from": f"{active_from:%Y-%m-%dT%H:%M:%SZ}"},
        ]
    }
    sm.put_secret_value(SecretId=SECRET, SecretString=json.dumps(key_set))
    # a file that lands before the activation (handled by containers that may or may not have
    # read the key set yet) still gets version 1, whenever its records are handled
    between = a_file(tmp_path, "DWP_D_20250702.xml", 2001)
    second = ingest(cloud, between)
    assert second.arrived < active_from
    assert second.ids == expected_ids(between, old_key, 1)
    # and a file that lands after it gets version 2, visible in its ids
    time.sleep(max(0.0, (active_from - datetime.now(UTC)).total_seconds()) + 1.5)
    late = a_file(tmp_path, "DWP_D_20250703.xml", 3001)
    third = ingest(cloud, late)
    assert third.arrived >= active_from
    assert third.ids == expected_ids(late, NEW_KEY, 2)
    assert all(i.startswith("gro1-k2-") for i in third.ids)

    # then: a record of the first file, redriven after the activation with the body the
    # splitter sent, gets the id it had: the platform answers 409, it creates nothing new
    platform = cloud.platform
    assert platform is not None
    before = platform.stats()
    body = RecordToTransform(
        file=first.ref,
        ordinal=1,
        fragment=fragments(early)[0].decode(),
        file_arrived=first.arrived,
    )
    sqs = cloud.client("sqs")
    sqs.send_message(
        QueueUrl=sqs.get_queue_url(QueueName="gro-records-to-transform")["QueueUrl"],
        MessageBody=msgspec.json.encode(body).decode(),
    )
    deadline = time.monotonic() + 90
    while platform.stats().duplicates == before.duplicates and time.monotonic() < deadline:
        time.sleep(0.5)
    after = platform.stats()
    # a 409: an event with this id exists (under version 2 it would have been a new one, a 201)
    assert after.duplicates == before.duplicates + 1
    assert after.event_ids == before.event_ids
