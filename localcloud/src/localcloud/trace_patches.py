"""What moto 5.2.5 drops or breaks on tracing's way, bridged here (installed with moto_server's
patches), so that the services set trace context exactly as they do on AWS.

- SendMessageBatch ignores each entry's `MessageSystemAttributes` (SendMessage keeps them): the
  `AWSTraceHeader` every record carries to its consumer would be lost, and the pollers (which
  continue the first record's trace, as Lambda does) and the records' `attributes` would see
  none. moto's batch calls its own `send_message` once per entry, passing the entry's
  `MessageAttributes` dict: that dict (by identity) tells which entry a call is for, and the
  entry's system attributes are handed to `send_message`, so they are on the message before it
  is queued (a poller never sees it without them).
- moto's X-Ray backend is not thread-safe under the threaded server: GetTraceSummaries walks the
  dict of traces that a concurrent PutTraceSegments (the local daemon) grows ("dictionary
  changed size during iteration"). Its requests are serialised, and so is the daemon's store
  (`store_segments`).

`store_segments` is what moto's PutTraceSegments handler does with each document, without the
HTTP on either side: the local daemon runs in this process, and sending its batches over HTTP
to the server beside it (a botocore request, werkzeug, moto's request parsing) cost the main
server's process more than storing the documents did (py-spy: 15% of it, against 4% storing).
AWS does not bill these calls (X-Ray bills traces recorded), so no count is lost.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

_originals: dict[str, Any] = {}
_batch = threading.local()  # id(entry's MessageAttributes) -> its MessageSystemAttributes
_xray_lock = threading.Lock()


def _send_message_batch(self: Any, queue_name: str, entries: dict[str, dict[str, Any]]) -> Any:
    from moto.sqs.utils import validate_message_attributes

    system = {}
    for entry in entries.values():
        attributes = entry.get("MessageSystemAttributes")
        if attributes:
            validate_message_attributes(attributes)  # as SendMessage validates them
            system[id(entry["MessageAttributes"])] = attributes
    _batch.system = system
    try:
        return _originals["send_message_batch"](self, queue_name, entries)
    finally:
        _batch.system = None


def _send_message(self: Any, queue_name: str, message_body: str, *args: Any, **kwargs: Any) -> Any:
    pending = getattr(_batch, "system", None)
    if pending and kwargs.get("system_attributes") is None:
        attributes = pending.get(id(kwargs.get("message_attributes")))
        if attributes is not None:
            kwargs["system_attributes"] = attributes
    return _originals["send_message"](self, queue_name, message_body, *args, **kwargs)


def _serialised(call_action: Any) -> Any:
    def call(self: Any) -> Any:
        with _xray_lock:
            return call_action(self)

    return call


def store_segments(documents: Sequence[str], account: str, region: str) -> list[dict[str, Any]]:
    """Store segment documents in moto's X-Ray backend, as PutTraceSegments does; returns
    those it refused, as PutTraceSegments' `UnprocessedTraceSegments` lists them."""
    from moto.xray.exceptions import BadSegmentException
    from moto.xray.models import xray_backends

    backend = xray_backends[account][region]
    refused = []
    with _xray_lock:
        for document in documents:
            try:
                backend.process_segment(document)
            except BadSegmentException as bad:
                refused.append(bad.to_dict())
            except Exception as err:  # (moto's handler fails the whole call: only this one)
                refused.append({"ErrorCode": "InternalFailure", "Message": type(err).__name__})
    return refused


def _targets() -> tuple[Any, Any]:
    from moto.sqs.models import SQSBackend
    from moto.xray.responses import XRayResponse

    # as Any: patching methods is what mypy rightly dislikes
    return SQSBackend, XRayResponse


def install() -> None:
    """Patch moto's SQS batch send and X-Ray responses (idempotent)."""
    SQSBackend, XRayResponse = _targets()
    if _originals:
        return
    _originals["send_message_batch"] = SQSBackend.send_message_batch
    _originals["send_message"] = SQSBackend.send_message
    SQSBackend.send_message_batch = _send_message_batch
    SQSBackend.send_message = _send_message
    # XRayResponse inherits call_action: define one on it, and delete it to uninstall.
    XRayResponse.call_action = _serialised(XRayResponse.call_action)


def uninstall() -> None:
    """Undo `install`."""
    SQSBackend, XRayResponse = _targets()
    if not _originals:
        return
    SQSBackend.send_message_batch = _originals.pop("send_message_batch")
    SQSBackend.send_message = _originals.pop("send_message")
    if "call_action" in XRayResponse.__dict__:
        del XRayResponse.call_action
