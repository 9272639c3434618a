"""Messages on the pipeline's queues. Each is tagged with its kind and version, so a consumer
can tell what it holds and refuse what it does not know, loudly."""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.events import DeathNotification, SourceId

Ordinal = Annotated[int, msgspec.Meta(ge=1)]


class FileRef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which file a record came from: an S3 object version (or a local path, bucket "local")."""

    bucket: str
    key: str
    version_id: str | None = None


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
    fragment: str
    trace_header: str | None = None


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
    trace_header: str | None = None


class RecordRejected(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    omit_defaults=True,
    tag="record-rejected.v1",
    tag_field="kind",
):
    """A record that cannot become an event, and why. Reasons name fields, never values."""

    file: FileRef
    ordinal: Ordinal
    reasons: tuple[str, ...]
    registration_id: str | None = None


class EventsConsumed(msgspec.Struct, frozen=True, kw_only=True):
    """The platform's notice that every consumer has consumed an event (SNS -> SQS)."""

    id: SourceId


PipelineMessage = RecordToTransform | EventToPublish | RecordRejected
