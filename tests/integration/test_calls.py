"""A real run's AWS calls, counted on the local cloud: per stage, plausible, the operator's own
polling left out; then `ingest cost` prices the run it kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ingest_cli import cost
from ingest_cli.sample import write_sample
from tests.role_actions import refused, role_actions

RECORDS = 20
CONSUMERS = 2
# the functions a run invokes
FUNCTIONS = (
    "gro-splitter-start",
    "gro-splitter-split",
    "gro-transformer-transform",
    "gro-publisher-publish",
    "gro-publisher-enrich",
    "gro-reaper-consumed",
    "gro-reaper-finish-file",
)


def ingest(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest_cli.main", *args]


@pytest.fixture(scope="module")
def counted_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """`ingest run --json` of a 20-record file on an `ingest up` in another process, as an
    operator runs it (whose follow polls the cloud all along); and the state directory."""
    state = tmp_path_factory.mktemp("state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["INGEST_STATE_DIR"] = str(state)
    path = state / "DWP_D_20240301.xml"
    with open(path, "wb") as out:
        write_sample(out, RECORDS, seed=3)
    up = subprocess.Popen(
        ingest("up", "--consumers", str(CONSUMERS)),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert up.stdout is not None
        assert up.stdout.readline().startswith("http://127.0.0.1:")
        done = subprocess.run(
            ingest("run", str(path), "--json"),
            capture_output=True,
            text=True,
            timeout=500,
            env=env,
            check=False,
        )
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout), state


def stage(run: dict[str, Any], caller: str) -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, dict[str, Any]]] = run["calls"]["by_stage"]
    return stages[caller]


def total(counts: dict[str, dict[str, Any]], field: str, *operations: str) -> float:
    return sum(float(counts.get(op, {}).get(field, 0)) for op in operations)


def test_every_record_costs_at_least_one_send_from_the_splitter_and_one_store_put(
    counted_run: tuple[dict[str, Any], Path],
) -> None:
    run, _ = counted_run

    assert run["published"] == RECORDS
    splitter = stage(run, "gro-splitter-split")
    assert total(splitter, "messages", "sqs.SendMessage", "sqs.SendMessageBatch") >= RECORDS
    publisher = stage(run, "gro-publisher-publish")
    assert total(publisher, "calls", "dynamodb.PutItem", "dynamodb.TransactWriteItems") >= RECORDS
    assert total(publisher, "write_units", "dynamodb.PutItem") >= RECORDS
    reaper = stage(run, "gro-reaper-consumed")
    assert total(reaper, "write_units", "dynamodb.DeleteItem", "dynamodb.BatchWriteItem") >= (
        RECORDS
    )
    # enrichment: one read per consumer per record
    enrich = stage(run, "gro-publisher-enrich")
    assert total(enrich, "read_units", "dynamodb.GetItem") >= RECORDS * CONSUMERS * 0.5


def test_lambdas_pollers_receive_and_delete_each_message_of_the_three_record_queues(
    counted_run: tuple[dict[str, Any], Path],
) -> None:
    run, _ = counted_run

    pollers = stage(run, "lambda-esm")

    # records-to-transform, events-to-publish and events-consumed, plus the file's arrival
    assert total(pollers, "messages", "sqs.ReceiveMessage") >= 3 * RECORDS + 1
    assert total(pollers, "messages", "sqs.DeleteMessageBatch") >= 3 * RECORDS + 1
    assert run["calls"]["empty_receives"] >= 0
    assert stage(run, "states")["lambda.Invoke"]["calls"] >= 2  # a split, a finish-file


def test_every_call_a_function_made_is_one_its_role_allows(
    counted_run: tuple[dict[str, Any], Path],
) -> None:
    run, _ = counted_run
    stages = run["calls"]["by_stage"]

    # the functions of a run, each holding its calls against its own role in the templates
    assert set(FUNCTIONS) <= set(stages) & set(role_actions())
    assert refused(stages) == {}


def test_the_operators_polling_and_the_platforms_calls_are_left_out(
    counted_run: tuple[dict[str, Any], Path],
) -> None:
    run, _ = counted_run
    calls = run["calls"]

    assert calls["excluded"]["operator"] > 0  # this run's follow, status and export reads
    # the platform invoked enrich per consumer and published each consumed notice
    assert calls["excluded"]["platform"] >= RECORDS * (CONSUMERS + 1)
    assert not {"operator", "platform", "localcloud"} & set(calls["by_stage"])
    # follow reads eight queues' depths every second: had they leaked, they would show here
    assert calls["per_record"].get("sqs.GetQueueAttributes", 0) < 0.5
    for polled in ("cloudformation.ListExports", "sts.GetCallerIdentity"):
        assert polled not in calls["per_record"], polled
    assert 3 < calls["per_record_total"] < 40
    assert calls["per_record_total"] == pytest.approx(
        sum(calls["total"].values()) / RECORDS, abs=1e-3
    )


def test_lambda_time_state_transitions_traces_and_logs_are_counted_per_stage(
    counted_run: tuple[dict[str, Any], Path],
) -> None:
    run, _ = counted_run

    functions = run["lambda"]
    for name in FUNCTIONS:
        f = functions[name]
        assert f["invocations"] > 0 and f["gb_seconds"] > 0, name
        assert f["architecture"] == "x86_64", name
        assert f["p50_ms"] <= f["p95_ms"] <= f["max_ms"], name
    assert functions["gro-splitter-split"]["memory_mb"] == 512
    assert functions["gro-transformer-transform"]["memory_mb"] == 256
    assert functions["gro-publisher-enrich"]["invocations"] == RECORDS * CONSUMERS
    assert run["state_transitions"] >= 4
    assert run["xray_traces"] > 0
    assert run["logs"]["bytes"] > 0 and run["logs"]["events"] > 0
    assert "local emulator" in run["emulated"]


def test_ingest_cost_prices_the_run_ingest_run_kept(
    counted_run: tuple[dict[str, Any], Path],
) -> None:
    run, state = counted_run
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["INGEST_STATE_DIR"] = str(state)

    done = subprocess.run(
        ingest("cost", "--json"), capture_output=True, text=True, timeout=60, env=env, check=False
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["region"], report["records"]) == ("eu-west-2", 1_000_000)
    assert report["from_run"]["records"] == RECORDS == run["calls"]["records"]
    assert 0 < report["total"]["arm64"] < report["total"]["x86_64"]
    priced = {line["service"] for line in report["lines"]}
    assert {"lambda", "sqs", "dynamodb", "stepfunctions", "s3"} <= priced


def test_the_last_run_is_kept_where_the_local_cloud_keeps_its_state() -> None:
    from ingest_cli import cloud_parsers
    from localcloud.cloud import STATE_FILE

    assert STATE_FILE.parent == cost.state_dir()
    assert cloud_parsers._state_file() == STATE_FILE
