"""A local simulator of the downstream Data Exchange platform (loopback HTTP only).

It implements the interface described in ``shared/reference/platform-api.md``:

* ``POST /oauth2/token``: OAuth2 client credentials (HTTP Basic or form fields) -> bearer token;
* ``POST /events``: publish a minimal event (201, 400, 401, 403, 409, 413, injected 429/5xx);
* consumers: every accepted event is read by each of ``consumers`` consumers (each reading up to
  ``consumer_workers`` events at a time, as a real platform's consumers do), which ask the
  supplier for the data (``enrich(id)``, the pipeline's enrichment function) and, once every
  consumer has acknowledged it, the platform says so once (``publish_consumed(id)``).

Nothing here logs or prints request bodies or enrichment payloads: they are personal data.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import dataclasses
import ipaddress
import json
import queue
import re
import secrets
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, unquote_plus, urlsplit

from localcloud.faults import FaultSwitch

STATS_PATH = "/simulator/stats"
EVENTS_PATH = "/events"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a path, not a password)
EVENT_TYPE = "GRO_DEATH_NOTIFICATION"
SCOPE = "events/publish"
MAX_BODY_BYTES = 64 * 1024
DRAIN_LIMIT_BYTES = 1024 * 1024  # larger bodies are not read: the connection is closed
EVENT_KEYS = frozenset({"eventType", "eventTime", "id"})

ENRICH_ATTEMPTS = 5  # per event and consumer; then that consumer gives up on the event
PUBLISH_ATTEMPTS = 5  # for the consumed notice
FLAKY_SPARED_AFTER = 2  # platform=flaky fails an event at most this many times in a row
RETRY_BACKOFF_SECONDS = 0.02  # doubled after every failed attempt
STOP_JOIN_SECONDS = 2.0  # stop() waits at most about this long in total for worker threads

_ID_RE = re.compile(r"[A-Za-z0-9+=,.@_-]{1,80}")
# ISO-8601 local date-time (no offset, no "Z"): seconds optional, up to 9 fraction digits.
_LOCAL_DATE_TIME_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,9})?)?"
)


@dataclass
class PlatformStats:
    """A snapshot of what the platform saw and did."""

    token_requests: int = 0  # POST /oauth2/token requests (any answer)
    tokens_issued: int = 0
    posts: int = 0  # POST /events requests received (any answer)
    created: int = 0  # 201s
    duplicates: int = 0  # 409s
    rejected: int = 0  # 400/401/403/413 answers
    throttled: int = 0  # injected 429/5xx answers
    enrich_calls: int = 0  # enrichment calls made (all consumers, retries included)
    enrich_not_found: int = 0  # enrichment answered 404
    enriched: int = 0  # events for which EVERY consumer got a 200 payload
    consumed: int = 0  # events whose consumed notice was published
    consumed_notices_failed: int = 0  # consumed notices still failing after the retries
    event_ids: list[str] = field(default_factory=list)  # ids accepted (201), in order
    enrich_failed: int = 0  # (event, consumer) pairs given up after ENRICH_ATTEMPTS errors


class _Rejection(Exception):
    """An answer other than 201 to a POST, with a JSON body that never echoes the request."""

    def __init__(self, status: int, error: str, message: str, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers


@dataclass
class _Tracking:
    remaining: int  # consumers that have not finished with the event
    acknowledged: int = 0  # consumers that got a 200 payload


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    simulator: PlatformSimulator

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), needless on loopback.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # No stack traces (a broken client connection is not our error) and nothing from the body.
        return

    # Open connections are tracked so that stop() can cut kept-alive ones: a stopped platform
    # must not go on answering on a connection a client pooled before the stop.
    def server_activate(self) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PlatformSimulator/1.0"
    sys_version = ""
    timeout = 10  # seconds a client may take to send a request (idle keep-alive included)
    # An answer is two writes (the headers, then the body): with Nagle's algorithm on, the body
    # waited for the client's delayed ACK of the headers, 40 ms per request on a kept-alive
    # connection, which made the simulator the pipeline's bottleneck (measured: 57% of the
    # publisher's time was reading this server's answers).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return  # silent: access logs are of no use here and bodies must never be printed

    # --- dispatch ---------------------------------------------------------------------------

    def do_POST(self) -> None:
        sim = self.server.simulator
        if sim._stopping.is_set():
            self.close_connection = True  # stopped: no answer at all, as if the host were gone
            return
        path = urlsplit(self.path).path
        if path == EVENTS_PATH:
            self._answer(sim._post_event(self))
        elif path == TOKEN_PATH:
            self._answer(sim._post_token(self))
        else:
            self.close_connection = True  # the body (if any) is not read
            self._send_json(404, {"error": "not_found", "message": "no such resource"})

    def _not_allowed(self) -> None:
        self.close_connection = True
        path = urlsplit(self.path).path
        if path in (EVENTS_PATH, TOKEN_PATH):
            self._send_json(
                405, {"error": "method_not_allowed", "message": "use POST"}, {"Allow": "POST"}
            )
        else:
            self._send_json(404, {"error": "not_found", "message": "no such resource"})

    def do_GET(self) -> None:
        # The simulator's own counters, for `ingest run` in another process than `ingest up`.
        url = urlsplit(self.path)
        if url.path == STATS_PATH:
            stats = dataclasses.asdict(self.server.simulator.stats())
            stats["idle"] = self.server.simulator.wait_idle(0)
            if parse_qs(url.query).get("ids") == ["0"]:  # the counts only: cheap to poll
                stats["event_ids"] = []
            self._send_json(200, stats)
        else:
            self._not_allowed()

    do_PUT = do_DELETE = do_PATCH = _not_allowed

    # --- helpers used by the simulator ------------------------------------------------------

    def read_body(self) -> bytes:
        """The request body, or a _Rejection (411/400/413) when it cannot or should not be read."""
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True
            raise _Rejection(411, "length_required", "Content-Length is required")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            return b""
        if len(lengths) > 1 or not (lengths[0].strip().isascii() and lengths[0].strip().isdigit()):
            self.close_connection = True
            raise _Rejection(400, "invalid_request", "bad Content-Length")
        length = int(lengths[0])
        if length > MAX_BODY_BYTES:
            if length <= DRAIN_LIMIT_BYTES:
                # Read and drop it, so the client is not reset while it is still sending.
                while length > 0 and (chunk := self.rfile.read(min(length, 65536))):
                    length -= len(chunk)
            if length:
                self.close_connection = True
            raise _Rejection(413, "payload_too_large", f"body over {MAX_BODY_BYTES} bytes")
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            raise _Rejection(400, "invalid_request", "body shorter than Content-Length")
        return body

    def _answer(self, answer: tuple[int, dict[str, Any], dict[str, str]]) -> None:
        status, body, headers = answer
        self._send_json(status, body, headers)

    def _send_json(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client went away: nothing to report


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError("non-standard JSON constant")


def _is_local_date_time(value: str) -> bool:
    match = _LOCAL_DATE_TIME_RE.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second = (int(g) if g else 0 for g in match.groups())
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return False
    return True


def _validate_event(body: bytes) -> dict[str, str]:
    """The event in a POST /events body, or a _Rejection (400, or 403 for another event type)."""
    try:
        event = json.loads(
            body,
            object_pairs_hook=_reject_duplicate_keys,
            parse_constant=_reject_constant,
        )
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, duplicate keys, absurd nesting
        raise _Rejection(400, "invalid_body", "body is not a JSON object") from None
    if not isinstance(event, dict):
        raise _Rejection(400, "invalid_body", "body is not a JSON object")
    keys = set(event)
    if keys != EVENT_KEYS:
        missing = sorted(EVENT_KEYS - keys)
        unknown = len(keys - EVENT_KEYS)
        raise _Rejection(
            400,
            "invalid_body",
            f"fields must be exactly {sorted(EVENT_KEYS)}: missing {missing}, {unknown} unknown",
        )
    for key in sorted(EVENT_KEYS):
        if not isinstance(event[key], str):
            raise _Rejection(400, "invalid_body", f"{key} must be a string")
    if _ID_RE.fullmatch(event["id"]) is None:
        raise _Rejection(400, "invalid_body", "id must match ^[A-Za-z0-9+=,.@_-]{1,80}$")
    if not _is_local_date_time(event["eventTime"]):
        raise _Rejection(400, "invalid_body", "eventTime must be an ISO-8601 local date-time")
    if event["eventType"] != EVENT_TYPE:
        raise _Rejection(403, "forbidden", "this client may not publish this event type")
    return cast(dict[str, str], event)


def _loopback_host(host: str) -> str:
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"host must be an IPv4 loopback address, not {host!r}") from None
    if address.version != 4 or not address.is_loopback:
        raise ValueError(f"host must be an IPv4 loopback address, not {host!r}")
    return host


class PlatformSimulator:
    """The Data Exchange platform, on loopback: token endpoint, event endpoint and consumers."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        consumers: int = 2,
        enrich: Callable[[str], dict[str, Any]],
        publish_consumed: Callable[[str], None],
        token_ttl_seconds: int = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        consumer_delay_seconds: float = 0.0,
        faults: FaultSwitch | None = None,
        consumer_workers: int = 1,
    ) -> None:
        if consumers < 1:
            raise ValueError("consumers must be at least 1")
        if consumer_workers < 1:
            raise ValueError("consumer_workers must be at least 1")
        if token_ttl_seconds < 1:
            raise ValueError("token_ttl_seconds must be at least 1")
        if consumer_delay_seconds < 0:
            raise ValueError("consumer_delay_seconds must not be negative")
        self._client_id = client_id
        self._client_secret = client_secret
        self._consumers = consumers
        self._enrich = enrich
        self._publish_consumed = publish_consumed
        self._token_ttl = token_ttl_seconds
        self._host = _loopback_host(host)
        self._port = port
        self._consumer_delay = consumer_delay_seconds
        self._workers = consumer_workers
        self._faults = faults or FaultSwitch()

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._stats = PlatformStats()
        self._tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._failures: collections.deque[int] = collections.deque()
        self._ids: set[str] = set()
        self._bodies: list[dict[str, str]] = []
        self._tracking: dict[str, _Tracking] = {}
        self._flaky_streak: dict[str, int] = {}  # event id -> flaky failures in a row
        self._outstanding = 0  # (event, consumer) pairs not finished (consumed notice included)
        self._queues: list[queue.SimpleQueue[str | None]] = [
            queue.SimpleQueue() for _ in range(consumers)
        ]
        self._server: _Server | None = None
        self._threads: list[threading.Thread] = []
        self._started = False

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Bind, then start the HTTP server thread and `consumer_workers` threads per consumer."""
        if self._started:
            raise RuntimeError("the simulator has been started already")
        self._started = True
        server = _Server((self._host, self._port), _Handler)
        server.simulator = self
        self._server = server
        self._threads = [
            threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="platform-http",
                daemon=True,
            )
        ]
        self._threads += [
            threading.Thread(
                target=self._consume,
                args=(index,),
                name=f"platform-consumer-{index}",  # a consumer's workers share its name
                daemon=True,
            )
            for index in range(self._consumers)
            for _ in range(self._workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop serving and consuming; pending events are dropped. Bounded in time; idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
            server.cut_connections()
        for q in self._queues:
            for _ in range(self._workers):
                q.put(None)
        deadline = time.monotonic() + STOP_JOIN_SECONDS
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._idle:
            self._idle.notify_all()

    def __enter__(self) -> PlatformSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL of the platform: events are POSTed to ``{url}/events``."""
        if self._server is None:
            raise RuntimeError("the simulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    # --- test controls ----------------------------------------------------------------------

    def stats(self) -> PlatformStats:
        with self._lock:
            snapshot = PlatformStats(**vars(self._stats))
            snapshot.event_ids = list(self._stats.event_ids)
            return snapshot

    def wait_idle(self, timeout: float) -> bool:
        """True once no accepted event is pending with any consumer (notices included)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._outstanding:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping.is_set():
                    return False
                self._idle.wait(remaining)
            return True

    def inject_failures(self, count: int, status: int = 503) -> None:
        """The next ``count`` POST /events answer ``status`` (429 or 5xx) without accepting.

        Calls add up: failures already armed are answered first.
        """
        if count < 0:
            raise ValueError("count must not be negative")
        if status != 429 and not 500 <= status <= 599:
            raise ValueError("status must be 429 or 5xx")
        with self._lock:
            self._failures.extend([status] * count)

    def expire_tokens(self) -> None:
        """Every token issued so far becomes invalid."""
        with self._lock:
            self._tokens.clear()

    def received_bodies(self) -> list[dict[str, Any]]:
        """Every JSON body accepted (201) by POST /events, in order."""
        with self._lock:
            return [dict(body) for body in self._bodies]

    # --- HTTP -----------------------------------------------------------------------------------

    def _post_token(self, request: _Handler) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self._stats.token_requests += 1
        try:
            body = request.read_body()
            return self._issue_token(request, body)
        except _Rejection as rejection:
            return (
                rejection.status,
                {"error": rejection.error, "error_description": rejection.message},
                rejection.headers,
            )

    def _issue_token(
        self, request: _Handler, body: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if _media_type(request.headers.get("Content-Type")) != "application/x-www-form-urlencoded":
            raise _Rejection(
                400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded"
            )
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
        except ValueError:  # bad UTF-8 or too many fields
            raise _Rejection(400, "invalid_request", "malformed form body") from None
        if any(len(values) > 1 for values in form.values()):
            raise _Rejection(400, "invalid_request", "repeated form parameter")
        fields = {name: values[0] for name, values in form.items()}

        unauthorized = _Rejection(
            401,
            "invalid_client",
            "client authentication failed",
            **{"WWW-Authenticate": 'Basic realm="platform"'},
        )
        credentials = self._basic_credentials(request.headers.get("Authorization"))
        if credentials is None and "client_id" in fields:
            credentials = (fields["client_id"], fields.get("client_secret", ""))
        if credentials is None or not self._client_ok(*credentials):
            raise unauthorized

        grant_type = fields.get("grant_type")
        if grant_type is None:
            raise _Rejection(400, "invalid_request", "grant_type is required")
        if grant_type != "client_credentials":
            raise _Rejection(400, "unsupported_grant_type", "only client_credentials is supported")
        scope = fields.get("scope")
        if scope is not None and scope.split() != [SCOPE]:
            raise _Rejection(400, "invalid_scope", f"the only scope is {SCOPE}")

        token = secrets.token_urlsafe(32)
        with self._lock:
            now = time.monotonic()
            # Forget expired tokens so that the table stays small over long runs.
            for old in [t for t, expiry in self._tokens.items() if expiry <= now]:
                del self._tokens[old]
            self._tokens[token] = now + self._token_ttl
            self._stats.tokens_issued += 1
        return (
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": self._token_ttl},
            {"Pragma": "no-cache"},
        )

    @staticmethod
    def _basic_credentials(header: str | None) -> tuple[str, str] | None:
        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ("", "")  # present but unreadable: authentication fails
        client_id, sep, secret = decoded.partition(":")
        if not sep:
            return ("", "")
        # RFC 6749 2.3.1: both are form-urlencoded before being put into the Basic header.
        return unquote_plus(client_id), unquote_plus(secret)

    def _client_ok(self, client_id: str, secret: str) -> bool:
        id_ok = secrets.compare_digest(client_id.encode(), self._client_id.encode())
        secret_ok = secrets.compare_digest(secret.encode(), self._client_secret.encode())
        return id_ok and secret_ok

    def _token_ok(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        with self._lock:
            expiry = self._tokens.get(token.strip())
            if expiry is None:
                return False
            if expiry <= time.monotonic():
                del self._tokens[token.strip()]
                return False
            return True

    def _flaky_spares(self, body: bytes) -> bool:
        """Whether `platform=flaky` lets this event through though its dice said fail: an
        event's third attempt in a row is spared, so the pipeline's retries always outlast the
        faults (as `crash=` spares a message's third delivery)."""
        try:
            source_id = json.loads(body).get("id")
        except (ValueError, AttributeError):
            return False
        if not isinstance(source_id, str):
            return False
        with self._lock:
            streak = self._flaky_streak.get(source_id, 0)
            if streak >= FLAKY_SPARED_AFTER:
                del self._flaky_streak[source_id]
                return True
            self._flaky_streak[source_id] = streak + 1
            return False

    def _post_event(self, request: _Handler) -> tuple[int, dict[str, Any], dict[str, str]]:
        faults = self._faults.get()
        with self._lock:
            self._stats.posts += 1
            injected = self._failures.popleft() if self._failures else None
        body: bytes | None = None
        flaky = False
        if injected is None and faults.platform == "down":
            injected = 503
        elif (
            injected is None
            and faults.platform == "flaky"
            and self._faults.chance(faults.platform_rate)
        ):
            injected, flaky = self._faults.choice((500, 429)), True
        try:
            if injected is not None:
                with contextlib.suppress(_Rejection):
                    body = request.read_body()  # keep the connection usable when the body is fine
                if flaky and body is not None and self._flaky_spares(body):
                    injected = None
            if injected is not None:
                with self._lock:
                    self._stats.throttled += 1
                return injected, {"error": "unavailable", "message": "try again later"}, {}
            if body is None:
                body = request.read_body()
            if not self._token_ok(request.headers.get("Authorization")):
                raise _Rejection(
                    401,
                    "unauthorized",
                    "missing, bad or expired token",
                    **{"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            if _media_type(request.headers.get("Content-Type")) != "application/json":
                raise _Rejection(400, "invalid_body", "Content-Type must be application/json")
            event = _validate_event(body)
        except _Rejection as rejection:
            with self._lock:
                self._stats.rejected += 1
            return (
                rejection.status,
                {"error": rejection.error, "message": rejection.message},
                rejection.headers,
            )
        source_id = event["id"]
        with self._lock:
            self._flaky_streak.pop(source_id, None)
            if source_id in self._ids:
                self._stats.duplicates += 1
                return 409, {"error": "conflict", "message": "an event with this id exists"}, {}
            self._ids.add(source_id)
            self._stats.created += 1
            self._stats.event_ids.append(source_id)
            self._bodies.append(dict(event))
            self._tracking[source_id] = _Tracking(remaining=self._consumers)
            self._outstanding += self._consumers
            for q in self._queues:
                q.put(source_id)
        if faults.platform == "accept-then-fail" and self._faults.chance(faults.platform_rate):
            # stored, announced to consumers, and yet the answer is lost: the retry meets a 409
            with self._lock:
                self._stats.throttled += 1
            return 504, {"error": "gateway_timeout", "message": "try again later"}, {}
        return 201, {"eventId": secrets.token_hex(16)}, {}

    # --- consumers ------------------------------------------------------------------------------

    def _consume(self, index: int) -> None:
        q = self._queues[index]
        while not self._stopping.is_set():
            source_id = q.get()
            if source_id is None or self._stopping.is_set():
                return
            publish = False
            try:
                acknowledged = self._enrich_with_retries(source_id)
                with self._lock:
                    tracking = self._tracking[source_id]
                    tracking.remaining -= 1
                    tracking.acknowledged += acknowledged
                    if tracking.remaining == 0:
                        del self._tracking[source_id]
                        if tracking.acknowledged == self._consumers:
                            self._stats.enriched += 1
                            publish = True
                if publish:
                    self._publish_with_retries(source_id)
            finally:
                with self._idle:
                    self._outstanding -= 1
                    if self._outstanding == 0:
                        self._idle.notify_all()

    def _enrich_with_retries(self, source_id: str) -> bool:
        """True when this consumer got a 200 payload (it acknowledges the event)."""
        if self._consumer_delay and self._stopping.wait(self._consumer_delay):
            return False
        for attempt in range(ENRICH_ATTEMPTS):
            if attempt and self._stopping.wait(RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)):
                return False
            with self._lock:
                self._stats.enrich_calls += 1
            try:
                answer = self._enrich(source_id)
            except Exception:  # noqa: S112 (never logged: the message may hold personal data)
                continue
            status = answer.get("statusCode") if isinstance(answer, dict) else None
            if type(status) is int and status == 200 and isinstance(answer.get("payload"), dict):
                return True
            if type(status) is int and status == 404:
                with self._lock:
                    self._stats.enrich_not_found += 1
                return False
        with self._lock:
            self._stats.enrich_failed += 1
        return False

    def _publish_with_retries(self, source_id: str) -> None:
        for attempt in range(PUBLISH_ATTEMPTS):
            if attempt and self._stopping.wait(RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1)):
                break
            try:
                self._publish_consumed(source_id)
                if self._faults.get().duplicate_consumed:
                    with contextlib.suppress(Exception):
                        self._publish_consumed(source_id)  # at-least-once, for real
            except Exception:  # noqa: S112 (counted below when every attempt failed)
                continue
            with self._lock:
                self._stats.consumed += 1
            return
        with self._lock:
            self._stats.consumed_notices_failed += 1


__all__ = ["PlatformSimulator", "PlatformStats"]
