"""The `ingest` command as an operator types it: validate, transform, sample."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.builders import extract, record

SHARED_SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gro-samples"


def ingest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ingest_cli.main", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


@pytest.fixture
def mixed_file(tmp_path: Path) -> Path:
    path = tmp_path / "DWP_D_20220301.xml"
    path.write_bytes(
        extract(
            record(registration_id="11"),
            record(registration_id="22", timestamps=""),
            record(registration_id="33"),
        )
    )
    return path


def test_validate_says_a_file_is_acceptable_and_lists_invalid_records(mixed_file: Path) -> None:
    out = ingest("validate", str(mixed_file))
    assert out.returncode == 0, out.stderr
    assert "acceptable: 3 records, 2 valid, 1 invalid" in out.stdout
    assert "record 2 (RegistrationID 22): neither RecordLockedDateTime" in out.stdout


def test_validate_json_reports_ordinal_registration_id_and_reasons(mixed_file: Path) -> None:
    out = ingest("validate", "--json", str(mixed_file))
    report = json.loads(out.stdout)
    assert (report["records"], report["valid"], report["acceptable"]) == (3, 2, True)
    (bad,) = report["invalid"]
    assert (bad["ordinal"], bad["registration_id"]) == (2, "22")
    assert bad["reasons"] and "RecordLockedDateTime" in bad["reasons"][0]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (extract(record(), record())[:-80], "truncated"),
        (extract(record(), count=5), "RecordCount says 5 but the file holds 1"),
        (b"", "empty"),
        (
            b"<DeathRegistrationGroup><RecordCount>0</RecordCount></DeathRegistrationGroup>",
            "no namespace",
        ),
        (extract(record()).replace(b"Robert", b"Ren\xe9"), "not valid UTF-8"),
    ],
)
def test_validate_refuses_a_structurally_bad_file_with_one_line_and_no_trace(
    tmp_path: Path, content: bytes, words: str
) -> None:
    path = tmp_path / "bad.xml"
    path.write_bytes(content)
    out = ingest("validate", str(path))
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    assert "Ren" not in out.stderr


def test_validate_of_a_missing_file_says_so(tmp_path: Path) -> None:
    out = ingest("validate", str(tmp_path / "nope.xml"))
    assert out.returncode == 1
    assert "No such file" in out.stderr and "Traceback" not in out.stderr


def test_transform_prints_one_event_per_valid_record_in_file_order(mixed_file: Path) -> None:
    out = ingest("transform", str(mixed_file))
    assert out.returncode == 0
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["registrationId"] for e in events] == ["11", "33"]
    assert all(e["eventType"] == "GRO_DEATH_NOTIFICATION" for e in events)
    assert "record 2 (RegistrationID 22): rejected" in out.stderr
    assert "development key" in out.stderr


PRODUCTION_LIKE = "a production-like key of 32 bytes or more"


def test_transform_gives_the_same_ids_on_every_run_and_other_ids_under_another_key(
    mixed_file: Path, tmp_path: Path
) -> None:
    ids = lambda out: [json.loads(x)["sourceId"] for x in out.stdout.splitlines()]  # noqa: E731
    first, second = ingest("transform", str(mixed_file)), ingest("transform", str(mixed_file))
    assert ids(first) == ids(second)
    keyed = ingest("transform", str(mixed_file), env={"INGEST_EVENT_ID_KEY": PRODUCTION_LIKE})
    assert "development key" not in keyed.stderr
    assert set(ids(keyed)).isdisjoint(ids(first))
    key_file = tmp_path / "key"
    key_file.write_text(PRODUCTION_LIKE + "\n")
    from_file = ingest("transform", str(mixed_file), "--key-file", str(key_file))
    assert ids(from_file) == ids(keyed)


def test_transform_of_a_corrupt_file_prints_no_event_at_all(tmp_path: Path) -> None:
    path = tmp_path / "short.xml"
    path.write_bytes(extract(record(), record(), count=3))
    out = ingest("transform", str(path))
    assert out.returncode == 1
    assert out.stdout == ""
    assert "RecordCount says 3" in out.stderr


def test_a_zero_record_file_is_acceptable_and_transforms_to_nothing(tmp_path: Path) -> None:
    path = tmp_path / "empty.xml"
    path.write_bytes(extract())
    assert "acceptable: 0 records" in ingest("validate", str(path)).stdout
    out = ingest("transform", str(path))
    assert (out.returncode, out.stdout) == (0, "")


def test_sample_is_deterministic_per_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.xml", tmp_path / "b.xml", tmp_path / "c.xml"
    for path, seed in ((a, "1"), (b, "1"), (c, "2")):
        assert (
            ingest("sample", "--records", "50", "--seed", seed, "--out", str(path)).returncode == 0
        )
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_sample_exercises_every_variant_and_every_record_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "sample.xml"
    ingest("sample", "--records", "120", "--out", str(path))
    text = path.read_text(encoding="utf-8")
    for element in (
        "ns4:PersonNameTitle",
        "ns4:PersonNameSuffix",
        "DeceasedAliasNameType",
        "DeceasedMaidenName",
        "PartialMonthOfDeath",
        "QualifierText",
        "FreeFormatDeathDate",
        "PartialYearOfBirth",
        "FreeFormatBirthDate",
        "ns1:VerificationLevel",
        "ns3:Flat",
        "ns3:Building",
    ):
        assert f"<{element}>" in text, element
    for reason in "12345":
        assert f"<RecordUpdateReason>{reason}</RecordUpdateReason>" in text
    assert "</DeceasedAliasName>\n        <DeceasedAliasNameType>" in text  # interleaved
    assert "</DeceasedAliasName>\n        <DeceasedAliasName>" in text  # grouped
    assert "<ns4:PersonGivenName></ns4:PersonGivenName>" in text  # present, empty
    assert any(ord(ch) > 127 for ch in text)
    report = json.loads(ingest("validate", "--json", str(path)).stdout)
    assert (report["records"], report["valid"], report["invalid"]) == (120, 120, [])


@pytest.mark.parametrize(
    "sample",
    sorted(SHARED_SAMPLES.glob("*.xml")) if SHARED_SAMPLES.is_dir() else [],
    ids=lambda p: p.name,
)
def test_the_real_format_samples_are_judged_as_the_reference_says(sample: Path) -> None:
    out = ingest("validate", "--json", str(sample))
    report = json.loads(out.stdout)
    if sample.name == "tf_test.xml":  # the made-up file without namespaces
        assert out.returncode == 1 and "no namespace" in out.stderr
        return
    assert out.returncode == 0, out.stderr
    assert report["invalid"] == [] and report["records"] == report["valid"]
