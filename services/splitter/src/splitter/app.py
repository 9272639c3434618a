"""The splitter's composition root: settings, clients and adapters, built once per container.

Each function of the service builds only what it uses, on its first invocation; handler tests
put their own `StartApp` / `SplitApp` in place of these.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from aws_lambda_powertools import Metrics, Tracer

from servicekit.ledger import Ledger
from servicekit.logging import service_logger
from servicekit.tracing import METRICS_NAMESPACE
from splitter.adapters import QueueSink, S3Files, StepFunctionsExecutions
from splitter.ingest import Executions, FileLedger, Files
from splitter.sender import BatchSender
from splitter.settings import QuarantineSettings, SplitSettings, StartSettings
from splitter.split import RecordSink

logger = service_logger("splitter")  # refuses personal data (servicekit.logging)
tracer = Tracer(service="splitter")
# CloudWatch embedded metrics, flushed at the end of each invocation (`@metrics.log_metrics`)
metrics = Metrics(namespace=METRICS_NAMESPACE, service="splitter")


def _client(service: str) -> Any:
    return boto3.client(service)


class StepSink(RecordSink, Protocol):
    """A record sink for one split step, which counts what it took and is closed after."""

    emitted: int
    rejected: int

    def close(self) -> None: ...


@dataclass(frozen=True)
class StartApp:
    """What `start` needs."""

    settings: StartSettings
    files: Files
    executions: Executions


@dataclass(frozen=True)
class SplitApp:
    """What `split` needs. A sink is made per step: it owns threads that a step closes."""

    settings: SplitSettings
    files: Files
    ledger: FileLedger
    new_sink: Callable[[], StepSink]


@functools.cache
def start_app() -> StartApp:
    """The `start` function's app, built on first use."""
    settings = StartSettings.from_env()
    return StartApp(
        settings=settings,
        files=S3Files(_client("s3")),
        executions=StepFunctionsExecutions(_client("stepfunctions"), settings.state_machine_arn),
    )


@dataclass(frozen=True)
class QuarantineApp:
    """What `quarantine` needs."""

    settings: QuarantineSettings
    files: Files
    ledger: FileLedger


@functools.cache
def quarantine_app() -> QuarantineApp:
    """The `quarantine` function's app, built on first use."""
    settings = QuarantineSettings.from_env()
    return QuarantineApp(
        settings=settings,
        files=S3Files(_client("s3")),
        ledger=Ledger(_client("dynamodb"), settings.ledger_table),
    )


@functools.cache
def split_app() -> SplitApp:
    """The `split` function's app, built on first use."""
    settings = SplitSettings.from_env()
    sqs = _client("sqs")
    ledger = Ledger(_client("dynamodb"), settings.ledger_table)

    def new_sink() -> QueueSink:
        sender = BatchSender(
            sqs,
            settings.records_queue_url,
            settings.send_concurrency,
            max_queue_depth=settings.max_queue_depth,
        )
        return QueueSink(sender, ledger)

    return SplitApp(
        settings=settings, files=S3Files(_client("s3")), ledger=ledger, new_sink=new_sink
    )
