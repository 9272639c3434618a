"""A million-record file on the local cloud, for a bounded time: how far it gets, and what that
says about the whole file.

    uv run python bench/million_bench.py [--minutes 10] [--records 1000000] [--consumers 2]

The file is `ingest sample --records N --seed 1` (about 1.3 GB for a million), generated once
and kept as bench/out/sample-N.xml (split_bench.py makes the same file). A local cloud starts,
the file is uploaded to the landing bucket, and the run is watched for `--minutes` from the
moment the execution starts. Then it prints, and writes to bench/out/million.json:

- how far it went: records emitted (the last Split step's cursor), records terminal in the
  ledger (published, rejected, dead-lettered), Split steps and CheckRecords steps so far;
- the execution's history events so far (GetExecutionHistory, paginated), per Split step;
- ledger writes per partition key, counted where they reach the emulator's DynamoDB (every
  PutItem, UpdateItem, DeleteItem, BatchWriteItem entry and TransactWriteItems entry on the
  ledger table): per kind of key (file, block, record, open-receipts list) the keys written,
  the most writes one key took, the mean, and the most one key took within one second (what
  DynamoDB's ~1,000 writes/s per key is about);
- the splitter containers' peak RSS (VmHWM, from /proc, sampled: the containers are this
  process's children) and the file's size;
- an extrapolation to the whole file at the rates seen: time to split, time to drain, Split
  steps and history events (the checks' waits from the reaper's own `next_wait`).

The local cloud is an emulator on a shared machine: its rates are the emulator's, far below
AWS's (see bench/e2e_bench.py for how far). What carries over is the shape: memory flat, the
history's size per step and per check, and how the ledger's writes spread over keys.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from contracts.messages import FileRef, file_id
from ingest_cli.follow import upload
from ingest_cli.sample import write_sample
from localcloud.cloud import LocalCloud
from reaper.reap import MAX_WAIT_SECONDS, next_wait
from servicekit.ledger import Ledger

OUT = Path(__file__).resolve().parent / "out"
LEDGER_TABLE = "gro-ingest-ledger"
SPLITTER = "gro-splitter-split"
BASE_WAIT_LOCAL = 1  # the local cloud's RecordWaitSeconds (localcloud.deploy)
BASE_WAIT_AWS = 10


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# -- the file ----------------------------------------------------------------------------------


def sample(records: int) -> Path:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"sample-{records}.xml"  # seed 1, as split_bench.py makes it
    if not path.exists():
        started = time.monotonic()
        say(f"generating {path.name} (seed 1)...")
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            write_sample(f, records, seed=1)
        tmp.replace(path)
        say(f"generated in {time.monotonic() - started:,.0f} s")
    return path


# -- ledger writes per key, counted in the emulator ----------------------------------------------


def ledger_writes(counted: dict[str, dict[str, list[int]]]) -> dict[str, Any]:
    """The ledger's writes per key, by kind of key: counted where DynamoDB is served (the local
    cloud's DynamoDB process, `calls.KeyWrites`), each key with the most it took in one second."""
    keys = counted.get(LEDGER_TABLE, {})
    kinds: dict[str, list[str]] = {}
    for pk in keys:
        kind = (
            "block"
            if "#blk#" in pk
            else "record"
            if pk.startswith("rec#")
            else "file"
            if pk.startswith("file#")
            else pk
        )
        kinds.setdefault(kind, []).append(pk)
    out: dict[str, Any] = {}
    for kind, names in sorted(kinds.items()):
        counts = [keys[k][0] for k in names]
        out[kind] = {
            "keys": len(names),
            "writes": sum(counts),
            "max_per_key": max(counts),
            "mean_per_key": round(sum(counts) / len(names), 1),
            "max_per_key_in_one_second": max(keys[k][1] for k in names),
        }
    return out


# -- the splitter's memory -----------------------------------------------------------------------


class SplitterMemory:
    """Samples the peak RSS (VmHWM) of this process's splitter containers every second."""

    def __init__(self) -> None:
        self.peak_kb: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(1.0):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) != me:
                        continue
                    env = (entry / "environ").read_bytes()
                    if f"AWS_LAMBDA_FUNCTION_NAME={SPLITTER}".encode() not in env.split(b"\0"):
                        continue
                    for line in (entry / "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            kb = int(line.split()[1])
                            self.peak_kb[int(entry.name)] = max(
                                kb, self.peak_kb.get(int(entry.name), 0)
                            )
                except (OSError, ValueError, IndexError):
                    continue  # gone, or not ours to read


# -- the execution ------------------------------------------------------------------------------


def execution_arn(cloud: LocalCloud, fid: str) -> str | None:
    sfn = cloud.client("stepfunctions")
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            arn = machine["stateMachineArn"].replace(":stateMachine:", ":execution:") + f":{fid}"
            try:
                sfn.describe_execution(executionArn=arn)
            except sfn.exceptions.ExecutionDoesNotExist:
                continue
            return str(arn)
    return None


def history(cloud: LocalCloud, arn: str) -> dict[str, Any]:
    """Events so far, Split and CheckRecords steps, the last cursor, the execution's status."""
    sfn = cloud.client("stepfunctions")
    events = 0
    entered: Counter[str] = Counter()
    emitted = 0
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        for event in page["events"]:
            events += 1
            if event["type"].endswith("StateEntered"):
                entered[event["stateEnteredEventDetails"]["name"]] += 1
            elif event["type"] == "TaskStateExited":
                details = event["stateExitedEventDetails"]
                if details["name"] == "Split":
                    emitted = json.loads(details["output"])["cursor"]["emitted"]
    status = sfn.describe_execution(executionArn=arn)["status"]
    return {
        "events": events,
        "split_steps": entered["Split"],
        "checks": entered["CheckRecords"],
        "emitted": emitted,
        "status": status,
    }


def checks_for(drain_seconds: float, base: int) -> int:
    """How many checks the reaper's waits make while a file drains for that long."""
    clock, checks = 0.0, 1
    while clock < drain_seconds:
        clock += next_wait(base, clock, MAX_WAIT_SECONDS)
        checks += 1
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--consumers", type=int, default=2)
    args = parser.parse_args()
    path = sample(args.records)
    size = path.stat().st_size

    memory = SplitterMemory()
    result: dict[str, Any] = {"records": args.records, "file_bytes": size}
    t0 = time.monotonic()
    with LocalCloud(consumers=args.consumers, say=say) as cloud:
        result["cloud_start_seconds"] = round(time.monotonic() - t0, 1)
        memory.start()
        t1 = time.monotonic()
        ref: FileRef = upload(cloud.client, path)
        result["upload_seconds"] = round(time.monotonic() - t1, 1)
        say(f"uploaded {size / 1e9:.2f} GB in {result['upload_seconds']:,.0f} s")
        fid = file_id(ref)
        arn = None
        while arn is None and time.monotonic() - t1 < 600:
            arn = execution_arn(cloud, fid)
            time.sleep(1)
        if arn is None:
            say("no execution started within 10 minutes of the upload")
            return 1
        started = time.monotonic()
        deadline = started + args.minutes * 60
        ledger = Ledger(cloud.client("dynamodb"), LEDGER_TABLE)
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            time.sleep(min(60.0, max(0.0, deadline - time.monotonic())))
            seen = history(cloud, arn)
            progress = ledger.progress(fid)
            say(
                f"{(time.monotonic() - started) / 60:5.1f} min: emitted {seen['emitted']:,}, "
                f"terminal {progress.terminal:,} (published {progress.published:,}), "
                f"{seen['split_steps']} split steps, {seen['checks']} checks, "
                f"{seen['events']} history events, {seen['status']}"
            )
            if seen["status"] != "RUNNING":
                break
        elapsed = time.monotonic() - started
        seen = history(cloud, arn)
        progress = ledger.progress(fid)
        memory.stop()
        assert cloud.moto is not None
        writes = ledger_writes(cloud.moto.dynamodb.key_writes())
    result.update(
        minutes=round(elapsed / 60, 2),
        emitted=seen["emitted"],
        terminal=progress.terminal,
        published=progress.published,
        rejected=progress.rejected,
        dead_lettered=progress.dead_lettered,
        split_steps=seen["split_steps"],
        checks=seen["checks"],
        history_events=seen["events"],
        status=seen["status"],
        ledger_writes=writes,
        splitter_peak_rss_mb=round(max(memory.peak_kb.values(), default=0) / 1024, 1),
        splitter_containers=len(memory.peak_kb),
    )
    # the whole file, at the rates seen (the first split step includes the structural check)
    split_rate = seen["emitted"] / elapsed if seen["emitted"] else 0.0
    drain_rate = progress.terminal / elapsed if progress.terminal else 0.0
    per_step = seen["events"] / max(1, seen["split_steps"] + seen["checks"])
    if split_rate and drain_rate:
        split_seconds = args.records / split_rate
        drain_seconds = args.records / drain_rate
        step_seconds = elapsed / max(1, seen["split_steps"])  # the local time budget, in effect
        steps = max(seen["split_steps"], math.ceil(split_seconds / step_seconds))
        checks_local = checks_for(max(0.0, drain_seconds - split_seconds), BASE_WAIT_LOCAL)
        result["extrapolated"] = {
            "split_records_per_second": round(split_rate, 1),
            "terminal_records_per_second": round(drain_rate, 1),
            "hours_to_split": round(split_seconds / 3600, 1),
            "hours_to_drain": round(drain_seconds / 3600, 1),
            "split_steps": steps,
            "checks_after_the_split": checks_local,
            "history_events": round(steps * 7 + checks_local * 9 + 4),
            "history_events_per_step_seen": round(per_step, 2),
        }
    (OUT / "million.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
