"""Lambda entry points of the publisher: `publish` (events-to-publish) and `enrich` (platform)."""

from __future__ import annotations

import functools
import re
import time
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
from contracts.events import MinimalEvent
from contracts.ledger import RecordStatus
from contracts.messages import EventToPublish
from contracts.store import Store, StoredEvent
from publisher.platform import (
    ClientCredentials,
    PermanentPlatformError,
    PlatformClient,
    TransientPlatformError,
)
from publisher.settings import Settings

logger = Logger(service="publisher")
tracer = Tracer(service="publisher")
settings = Settings.from_env()
sqs = boto3.client("sqs")
dynamodb = boto3.client("dynamodb")
store = Store(dynamodb, settings.store_table)
processor = BatchProcessor(event_type=EventType.SQS)
_decoder = msgspec.json.Decoder(EventToPublish)
# Backoff for a busy platform: the message comes back after this many seconds, doubling.
BACKOFF_BASE_SECONDS = 5
BACKOFF_CAP_SECONDS = 900


def _credentials() -> ClientCredentials:
    raw = parameters.get_secret(settings.platform_client_secret_name, max_age=300)
    return msgspec.json.decode(raw, type=ClientCredentials)


platform = PlatformClient(
    platform_url=settings.platform_url,
    token_url=settings.token_url,
    credentials=_credentials,
    timeout_seconds=settings.http_timeout_seconds,
)


def _back_off(record: SQSRecord, attempts: int) -> None:
    """Keep a message away for longer each time the platform is busy, instead of hammering it."""
    delay = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempts - 1))
    queue_url = _queue_url(record.event_source_arn)
    sqs.change_message_visibility(
        QueueUrl=queue_url, ReceiptHandle=record.receipt_handle, VisibilityTimeout=delay
    )


@functools.cache
def _queue_url(arn: str) -> str:
    return str(sqs.get_queue_url(QueueName=arn.rsplit(":", 1)[-1])["QueueUrl"])


def _give_up(record: SQSRecord, message: EventToPublish | None, reason: str, attempts: int) -> None:
    dead_letter(
        sqs,
        settings.events_dlq_url,
        record.body,
        reason=reason,
        failed_by="publisher",
        attempts=attempts,
    )
    if message is not None:
        store.delete(message.event.source_id)  # nothing will ever ask for it
        ledger.record_ended(
            dynamodb,
            settings.ledger_table,
            message.file,
            message.ordinal,
            RecordStatus.DEAD_LETTERED,
            event_id=message.event.source_id,
            reasons=(reason,),
        )


def _publish_one(record: SQSRecord) -> None:
    attempts = int(record.attributes.approximate_receive_count or 1)
    try:
        message = _decoder.decode(record.body)
    except msgspec.DecodeError as err:
        _give_up(record, None, f"not an event-to-publish.v1 message: {err}", attempts)
        logger.error("undecodable message dead-lettered", extra={"message_id": record.message_id})
        return
    event = message.event
    tracer.put_annotation("event_id", event.source_id)
    try:
        stored = store.put_if_absent(
            StoredEvent(
                id=event.source_id,
                event=event,
                expires_at=int(time.time()) + settings.store_retention_seconds,
                file_id=ledger.file_id(message.file),
                ordinal=message.ordinal,
            )
        )
        status = platform.publish(MinimalEvent(event_time=event.event_time, id=event.source_id))
        if status == 409 and stored:
            # The platform had this event from an earlier ingestion whose stored copy is gone
            # (consumed, or past retention): nobody will ask for this one. Do not keep it.
            store.delete(event.source_id)
        ledger.record_ended(
            dynamodb,
            settings.ledger_table,
            message.file,
            message.ordinal,
            RecordStatus.PUBLISHED,
            event_id=event.source_id,
        )
        logger.info(
            "event published",
            extra={"event_id": event.source_id, "status": status, "stored": stored},
        )
    except PermanentPlatformError as err:
        _give_up(record, message, str(err), attempts)
        logger.error(
            "event refused by the platform",
            extra={"event_id": event.source_id, "reason": str(err)},
        )
    except Exception as err:
        transient = isinstance(err, TransientPlatformError)
        if attempts >= settings.max_receive_count:
            # our own messages name statuses; anything else is named by its type alone
            cause = str(err) if transient else type(err).__name__
            _give_up(record, message, f"{cause} after {attempts} attempts", attempts)
            logger.error(
                "event dead-lettered",
                extra={"event_id": event.source_id, "error": type(err).__name__},
            )
            return
        if transient:
            _back_off(record, attempts)
            logger.warning(
                "platform busy; will retry", extra={"event_id": event.source_id, "reason": str(err)}
            )
        raise


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def publish(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Store and announce a batch of events; report only the ones that failed."""
    return process_partial_response(
        event=event, record_handler=_publish_one, processor=processor, context=context
    )


class EnrichRequest(msgspec.Struct, frozen=True):
    """What the platform sends to ask for an event's data."""

    id: str


_SOURCE_ID = re.compile(r"^[A-Za-z0-9+=,.@_-]{1,80}$")


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def enrich(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The platform asks for an event's data: 200 with the payload, or 404 if gone or unknown."""
    try:
        request = msgspec.convert(event, EnrichRequest)
    except msgspec.ValidationError:
        logger.warning("malformed enrichment request")
        return {"statusCode": 400}
    if not _SOURCE_ID.match(request.id):
        logger.info("enrichment: not an id of ours")  # unknown, by definition: never echoed
        return {"statusCode": 404}
    tracer.put_annotation("event_id", request.id)
    found = store.get_live(request.id)
    if found is None:
        logger.info("enrichment: not found", extra={"event_id": request.id})
        return {"statusCode": 404}
    logger.info("enrichment served", extra={"event_id": request.id})
    return {"statusCode": 200, "payload": msgspec.to_builtins(found)}
