"""Lambda entry points of the splitter: `start` (a file landed) and `split` (a state step)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import unquote_plus

import boto3
import msgspec
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from contracts import ledger
from contracts.ledger import FileStatus, RecordStatus
from contracts.messages import FileRef, RecordToTransform
from splitter.extract import FileRejectedError
from splitter.sender import BatchSender
from splitter.settings import Settings
from splitter.split import Cursor, split_file

logger = Logger(service="splitter")
tracer = Tracer(service="splitter")
settings = Settings.from_env()
s3 = boto3.client("s3")
sqs = boto3.client("sqs")
dynamodb = boto3.client("dynamodb")
sfn = boto3.client("stepfunctions")
start_processor = BatchProcessor(event_type=EventType.SQS)

QUARANTINE_PREFIX = "quarantine/"
# Stop this long before the Lambda timeout: enough to flush in-flight batches and answer.
SAFETY_SECONDS = 20.0


class FileRefusedError(Exception):
    """The file is structurally bad: moved to quarantine, no record emitted. The state machine
    catches this error by name."""


class SplitState(msgspec.Struct, kw_only=True):
    """The state machine's state between steps: never a record, only where we are."""

    file: FileRef
    cursor: Cursor = Cursor()
    wait_seconds: int | None = None


class _LedgerSink:
    """Records to the records queue; the ones too large to send straight to the ledger."""

    def __init__(self) -> None:
        self.sender = BatchSender(
            sqs,
            settings.records_queue_url,
            settings.send_concurrency,
            max_queue_depth=settings.max_queue_depth,
        )
        self.emitted = 0
        self.rejected = 0

    def emit(self, message: RecordToTransform) -> None:
        self.sender.add(str(message.ordinal), msgspec.json.encode(message))
        self.emitted += 1

    def reject(self, file: FileRef, ordinal: int, reason: str) -> None:
        ledger.record_ended(
            dynamodb, settings.ledger_table, file, ordinal, RecordStatus.REJECTED, reasons=(reason,)
        )
        self.rejected += 1

    def flush(self) -> None:
        self.sender.flush()


@contextlib.contextmanager
def _object_stream(file: FileRef) -> Iterator[BinaryIO]:
    kwargs: dict[str, str] = {"Bucket": file.bucket, "Key": file.key}
    if file.version_id:
        kwargs["VersionId"] = file.version_id
    body = s3.get_object(**kwargs)["Body"]
    try:
        yield body
    finally:
        body.close()


def _quarantine(file: FileRef, reason: str) -> None:
    """Move a refused file aside, with its reason, so the landing prefix holds only work."""
    source: dict[str, str] = {"Bucket": file.bucket, "Key": file.key}
    if file.version_id:
        source["VersionId"] = file.version_id
    s3.copy_object(
        Bucket=file.bucket,
        Key=QUARANTINE_PREFIX + file.key,
        CopySource=source,
        MetadataDirective="REPLACE",
        Metadata={"refusal-reason": reason.encode("ascii", "replace").decode()[:1024]},
    )
    s3.delete_object(**source)


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def split(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One step of the ingest-file state machine: split from the cursor until time runs out."""
    state = msgspec.convert(event, SplitState)
    file = state.file
    fid = ledger.file_id(file)
    tracer.put_annotation("file_id", fid)
    logger.append_keys(file_id=fid)
    started = time.monotonic()
    budget = min(
        settings.split_time_budget_seconds,
        context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS,
    )
    if state.cursor.emitted == 0 and not state.cursor.checked:
        ledger.file_started(dynamodb, settings.ledger_table, file)
    sink = _LedgerSink()
    try:
        result = split_file(
            lambda: _object_stream(file),
            file,
            state.cursor,
            sink,
            out_of_time=lambda: time.monotonic() - started > budget,
            trace_header=os.environ.get("_X_AMZN_TRACE_ID"),
            on_checked=lambda n: ledger.file_checked(dynamodb, settings.ledger_table, file, n),
        )
    except FileRejectedError as err:
        reason = str(err)
        logger.warning("file refused", extra={"reason": reason})
        _quarantine(file, reason)
        ledger.file_ended(dynamodb, settings.ledger_table, file, FileStatus.REFUSED, reason)
        raise FileRefusedError(reason) from None
    finally:
        sink.sender.close()
    if result.done:
        ledger.file_split(dynamodb, settings.ledger_table, file, result.cursor.emitted)
    logger.info(
        "split step",
        extra={
            "emitted": sink.emitted,
            "rejected_oversized": sink.rejected,
            "cursor": result.cursor.emitted,
            "done": result.done,
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    return {
        "file": msgspec.to_builtins(file),
        "cursor": msgspec.to_builtins(result.cursor),
        "done": result.done,
        "wait_seconds": state.wait_seconds or settings.record_wait_seconds,
    }


def _file_from_event(body: str) -> FileRef:
    """An S3 "Object Created" event (from EventBridge, through SQS) as a file reference."""
    detail = json.loads(body)["detail"]
    key = detail["object"]["key"]
    version = detail["object"].get("version-id")
    if version == "null":  # S3's name for "this bucket is not versioned"
        version = None
    bucket = detail["bucket"]["name"]
    for candidate in dict.fromkeys((key, unquote_plus(key))):
        try:
            kwargs = {"Bucket": bucket, "Key": candidate}
            if version:
                kwargs["VersionId"] = version
            s3.head_object(**kwargs)
            return FileRef(bucket=bucket, key=candidate, version_id=version)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
    raise FileNotFoundError("the object named by the event is gone")


def _start_one(record: SQSRecord) -> None:
    try:
        file = _file_from_event(record.body)
    except FileNotFoundError:
        logger.warning(
            "object gone before its ingest started", extra={"message": record.message_id}
        )
        return
    fid = ledger.file_id(file)
    state = SplitState(file=file, wait_seconds=settings.record_wait_seconds)
    try:
        sfn.start_execution(
            stateMachineArn=settings.state_machine_arn,
            name=fid,
            input=msgspec.json.encode(state).decode(),
        )
        logger.info("ingest started", extra={"file_id": fid})
    except ClientError as err:
        # the same object announced twice (CompleteMultipartUpload does that): one execution
        if err.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
            raise
        logger.info("ingest already started", extra={"file_id": fid})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def start(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """A file landed: start one ingest-file execution, named for the object version."""
    return process_partial_response(
        event=event, record_handler=_start_one, processor=start_processor, context=context
    )
