"""The transformer's composition root: settings, clients and adapters, built once per container
(on first use); handler tests put their own `App` in place of this one."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import msgspec
from aws_lambda_powertools import Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities import parameters

from contracts.messages import EventToPublish
from servicekit import tracing
from servicekit.consumer import DeadLetters, Deferred, RecordLedger
from servicekit.deadletter import DeadLetterQueue
from servicekit.errors import TransientError
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


class BatchedEvents(EventSink, Protocol):
    """An `EventSink` whose sends are put off to the end of the batch (`servicekit.consumer`
    settles them): `flush` sends, and says which records' events could not be sent."""

    def flush(self) -> Mapping[str, BaseException]: ...
    def drop(self, message_id: str | None = None) -> None: ...


@dataclass(frozen=True)
class App:
    """What `transform` needs."""

    settings: Settings
    ledger: RecordLedger
    dead_letters: DeadLetters
    events: BatchedEvents
    event_id_keys: KeyFor


# SendMessageBatch's limits: ten entries, and the sum of their sizes (bodies and attributes)
# at most 262,144 bytes, whatever the queue's own message size
BATCH = 10
MAX_BATCH_BYTES = 262_144


class QueueEvents:
    """`BatchedEvents` over a boto3 SQS client: a batch's events go out ten to a
    SendMessageBatch (fewer where their bytes would pass its limit), each with its own
    record's trace header as its AWSTraceHeader. An entry SQS lists as failed fails only its
    own record, which goes back to its queue (a re-sent event is harmless: the publisher is
    idempotent on the event id)."""

    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs = sqs
        self._url = url
        self._pending: Deferred[dict[str, Any]] = Deferred(self._send_all)

    def send(self, message: EventToPublish) -> None:
        entry: dict[str, Any] = {"MessageBody": msgspec.json.encode(message).decode()}
        header = tracing.header()  # here: the record's own span
        if header:  # the record's trace goes on with its event
            entry["MessageSystemAttributes"] = {
                "AWSTraceHeader": {"DataType": "String", "StringValue": header}
            }
        self._pending.add(entry)

    def flush(self) -> Mapping[str, BaseException]:
        return self._pending.flush()

    def drop(self, message_id: str | None = None) -> None:
        self._pending.drop(message_id)

    def _send_all(self, entries: Sequence[dict[str, Any]]) -> list[BaseException | None]:
        out: list[BaseException | None] = [None] * len(entries)
        for call in _calls([_size(e) for e in entries]):
            try:
                answer = self._sqs.send_message_batch(
                    QueueUrl=self._url, Entries=[{"Id": str(i), **entries[i]} for i in call]
                )
            except Exception as err:
                for i in call:
                    out[i] = err
                continue
            for failed in answer.get("Failed", []):
                # a code ("InternalError"), never the message's content
                out[int(failed["Id"])] = TransientError(
                    f"the events queue refused the event: {failed.get('Code', 'unknown')}"
                )
        return out


def _size(entry: dict[str, Any]) -> int:
    """What an entry counts towards SendMessageBatch's byte limit (its trace header included,
    to be safe)."""
    header = entry.get("MessageSystemAttributes", {}).get("AWSTraceHeader", {})
    return len(entry["MessageBody"].encode()) + len(header.get("StringValue", ""))


def _calls(sizes: Sequence[int]) -> list[list[int]]:
    """The entries (by index, in order) of each SendMessageBatch: at most BATCH of them, and
    at most MAX_BATCH_BYTES together unless one alone is bigger (SQS then refuses that call,
    failing that record alone)."""
    calls: list[list[int]] = []
    total = 0
    for i, size in enumerate(sizes):
        if not calls or len(calls[-1]) == BATCH or total + size > MAX_BATCH_BYTES:
            calls.append([])
            total = 0
        calls[-1].append(i)
        total += size
    return calls


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
