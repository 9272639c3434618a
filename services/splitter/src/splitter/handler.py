"""Lambda entry points of the splitter: `start` (a file landed) and `split` (a state step).

Each parses its event, calls the domain (`splitter.ingest`) with the container's app, returns.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

import msgspec
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts.messages import FileRef, file_id
from servicekit import tracing
from servicekit.consumer import consume
from splitter import app
from splitter.app import StartApp, logger, metrics, tracer
from splitter.ingest import (
    FileRefusedError,
    quarantine_failed,
    split_budget,
    split_step,
    start_ingest,
)
from splitter.interface import read_quarantine_input, read_split_input

# Stop this long before the Lambda timeout: enough to flush in-flight batches and answer.
SAFETY_SECONDS = 20.0

__all__ = ["FileRefusedError", "quarantine", "split", "start"]


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def split(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One step of the ingest-file state machine: split from the cursor until time runs out."""
    state = read_split_input(event)
    the = app.split_app()
    fid = file_id(state.file)
    tracing.annotate(
        service="splitter",
        service_version=the.settings.service_version,
        operation="split",
        file_id=fid,
        from_ordinal=state.cursor.emitted + 1,
    )
    logger.append_keys(file_id=fid)
    sink = the.new_sink()
    try:
        out = split_step(
            state,
            files=the.files,
            ledger=the.ledger,
            sink=sink,
            budget_seconds=split_budget(
                the.settings.split_time_budget_seconds,
                context.get_remaining_time_in_millis() / 1000,
                SAFETY_SECONDS,
            ),
            default_wait_seconds=the.settings.record_wait_seconds,
        )
    except FileRefusedError as err:
        tracing.annotate(outcome="refused")
        metrics.add_metric(name="FilesRefused", unit=MetricUnit.Count, value=1)
        logger.warning("file refused", extra={"reason": str(err)})
        raise
    finally:
        sink.close()
    tracing.annotate(to_ordinal=out.cursor.emitted, outcome="done" if out.done else "more")
    metrics.add_metric(name="RecordsEmitted", unit=MetricUnit.Count, value=sink.emitted)
    metrics.add_metric(name="RecordsOversized", unit=MetricUnit.Count, value=sink.rejected)
    logger.info(
        "split step",
        extra={
            "emitted": sink.emitted,
            "rejected_oversized": sink.rejected,
            "cursor": out.cursor.emitted,
            "done": out.done,
        },
    )
    return msgspec.to_builtins(out)


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def quarantine(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The state machine's last word on a split that failed for good: quarantine the file."""
    state = read_quarantine_input(event)
    the = app.quarantine_app()
    fid = file_id(state.file)
    tracing.annotate(
        service="splitter",
        service_version=the.settings.service_version,
        operation="quarantine",
        file_id=fid,
        outcome="quarantined",
    )
    logger.append_keys(file_id=fid)
    reason = quarantine_failed(state, files=the.files, ledger=the.ledger)
    metrics.add_metric(name="FilesQuarantined", unit=MetricUnit.Count, value=1)
    logger.error("split failed; file quarantined", extra={"reason": reason})
    return {"file_id": fid, "reason": reason}


def _candidates(record: SQSRecord) -> list[FileRef]:
    """The file an S3 "Object Created" event (EventBridge, through SQS) names: the key as
    given, then URL-decoded (EventBridge may or may not encode it)."""
    detail = S3EventBridgeNotificationEvent(msgspec.json.decode(record.body)).detail
    # the key as it stands in the event (the data class's `.key` would decode it already)
    key, bucket = detail.object["key"], detail.bucket.name
    version: str | None = detail.object.get("version-id")
    if version == "null":  # S3's name for "this bucket is not versioned"
        version = None
    return [
        FileRef(bucket=bucket, key=k, version_id=version)
        for k in dict.fromkeys((key, unquote_plus(key)))
    ]


def _start_one(the: StartApp, record: SQSRecord) -> None:
    started = start_ingest(
        _candidates(record),
        files=the.files,
        executions=the.executions,
        wait_seconds=the.settings.record_wait_seconds,
    )
    if started is None:
        logger.warning(
            "object gone before its ingest started", extra={"message_id": record.message_id}
        )
        return
    fid, new = started
    metrics.add_metric(
        name="IngestsStarted" if new else "IngestsAlreadyStarted", unit=MetricUnit.Count, value=1
    )
    logger.info("ingest started" if new else "ingest already started", extra={"file_id": fid})


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def start(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """A file landed: start one ingest-file execution, named for the object version."""
    the = app.start_app()  # settings fail here, before any record of the batch
    return consume(event, context, lambda record: _start_one(the, record))
