"""Lambda entry points of the publisher: `publish` (events-to-publish) and `enrich` (platform).

Each parses its event, calls the domain (`publisher.publish`) with the container's app, returns.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts.enrichment import EnrichResponse
from contracts.messages import EventToPublish
from publisher import app
from publisher.app import PublishApp, logger, tracer
from publisher.interface import read_enrich_request, read_event
from publisher.publish import enrich as enrich_event
from publisher.publish import forget, publish_event
from servicekit.consumer import ConsumerPolicy, LedgerEntry, consume
from servicekit.ledger import RecordStatus


def _policy(the: PublishApp) -> ConsumerPolicy[EventToPublish]:
    def handle(message: EventToPublish) -> RecordStatus:
        tracer.put_annotation("event_id", message.event.source_id)
        done = publish_event(
            message,
            store=the.store,
            platform=the.platform,
            now=int(the.clock()),
            retention_seconds=the.settings.store_retention_seconds,
        )
        logger.info(
            "event published",
            extra={"event_id": done.event_id, "status": done.status, "stored": done.stored},
        )
        return RecordStatus.PUBLISHED

    return ConsumerPolicy(
        kind="event-to-publish.v1",
        decode=read_event,
        handle=handle,
        entry=lambda m: LedgerEntry(m.file, m.ordinal, m.event.source_id),
        on_give_up=lambda m: forget(m, store=the.store),
        dead_letters=the.dead_letters,
        ledger=the.ledger,
        max_receive_count=the.settings.max_receive_count,
        backoff=the.backoff,
        log=logger,
        handled_by=f"publisher {the.settings.service_version}",
    )


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def publish(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Store and announce a batch of events; report only the ones that failed."""
    return consume(event, context, _policy(app.publish_app()))


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
def enrich(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The platform asks for an event's data: 200 with the payload, or 404 if gone or unknown."""
    try:
        request = read_enrich_request(event)
    except msgspec.ValidationError:
        logger.warning("malformed enrichment request")
        answer = EnrichResponse(status_code=400)
    else:
        answer = enrich_event(request, store=app.enrich_app().store)
        if answer.status_code == 200:
            tracer.put_annotation("event_id", request.id)
            logger.info("enrichment served", extra={"event_id": request.id})
        else:
            logger.info("enrichment: not found")  # the id may be anything: never echoed
    out: dict[str, Any] = msgspec.to_builtins(answer)
    return out
