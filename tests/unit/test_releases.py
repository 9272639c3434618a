"""Releases as stack tags, and the warning `ingest versions` gives when deployed services do
not fit together."""

from __future__ import annotations

from deploytools import releases
from deploytools.releases import Release


def test_a_release_round_trips_through_its_stack_tags() -> None:
    release = Release(
        service="publisher",
        label="0.1.0+abc1234",
        code_key="publisher/f00.zip",
        produces={"StoredEvent": 1, "MinimalEvent": 1},
        accepts={"EventToPublish": [1, 2], "EnrichRequest": [1]},
        released_at=0,
    )
    tags = {t["Key"]: t["Value"] for t in releases.tags(release)}
    assert tags[releases.TAG_VERSION] == "0.1.0+abc1234"
    assert releases.parse_produces(tags[releases.TAG_PRODUCES]) == release.produces
    assert releases.parse_accepts(tags[releases.TAG_ACCEPTS]) == release.accepts


def test_versions_warns_when_a_producer_outruns_its_deployed_consumer() -> None:
    deployed = {
        "transformer": ({"EventToPublish": 2}, {"RecordToTransform": [1]}),
        "publisher": ({"StoredEvent": 1}, {"EventToPublish": [1]}),
        "reaper": ({}, {"StoredEvent": [1]}),
    }
    (warning,) = releases.mismatches(deployed)
    assert "transformer produces EventToPublish v2" in warning
    assert "publisher does not accept" in warning


def test_versions_is_quiet_when_every_output_is_accepted() -> None:
    deployed = {
        "transformer": ({"EventToPublish": 2}, {}),
        "publisher": ({}, {"EventToPublish": [1, 2]}),
    }
    assert releases.mismatches(deployed) == []


def test_the_declarations_are_read_from_each_service() -> None:
    produces, accepts = releases.declared("transformer")
    assert produces == {"EventToPublish": 1, "DeadLetterAttributes": 1}
    assert accepts == {"RecordToTransform": [1]}


def test_the_default_label_is_the_package_version_and_the_commit() -> None:
    label = releases.default_label("reaper")
    assert label.startswith("0.1.0+")
    assert len(label.split("+", 1)[1].split(".")[0]) == 7 or label.endswith("+unknown")
