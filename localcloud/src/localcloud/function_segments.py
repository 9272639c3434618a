"""What the Lambda service adds to a trace, which the local runtime must add itself.

On AWS, the X-Ray SDK inside a function is in Lambda mode: it sends only subsegments, under a
facade segment whose id is the `Parent` of the trace header Lambda gives the invocation
(`_X_AMZN_TRACE_ID`). The segment itself, `AWS::Lambda::Function` with the invocation's timing
and its error/fault flags, is emitted by the Lambda service. Locally the runtime does it: one
segment per invocation, whose id is the Parent of the header the function runs under, sent to
the local X-Ray daemon like any other document.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from localcloud.xray_daemon import datagram


def parse_trace_header(header: str | None) -> dict[str, str]:
    """`Root=...;Parent=...;Sampled=1` (any order, any extra keys) as a dict."""
    fields: dict[str, str] = {}
    for part in (header or "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key:
            fields[key] = value
    return fields


def new_trace_id() -> str:
    return f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"


@dataclass
class FunctionSegment:
    """One invocation's `AWS::Lambda::Function` segment, from start to end."""

    function_name: str
    function_arn: str
    trace_id: str
    sampled: bool
    upstream_parent: str | None  # the caller's Parent: the entity that made this invocation
    id: str = field(default_factory=lambda: secrets.token_hex(8))
    start_time: float = field(default_factory=time.time)

    @property
    def header(self) -> str:
        """The trace header the function runs under: its Parent is this segment."""
        return f"Root={self.trace_id};Parent={self.id};Sampled={int(self.sampled)}"

    def document(self, *, end_time: float, error_type: str | None) -> dict[str, Any]:
        """The segment document, as X-Ray stores it (ids, names and timing only)."""
        document: dict[str, Any] = {
            "name": self.function_name,
            "origin": "AWS::Lambda::Function",
            "id": self.id,
            "trace_id": self.trace_id,
            "start_time": self.start_time,
            "end_time": end_time,
            "resource_arn": self.function_arn,
            "aws": {"function_arn": self.function_arn},
        }
        if self.upstream_parent:
            document["parent_id"] = self.upstream_parent
        if error_type is not None:
            # An invocation error (handler exception, timeout, runtime exit) is a fault, as
            # Lambda records it; the error's type only, never its message.
            document["fault"] = True
            document["cause"] = {"exceptions": [{"id": secrets.token_hex(8), "type": error_type}]}
        return document


def begin(function_name: str, function_arn: str, trace_header: str | None) -> FunctionSegment:
    """Start the segment of one invocation, continuing the caller's trace if it sent one."""
    fields = parse_trace_header(trace_header)
    root = fields.get("Root")
    if not root:  # an untraced call: Lambda starts a sampled trace
        return FunctionSegment(function_name, function_arn, new_trace_id(), True, None)
    return FunctionSegment(
        function_name,
        function_arn,
        root,
        fields.get("Sampled") != "0",  # absent or "?": Lambda decides, and samples here
        fields.get("Parent") or None,
    )


class SegmentSender:
    """Sends segment documents to an X-Ray daemon over UDP, as the SDK does."""

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._target = (host or "127.0.0.1", int(port))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, document: dict[str, Any]) -> None:
        # like the SDK's emitter: tracing never fails an invocation
        with contextlib.suppress(OSError):
            self._socket.sendto(datagram(document), self._target)

    def close(self) -> None:
        self._socket.close()
