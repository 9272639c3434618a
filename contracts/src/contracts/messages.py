"""Messages on the pipeline's queues. Each is tagged with its kind and version, so a consumer
can tell what it holds and refuse what it does not know, loudly."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import Annotated

import msgspec

from contracts.events import DeathNotification, SourceId
from contracts.personal import PERSONAL

# An ordinal counts DeathRegistration elements from 1 in document order.
Ordinal = Annotated[int, msgspec.Meta(ge=1)]

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class FileRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which file a record came from: an S3 object version (or a local path, bucket "local")."""

    bucket: str
    key: str
    version_id: str | None = None


def file_id(ref: FileRef) -> str:
    """A stable id for one version of one object: usable as a Step Functions execution name.

    A readable tail of the key, then a hash of bucket, key and version, within 80 characters
    of `[A-Za-z0-9_-]`. Every service names a file by it (ledger, store, receipts, executions).
    """
    digest = hashlib.sha256(f"{ref.bucket}\0{ref.key}\0{ref.version_id or ''}".encode()).hexdigest()
    tail = _UNSAFE.sub("_", ref.key.rsplit("/", 1)[-1])[-40:]
    return f"{tail}-{digest[:32]}"


class RecordToTransform(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag="record-to-transform.v1",
    tag_field="kind",
):
    """splitter -> transformer: one `DeathRegistration`, as the exact bytes found in the file.

    `fragment` is a standalone XML document: the record element with the namespace
    declarations that were in scope for it.
    """

    file: FileRef
    ordinal: Ordinal
    fragment: Annotated[str, PERSONAL]  # the record itself
    # Deprecated, no longer written: the trace context travels as the message's AWSTraceHeader
    # system attribute. Kept, optional, so v1 messages still in flight read; v2 drops it.
    trace_header: str | None = None
    # When the file arrived: its object version's S3 LastModified (UTC). The transformer picks
    # the event-id key version by it, so the same record gets the same id in every container,
    # retry and redrive across a key rotation. Absent on messages split before it was stamped.
    file_arrived: Annotated[datetime, msgspec.Meta(tz=True)] | None = None


class EventToPublish(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag="event-to-publish.v1",
    tag_field="kind",
):
    """transformer -> publisher: the event a valid record became."""

    file: FileRef
    ordinal: Ordinal
    event: DeathNotification
    # Deprecated, no longer written (see RecordToTransform.trace_header).
    trace_header: str | None = None


class EventsConsumed(msgspec.Struct, frozen=True, kw_only=True):
    """The platform's notice that every consumer has consumed an event (SNS -> SQS)."""

    id: SourceId
