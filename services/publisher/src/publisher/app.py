"""The publisher's composition root: settings, clients and adapters, built once per container
(on first use), one app per function; handler tests put their own in place of these."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import boto3
import msgspec
from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities import parameters

from publisher.platform import ClientCredentials, PlatformClient
from publisher.publish import EventStore, Platform
from publisher.settings import EnrichSettings, PublishSettings
from servicekit.consumer import Backoff, DeadLetters, RecordLedger, SqsVisibility
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import Ledger
from servicekit.logging import service_logger
from servicekit.store import Store
from servicekit.tracing import METRICS_NAMESPACE

logger = service_logger("publisher")  # refuses personal data (servicekit.logging)
tracer = Tracer(service="publisher")
# CloudWatch embedded metrics, flushed at the end of each invocation (`@metrics.log_metrics`)
metrics = Metrics(namespace=METRICS_NAMESPACE, service="publisher")
SECRET_MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class PublishApp:
    """What `publish` needs."""

    settings: PublishSettings
    store: EventStore
    platform: Platform
    ledger: RecordLedger
    dead_letters: DeadLetters
    backoff: Backoff | None
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True)
class EnrichApp:
    """What `enrich` needs."""

    settings: EnrichSettings
    store: EventStore


def _credentials(secret_name: str) -> Callable[[bool], ClientCredentials]:
    def read(refresh: bool) -> ClientCredentials:
        # cached by Powertools Parameters; read again when the platform refused what we had
        raw = parameters.get_secret(
            secret_name, max_age=SECRET_MAX_AGE_SECONDS, force_fetch=refresh
        )
        return msgspec.json.decode(raw, type=ClientCredentials)

    return read


def _platform_answered(status: int, seconds: float) -> None:
    """Platform latency, and throttles (429, 5xx, unreachable), as metrics."""
    metrics.add_metric(name="PlatformLatency", unit=MetricUnit.Milliseconds, value=seconds * 1000)
    if status == 0 or status == 429 or status >= 500:
        metrics.add_metric(name="PlatformThrottled", unit=MetricUnit.Count, value=1)


def _credentials_refused(status: int) -> None:
    """Visible, not silent: a log line and a metric an alarm can watch."""
    logger.warning(
        "the platform refused our client credentials; the secret will be read again",
        extra={"status": status},
    )
    with single_metric(
        name="PlatformCredentialsRefused",
        unit=MetricUnit.Count,
        value=1,
        namespace=METRICS_NAMESPACE,
    ) as metric:
        metric.add_dimension(name="service", value="publisher")


@functools.cache
def publish_app() -> PublishApp:
    """The `publish` function's app, built on first use."""
    settings = PublishSettings.from_env()
    sqs = boto3.client("sqs")
    dynamodb = boto3.client("dynamodb")
    return PublishApp(
        settings=settings,
        store=Store(dynamodb, settings.store_table),
        platform=PlatformClient(
            platform_url=settings.platform_url,
            token_url=settings.token_url,
            credentials=_credentials(settings.platform_client_secret_name),
            timeout_seconds=settings.http_timeout_seconds,
            on_credentials_refused=_credentials_refused,
            on_answer=_platform_answered,
        ),
        ledger=Ledger(dynamodb, settings.ledger_table),
        dead_letters=DeadLetterQueue(
            sqs, settings.events_dlq_url, failed_by="publisher", version=settings.service_version
        ),
        # a busy platform: the message comes back after about 5 s, doubling, up to 15 min
        # (jittered); the local cloud deploys shorter ones, as parameters, not code paths
        backoff=Backoff(
            SqsVisibility(sqs),
            base_seconds=settings.backoff_base_seconds,
            cap_seconds=settings.backoff_cap_seconds,
        ),
    )


@functools.cache
def enrich_app() -> EnrichApp:
    """The `enrich` function's app, built on first use."""
    settings = EnrichSettings.from_env()
    return EnrichApp(settings=settings, store=Store(boto3.client("dynamodb"), settings.store_table))
