"""A small local X-Ray daemon: the SDK's UDP datagrams in, moto's X-Ray store out.

The X-Ray SDK (and so Powertools' tracer) sends every segment and independent subsegment as one
UDP datagram to `AWS_XRAY_DAEMON_ADDRESS`: the header line `{"format":"json","version":1}`, a
newline, then the document. On AWS the daemon (or the Lambda service) forwards them to X-Ray;
here this one hands them to `put` (what PutTraceSegments does: the local cloud stores them in
moto's X-Ray backend in process, `MotoServer.put_trace_segments`), in batches, from a background
thread, so `BatchGetTraces` returns them (moto cannot filter them: `ingest trace` does that
itself). Each document is parsed once here, to check it, and handed on with its trace id
(moto parses it once more to store it).

Nothing is dropped silently: what did not parse, what moto left unprocessed, what a failed call
lost and what the kernel dropped before we could read it (Linux's per-socket counter) are
counted in `stats()`, and the first of each kind is logged (by kind and segment id, never the
document: documents carry only ids and timings, but the log is not the place for them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

_LOG = logging.getLogger(__name__)

PROTOCOL_HEADER = '{"format":"json","version":1}'
MAX_DATAGRAM = 65535
BATCH = 50  # documents per PutTraceSegments call (the real daemon's batch size)
_LINGER_S = 0.1  # how long a partial batch waits for more documents
_RECV_TIMEOUT_S = 0.2  # how often the receiver looks whether it should stop
_RCVBUF = 4 * 1024 * 1024  # asked for; the kernel caps it at net.core.rmem_max


class SegmentDocument(NamedTuple):
    """A segment document as it came (its JSON text) and the trace it belongs to."""

    text: str
    trace_id: str


# What stores a batch of documents; answers as PutTraceSegments does (UnprocessedTraceSegments).
PutSegments = Callable[[list[SegmentDocument]], dict[str, Any]]


def datagram(document: dict[str, Any]) -> bytes:
    """A document as the SDK's UDPEmitter sends it."""
    return f"{PROTOCOL_HEADER}\n{json.dumps(document, separators=(',', ':'))}".encode()


def parse_datagram(data: bytes) -> SegmentDocument | None:
    """The document (its JSON text and trace id), or None when the datagram is not a segment
    document.

    A document is a segment, or an independent subsegment (`"type": "subsegment"`, with its
    `parent_id`); either needs what X-Ray needs to store it: id, trace_id, name, start_time,
    and end_time unless it is in progress.
    """
    try:
        header, sep, body = data.decode("utf-8").partition("\n")
        if not sep or json.loads(header) != {"format": "json", "version": 1}:
            return None
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    if not all(isinstance(document.get(k), str) for k in ("id", "trace_id", "name")):
        return None
    if not isinstance(document.get("start_time"), int | float):
        return None
    if "end_time" not in document and not document.get("in_progress"):
        return None
    if document.get("type") == "subsegment" and not isinstance(document.get("parent_id"), str):
        return None
    return SegmentDocument(body.strip(), document["trace_id"])


class XRayDaemon:
    """A UDP listener on 127.0.0.1 storing what it receives with `put` (PutTraceSegments)."""

    def __init__(
        self, put: PutSegments, *, host: str = "127.0.0.1", port: int = 0, batch: int = BATCH
    ) -> None:
        self._put = put
        self._host = host
        self._port = port
        self._batch = max(1, min(batch, BATCH))
        self._socket: socket.socket | None = None
        self._documents: queue.Queue[SegmentDocument | None] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stats = {
            "received": 0,  # datagrams read from the socket
            "stored": 0,  # documents moto accepted
            "malformed": 0,  # datagrams that were not a segment document
            "unprocessed": 0,  # documents moto answered in UnprocessedTraceSegments
            "failed": 0,  # documents lost with a store that failed
        }
        self._pending = 0  # documents parsed and not yet stored or counted as lost
        self._kernel_drops: int | None = None  # read when the socket closes
        self._warned: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (a free port unless one was given) and start both threads."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.bind((self._host, self._port))
        sock.settimeout(_RECV_TIMEOUT_S)
        self._socket = sock
        self._port = sock.getsockname()[1]
        self._threads = [
            threading.Thread(target=self._receive, name="xray-daemon-udp", daemon=True),
            threading.Thread(target=self._store, name="xray-daemon-put", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Store what was received, then stop (bounded by `timeout_s`)."""
        if self._socket is None:
            return
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        self._threads[0].join(timeout=timeout_s)
        self._documents.put(None)  # after the last document the receiver queued
        self._threads[1].join(timeout=max(0.0, deadline - time.monotonic()))
        self._kernel_drops = kernel_drops(self._port)
        self._socket.close()
        self._socket = None

    def __enter__(self) -> XRayDaemon:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def address(self) -> str:
        """`host:port`, as AWS_XRAY_DAEMON_ADDRESS wants it."""
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every datagram already in the socket is stored (or counted as lost)."""
        deadline = time.monotonic() + timeout_s
        # datagrams already sent may still sit in the socket: let the receiver read them
        time.sleep(min(_RECV_TIMEOUT_S, timeout_s))
        with self._idle:
            return self._idle.wait_for(
                lambda: self._pending == 0 and self._documents.empty(),
                max(0.0, deadline - time.monotonic()),
            )

    def stats(self) -> dict[str, int]:
        """Counts so far; `lost` sums every way a document failed to reach moto."""
        with self._lock:
            out = dict(self._stats)
        kernel = kernel_drops(self._port) if self._socket is not None else self._kernel_drops
        if kernel is not None:
            out["dropped_by_kernel"] = kernel
        out["lost"] = (
            out["malformed"] + out["unprocessed"] + out["failed"] + out.get("dropped_by_kernel", 0)
        )
        return out

    # -- threads ----------------------------------------------------------------------------

    def _receive(self) -> None:
        assert self._socket is not None
        sock = self._socket
        while not self._stop.is_set():
            try:
                data = sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                break
            document = parse_datagram(data)
            with self._lock:
                self._stats["received"] += 1
                if document is None:
                    self._stats["malformed"] += 1
                else:
                    self._pending += 1
            if document is None:
                self._warn("malformed", "a datagram that is not a segment document was dropped")
            else:
                self._documents.put(document)

    def _store(self) -> None:
        done = False
        while not done:
            first = self._documents.get()
            if first is None:
                break
            batch = [first]
            linger_until = time.monotonic() + _LINGER_S
            while len(batch) < self._batch:
                try:
                    more = self._documents.get(timeout=max(0.0, linger_until - time.monotonic()))
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                batch.append(more)
            self._put_batch(batch)

    def _put_batch(self, batch: list[SegmentDocument]) -> None:
        stored = unprocessed = failed = 0
        try:
            answer = self._put(batch)
            left = answer.get("UnprocessedTraceSegments") or []
            unprocessed = len(left)
            stored = len(batch) - unprocessed
            for item in left:
                self._warn(
                    "unprocessed",
                    f"segment {item.get('Id')} not stored: {item.get('ErrorCode')} "
                    f"{item.get('Message')}",
                )
        except Exception as err:  # moto gone or failing: count the batch as lost
            failed = len(batch)
            self._warn("failed", f"storing segments failed: {type(err).__name__}")
        with self._idle:
            self._stats["stored"] += stored
            self._stats["unprocessed"] += unprocessed
            self._stats["failed"] += failed
            self._pending -= len(batch)
            self._idle.notify_all()

    def _warn(self, kind: str, message: str) -> None:
        with self._lock:
            first = kind not in self._warned
            self._warned.add(kind)
        if first:
            _LOG.warning("xray daemon: %s (counted in stats; further ones are not logged)", message)


def kernel_drops(port: int) -> int | None:
    """Datagrams the kernel dropped for our UDP socket on `port` (Linux only), else None."""
    try:
        with open("/proc/net/udp", encoding="ascii") as table:
            lines = table.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        # sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
        if len(fields) >= 13 and fields[1].endswith(f":{port:04X}"):
            with contextlib.suppress(ValueError):
                return int(fields[12])
    return None
