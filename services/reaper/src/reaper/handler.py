"""Lambda entry points of the reaper: `consumed`, `finish_file` and `sweep`."""

from __future__ import annotations

import json
import time
from typing import Any

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

from contracts import ledger
from contracts.deadletter import dead_letter
from contracts.ledger import FileStatus
from contracts.messages import EventsConsumed, FileRef
from contracts.store import Store
from reaper.settings import Settings

logger = Logger(service="reaper")
tracer = Tracer(service="reaper")
settings = Settings.from_env()
s3 = boto3.client("s3")
sqs = boto3.client("sqs")
dynamodb = boto3.client("dynamodb")
store = Store(dynamodb, settings.store_table)
processor = BatchProcessor(event_type=EventType.SQS)
_notice = msgspec.json.Decoder(EventsConsumed)


class RecordsUnaccountedError(Exception):
    """A file's records stopped reaching terminal states: someone must look at the DLQs."""


def _notice_of(body: str) -> EventsConsumed:
    """The consumed notice, from a raw SNS delivery or from an SNS envelope."""
    try:
        return _notice.decode(body)
    except msgspec.ValidationError:
        envelope = json.loads(body)
        if isinstance(envelope, dict) and envelope.get("Type") == "Notification":
            return _notice.decode(envelope["Message"])
        raise


def _consumed_one(record: SQSRecord) -> None:
    attempts = int(record.attributes.approximate_receive_count or 1)
    try:
        notice = _notice_of(record.body)
    except (msgspec.DecodeError, ValueError, KeyError) as err:
        dead_letter(
            sqs,
            settings.consumed_dlq_url,
            record.body,
            reason=f"not an events-consumed notice: {type(err).__name__}",
            failed_by="reaper",
            attempts=attempts,
        )
        logger.error("undecodable consumed notice dead-lettered")
        return
    tracer.put_annotation("event_id", notice.id)
    store.delete(notice.id)
    logger.info("consumed event deleted", extra={"event_id": notice.id})


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def consumed(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Every consumer is done with these events: delete them from the store."""
    return process_partial_response(
        event=event, record_handler=_consumed_one, processor=processor, context=context
    )


class FinishState(msgspec.Struct, kw_only=True):
    """The state machine's state when it asks whether a file is finished."""

    file: FileRef
    wait_seconds: int = 10
    terminal_seen: int = -1
    progress_at: float = 0.0


def _receipt(file: FileRef, progress: ledger.FileProgress) -> bytes:
    """What was ingested and that the source is gone: counts and ids, no personal data."""
    return msgspec.json.encode(
        {
            "file_id": progress.file_id,
            "bucket": file.bucket,
            "key": file.key,
            "version_id": file.version_id,
            "records": progress.emitted,
            "published": progress.published,
            "rejected": progress.rejected,
            "dead_lettered": progress.dead_lettered,
            "source_deleted_at": int(time.time()),
        }
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def finish_file(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """If every emitted record is terminal: delete the source, write a receipt, say finished."""
    state = msgspec.convert(event, FinishState)
    file = state.file
    fid = ledger.file_id(file)
    tracer.put_annotation("file_id", fid)
    logger.append_keys(file_id=fid)
    progress = ledger.progress(dynamodb, settings.ledger_table, fid)
    now = time.time()
    if progress.terminal != state.terminal_seen:
        state.terminal_seen, state.progress_at = progress.terminal, now
    counts = {
        "emitted": progress.emitted,
        "terminal": progress.terminal,
        "published": progress.published,
        "rejected": progress.rejected,
        "dead_lettered": progress.dead_lettered,
    }
    if progress.complete:
        source: dict[str, str] = {"Bucket": file.bucket, "Key": file.key}
        if file.version_id:
            source["VersionId"] = file.version_id  # delete this version for good, not a marker
        s3.delete_object(**source)
        s3.put_object(
            Bucket=file.bucket,
            Key=f"{settings.receipts_prefix}{fid}.json",
            Body=_receipt(file, progress),
            ContentType="application/json",
        )
        ledger.file_ended(dynamodb, settings.ledger_table, file, FileStatus.FINISHED)
        logger.info("file finished; source deleted", extra=counts)
    elif now - state.progress_at > settings.stall_seconds:
        missing = (progress.emitted or 0) - progress.terminal
        logger.error("file stalled", extra=counts)
        raise RecordsUnaccountedError(
            f"{missing} records reached no terminal state in {settings.stall_seconds} s: "
            "check the dead-letter queues"
        )
    return {
        **msgspec.to_builtins(state),
        "finished": progress.complete,
        "counts": counts,
    }


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def sweep(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Retention: delete every stored event past its expiry, consumed or not."""
    expired = store.expired_ids()
    for event_id in expired:
        store.delete(event_id)
    logger.info("retention sweep", extra={"deleted": len(expired)})
    return {"deleted": len(expired)}
