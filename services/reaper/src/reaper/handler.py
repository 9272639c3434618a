"""Lambda entry points of the reaper: `consumed`, `finish_file` and `sweep`.

Each parses its event, calls the domain (`reaper.reap`) with the container's app, returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts.messages import EventsConsumed, file_id
from reaper import app
from reaper.app import ConsumedApp, logger, metrics, tracer
from reaper.interface import read_finish_input, read_notice
from reaper.reap import RecordsUnaccountedError
from reaper.reap import consumed as delete_consumed
from reaper.reap import finish_file as finish
from reaper.reap import sweep as sweep_expired
from servicekit import tracing
from servicekit.consumer import ConsumerPolicy, Deferred, consume
from servicekit.ledger import RecordStatus

__all__ = ["RecordsUnaccountedError", "consumed", "finish_file", "sweep"]

# Stop watching a file's blocks this long before the Lambda timeout: enough to answer (the
# state machine calls again, and the watch resumes where it stopped).
SAFETY_MILLIS = 10_000


def _policy(the: ConsumedApp) -> ConsumerPolicy[EventsConsumed]:
    def delete_all(notices: Sequence[EventsConsumed]) -> list[BaseException | None]:
        """The batch's notices, at its end: their events deleted, their records noted."""
        outcomes = delete_consumed(
            notices, store=the.store, ledger=the.ledger, receipts=the.receipts, now=the.clock()
        )
        out: list[BaseException | None] = []
        for notice, outcome in zip(notices, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                out.append(outcome)
                continue
            metrics.add_metric(name="EventsDeleted", unit=MetricUnit.Count, value=1)
            logger.info(
                "consumed event deleted" if outcome else "consumed event already gone",
                extra={"event_id": notice.id},
            )
            out.append(None)
        return out

    deletions = Deferred(delete_all)

    def handle(notice: EventsConsumed) -> RecordStatus | None:
        deletions.add(notice)  # done for the whole batch at its end
        return None  # the record was counted when it was published

    return ConsumerPolicy(
        kind="events-consumed.v1",
        decode=read_notice,
        handle=handle,
        event_id=lambda notice: notice.id,
        dead_letters=the.dead_letters,
        max_receive_count=the.settings.max_receive_count,
        log=logger,
        service="reaper",
        version=the.settings.service_version,
        operation="consumed",
        metrics=metrics,
        deferred=(deletions,),
    )


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def consumed(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Every consumer is done with these events: delete them from the store."""
    return consume(event, context, _policy(app.consumed_app()))


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def finish_file(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """If every emitted record is terminal: delete the source, watch the store, write the
    receipt, say finished."""
    state = read_finish_input(event)
    the = app.finish_app()
    fid = file_id(state.file)
    tracing.annotate(
        service="reaper",
        service_version=the.settings.service_version,
        operation="finish_file",
        file_id=fid,
    )
    logger.append_keys(file_id=fid)
    try:
        out = finish(
            state,
            ledger=the.ledger,
            sources=the.sources,
            store=the.store,
            now=the.clock(),
            stall_seconds=the.settings.stall_seconds,
            max_wait_seconds=the.settings.max_wait_seconds,
            out_of_time=lambda: context.get_remaining_time_in_millis() < SAFETY_MILLIS,
        )
    except RecordsUnaccountedError as err:
        logger.error("file stalled", extra={"reason": str(err)})
        raise
    tracing.annotate(outcome="finished" if out.finished else "waiting")
    metrics.add_metric(name="FileChecks", unit=MetricUnit.Count, value=1)
    if out.finished:
        metrics.add_metric(name="FilesFinished", unit=MetricUnit.Count, value=1)
        logger.info(
            "file finished; source deleted; receipt written", extra=msgspec.to_builtins(out.counts)
        )
    out_dict: dict[str, Any] = msgspec.to_builtins(out)
    return out_dict


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def sweep(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Retention: delete every stored event past its expiry, consumed or not; then bring the
    receipts still waiting for records to leave the store up to date."""
    the = app.sweep_app()
    swept = sweep_expired(
        store=the.store, ledger=the.ledger, receipts=the.receipts, now=the.clock()
    )
    tracing.annotate(service="reaper", operation="sweep", outcome="ok")
    metrics.add_metric(name="ExpiredDeleted", unit=MetricUnit.Count, value=swept.deleted)
    metrics.add_metric(name="FoundGone", unit=MetricUnit.Count, value=swept.found_gone)
    out: dict[str, Any] = msgspec.to_builtins(swept)
    logger.info("retention sweep", extra=out)
    return out
