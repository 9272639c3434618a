"""The transformer's composition root: settings, clients and adapters, built once per container
(on first use); handler tests put their own `App` in place of this one."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import msgspec
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities import parameters

from contracts.messages import EventToPublish
from servicekit import tracing
from servicekit.consumer import DeadLetters, RecordLedger
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import Ledger
from servicekit.tracing import METRICS_NAMESPACE
from transformer.settings import Settings
from transformer.transform import EventSink

logger = Logger(service="{svc}")
tracer = Tracer(service="transformer")
# CloudWatch embedded metrics, flushed at the end of each invocation (`@metrics.log_metrics`)
metrics = Metrics(namespace=METRICS_NAMESPACE, service="transformer")
# The key is cached by Powertools Parameters; a rotation is picked up within this many seconds.
KEY_MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class App:
    """What `transform` needs."""

    settings: Settings
    ledger: RecordLedger
    dead_letters: DeadLetters
    events: EventSink
    event_id_key: Callable[[], bytes]


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


def secret_key(name: str) -> Callable[[], bytes]:
    """The event id key from Secrets Manager, through Powertools Parameters' cache."""

    def key() -> bytes:
        secret = parameters.get_secret(name, max_age=KEY_MAX_AGE_SECONDS)
        value = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not value:
            raise RuntimeError("the event id key secret is empty")
        return value

    return key


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
        event_id_key=secret_key(settings.event_id_key_secret),
    )
