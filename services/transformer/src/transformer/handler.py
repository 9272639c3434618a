"""Lambda entry point of the transformer: records-to-transform -> events-to-publish."""

from __future__ import annotations

from typing import Any

import boto3
import msgspec
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities import parameters
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
from contracts.ledger import RecordStatus
from contracts.messages import EventToPublish, RecordToTransform
from transformer.core import Rejected, transform_fragment
from transformer.settings import Settings

logger = Logger(service="transformer")
tracer = Tracer(service="transformer")
settings = Settings.from_env()
sqs = boto3.client("sqs")
dynamodb = boto3.client("dynamodb")
processor = BatchProcessor(event_type=EventType.SQS)
_decoder = msgspec.json.Decoder(RecordToTransform)
# The key is cached by Powertools Parameters; a rotation is picked up within this many seconds.
KEY_MAX_AGE_SECONDS = 300


def _event_id_key() -> bytes:
    secret = parameters.get_secret(settings.event_id_key_secret, max_age=KEY_MAX_AGE_SECONDS)
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not key:
        raise RuntimeError("the event id key secret is empty")
    return key


def _give_up(
    record: SQSRecord,
    message: RecordToTransform | None,
    reasons: tuple[str, ...],
    status: RecordStatus,
) -> None:
    """Dead-letter the message with its reasons and account for the record in the ledger."""
    dead_letter(
        sqs,
        settings.records_dlq_url,
        record.body,
        reason="; ".join(reasons),
        failed_by="transformer",
        attempts=int(record.attributes.approximate_receive_count or 1),
    )
    if message is not None:
        ledger.record_ended(
            dynamodb, settings.ledger_table, message.file, message.ordinal, status, reasons=reasons
        )


def _transform_one(record: SQSRecord) -> None:
    try:
        message = _decoder.decode(record.body)
    except msgspec.DecodeError as err:
        # Not our contract: no retry can help. The reason names the schema path, not content.
        _give_up(
            record, None, (f"not a record-to-transform.v1 message: {err}",), RecordStatus.REJECTED
        )
        logger.error("undecodable message dead-lettered", extra={"message_id": record.message_id})
        return
    attempts = int(record.attributes.approximate_receive_count or 1)
    try:
        outcome = transform_fragment(message.fragment, key=_event_id_key())
        if isinstance(outcome, Rejected):
            _give_up(record, message, outcome.reasons, RecordStatus.REJECTED)
            logger.warning(
                "record rejected",
                extra={"ordinal": message.ordinal, "reasons": list(outcome.reasons)},
            )
            return
        tracer.put_annotation("event_id", outcome.event.source_id)
        out = EventToPublish(
            file=message.file,
            ordinal=message.ordinal,
            event=outcome.event,
            trace_header=message.trace_header,
        )
        sqs.send_message(
            QueueUrl=settings.events_queue_url, MessageBody=msgspec.json.encode(out).decode()
        )
        logger.info(
            "record transformed",
            extra={"ordinal": message.ordinal, "event_id": outcome.event.source_id},
        )
    except Exception as err:
        if attempts < settings.max_receive_count:
            raise
        # last attempt: dead-letter it ourselves, with the reason, and account for it
        _give_up(
            record,
            message,
            (f"{type(err).__name__} after {attempts} attempts",),
            RecordStatus.DEAD_LETTERED,
        )
        logger.error(
            "record dead-lettered", extra={"ordinal": message.ordinal, "error": type(err).__name__}
        )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def transform(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Transform a batch of records; report only the ones that failed."""
    return process_partial_response(
        event=event, record_handler=_transform_one, processor=processor, context=context
    )
