"""`ingest up`, `ingest run` and `ingest status` as an operator types them, on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from ingest_cli.sample import write_sample
from tests.builders import extract, record


def ingest_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ingest_cli.main", *args]


def environment(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env["INGEST_STATE_DIR"] = str(state_dir)
    return env


def test_run_starts_an_embedded_cloud_and_reports_every_stage(tmp_path: Path) -> None:
    path = tmp_path / "DWP_D_20220301.xml"
    buf = io.BytesIO()
    write_sample(buf, 6, seed=2)
    good = buf.getvalue().decode()
    bad = record(registration_id="9", timestamps="")
    path.write_text(good.replace("<RecordCount>6<", bad + "<RecordCount>7<"), encoding="utf-8")
    logs = tmp_path / "logs.jsonl"
    saved = tmp_path / "traces.jsonl"

    done = subprocess.run(
        ingest_command("run", str(path), "--json", "--logs", str(logs), "--traces", str(saved)),
        capture_output=True,
        text=True,
        timeout=400,
        env=environment(tmp_path),
        check=False,
    )

    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    for field in (
        "records",
        "emitted",
        "transformed",
        "rejected",
        "published",
        "enriched",
        "consumed",
        "deleted",
        "dead_lettered",
        "source_deleted",
        "seconds",
    ):
        assert field in summary, field
    assert (summary["records"], summary["published"], summary["rejected"]) == (7, 6, 1)
    assert (summary["consumed"], summary["deleted"], summary["source_deleted"]) == (6, 6, True)
    assert "Traceback" not in done.stderr
    assert logs.stat().st_size > 0

    # and after the run, with its cloud gone, one record's life from the traces it saved
    hint = next(line for line in done.stderr.splitlines() if "ingest trace" in line)
    event_id = hint.split("ingest trace ", 1)[1].split()[0]
    traced = subprocess.run(
        ingest_command("trace", event_id, "--from", str(saved), "--json"),
        capture_output=True,
        text=True,
        timeout=120,
        env=environment(tmp_path),
        check=False,
    )
    assert traced.returncode == 0, traced.stderr[-2000:]
    operations = [step["operation"] for step in json.loads(traced.stdout)]
    for operation in ("split", "transform", "publish", "platform_post", "enrich", "consumed"):
        assert operation in operations, operations


def test_run_of_a_missing_file_says_so_without_starting_anything(tmp_path: Path) -> None:
    done = subprocess.run(
        ingest_command("run", str(tmp_path / "nope.xml")),
        capture_output=True,
        text=True,
        timeout=60,
        env=environment(tmp_path),
        check=False,
    )
    assert done.returncode == 1
    assert "no such file" in done.stderr


def test_up_serves_run_and_status_from_other_terminals_and_stops_cleanly(tmp_path: Path) -> None:
    env = environment(tmp_path)
    up = subprocess.Popen(
        ingest_command("up"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        assert up.stdout is not None
        endpoint = up.stdout.readline().strip()
        assert endpoint.startswith("http://127.0.0.1:")
        path = tmp_path / "small.xml"
        path.write_bytes(extract(record(registration_id="1"), record(registration_id="2")))
        run = subprocess.run(
            ingest_command("run", str(path), "--json"),
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert f"using the local cloud at {endpoint}" in run.stderr
        assert json.loads(run.stdout)["published"] == 2
        status = subprocess.run(
            ingest_command("status", "small.xml", "--json"),
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        (row,) = json.loads(status.stdout)
        assert (row["status"], row["published"]) == ("SUCCEEDED", 2)
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=30)
    assert up.returncode == 0
    assert not (tmp_path / "local-cloud.json").exists()


def test_run_can_publish_to_an_external_platform_instead_of_the_simulator(
    tmp_path: Path,
) -> None:
    from localcloud.platform import PlatformSimulator

    # given a platform of its own on 127.0.0.1, whose consumers are none of our business
    external = PlatformSimulator(
        client_id="external-client",
        client_secret="external-secret",
        consumers=1,
        enrich=lambda _id: {"statusCode": 404},
        publish_consumed=lambda _id: None,
    )
    external.start()
    try:
        path = tmp_path / "external.xml"
        path.write_bytes(extract(record(registration_id="1"), record(registration_id="2")))
        done = subprocess.run(
            ingest_command(
                "run",
                str(path),
                "--json",
                "--platform-url",
                external.url,
                "--token-url",
                external.token_url,
                "--client-id",
                "external-client",
                "--client-secret",
                "external-secret",
            ),
            capture_output=True,
            text=True,
            timeout=400,
            env=environment(tmp_path),
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        summary = json.loads(done.stdout)
        assert summary["published"] == 2
        assert summary["consumed"] is None  # the external platform's business
        assert external.stats().created == 2
        assert {b["eventType"] for b in external.received_bodies()} == {"GRO_DEATH_NOTIFICATION"}
    finally:
        external.stop()
