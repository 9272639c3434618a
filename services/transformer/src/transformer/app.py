"""The transformer's composition root: settings, clients and adapters, built once per container
(on first use); handler tests put their own `App` in place of this one."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import boto3
import msgspec
from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters

from contracts.messages import EventToPublish
from servicekit import tracing
from servicekit.consumer import DeadLetters, RecordLedger
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import Ledger
from servicekit.logging import service_logger
from servicekit.tracing import METRICS_NAMESPACE
from transformer.keys import CachedKeyRing
from transformer.settings import Settings
from transformer.transform import EventSink, KeyFor

logger = service_logger("transformer")  # refuses personal data (servicekit.logging)
tracer = Tracer(service="transformer")
# CloudWatch embedded metrics, flushed at the end of each invocation (`@metrics.log_metrics`)
metrics = Metrics(namespace=METRICS_NAMESPACE, service="transformer")


@dataclass(frozen=True)
class App:
    """What `transform` needs."""

    settings: Settings
    ledger: RecordLedger
    dead_letters: DeadLetters
    events: EventSink
    event_id_keys: KeyFor


class QueueEvents:
    """`EventSink` over a boto3 SQS client."""

    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs = sqs
        self._url = url

    def send(self, message: EventToPublish) -> None:
        kwargs: dict[str, Any] = {}
        header = tracing.header()
        if header:  # the record's trace goes on with its event
            kwargs["MessageSystemAttributes"] = {
                "AWSTraceHeader": {"DataType": "String", "StringValue": header}
            }
        self._sqs.send_message(
            QueueUrl=self._url, MessageBody=msgspec.json.encode(message).decode(), **kwargs
        )


def secret_keys(name: str) -> CachedKeyRing:
    """The event id keys from Secrets Manager (one key, or a key set), read through Powertools
    Parameters and held by `CachedKeyRing`, which decides when to read again (the rotation's
    guarantee depends on it). The secret is checked on every read: a key under 32 bytes or a
    malformed key set fails the record with a clear error (retried, then dead-lettered)."""

    def fetch() -> str | bytes:
        secret: Any = parameters.get_secret(name, force_fetch=True)
        return secret if isinstance(secret, str) else bytes(secret)

    def late(version: int) -> None:
        # a version written with active_from in the past: records of its window may have ids
        # under the version before it (README, "Rotating the event-id key")
        metrics.add_metric(name="EventIdKeyVersionLate", unit=MetricUnit.Count, value=1)
        logger.error(
            "event id key version active before it was read", extra={"key_version": version}
        )

    return CachedKeyRing(fetch, source=f"secret {name}", on_late_version=late)


@functools.cache
def current() -> App:
    """The container's app, built on first use."""
    settings = Settings.from_env()
    sqs = boto3.client("sqs")
    return App(
        settings=settings,
        ledger=Ledger(boto3.client("dynamodb"), settings.ledger_table),
        dead_letters=DeadLetterQueue(
            sqs, settings.records_dlq_url, failed_by="transformer", version=settings.service_version
        ),
        events=QueueEvents(sqs, settings.events_queue_url),
        event_id_keys=secret_keys(settings.event_id_key_secret),
    )
