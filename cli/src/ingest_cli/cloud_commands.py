"""`ingest up`, `ingest run`, `ingest status`, `ingest deploy`: the pipeline on a cloud.

Needs the `cloud` extra; `ingest_cli.cloud_parsers` holds these commands' arguments and imports
this module only when one of them runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from contracts.receipts import DeletionReceipt
from deploytools import deploy as aws_deployer
from deploytools import releases
from deploytools.stacks import SERVICES, stack_name
from ingest_cli import cost as costs
from ingest_cli import receipts as receipt_files
from ingest_cli.cloud_parsers import alive
from ingest_cli.follow import follow, format_summary, upload
from localcloud import deploy as local_deployer
from localcloud import faults
from localcloud.cloud import STATE_FILE, ExternalPlatform, LocalCloud
from servicekit.ledger import Ledger, RecordEnding


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _http_json(url: str, timeout: float = 2.0) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    with opener.open(url, timeout=timeout) as answer:
        return json.loads(answer.read())


STARTING_WAIT_SECONDS = 600


def running_cloud(wait: bool = True) -> dict[str, Any] | None:
    """The state of an `ingest up` answering on 127.0.0.1, if there is one; one still starting
    (deploying its stacks) is waited for, so `ingest up &` can be followed by any command."""
    deadline = time.monotonic() + STARTING_WAIT_SECONDS
    said = False
    while True:
        try:
            state: dict[str, Any] = json.loads(STATE_FILE.read_text())
        except (OSError, ValueError):  # no file, or one being written
            return None
        if state.get("starting") and wait and alive(state.get("pid")):
            if not said:
                _say("waiting for the local cloud that `ingest up` is starting")
                said = True
            if time.monotonic() > deadline:
                return None
            time.sleep(1.0)
            continue
        try:
            _clients_for(state["endpoint"])("sts").get_caller_identity()
            return state
        except Exception:  # a stale file, nothing answering: no cloud
            return None


def _clients_for(endpoint: str) -> Callable[[str], Any]:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        region_name="us-east-1",
    )
    lock = threading.Lock()
    made: dict[str, Any] = {}

    def client(service: str) -> Any:
        with lock:
            if service not in made:
                made[service] = session.client(
                    service,
                    endpoint_url=endpoint,
                    config=Config(retries={"max_attempts": 3}, connect_timeout=2),
                )
            return made[service]

    return client


@contextlib.contextmanager
def _log_file(path: str | None) -> Iterator[IO[str] | None]:
    if path is None:
        yield None
        return
    with open(path, "w", encoding="utf-8") as handle:
        yield handle


def up(args: argparse.Namespace) -> int:
    """Run the local cloud in the foreground until Ctrl-C."""
    if running_cloud(wait=False) is not None:
        _say(f"ingest up: a local cloud is already running ({STATE_FILE})")
        return 1
    stop = threading.Event()
    # Ctrl-C and kill both stop it cleanly (a background job may have SIGINT ignored otherwise)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _log_file(args.logs) as logs:
        cloud = LocalCloud(
            consumers=args.consumers,
            port=args.port,
            log_file=logs,
            say=_say,
            faults=faults.parse(args.fault),
        )
        try:
            # (the "starting" state other commands wait for is written by the shim that loaded
            # this, `cloud_parsers._up`, before the load: the one way into this command)
            cloud.start()
            cloud.write_state_file()
            print(cloud.endpoint, flush=True)
            _say("ready: `ingest run FILE` in another terminal; Ctrl-C to stop")
            with contextlib.suppress(KeyboardInterrupt):
                while not stop.wait(0.5):
                    pass
        finally:
            with contextlib.suppress(OSError):
                STATE_FILE.unlink()
            cloud.stop()
    return 0


def _external(args: argparse.Namespace) -> ExternalPlatform | None:
    given = [args.platform_url, args.token_url, args.client_id, args.client_secret]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("--platform-url, --token-url, --client-id and --client-secret go together")
    return ExternalPlatform(args.platform_url, args.token_url, args.client_id, args.client_secret)


def run(args: argparse.Namespace) -> int:
    """Ingest one file on the running local cloud, or on one started for this command."""
    path = Path(args.file)
    if not path.is_file():
        _say(f"ingest run: {path}: no such file")
        return 1
    external = _external(args)
    injected = faults.parse(args.fault)  # refuse a bad spec before anything starts
    started = time.monotonic()
    state = running_cloud() if external is None else None
    with _log_file(args.logs) as logs:
        if state is not None:
            _say(f"using the local cloud at {state['endpoint']} (ingest up)")
            if args.fault:
                _put_faults(state, args.fault)
            clients = _clients_for(state["endpoint"])
            platform_url = state.get("platform_url")

            def stats() -> Any:
                return msgspec.convert(_http_json(f"{platform_url}/simulator/stats"), _Stats)

            mark = _usage_mark(state)
            summary = follow(
                clients,
                upload(clients, path),
                platform_stats=stats if platform_url else None,
                timeout=args.timeout,
                progress=_say,
                started=started,
                settled=lambda: bool(stats().idle),
            )
            usage = _usage_since(state, mark)
            transitions = _state_transitions(clients, summary.file_id)
        else:
            with LocalCloud(
                consumers=args.consumers,
                log_file=logs,
                external=external,
                say=_say,
                faults=injected if args.fault else None,
            ) as cloud:
                platform = cloud.platform
                assert cloud.moto is not None
                local_mark = cloud.moto.usage.mark()
                summary = follow(
                    cloud.client,
                    upload(cloud.client, path),
                    platform_stats=(lambda: platform.stats(with_ids=False)) if platform else None,
                    timeout=args.timeout,
                    progress=_say,
                    started=started,
                    settled=lambda: bool(
                        platform is None
                        or (platform.wait_idle(0) and cloud.pollers and cloud.pollers.idle())
                    ),
                )
                if cloud.xray is not None:
                    cloud.xray.flush()  # the traces recorded are counted as they are stored
                usage = cloud.moto.usage.since(local_mark)
                transitions = _state_transitions(cloud.client, summary.file_id)
                if args.traces and cloud.xray is not None:
                    cloud.xray.flush()
                    _save_traces(cloud.client, args.traces, summary.file_id)
    if args.traces and state is not None:
        _save_traces(_clients_for(state["endpoint"]), args.traces, summary.file_id)
    document: dict[str, Any] = msgspec.to_builtins(summary)
    if usage is not None:
        document.update(costs.summarise(usage, summary.emitted, transitions))
    _keep_last_run(document)
    if args.json:
        print(json.dumps(document))
    else:
        print(format_summary(summary))
        if usage is not None:
            print(costs.format_calls(document))
    return 0 if summary.ok else 1


def _usage_mark(state: dict[str, Any]) -> int | None:
    """Remember the running cloud's AWS usage before a run (None: this cloud does not count)."""
    try:
        return int(_control(state, "POST", path="/calls/mark")["mark"])
    except (ValueError, KeyError, OSError):
        return None


def _usage_since(state: dict[str, Any], mark: int | None) -> dict[str, Any] | None:
    """The running cloud's AWS usage since `mark`: the run's (localcloud.calls)."""
    if mark is None:
        return None
    try:
        usage: dict[str, Any] = _control(state, "GET", path=f"/calls?since={mark}")["usage"]
    except (ValueError, KeyError, OSError) as err:
        _say(f"ingest run: the local cloud's usage could not be read ({err})")
        return None
    return usage


def _state_transitions(clients: Callable[[str], Any], fid: str) -> int | None:
    """The state transitions of a file's execution, as Step Functions bills them: each state
    entered, and each retry of a task."""
    try:
        exports = clients("cloudformation").get_paginator("list_exports").paginate()
        machine = next(
            e["Value"]
            for page in exports
            for e in page.get("Exports", [])
            if e["Name"] == "gro-foundation-StateMachineArn"
        )
        arn = machine.replace(":stateMachine:", ":execution:") + f":{fid}"
        pages = (
            clients("stepfunctions")
            .get_paginator("get_execution_history")
            .paginate(executionArn=arn)
        )
        kinds = [event["type"] for page in pages for event in page.get("events", [])]
    except Exception as err:  # no execution (refused before it started), or none to read
        _say(f"ingest run: no state transitions counted ({type(err).__name__})")
        return None
    entered = sum(kind.endswith("StateEntered") for kind in kinds)
    attempts = sum(kind in ("TaskScheduled", "LambdaFunctionScheduled") for kind in kinds)
    return entered + max(0, attempts - kinds.count("TaskStateEntered"))


def _keep_last_run(document: dict[str, Any]) -> None:
    """Keep the run's summary, counts included, for `ingest cost` (best effort)."""
    path = costs.last_run_path()
    try:
        costs.write_whole(path, document)
    except OSError as err:
        _say(f"ingest run: could not keep the run's counts in {path}: {err.strerror or err}")


def _save_traces(clients: Callable[[str], Any], path: str, fid: str) -> None:
    """Keep the run's X-Ray documents (ids, timings and outcomes only) for `ingest trace --from`,
    and say how to look at one record's life."""
    from ingest_cli import traces

    documents = traces.fetch(clients("xray"), since_s=6 * 3600, filter_expression=None, local=True)
    with open(path, "w", encoding="utf-8") as out:
        for document in documents:
            out.write(json.dumps(document) + "\n")
    ids = sorted(traces.event_ids_of_file(documents, fid))
    _say(f"{len(documents)} trace documents saved in {path}")
    if ids:
        _say(f"the life of one record: ingest trace {ids[0]} --from {path}")


def _control(
    state: dict[str, Any], method: str, body: dict[str, Any] | None = None, path: str = "/faults"
) -> Any:
    url = state.get("control_url")
    if not url:
        raise ValueError("this local cloud has no control endpoint (restart `ingest up`)")
    request = urllib.request.Request(  # noqa: S310 - the loopback URL the cloud wrote itself
        f"{url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    try:
        with opener.open(request, timeout=5) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as err:
        raise ValueError(json.loads(err.read() or b"{}").get("error", str(err))) from None


def _put_faults(state: dict[str, Any], specs: list[str]) -> list[str]:
    in_force: list[str] = _control(state, "PUT", {"faults": specs})["faults"]
    _say(f"faults in force: {' '.join(in_force) or 'none'}")
    return in_force


def fault(args: argparse.Namespace) -> int:
    """Set, list or clear the faults of the running local cloud."""
    state = running_cloud()
    if state is None:
        _say("ingest fault: no local cloud is running (start one with `ingest up`)")
        return 1
    if args.spec == ["clear"]:
        in_force: list[str] = _control(state, "DELETE")["faults"]
    elif args.spec:
        faults.parse(args.spec)  # a bad spec is refused here, with its reason
        in_force = _control(state, "PUT", {"faults": args.spec})["faults"]
    else:
        in_force = _control(state, "GET")["faults"]
    if args.json:
        print(json.dumps({"faults": in_force}))
    else:
        print("\n".join(in_force) if in_force else "no faults in force")
    return 0


class _Stats(msgspec.Struct):
    enriched: int
    consumed: int
    idle: bool = False


def status(args: argparse.Namespace) -> int:
    """Where a file (or every file) is in the pipeline of the running local cloud."""
    state = running_cloud() if not args.endpoint_url else None
    endpoint = args.endpoint_url or (state or {}).get("endpoint")
    if not endpoint:
        _say("ingest status: no local cloud is running (start one with `ingest up`)")
        return 1
    totals = _control(state, "GET", path="/metrics")["metrics"] if state else None
    if args.metrics:
        if totals is None:
            _say("ingest status --metrics: only a running local cloud keeps them (AWS: CloudWatch)")
            return 1
        print(json.dumps({"metrics": totals}) if args.json else _format_metrics(totals))
        return 0
    clients = _clients_for(endpoint)
    export_pages = clients("cloudformation").get_paginator("list_exports").paginate()
    exports = {e["Name"]: e["Value"] for page in export_pages for e in page.get("Exports", [])}
    sfn = clients("stepfunctions")
    execution_pages = sfn.get_paginator("list_executions").paginate(
        stateMachineArn=exports["gro-foundation-StateMachineArn"]
    )
    ledger = Ledger(clients("dynamodb"), exports["gro-foundation-LedgerName"])
    rows = []
    for execution in (e for page in execution_pages for e in page.get("executions", [])):
        described = sfn.describe_execution(executionArn=execution["executionArn"])
        state = json.loads(described["input"])
        key = state["file"]["key"]
        fid = execution["name"]  # FILE names a file by its key, its key's name, or its id
        if args.file and args.file not in (key, fid) and Path(args.file).name != Path(key).name:
            continue
        progress = ledger.progress(execution["name"])
        row: dict[str, Any] = {
            "file": key,
            "file_id": execution["name"],
            "status": execution["status"],
            "emitted": progress.emitted,
            "published": progress.published,
            "rejected": progress.rejected,
            "dead_lettered": progress.dead_lettered,
            "terminal": progress.terminal,
            "reason": progress.reason,
            "handled_by": list(progress.handled_by),
        }
        if args.file:  # the detail an operator asks for about one file
            row.update(_endings(ledger.record_endings(execution["name"])))
            receipt = receipt_files.read(clients, exports[receipt_files.BUCKET_EXPORT], fid)
            row["receipt"] = receipt_files.as_json(receipt) if receipt else None
        rows.append(row)
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("no file has been ingested" + (f" matching {args.file}" if args.file else ""))
    for row in [] if args.json else rows:
        print(
            f"{row['file']}: {row['status'].lower()}; emitted {row['emitted']}, published "
            f"{row['published']}, rejected {row['rejected']}, dead-lettered "
            f"{row['dead_lettered']}" + (f"; {row['reason']}" if row["reason"] else "")
        )
        for status_name, reasons in row.get("reasons", {}).items():
            print(f"  {status_name.replace('_', '-')} now, by reason:")
            for reason, count in reasons.items():
                print(f"    {count:>6}  {reason}")
        for move, count in row.get("moved", {}).items():
            print(f"  redriven: {count} moved {move.replace('_', '-')}")
        if args.file and row["handled_by"]:
            print(f"  ended by: {', '.join(row['handled_by'])}")
        if args.file:
            receipt = row["receipt"] and msgspec.convert(row["receipt"], DeletionReceipt)
            print("\n".join(receipt_files.describe(receipt)) if receipt else "  no receipt yet")
    if totals and not args.json:
        print(_format_metrics(totals))
    return 0 if rows or not args.file else 1


def receipts(args: argparse.Namespace) -> int:
    """`ingest receipts` on --endpoint-url, else the running local cloud, else AWS."""
    endpoint = args.endpoint_url or (running_cloud() or {}).get("endpoint")
    return receipt_files.command(args, _clients_for(endpoint) if endpoint else None)


def _format_metrics(totals: dict[str, dict[str, float]]) -> str:
    lines = ["metrics since the local cloud started (embedded metrics, summed):"]
    for service, names in sorted(totals.items()):
        shown = ", ".join(f"{name} {value:g}" for name, value in sorted(names.items()))
        lines.append(f"  {service}: {shown}")
    return "\n".join(lines)


def _endings(endings: list[RecordEnding]) -> dict[str, Any]:
    """Records still rejected or dead-lettered, grouped by reason; and what moved (redrives)."""
    reasons: dict[str, dict[str, int]] = {}
    moved: dict[str, int] = {}
    for ending in endings:
        if ending.moved_from:
            move = f"{ending.moved_from} -> {ending.status}"
            moved[move] = moved.get(move, 0) + 1
        if ending.status == "published":
            continue
        by_reason = reasons.setdefault(ending.status, {})
        reason = "; ".join(ending.reasons) or "no reason recorded"
        by_reason[reason] = by_reason.get(reason, 0) + 1
    ordered = {
        status: dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        for status, counts in sorted(reasons.items())
    }
    return {"reasons": ordered, "moved": moved}


def deploy(args: argparse.Namespace) -> int:
    """Package and deploy one stack to a local cloud (--endpoint-url) or to AWS."""
    parameters = dict(p.split("=", 1) for p in args.parameter)
    if args.endpoint_url:
        outputs = local_deployer.deploy(
            _clients_for(args.endpoint_url),
            args.stack,
            parameters=parameters,
            log=_say,
            version=args.version,
        )
    else:
        import boto3

        session = boto3.session.Session()
        if session.get_credentials() is None:
            _say("ingest deploy: no --endpoint-url and no AWS credentials: nothing to deploy to")
            return 1
        outputs = aws_deployer.deploy(
            session.client,
            args.stack,
            parameters=parameters,
            for_aws=True,
            log=_say,
            version=args.version,
        )
    for key, value in sorted(outputs.items()):
        print(f"{key}\t{value}")
    return 0


def versions(args: argparse.Namespace) -> int:
    """What release of each service runs, with its contracts, and whether they fit together."""
    endpoint = args.endpoint_url or (running_cloud() or {}).get("endpoint")
    if endpoint:
        clients = _clients_for(endpoint)
    else:
        import boto3

        session = boto3.session.Session()
        if session.get_credentials() is None:
            _say("ingest versions: no local cloud is running and no AWS credentials")
            return 1
        clients = session.client
    cfn = clients("cloudformation")
    rows: list[dict[str, Any]] = []
    deployed: dict[str, tuple[dict[str, int], dict[str, list[int]]]] = {}
    for service in SERVICES:
        try:
            stack = cfn.describe_stacks(StackName=stack_name(service))["Stacks"][0]
        except cfn.exceptions.ClientError:
            rows.append({"service": service, "version": None, "deployed": False})
            continue
        found = {t["Key"]: t["Value"] for t in stack.get("Tags", [])}
        produces = releases.parse_produces(found.get(releases.TAG_PRODUCES, ""))
        accepts = releases.parse_accepts(found.get(releases.TAG_ACCEPTS, ""))
        deployed[service] = (produces, accepts)
        updated = stack.get("LastUpdatedTime") or stack.get("CreationTime")
        rows.append(
            {
                "service": service,
                "version": found.get(releases.TAG_VERSION),
                "deployed": True,
                "deployed_at": updated.isoformat() if updated else None,
                "produces": produces,
                "accepts": accepts,
            }
        )
    warnings = releases.mismatches(deployed)
    if args.json:
        print(json.dumps({"services": rows, "warnings": warnings}))
    else:
        for row in rows:
            if not row["deployed"]:
                print(f"{row['service']:<12} not deployed")
                continue
            made = " ".join(f"{k}@{v}" for k, v in sorted(row["produces"].items()))
            read = " ".join(
                f"{k}@{','.join(map(str, v))}" for k, v in sorted(row["accepts"].items())
            )
            print(f"{row['service']:<12} {row['version'] or '?':<24} {row['deployed_at']}")
            print(f"{'':<12} produces {made or '-'}; accepts {read or '-'}")
        for warning in warnings:
            _say(f"WARNING: {warning}")
    return 1 if warnings else 0
