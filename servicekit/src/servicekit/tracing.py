"""Tracing, behind one small module, so that the services never name the exporter.

Today the exporter is AWS X-Ray, through the SDK that Powertools Tracer drives (the function's
segment is Lambda's; everything here is a subsegment of it). The X-Ray SDK reaches end of
support on 2027-02-25: moving to OpenTelemetry (the ADOT Lambda layer, exporting to X-Ray) means
rewriting this module's three functions over an OTel tracer (`span` -> `start_as_current_span`
with attributes, `header` -> the W3C/X-Ray propagator) and nothing in any service.

What goes into a trace: ids, ordinals, counts, statuses and outcomes, as annotations (indexed,
so `ingest trace` and X-Ray's FilterExpression find them). Never a value of a record, never a
response body, never an exception's message.

Records and traces: each record's stages are found by its `event_id` and `file_id` annotations,
not by sharing one trace with its file: a million-record file in one trace would be unreadable
and past what one trace retrieval returns. A batch's invocation continues the first message's
trace (as Lambda does); each record of the batch gets its own `record` subsegment with its ids.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.core.models.trace_header import TraceHeader
from aws_xray_sdk.core.models.traceid import TraceId

# the one CloudWatch namespace of every service's embedded metrics
METRICS_NAMESPACE = "GroIngest"

# annotation names every service uses (ingest trace reads these)
SERVICE, VERSION, OPERATION = "service", "service_version", "operation"
EVENT_ID, FILE_ID, ORDINAL, OUTCOME = "event_id", "file_id", "ordinal", "outcome"


class _NoSpan:
    """Where no trace is being recorded (tests, tools): annotations go nowhere."""

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_http_meta(self, key: str, value: Any) -> None:
        return None

    def add_error_flag(self) -> None:
        return None

    def add_fault_flag(self) -> None:
        return None


def _active() -> bool:
    try:
        return xray_recorder.get_trace_entity() is not None
    except Exception:  # no segment, or the SDK is off: nothing to trace into
        return False


@contextlib.contextmanager
def span(name: str, **annotations: str | int | bool | None) -> Iterator[Any]:
    """A subsegment named `name`, annotated (None values are left out)."""
    if not _active():
        yield _NoSpan()
        return
    with xray_recorder.in_subsegment(name) as sub:
        target = sub if sub is not None else _NoSpan()
        for key, value in annotations.items():
            if value is not None:
                target.put_annotation(key, value)
        yield target


def annotate(**annotations: str | int | bool | None) -> None:
    """Annotate the current subsegment (the record's, inside `span("record")`)."""
    if not _active():
        return
    entity = xray_recorder.get_trace_entity()
    for key, value in annotations.items():
        if value is not None:
            entity.put_annotation(key, value)


def header() -> str | None:
    """The trace header to carry on an outgoing message or request, from where we are now."""
    if not _active():
        return None
    entity = xray_recorder.get_trace_entity()
    sampled = getattr(entity, "sampled", True)
    return TraceHeader(
        root=entity.trace_id, parent=entity.id, sampled=1 if sampled else 0
    ).to_header_str()


def new_trace() -> str | None:
    """A trace header that starts a new trace (for a record leaving its file's split step),
    sampled as the current trace is; None when nothing is being traced."""
    if not _active():
        return None
    entity = xray_recorder.get_trace_entity()
    sampled = 1 if getattr(entity, "sampled", True) else 0
    return TraceHeader(root=TraceId().to_id(), sampled=sampled).to_header_str()
