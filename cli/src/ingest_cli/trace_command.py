"""`ingest trace EVENT_ID` and `ingest trace --file KEY`: a record's or a file's life, from X-Ray.

Where the traces come from is decided as for `ingest dlq`: `--endpoint-url URL`, else the
running local cloud (`ingest up`), else AWS with the default boto3 session. On AWS, X-Ray's
FilterExpression finds the traces (`annotation.event_id = "ID"`, `annotation.file_id ...`); on a
local cloud, whose moto stores segments but cannot filter them, every trace of the window is
read and the same selection is made here (`ingest_cli.traces`).

Needs the `cloud` extra; `ingest_cli.cloud_parsers` holds the arguments and imports this module
only when `ingest trace` runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ingest_cli import traces
from ingest_cli.cloud_commands import _clients_for, running_cloud


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _xray(args: argparse.Namespace) -> tuple[Any, bool] | None:
    """(an X-Ray client, whether it is a local cloud), as `ingest dlq` chooses; None: nowhere."""
    if args.endpoint_url:
        return _clients_for(args.endpoint_url)("xray"), True
    state = running_cloud()
    if state is not None:
        return _clients_for(state["endpoint"])("xray"), True
    import boto3

    session = boto3.session.Session()
    if session.get_credentials() is None:
        _say(
            "ingest trace: no local cloud is running, no --endpoint-url and no AWS credentials: "
            "nowhere to look"
        )
        return None
    return session.client("xray"), False


def trace(args: argparse.Namespace) -> int:
    """`ingest trace EVENT_ID` / `ingest trace --file KEY`."""
    wanted = args.file if args.file else args.event_id
    if args.since <= 0:
        _say("ingest trace: --since must be more than 0 hours")
        return 2
    if not traces.safe_value(wanted):
        _say("ingest trace: an event id or file key has only letters, digits and ._:/+=@-")
        return 2
    if getattr(args, "from_file", None):
        saved = saved_documents(args.from_file)
        source: Any = _Saved(saved)
        local = True
    else:
        found = _xray(args)
        if found is None:
            return 1
        source, local = found
    xray = source
    since_s = args.since * 3600.0
    try:
        if args.file:
            return _file(args, xray, local, since_s)
        return _event(args, xray, local, since_s)
    except (BotoCoreError, ClientError) as err:  # AWS's messages name no record content
        _say(f"ingest trace: {err}")
        return 1


def saved_documents(path: str) -> list[dict[str, Any]]:
    """The trace documents a run saved, one JSON document a line."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


class _Saved:
    """A saved run's traces, answering the two X-Ray calls `traces.fetch` makes."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self._by_trace: dict[str, list[str]] = {}
        for document in documents:
            trace_id = str(document.get("trace_id", ""))
            self._by_trace.setdefault(trace_id, []).append(json.dumps(document))

    def get_paginator(self, operation: str) -> Any:
        saved = self

        class _Pages:
            def paginate(self, **kwargs: Any) -> Any:
                if operation == "get_trace_summaries":
                    yield {"TraceSummaries": [{"Id": t} for t in saved._by_trace]}
                else:
                    wanted = kwargs.get("TraceIds", [])
                    yield {
                        "Traces": [
                            {"Id": t, "Segments": [{"Document": d} for d in saved._by_trace[t]]}
                            for t in wanted
                            if t in saved._by_trace
                        ]
                    }

        return _Pages()


def _window(hours: float) -> str:
    return f"{hours:g} h"


def _event(args: argparse.Namespace, xray: Any, local: bool, since_s: float) -> int:
    event_id = args.event_id
    documents = traces.fetch(
        xray, since_s=since_s, filter_expression=traces.event_filter(event_id), local=local
    )
    record = traces.record_steps(documents, event_id)
    splits = [s for s in record.steps if s.operation == "split"]
    if record.steps and not splits and record.file_id and not local:
        # On AWS the split step may sit in another trace than the record's: ask for it.
        documents += traces.fetch(
            xray,
            since_s=since_s,
            filter_expression=traces.split_filter(record.file_id),
            local=False,
        )
        record = traces.record_steps(documents, event_id)
    if not record.steps:
        _say(f"ingest trace: no trace of event {event_id} in the last {_window(args.since)}")
        return 1
    if args.json:
        print(json.dumps([step.to_json() for step in record.steps]))
        return 0
    invocations = {f: n for f, n in record.attempts().items() if n > 1}
    head = f"event {event_id}"
    if record.file_id:
        head += f": file {record.file_id}"
    if record.ordinal is not None:
        head += f", record {record.ordinal}"
    if invocations:
        head += "; invoked more than once: " + ", ".join(
            f"{f} {n} times" for f, n in sorted(invocations.items())
        )
    print(head)
    first = record.steps[0].start
    rows = [["START", "+S", "SERVICE", "VERSION", "OPERATION", "DURATION_MS", "OUTCOME"]]
    for step in record.steps:
        rows.append(
            [
                step.to_json()["start"],
                f"{step.start - first:.3f}",
                step.service or "-",
                step.service_version or "-",
                _operation(step),
                f"{step.duration_ms:.1f}",
                _outcome(step),
            ]
        )
    print("\n".join(_table(rows)))
    return 0


def _outcome(step: traces.Step) -> str:
    status = step.http_status
    return (
        step.outcome
        if status is None or str(status) == step.outcome
        else f"{step.outcome} ({status})"
    )


def _operation(step: traces.Step) -> str:
    if step.kind == "function":
        return f"{step.function} #{step.attempt}"
    if step.kind == "wait":
        return f"~ wait for {step.function} #{step.attempt}"
    return "  " * step.depth + step.operation


def _file(args: argparse.Namespace, xray: Any, local: bool, since_s: float) -> int:
    key = args.file
    documents = traces.fetch(
        xray, since_s=since_s, filter_expression=traces.file_filter(key), local=local
    )
    summaries = traces.file_summaries(documents, key)
    if not summaries:
        _say(f"ingest trace: no trace of file {key} in the last {_window(args.since)}")
        return 1
    if args.json:
        print(json.dumps(summaries))
        return 0
    for n, summary in enumerate(summaries):
        if n:
            print()
        print(
            f"file {summary['file_id']}: {summary['records']} records traced, "
            f"{summary['first_start']} .. {summary['last_end']}"
        )
        rows = [["SERVICE", "OPERATION", "COUNT", "P50_MS", "P95_MS", "MAX_MS", "FAILURES"]]
        for stage in summary["stages"]:
            rows.append(
                [
                    stage["service"],
                    stage["operation"],
                    str(stage["count"]),
                    f"{stage['p50_ms']:.1f}",
                    f"{stage['p95_ms']:.1f}",
                    f"{stage['max_ms']:.1f}",
                    str(stage["failures"]),
                ]
            )
        print("\n".join(_table(rows)))
        if summary["slowest"]:
            print("slowest records (first step to last):")
            for row in summary["slowest"]:
                print(f"  {row['event_id']}  {row['elapsed_ms']:.1f} ms")
        if summary["failed"]:
            print("failed records:")
            for row in summary["failed"]:
                last = row["last_failure"]
                print(
                    f"  {row['event_id']}  {last['outcome']} in {last['service']} "
                    f"{last['operation']} at {last['at']}; finally {row['final_outcome']}"
                )
    return 0


def _table(rows: list[list[str]]) -> Iterator[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        yield "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
