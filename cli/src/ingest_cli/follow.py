"""Follow one file through the pipeline and sum up where every record ended."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from contracts.messages import FileRef, file_id
from servicekit.ledger import FileProgress, Ledger, RecordStatus, Settled
from servicekit.objects import object_version
from servicekit.store import Store

TERMINAL_EXECUTION = ("SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED")
QUEUES = (
    "gro-file-arrivals",
    "gro-records-to-transform",
    "gro-events-to-publish",
    "gro-events-consumed",
)


class Summary(msgspec.Struct, kw_only=True):
    """`ingest run`'s summary, one object."""

    file: str
    file_id: str
    status: str
    records: int
    emitted: int
    transformed: int
    rejected: int
    published: int
    enriched: int | None
    consumed: int | None
    deleted: int | None
    dead_lettered: int
    source_deleted: bool
    seconds: float
    stored: int
    queues: dict[str, int]
    reason: str | None = None
    ok: bool = False


def upload(clients: Callable[[str], Any], path: Path, key: str | None = None) -> FileRef:
    """Put a file under incoming/ in the landing bucket; return the object version."""
    exports = _exports(clients)
    bucket = exports["gro-foundation-LandingBucketName"]
    key = key or f"incoming/{path.name}"
    s3 = clients("s3")
    s3.upload_file(str(path), bucket, key)
    version = s3.head_object(Bucket=bucket, Key=key).get("VersionId")
    return FileRef(bucket=bucket, key=key, version_id=version)


def _exports(clients: Callable[[str], Any]) -> dict[str, str]:
    pages = clients("cloudformation").get_paginator("list_exports").paginate()
    return {e["Name"]: e["Value"] for page in pages for e in page.get("Exports", [])}


def _queue_depths(clients: Callable[[str], Any]) -> dict[str, int]:
    sqs = clients("sqs")
    depths = {}
    for name in QUEUES:
        for queue in (name, f"{name}-dlq"):
            url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
            attrs = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            depths[queue] = int(attrs["ApproximateNumberOfMessages"]) + int(
                attrs["ApproximateNumberOfMessagesNotVisible"]
            )
    return depths


def _execution(clients: Callable[[str], Any], arn: str, fid: str) -> dict[str, Any] | None:
    execution_arn = arn.replace(":stateMachine:", ":execution:") + f":{fid}"
    sfn = clients("stepfunctions")
    try:
        return dict(sfn.describe_execution(executionArn=execution_arn))
    except sfn.exceptions.ExecutionDoesNotExist:
        return None


def _source_exists(clients: Callable[[str], Any], file: FileRef) -> bool:
    s3 = clients("s3")
    try:
        s3.head_object(**object_version(file))
        return True
    except s3.exceptions.ClientError:
        return False


STORE_COUNT_SECONDS = 10.0


class LedgerLooks:
    """One file's standing in the ledger, looked at again and again while it is followed.

    Each look reads only the blocks not yet complete: a complete block stays complete
    (`Ledger.progress` with `settled`). A 10,000-record file has 40 blocks, and reading all of
    them every second was the largest part of what following a run cost the local cloud (and
    on AWS, read units for every block, every second). `exact` reads every block once, for
    the summary: counts by status as they are now, a redriven record where it ended last."""

    def __init__(self, ledger: Ledger, fid: str) -> None:
        self._ledger = ledger
        self._fid = fid
        self._settled: Settled | None = None

    def look(self) -> FileProgress:
        state = self._ledger.progress(self._fid, settled=self._settled)
        self._settled = state.settled
        return state

    def exact(self) -> FileProgress:
        return self._ledger.progress(self._fid)


def follow(
    clients: Callable[[str], Any],
    file: FileRef,
    *,
    platform_stats: Callable[[], Any] | None,
    timeout: float,
    progress: Callable[[str], None],
    started: float | None = None,
    settled: Callable[[], bool] = lambda: True,
) -> Summary:
    """Watch the file until its execution ends (and, with the simulator, consumption settles)."""
    started = started or time.monotonic()
    exports = _exports(clients)
    ledger_table = exports["gro-foundation-LedgerName"]
    store_table = exports["gro-foundation-TemporaryStoreName"]
    db = clients("dynamodb")
    ledger = Ledger(db, ledger_table)
    store = Store(db, store_table)
    fid = file_id(file)
    last_line = ""
    deadline = started + timeout
    # the platform's counters are its own, since it started: count from here
    base = platform_stats() if platform_stats else None
    base_enriched, base_consumed = (base.enriched, base.consumed) if base else (0, 0)
    counted_at = float("-inf")
    stored = 0
    looks = LedgerLooks(ledger, fid)
    while True:
        state = looks.look()
        execution = _execution(clients, exports["gro-foundation-StateMachineArn"], fid)
        status = execution["status"] if execution else "PENDING"
        stats = platform_stats() if platform_stats else None
        terminal = status in TERMINAL_EXECUTION
        quiet = terminal and (stats is None or settled())
        # Counting the store reads every item in it (a Scan: on AWS, read units for the whole
        # table): while the run goes on, every STORE_COUNT_SECONDS; once it may be over, at
        # every look, so that the end is seen at once and counted exactly.
        if quiet or time.monotonic() - counted_at >= STORE_COUNT_SECONDS:
            stored = store.count_for_file(fid)
            counted_at = time.monotonic()
        line = (
            f"{status.lower():9} emitted {state.emitted if state.emitted is not None else '?'}"
            f" | published {state.published} | rejected {state.rejected}"
            f" | dead-lettered {state.dead_lettered} | in store {stored}"
        )
        if stats is not None:
            enriched, consumed = stats.enriched - base_enriched, stats.consumed - base_consumed
            line += f" | enriched {enriched} | consumed {consumed}"
        if line != last_line:
            progress(f"[{time.monotonic() - started:6.1f}s] {line}")
            last_line = line
        done = terminal
        if done and stats is not None and status == "SUCCEEDED":
            # the platform's consumers and the reaper finish after the file does
            done = stored == 0 and quiet
        if done or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    if not quiet:  # out of time: the summary's count is taken now, not up to a period ago
        stored = store.count_for_file(fid)
    state = looks.exact()
    emitted = state.emitted or 0
    transformed = state.published + _dead_lettered_after_transform(db, ledger_table, fid, state)
    reason = state.reason
    if execution and execution.get("status") == "FAILED":
        reason = reason or _failure_reason(execution)
    elif status not in TERMINAL_EXECUTION:
        reason = f"timed out after {timeout:.0f} s while {status.lower()}"
    summary = Summary(
        file=file.key,
        file_id=fid,
        status=status,
        records=emitted,
        emitted=emitted,
        transformed=transformed,
        rejected=state.rejected,
        published=state.published,
        enriched=stats.enriched - base_enriched if stats else None,
        consumed=stats.consumed - base_consumed if stats else None,
        deleted=(state.published - stored) if stats else None,
        dead_lettered=state.dead_lettered,
        source_deleted=not _source_exists(clients, file),
        seconds=round(time.monotonic() - started, 2),
        stored=stored,
        queues=_queue_depths(clients),
        reason=reason,
    )
    every_record_terminal = status == "SUCCEEDED" and state.terminal == emitted
    if stats is not None:
        every_record_terminal = every_record_terminal and stored == 0
    summary.ok = every_record_terminal and summary.source_deleted
    return summary


def _dead_lettered_after_transform(db: Any, table: str, fid: str, state: FileProgress) -> int:
    """Dead-lettered records that had become events (the publisher's, which carry an id)."""
    if state.dead_lettered == 0:
        return 0
    pages = db.get_paginator("scan").paginate(
        TableName=table,
        FilterExpression="begins_with(pk, :p) AND #s = :d AND event_id <> :empty",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":p": {"S": f"rec#{fid}#"},
            ":d": {"S": RecordStatus.DEAD_LETTERED.value},
            ":empty": {"S": ""},
        },
        Select="COUNT",
    )
    return sum(int(page.get("Count", 0)) for page in pages)


def _failure_reason(execution: dict[str, Any]) -> str:
    """An execution's error as one line: the error and its message, never a stack trace."""
    error, cause = execution.get("error", "failed"), execution.get("cause", "")
    try:
        body = json.loads(cause)
        if isinstance(body, dict) and "errorMessage" in body:
            return f"{body.get('errorType', error)}: {body['errorMessage']}"
    except ValueError:
        pass
    return f"{error}: {cause.splitlines()[0] if cause else ''}".rstrip(": ")


def format_summary(summary: Summary) -> str:
    """The summary per stage, for people."""
    rows = [
        ("file", f"{summary.file} ({summary.status.lower()})"),
        ("records", summary.records),
        ("split: emitted", summary.emitted),
        ("transformer: transformed", summary.transformed),
        ("transformer: rejected", summary.rejected),
        ("publisher: published", summary.published),
        ("platform: enriched", summary.enriched if summary.enriched is not None else "n/a"),
        ("platform: consumed", summary.consumed if summary.consumed is not None else "n/a"),
        ("reaper: deleted from store", summary.deleted if summary.deleted is not None else "n/a"),
        ("dead-lettered", summary.dead_lettered),
        ("reaper: source deleted", "yes" if summary.source_deleted else "no"),
        ("seconds", summary.seconds),
    ]
    width = max(len(k) for k, _ in rows)
    out = [f"{k:<{width}}  {v}" for k, v in rows]
    busy = {q: n for q, n in summary.queues.items() if n}
    out.append(f"{'messages left':<{width}}  {busy or 'none'}")
    if summary.reason:
        out.append(f"{'reason':<{width}}  {summary.reason}")
    if summary.dead_lettered:
        out.append(
            f"{summary.dead_lettered} records were dead-lettered: `ingest status FILE` groups "
            "them by reason; `ingest dlq list`, fix, `ingest dlq redrive QUEUE`"
        )
    out.append("OK: every record reached a terminal state" if summary.ok else "NOT OK: see above")
    return "\n".join(out)
