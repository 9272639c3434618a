"""`ingest cost`'s arithmetic over a recorded counts document, and its price table."""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from ingest_cli import cost
from localcloud import calls

# What the local cloud counted for a run of 100 records (localcloud.calls.Usage.since), with
# the operator's polling and the platform's calls that must not be billed to the pipeline.
USAGE: dict[str, Any] = {
    "seconds": 42.0,
    "calls": {
        "gro-splitter-split": {
            "sqs.SendMessageBatch": {"calls": 10, "billed": 10, "messages": 100},
            "s3.GetObject": {"calls": 2},
            "s3.HeadObject": {"calls": 1},
        },
        "gro-transformer-transform": {
            # two of its batches were over 64 KB: billed as two requests each
            "sqs.SendMessageBatch": {"calls": 10, "billed": 12, "messages": 100},
            "secretsmanager.GetSecretValue": {"calls": 1},
        },
        "gro-publisher-publish": {"dynamodb.PutItem": {"calls": 100, "write_units": 150.0}},
        "gro-publisher-enrich": {"dynamodb.GetItem": {"calls": 200, "read_units": 100.0}},
        "gro-reaper-consumed": {
            "dynamodb.DeleteItem": {"calls": 100, "write_units": 100.0},
            "sts.GetCallerIdentity": {"calls": 2},
        },
        "gro-reaper-finish-file": {
            "s3.PutObject": {"calls": 1},
            "s3.DeleteObject": {"calls": 1},
        },
        "lambda-esm": {
            "sqs.ReceiveMessage": {"calls": 50, "billed": 50, "messages": 300, "empty": 20},
            "sqs.DeleteMessageBatch": {"calls": 30, "billed": 30, "messages": 300},
        },
        "states": {"lambda.Invoke": {"calls": 3}},
        "operator": {
            "sqs.GetQueueAttributes": {"calls": 80, "billed": 80},
            "dynamodb.GetItem": {"calls": 40, "read_units": 40.0},
        },
        "platform": {"sns.Publish": {"calls": 100, "billed": 100}, "lambda.Invoke": {"calls": 200}},
        "xray-daemon": {"xray.PutTraceSegments": {"calls": 9}},
    },
    "lambda": {
        "gro-transformer-transform": {"invocations": 10, "gb_seconds": 5.0, "memory_mb": 256},
        "gro-publisher-publish": {"invocations": 10, "gb_seconds": 3.0, "memory_mb": 256},
    },
    "logs": {"gro-publisher-publish": {"bytes": cost.GB // 1000, "events": 500}},
    "xray_traces": 100,
    "metrics": 5,
}
RECORDS = 100
TRANSITIONS = 10


@pytest.fixture
def run() -> dict[str, Any]:
    """`ingest run --json` for that run: its summary and its counts."""
    return {
        "file": "incoming/DWP_D_20240101.xml",
        "records": RECORDS,
        "seconds": 42.0,
        **cost.summarise(USAGE, RECORDS, TRANSITIONS),
    }


def line(report: dict[str, Any], service: str, what: str) -> dict[str, Any]:
    (found,) = [x for x in report["lines"] if (x["service"], x["what"]) == (service, what)]
    return found


def test_calls_per_record_count_the_pipeline_and_not_the_operator_or_the_platform(
    run: dict[str, Any],
) -> None:
    counted = run["calls"]
    assert set(counted["by_stage"]) == {
        "gro-splitter-split",
        "gro-transformer-transform",
        "gro-publisher-publish",
        "gro-publisher-enrich",
        "gro-reaper-consumed",
        "gro-reaper-finish-file",
        "lambda-esm",
        "states",
    }
    assert counted["excluded"] == {"operator": 120, "platform": 300, "xray-daemon": 9}
    assert "sqs.GetQueueAttributes" not in counted["per_record"]
    assert counted["per_record"]["dynamodb.GetItem"] == 2.0  # the enrich's, not the operator's
    # empty receives are the pollers' idle time: apart, not per record
    assert counted["per_record"]["sqs.ReceiveMessage"] == 0.3
    assert counted["empty_receives"] == 20
    assert counted["per_record_total"] == pytest.approx(sum(counted["per_record"].values()))
    assert list(counted["per_record"]) == sorted(
        counted["per_record"], key=lambda op: -counted["per_record"][op]
    )


def test_a_million_records_cost_the_counted_quantities_per_record_times_the_prices(
    run: dict[str, Any],
) -> None:
    prices = cost.load_prices("eu-west-2")

    report = cost.price(run, prices, 1_000_000)

    per_million = 1_000_000 / RECORDS
    sqs = line(report, "sqs", "requests (64 KB chunks)")
    # 10 + 12 sends, 50 - 20 non-empty receives, 30 deletes
    assert sqs["quantity"] == pytest.approx(82 * per_million)
    assert sqs["usd"]["x86_64"] == pytest.approx(82 * per_million * 0.0000004)
    requests = line(report, "lambda", "requests")
    assert requests["usd"]["x86_64"] == pytest.approx(20 * per_million * 0.0000002)
    writes = line(report, "dynamodb", "write request units")
    assert writes["quantity"] == pytest.approx(250 * per_million)
    transitions = line(report, "stepfunctions", "state transitions")
    assert transitions["usd"]["arm64"] == pytest.approx(TRANSITIONS * per_million * 0.000025)
    logs = line(report, "logs", "GB ingested")
    assert logs["quantity"] == pytest.approx((cost.GB // 1000) / cost.GB * per_million)
    for arch in cost.ARCHITECTURES:
        priced = [x["usd"][arch] for x in report["lines"] if x["usd"][arch] is not None]
        assert report["total"][arch] == pytest.approx(sum(priced), abs=1e-4)
        assert report["per_record_usd"][arch] * 1_000_000 == pytest.approx(
            report["total"][arch], abs=1e-4
        )


def test_only_the_lambda_duration_differs_between_x86_and_arm64(run: dict[str, Any]) -> None:
    report = cost.price(run, cost.load_prices("eu-west-2"), 1_000_000)

    differing = [x["what"] for x in report["lines"] if x["usd"]["x86_64"] != x["usd"]["arm64"]]

    assert differing == ["GB-seconds"]
    duration = line(report, "lambda", "GB-seconds")
    gb_seconds = 8.0 * 1_000_000 / RECORDS
    assert duration["usd"]["x86_64"] == pytest.approx(gb_seconds * 0.0000166667)
    assert duration["usd"]["arm64"] == pytest.approx(gb_seconds * 0.0000133334)
    assert report["total"]["arm64"] < report["total"]["x86_64"]


def test_the_cost_scales_linearly_with_the_records_asked_for(run: dict[str, Any]) -> None:
    prices = cost.load_prices("eu-west-2")

    million = cost.price(run, prices, 1_000_000)
    thousand = cost.price(run, prices, 1_000)

    assert thousand["total"]["x86_64"] * 1000 == pytest.approx(million["total"]["x86_64"], 1e-3)
    assert thousand["per_record_usd"] == pytest.approx(million["per_record_usd"])


def test_s3_deletes_are_free_and_the_other_requests_are_priced_by_their_tier(
    run: dict[str, Any],
) -> None:
    report = cost.price(run, cost.load_prices("eu-west-2"), 1_000_000)

    assert line(report, "s3", "DELETE")["usd"]["x86_64"] == 0.0
    tier1, tier2 = line(report, "s3", "PUT/COPY/POST/LIST"), line(report, "s3", "GET/HEAD/other")
    assert tier1["quantity"] == pytest.approx(1 * 1_000_000 / RECORDS)  # the receipt's put
    assert tier2["quantity"] == pytest.approx(3 * 1_000_000 / RECORDS)  # 2 gets and a head
    assert tier1["usd"]["x86_64"] == pytest.approx(10_000 * 0.0000053)


def test_a_price_that_was_not_found_is_named_and_left_out_of_the_total(
    run: dict[str, Any],
) -> None:
    report = cost.price(run, cost.load_prices("us-east-1"), 1_000_000)

    secrets = line(report, "secretsmanager", "API calls")
    assert secrets["usd"] == {"x86_64": None, "arm64": None}
    assert report["missing_prices"] == ["secretsmanager API calls"]
    priced = sum(x["usd"]["x86_64"] for x in report["lines"] if x["usd"]["x86_64"] is not None)
    assert report["total"]["x86_64"] == pytest.approx(priced, abs=1e-4)
    assert "left out of the total (no price found): secretsmanager API calls" in (
        cost.format_report(report)
    )


def test_calls_no_price_applies_to_are_named_not_dropped(run: dict[str, Any]) -> None:
    report = cost.price(run, cost.load_prices("eu-west-2"), 1_000_000)

    assert report["unpriced_calls"] == {"sts.GetCallerIdentity": 2}
    assert "calls no price applies to: sts.GetCallerIdentity x2" in cost.format_report(report)


def test_custom_metrics_are_a_monthly_cost_beside_the_total_not_in_it(
    run: dict[str, Any],
) -> None:
    report = cost.price(run, cost.load_prices("eu-west-2"), 1_000_000)

    assert report["fixed_per_month"] == {"custom_metrics": 5, "usd": 1.5}
    assert not any(x["service"] == "cloudwatch" for x in report["lines"])


def test_the_report_names_its_region_prices_date_and_the_emulated_durations(
    run: dict[str, Any],
) -> None:
    text = cost.format_report(cost.price(run, cost.load_prices("eu-west-2"), 1_000_000))

    assert text.startswith("1,000,000 records at AWS on-demand prices, eu-west-2 (Europe (London))")
    assert "read 2026-12-01" in text
    assert re.search(r"per million records: \$[\d,.]+ on x86_64, \$[\d,.]+ on arm64", text)
    assert "measured on the local emulator" in text
    assert "gro-transformer-transform" in text  # the Lambda table, per stage


def test_an_unknown_region_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no prices for region 'eu-west-1'"):
        cost.load_prices("eu-west-1")


def test_a_run_without_counts_or_records_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="no counts"):
        cost.price({"records": 10, "published": 10}, cost.load_prices(), 1_000_000)
    with pytest.raises(ValueError, match="counted no records"):
        cost.price({"calls": {"records": 0}, "lambda": {}}, cost.load_prices(), 1_000_000)


def test_every_price_says_where_and_when_it_was_read_or_that_it_was_not_found() -> None:
    table = tomllib.loads(
        resources.files("ingest_cli").joinpath("aws_prices.toml").read_text("utf-8")
    )

    assert set(table["regions"]) == {"eu-west-2", "us-east-1"}
    for key, spec in table["prices"].items():
        assert spec["what"] and spec["unit"], key
        for region in table["regions"]:
            cell = spec[region]
            if "usd" not in cell:
                assert cell["missing"].startswith("not found"), (key, region)
                continue
            assert math.isfinite(cell["usd"]) and cell["usd"] >= 0, (key, region)
            assert cell["status"] in ("price-list", "aws-page", "secondary", "derived")
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", cell["as_of"]), (key, region)
            assert len(cell["source"]) > 20, (key, region)
            if cell["status"] == "derived":
                assert spec[region]["note"] or spec.get("note"), (key, region)


def test_the_cost_command_prices_a_saved_run(
    run: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(run))
    args = argparse.Namespace(
        records=1_000_000, region="eu-west-2", from_file=str(saved), json=True
    )

    assert cost.cost(args) == 0

    printed = json.loads(capsys.readouterr().out)
    assert printed["records"] == 1_000_000
    assert printed["from_run"] == {"records": RECORDS, "file": run["file"], "seconds": 42.0}
    assert printed["total"]["x86_64"] > printed["total"]["arm64"] > 0


def test_by_default_the_cost_command_prices_the_last_run_kept_in_the_state_directory(
    run: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("INGEST_STATE_DIR", str(tmp_path))
    args = argparse.Namespace(records=10_000, region="us-east-1", from_file=None, json=False)

    assert cost.cost(args) == 1
    assert "no run recorded yet" in capsys.readouterr().err

    cost.last_run_path().write_text(json.dumps(run))
    assert cost.cost(args) == 0
    assert capsys.readouterr().out.startswith("10,000 records at AWS on-demand prices, us-east-1")


def test_a_file_that_is_not_a_run_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    args = argparse.Namespace(records=1, region="eu-west-2", from_file=str(bad), json=False)

    assert cost.cost(args) == 1
    assert capsys.readouterr().err == (
        f"ingest cost: {bad}: not the JSON of `ingest run --json` (not an object)\n"
    )


def test_the_caller_names_are_the_local_clouds() -> None:
    assert frozenset({calls.STATES, calls.ESM}) == cost.PIPELINE_SERVICES
    assert cost.NOT_PIPELINE == calls.RESERVED - calls.PIPELINE_SERVICES
    assert all(cost.is_pipeline(c) == calls.pipeline_caller(c) for c in USAGE["calls"])


def test_ingest_cost_from_a_file_loads_nothing_of_the_cloud(
    run: dict[str, Any], tmp_path: Path
) -> None:
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(run))
    heavy = ("boto3", "botocore", "moto", "yaml", "cfnlint", "localcloud", "deploytools")
    probe = (
        "import json, sys\n"
        "from ingest_cli.main import main\n"
        "code = main(sys.argv[2:])\n"
        "loaded = sorted(m for m in sys.modules if m.partition('.')[0] in sys.argv[1].split(','))\n"
        "print('PROBE ' + json.dumps({'code': code, 'heavy': loaded}))\n"
    )

    out = subprocess.run(
        [sys.executable, "-c", probe, ",".join(heavy), "cost", "--from", str(saved)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert json.loads(out.stdout.rsplit("PROBE ", 1)[-1]) == {"code": 0, "heavy": []}, out.stderr
