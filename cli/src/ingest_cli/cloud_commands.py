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
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec

from deploytools import deploy as aws_deployer
from ingest_cli.follow import follow, format_summary, upload
from localcloud import deploy as local_deployer
from localcloud.cloud import STATE_FILE, ExternalPlatform, LocalCloud
from servicekit.ledger import Ledger


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _http_json(url: str, timeout: float = 2.0) -> Any:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    with opener.open(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def running_cloud() -> dict[str, Any] | None:
    """The state of an `ingest up` still answering on 127.0.0.1, if there is one."""
    try:
        state: dict[str, Any] = json.loads(STATE_FILE.read_text())
        _clients_for(state["endpoint"])("sts").get_caller_identity()
        return state
    except Exception:  # no file, a stale file, nothing answering: no cloud
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
    if running_cloud() is not None:
        _say(f"ingest up: a local cloud is already running ({STATE_FILE})")
        return 1
    stop = threading.Event()
    # Ctrl-C and kill both stop it cleanly (a background job may have SIGINT ignored otherwise)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with _log_file(args.logs) as logs:
        cloud = LocalCloud(consumers=args.consumers, port=args.port, log_file=logs, say=_say)
        try:
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
    started = time.monotonic()
    state = running_cloud() if external is None else None
    with _log_file(args.logs) as logs:
        if state is not None:
            _say(f"using the local cloud at {state['endpoint']} (ingest up)")
            clients = _clients_for(state["endpoint"])
            platform_url = state.get("platform_url")

            def stats() -> Any:
                return msgspec.convert(_http_json(f"{platform_url}/simulator/stats"), _Stats)

            summary = follow(
                clients,
                upload(clients, path),
                platform_stats=stats if platform_url else None,
                timeout=args.timeout,
                progress=_say,
                started=started,
                settled=lambda: bool(stats().idle),
            )
        else:
            with LocalCloud(
                consumers=args.consumers, log_file=logs, external=external, say=_say
            ) as cloud:
                platform = cloud.platform
                summary = follow(
                    cloud.client,
                    upload(cloud.client, path),
                    platform_stats=platform.stats if platform else None,
                    timeout=args.timeout,
                    progress=_say,
                    started=started,
                    settled=lambda: bool(
                        platform is None
                        or (platform.wait_idle(0) and cloud.pollers and cloud.pollers.idle())
                    ),
                )
    if args.json:
        print(msgspec.json.encode(summary).decode())
    else:
        print(format_summary(summary))
    return 0 if summary.ok else 1


class _Stats(msgspec.Struct):
    enriched: int
    consumed: int
    idle: bool = False


def status(args: argparse.Namespace) -> int:
    """Where a file (or every file) is in the pipeline of the running local cloud."""
    endpoint = args.endpoint_url or (running_cloud() or {}).get("endpoint")
    if not endpoint:
        _say("ingest status: no local cloud is running (start one with `ingest up`)")
        return 1
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
        if args.file and Path(args.file).name != Path(key).name and args.file != key:
            continue
        progress = ledger.progress(execution["name"])
        rows.append(
            {
                "file": key,
                "status": execution["status"],
                "emitted": progress.emitted,
                "published": progress.published,
                "rejected": progress.rejected,
                "dead_lettered": progress.dead_lettered,
                "terminal": progress.terminal,
                "reason": progress.reason,
            }
        )
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
    return 0 if rows or not args.file else 1


def deploy(args: argparse.Namespace) -> int:
    """Package and deploy one stack to a local cloud (--endpoint-url) or to AWS."""
    parameters = dict(p.split("=", 1) for p in args.parameter)
    if args.endpoint_url:
        outputs = local_deployer.deploy(
            _clients_for(args.endpoint_url), args.stack, parameters=parameters, log=_say
        )
    else:
        import boto3

        session = boto3.session.Session()
        if session.get_credentials() is None:
            _say("ingest deploy: no --endpoint-url and no AWS credentials: nothing to deploy to")
            return 1
        outputs = aws_deployer.deploy(
            session.client, args.stack, parameters=parameters, for_aws=True, log=_say
        )
    for key, value in sorted(outputs.items()):
        print(f"{key}\t{value}")
    return 0
