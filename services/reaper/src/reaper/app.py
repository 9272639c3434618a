"""The reaper's composition root: settings, clients and adapters, built once per container
(on first use), one app per function; handler tests put their own in place of these."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import msgspec
from aws_lambda_powertools import Metrics, Tracer

from contracts.messages import FileRef
from contracts.receipts import DeletionReceipt, receipt_key
from reaper.reap import Deletable, FileLedger, Holdings, Retained, Sources, StoreLedger
from reaper.settings import ConsumedSettings, FinishSettings, SweepSettings
from servicekit.consumer import DeadLetters
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import Ledger
from servicekit.logging import service_logger
from servicekit.objects import object_version
from servicekit.store import Store
from servicekit.tracing import METRICS_NAMESPACE

logger = service_logger("reaper")  # refuses personal data (servicekit.logging)
tracer = Tracer(service="reaper")
# CloudWatch embedded metrics, flushed at the end of each invocation (`@metrics.log_metrics`)
metrics = Metrics(namespace=METRICS_NAMESPACE, service="reaper")


@dataclass(frozen=True)
class ConsumedApp:
    """What `consumed` needs."""

    settings: ConsumedSettings
    store: Deletable
    dead_letters: DeadLetters
    ledger: StoreLedger
    receipts: Sources
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True)
class FinishApp:
    """What `finish_file` needs."""

    settings: FinishSettings
    ledger: FileLedger
    sources: Sources
    store: Holdings
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True)
class SweepApp:
    """What `sweep` needs."""

    settings: SweepSettings
    store: Retained
    ledger: StoreLedger
    receipts: Sources
    clock: Callable[[], float] = field(default=time.time)


class S3Sources:
    """`Sources` over a boto3 S3 client; receipts go to the file's own bucket, rewritten whole
    (a receipt is updated when the last of its file's records leaves the store)."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def delete_source(self, file: FileRef) -> None:
        # with its version id: this version goes for good, not behind a delete marker
        self._s3.delete_object(**object_version(file))

    def put_receipt(self, receipt: DeletionReceipt) -> None:
        self._s3.put_object(
            Bucket=receipt.bucket,
            Key=receipt_key(receipt.file_id),
            Body=msgspec.json.encode(receipt),
            ContentType="application/json",
        )


@functools.cache
def consumed_app() -> ConsumedApp:
    """The `consumed` function's app, built on first use."""
    settings = ConsumedSettings.from_env()
    dynamodb = boto3.client("dynamodb")
    return ConsumedApp(
        settings=settings,
        store=Store(dynamodb, settings.store_table),
        dead_letters=DeadLetterQueue(
            boto3.client("sqs"),
            settings.consumed_dlq_url,
            failed_by="reaper",
            version=settings.service_version,
        ),
        ledger=Ledger(dynamodb, settings.ledger_table),
        receipts=S3Sources(boto3.client("s3")),
    )


@functools.cache
def finish_app() -> FinishApp:
    """The `finish_file` function's app, built on first use."""
    settings = FinishSettings.from_env()
    dynamodb = boto3.client("dynamodb")
    return FinishApp(
        settings=settings,
        ledger=Ledger(dynamodb, settings.ledger_table),
        sources=S3Sources(boto3.client("s3")),
        store=Store(dynamodb, settings.store_table),
    )


@functools.cache
def sweep_app() -> SweepApp:
    """The `sweep` function's app, built on first use."""
    settings = SweepSettings.from_env()
    dynamodb = boto3.client("dynamodb")
    return SweepApp(
        settings=settings,
        store=Store(dynamodb, settings.store_table),
        ledger=Ledger(dynamodb, settings.ledger_table),
        receipts=S3Sources(boto3.client("s3")),
    )
