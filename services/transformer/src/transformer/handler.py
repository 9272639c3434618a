"""Lambda entry point of the transformer: records-to-transform -> events-to-publish.

Parses the batch, hands each message to the domain (`transformer.transform`) under the shared
consumer policy (`servicekit.consumer`), returns the batch item failures. The events go out at
the end of the batch, ten to a SendMessageBatch (`transformer.app.QueueEvents`): a record whose
event could not be sent is a batch item failure of its own.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from contracts.messages import RecordToTransform
from servicekit import tracing
from servicekit.consumer import ConsumerPolicy, LedgerEntry, consume
from servicekit.ledger import RecordStatus
from transformer import app
from transformer.app import App, logger, metrics, tracer
from transformer.interface import read_record
from transformer.transform import transform_message


def _policy(the: App) -> ConsumerPolicy[RecordToTransform]:
    def handle(message: RecordToTransform) -> RecordStatus | None:
        left_out: list[int] = []  # elements the GRO format does not define: counted, not kept
        event_id = transform_message(
            message, key_for=the.event_id_keys, events=the.events, left_out=left_out.append
        )
        dropped = sum(left_out)
        tracing.annotate(event_id=event_id)
        metrics.add_metric(name="RecordsTransformed", unit=MetricUnit.Count, value=1)
        if dropped:
            metrics.add_metric(
                name="UndefinedElementsDropped", unit=MetricUnit.Count, value=dropped
            )
        logger.info(
            "record transformed",
            extra={
                "ordinal": message.ordinal,
                "event_id": event_id,
                "undefined_elements_dropped": dropped,
            },
        )
        return None  # terminal only once published

    return ConsumerPolicy(
        kind="record-to-transform.v1",
        decode=read_record,
        handle=handle,
        entry=lambda m: LedgerEntry(m.file, m.ordinal),
        dead_letters=the.dead_letters,
        ledger=the.ledger,
        max_receive_count=the.settings.max_receive_count,
        log=logger,
        service="transformer",
        version=the.settings.service_version,
        operation="transform",
        metrics=metrics,
        deferred=(the.events,),
    )


@logger.inject_lambda_context(log_event=False)
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
def transform(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Transform a batch of records; report only the ones that failed."""
    return consume(event, context, _policy(app.current()))
