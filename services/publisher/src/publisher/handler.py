"""Lambda entry points of the publisher: `publish` (events-to-publish) and `enrich` (platform).

Each parses its event, calls the domain (`publisher.publish`) with the container's app, returns.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts.enrichment import EnrichResponse
from contracts.messages import EventToPublish
from publisher import app
from publisher.app import PublishApp, logger, metrics, tracer
from publisher.interface import read_enrich_request, read_event
from publisher.publish import enrich as enrich_event
from publisher.publish import forget, publish_event
from servicekit import tracing
from servicekit.consumer import ConsumerPolicy, LedgerEntry, consume
from servicekit.ledger import RecordStatus


def _policy(the: PublishApp) -> ConsumerPolicy[EventToPublish]:
    def handle(message: EventToPublish) -> RecordStatus:
        done = publish_event(
            message,
            store=the.store,
            platform=the.platform,
            now=int(the.clock()),
            retention_seconds=the.settings.store_retention_seconds,
        )
        metrics.add_metric(
            name="EventsDuplicate" if done.status == 409 else "EventsCreated",
            unit=MetricUnit.Count,
            value=1,
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
        service="publisher",
        version=the.settings.service_version,
        operation="publish",
        metrics=metrics,
    )


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def publish(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Store and announce a batch of events; report only the ones that failed."""
    return consume(event, context, _policy(app.publish_app()))


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def enrich(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """The platform asks for an event's data: 200 with the payload, or 404 if gone or unknown."""
    try:
        request = read_enrich_request(event)
    except msgspec.ValidationError:
        logger.warning("malformed enrichment request")
        answer = EnrichResponse(status_code=400)
    else:
        the = app.enrich_app()
        answer = enrich_event(request, store=the.store)
        tracing.annotate(
            service="publisher",
            service_version=the.settings.service_version,
            operation="enrich",
            outcome="served" if answer.status_code == 200 else "not_found",
        )
        if answer.status_code == 200:
            tracing.annotate(event_id=request.id)
            metrics.add_metric(name="EnrichHits", unit=MetricUnit.Count, value=1)
            logger.info("enrichment served", extra={"event_id": request.id})
        else:
            metrics.add_metric(name="EnrichMisses", unit=MetricUnit.Count, value=1)
            logger.info("enrichment: not found")  # the id may be anything: never echoed
    out: dict[str, Any] = msgspec.to_builtins(answer)
    return out
