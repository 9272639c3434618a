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
from aws_lambda_powertools import Logger, Tracer

from contracts.messages import FileRef
from contracts.receipts import DeletionReceipt
from reaper.reap import Deletable, FileLedger, Sources
from reaper.settings import ConsumedSettings, FinishSettings, SweepSettings
from servicekit.consumer import DeadLetters
from servicekit.deadletter import DeadLetterQueue
from servicekit.ledger import Ledger
from servicekit.store import Store

logger = Logger(service="reaper")
tracer = Tracer(service="reaper")


@dataclass(frozen=True)
class ConsumedApp:
    """What `consumed` needs."""

    settings: ConsumedSettings
    store: Deletable
    dead_letters: DeadLetters


@dataclass(frozen=True)
class FinishApp:
    """What `finish_file` needs."""

    settings: FinishSettings
    ledger: FileLedger
    sources: Sources
    clock: Callable[[], float] = field(default=time.time)


@dataclass(frozen=True)
class SweepApp:
    """What `sweep` needs."""

    settings: SweepSettings
    store: Deletable
    clock: Callable[[], float] = field(default=time.time)


class S3Sources:
    """`Sources` over a boto3 S3 client; receipts go to the file's own bucket."""

    def __init__(self, s3: Any, receipts_prefix: str) -> None:
        self._s3 = s3
        self._prefix = receipts_prefix

    def delete_source(self, file: FileRef) -> None:
        source = {"Bucket": file.bucket, "Key": file.key}
        if file.version_id:
            source["VersionId"] = file.version_id  # this version for good, not a marker
        self._s3.delete_object(**source)

    def put_receipt(self, receipt: DeletionReceipt) -> None:
        self._s3.put_object(
            Bucket=receipt.bucket,
            Key=f"{self._prefix}{receipt.file_id}.json",
            Body=msgspec.json.encode(receipt),
            ContentType="application/json",
        )


@functools.cache
def consumed_app() -> ConsumedApp:
    """The `consumed` function's app, built on first use."""
    settings = ConsumedSettings.from_env()
    return ConsumedApp(
        settings=settings,
        store=Store(boto3.client("dynamodb"), settings.store_table),
        dead_letters=DeadLetterQueue(
            boto3.client("sqs"), settings.consumed_dlq_url, failed_by="reaper"
        ),
    )


@functools.cache
def finish_app() -> FinishApp:
    """The `finish_file` function's app, built on first use."""
    settings = FinishSettings.from_env()
    return FinishApp(
        settings=settings,
        ledger=Ledger(boto3.client("dynamodb"), settings.ledger_table),
        sources=S3Sources(boto3.client("s3"), settings.receipts_prefix),
    )


@functools.cache
def sweep_app() -> SweepApp:
    """The `sweep` function's app, built on first use."""
    settings = SweepSettings.from_env()
    return SweepApp(settings=settings, store=Store(boto3.client("dynamodb"), settings.store_table))
