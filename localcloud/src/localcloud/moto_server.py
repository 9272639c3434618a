"""An in-process moto server on 127.0.0.1 whose Lambda functions run their deployed code."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
import warnings
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from localcloud import access, dynamodb_answers, keepalive, message_move, trace_patches
from localcloud.calls import LOCALCLOUD, Usage
from localcloud.dynamodb_process import DynamoDBProcess
from localcloud.faults import FaultSwitch
from localcloud.lambda_runtime import FunctionSpec, LambdaRuntime, LogSink

# --- moto 5.2.5 patches ---------------------------------------------------------------------------
# The active runtime is process-wide because moto's backends (and these patches) are.
_runtime: LambdaRuntime | None = None
_request = threading.local()
_originals: dict[str, Any] = {}
_LOG_TAIL_BYTES = 4096  # AWS returns the last 4 KB of logs in the Invoke LogResult


def _invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
    # Invoke's X-Amzn-Trace-Id never reaches _invoke_lambda; pass it on via the request's thread.
    _request.trace_header = request_headers.get("X-Amzn-Trace-Id")
    try:
        # moto turns an empty body into the *string* "{}"; AWS hands the handler an empty object.
        out = _originals["invoke"](self, body or "{}", request_headers, response_headers)
    finally:
        _request.trace_header = None
    # moto hard-codes "Handled"; AWS reports an uncaught handler exception as "Unhandled".
    if response_headers.get("x-amz-function-error") == "Handled":
        response_headers["x-amz-function-error"] = "Unhandled"
    return out


def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
    # moto runs functions in Docker (absent here) or echoes the input; every path (Invoke API,
    # SFN lambda:invoke tasks) ends in this method, so run the deployed handler in our runtime.
    # An error payload with errorType + FunctionError lets SFN Retry/Catch match the error name.
    runtime = _runtime
    if runtime is None:
        error = {"errorType": "Runtime.Unavailable", "errorMessage": "no LambdaRuntime attached"}
        return json.dumps(error), True, ""
    self.logs_backend.ensure_log_group(self.logs_group_name)  # save_logs needs the group
    try:
        spec = runtime.spec_from_moto(self)
    except Exception as exc:  # e.g. a corrupt zip: report it as the invocation's error
        error = {"errorType": "Runtime.InvalidCode", "errorMessage": str(exc)}
        return json.dumps(error), True, ""
    result = runtime.invoke(
        spec, {} if event is None else event, trace_header=getattr(_request, "trace_header", None)
    )
    if result.logs:
        self.save_logs(result.logs)
    tail = result.logs.encode()[-_LOG_TAIL_BYTES:].decode("utf-8", "ignore")
    return result.payload.decode(), result.error_type is not None, tail


def _patch_targets() -> tuple[Any, Any, Any, Any, Any]:
    from moto.awslambda.models import LambdaFunction
    from moto.dynamodb.responses import DynamoHandler
    from moto.sqs.models import Message, Queue, SQSBackend

    # as Any: patching methods is what mypy rightly dislikes
    return LambdaFunction, Queue, DynamoHandler, Message, SQSBackend


def _responses_module() -> Any:
    import moto.core.responses

    return moto.core.responses


def _dispatcher() -> Any:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    return DomainDispatcherApplication


def _within_retention(backend: Any, queue_name: str, message: Any) -> bool:
    retention = int(backend.get_queue(queue_name).message_retention_period)
    return bool(retention + message.sent_timestamp / 1000 > time.time())


def _visible(message: Any) -> bool:
    return time.time() * 1000.0 > message.visible_at


def _delayed(message: Any) -> bool:
    return time.time() * 1000.0 < message.delayed_until


# The same predicates over a whole queue, reading the clock once: moto's versions ask each
# message (two clock reads and a property call apiece), three times over for every SendMessage
# (it builds all of a queue's attributes to read ContentBasedDeduplication) and once per receive.
def _available(queue: Any) -> Iterator[Any]:
    # Lazily: a receive (moto's only reader of `messages`, which checks visibility again as it
    # goes) stops after its first N, instead of listing every available message at each call.
    now = time.time() * 1000.0
    return (m for m in queue._messages if now > m.visible_at and now >= m.delayed_until)


def _count_available(queue: Any) -> int:
    now = time.time() * 1000.0
    return sum(1 for m in queue._messages if now > m.visible_at and now >= m.delayed_until)


def _count_not_visible(queue: Any) -> int:
    now = time.time() * 1000.0
    return sum(1 for m in queue._messages if not now > m.visible_at)


def _count_delayed(queue: Any) -> int:
    now = time.time() * 1000.0
    return sum(1 for m in queue._messages if now < m.delayed_until)


def _pending_groups(queue: Any) -> set[str]:
    # only FIFO messages have a group; list() copies the set atomically (moto's comprehension
    # over the live set fails with "Set changed size during iteration" under concurrent receives)
    if not queue.fifo_queue:
        return set()
    return {m.group_id for m in list(queue._pending_messages) if m.group_id is not None}


def _wait_for_messages(queue: Any, timeout: int) -> None:
    # moto's predicate builds the list of every available message on each wake-up
    with queue._messages_lock:
        queue._messages_lock.wait_for(lambda: _count_available(queue) > 0, timeout=timeout)


# Every receipt handle moto hands out, to its message (weakly: a deleted message goes with its
# handles), so that a delete finds its message without reading every message in the queue.
_received: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()


def _mark_received(self: Any, visibility_timeout: int | None = None) -> None:
    _originals["mark_received"](self, visibility_timeout)
    _received[self.receipt_handle] = self


def _delete_message(queue: Any, receipt_handle: str) -> None:
    # moto's scans every message twice per receipt, building a list of each one's receipt
    # handles: at a depth of 10,000, a DeleteMessageBatch of 10 read 200,000 messages. The
    # handle's message is looked up instead (and found in the list by identity, in C); a handle
    # not known so is looked for as before, in one pass. Either way under the lock SendMessage
    # appends with, and with moto's outcome: every message that ever had the handle goes, an
    # already deleted handle is fine, an unknown one is ReceiptHandleIsInvalid.
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle in queue.deleted_messages:
        return
    with queue._messages_lock:
        messages = queue._messages
        known = _received.get(receipt_handle)
        try:
            gone = [] if known is None else [messages.index(known)]
        except ValueError:  # not in this queue (any more)
            gone = []
        if not gone:
            gone = [
                i
                for i, m in enumerate(messages)
                if m.receipt_handle == receipt_handle or receipt_handle in m._old_receipt_handles
            ]
        if not gone:
            raise ReceiptHandleIsInvalid()
        for i in reversed(gone):
            message = messages[i]
            queue.pending_messages.discard(message)
            queue.deleted_messages.update(message.all_receipt_handles)
            del messages[i]


_method_names: dict[type, frozenset[str]] = {}


def _method_names_from_class(clazz: type) -> frozenset[str]:
    # moto lists a response class's methods with inspect.getmembers on every request, to find
    # the action's handler; the set is remembered per class (forgotten whenever the patches,
    # which add and wrap handlers, are installed or removed)
    names = _method_names.get(clazz)
    if names is None:
        names = _method_names[clazz] = frozenset(_originals["method_names"](clazz))
    return names


def _routed(get_backend_for_host: Any) -> Any:
    # moto routes every request by listing its own package directory (a stat per service) and
    # trying every service's URL patterns, under one process-wide lock: the answer for a host
    # never changes, so remember it.
    def route(self: Any, host: str | None) -> Any:
        routes = self.__dict__.setdefault("_localcloud_routes", {})
        if host in routes:
            return routes[host]
        backend = get_backend_for_host(self, host)
        routes[host] = backend
        return backend

    return route


def _sending(send_message: Any) -> Any:
    # SendMessage (and each entry of a batch, and each SNS delivery to a queue) reads one queue
    # attribute, ContentBasedDeduplication, which only a FIFO queue has, from the whole
    # attribute set: three scans of every message in the queue, O(depth) per message sent.
    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        _request.sending = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            _request.sending = False

    return send


def _attributes(self: Any) -> dict[str, Any]:
    if getattr(_request, "sending", False) and not self.fifo_queue:
        return {}  # what a standard queue's attributes say of ContentBasedDeduplication
    attributes: dict[str, Any] = _originals["queue.attributes"].fget(self)
    return attributes


_QUEUE_PATCHES: dict[str, Any] = {
    "messages": property(_available),
    "approximate_number_of_messages": property(_count_available),
    "approximate_number_of_messages_not_visible": property(_count_not_visible),
    "approximate_number_of_messages_delayed": property(_count_delayed),
    "pending_message_groups": property(_pending_groups),
    "wait_for_messages": _wait_for_messages,
    "delete_message": _delete_message,
}

dynamodb_lock = threading.Lock()


def _serialised(call_action: Any) -> Any:
    def call(self: Any) -> Any:
        with dynamodb_lock:
            return call_action(self)

    return call


def _lexed(lex: Any) -> Any:
    # moto lexes every condition expression from scratch with a regex per token, on every
    # conditional write (9% of the DynamoDB server's time). The tokens depend on the expression's
    # text only (values and names are looked up after), and are immutable named tuples: each
    # text is lexed once, and each parse gets a fresh deque of the same tokens.
    cache: dict[str, tuple[Any, ...]] = {}

    def lex_once(self: Any) -> Any:
        text = self.condition_expression
        tokens = cache.get(text)
        if tokens is None:
            tokens = tuple(lex(self))
            if len(cache) < 1024:
                cache[text] = tokens
        return deque(tokens)

    return lex_once


def install_dynamodb_patches() -> None:
    """The patches a server that serves DynamoDB only needs (localcloud.dynamodb_process): the
    cheaper routing, handler lookup, condition lexing and GetItem answers, and DynamoDB's
    actions one at a time."""
    from moto.dynamodb import comparisons

    parser: Any = comparisons.ConditionExpressionParser  # patching methods: see _patch_targets
    _, _, DynamoHandler, _, _ = _patch_targets()
    Dispatcher = _dispatcher()
    Dispatcher.get_backend_for_host = _routed(Dispatcher.get_backend_for_host)
    responses = _responses_module()
    _originals["method_names"] = responses.method_names_from_class
    responses.method_names_from_class = _method_names_from_class
    DynamoHandler.call_action = _serialised(DynamoHandler.call_action)
    parser._lex_condition_expression = _lexed(parser._lex_condition_expression)
    dynamodb_answers.install()


def _install_patches(runtime: LambdaRuntime) -> None:
    global _runtime
    LambdaFunction, Queue, DynamoHandler, Message, SQSBackend = _patch_targets()
    _runtime = runtime
    if _originals:
        return
    # moto recomputes every queue attribute on each send and receive by asking every message
    # whether it is visible, each time through datetime arithmetic: at a depth of 1,000 that is
    # most of a second per call. The same comparison on time.time() is ~20x cheaper.
    _originals["visible"], _originals["delayed"] = Message.visible, Message.delayed
    Message.visible, Message.delayed = property(_visible), property(_delayed)
    _originals["mark_received"] = Message.mark_received
    Message.mark_received = _mark_received
    # ...and, for every message a receive hands out, it computes all of a queue's attributes
    # (three scans of every message) just to read MessageRetentionPeriod: O(depth) per message.
    _originals["retention"] = SQSBackend.is_message_valid_based_on_retention_period
    SQSBackend.is_message_valid_based_on_retention_period = _within_retention
    for name, fast in _QUEUE_PATCHES.items():
        _originals[f"queue.{name}"] = Queue.__dict__[name]
        setattr(Queue, name, fast)
    Dispatcher = _dispatcher()
    _originals["route"] = Dispatcher.get_backend_for_host
    Dispatcher.get_backend_for_host = _routed(Dispatcher.get_backend_for_host)
    responses = _responses_module()
    _originals["method_names"] = responses.method_names_from_class
    responses.method_names_from_class = _method_names_from_class
    # moto's DynamoDB is not thread-safe under the threaded server (seen: TransactWriteItems
    # deep-copying a table while another request changed it, "dictionary changed size").
    _originals["dynamodb_call_action"] = DynamoHandler.call_action
    DynamoHandler.call_action = _serialised(DynamoHandler.call_action)
    _originals["invoke"] = LambdaFunction.invoke
    _originals["_invoke_lambda"] = LambdaFunction._invoke_lambda
    LambdaFunction.invoke = _invoke
    LambdaFunction._invoke_lambda = _invoke_lambda
    # moto drives SQS mappings synchronously inside SendMessage (one record per invoke, fake
    # attributes, ReportBatchItemFailures ignored). Our pollers own the mappings, so queues must
    # never see them: this data descriptor makes registration a no-op and hides existing ones.
    Queue.lambda_event_source_mappings = property(lambda _q: {}, lambda _q, _v: None)
    # moto lacks SQS's message-move API (DLQ redrive: HTTP 500); `ingest dlq redrive` needs it.
    message_move.install()
    # SendMessageBatch drops AWSTraceHeader; X-Ray's backend is not thread-safe.
    trace_patches.install()
    _originals["send_message"] = SQSBackend.send_message
    SQSBackend.send_message = _sending(SQSBackend.send_message)
    _originals["queue.attributes"] = Queue.__dict__["attributes"]
    Queue.attributes = property(_attributes)
    # moto keeps functions' and topics' resource policies but never evaluates them.
    access.install()
    _method_names.clear()  # handlers were added (message_move)


def _uninstall_patches() -> None:
    global _runtime
    LambdaFunction, Queue, DynamoHandler, Message, SQSBackend = _patch_targets()
    _runtime = None
    if not _originals:
        return
    SQSBackend.is_message_valid_based_on_retention_period = _originals.pop("retention")
    for name in _QUEUE_PATCHES:
        setattr(Queue, name, _originals.pop(f"queue.{name}"))
    _dispatcher().get_backend_for_host = _originals.pop("route")
    _responses_module().method_names_from_class = _originals.pop("method_names")
    _method_names.clear()
    Message.visible, Message.delayed = _originals.pop("visible"), _originals.pop("delayed")
    Message.mark_received = _originals.pop("mark_received")
    DynamoHandler.call_action = _originals.pop("dynamodb_call_action")
    LambdaFunction.invoke = _originals.pop("invoke")
    # Left in place: a state machine still running when the cloud stops goes on invoking in
    # moto's threads, and moto's own path would try Docker (printing its failure to stdout);
    # with no runtime attached, ours answers Runtime.Unavailable instead.
    _originals.pop("_invoke_lambda")
    del Queue.lambda_event_source_mappings
    message_move.uninstall()
    SQSBackend.send_message = _originals.pop("send_message")
    Queue.attributes = _originals.pop("queue.attributes")
    trace_patches.uninstall()
    access.uninstall()


# --------------------------------------------------------------------------------------------------

# A synchronous Invoke may last up to Lambda's 900 s limit: never time out (and retry) before that.
_CLIENT_CONFIG = Config(read_timeout=905, retries={"mode": "standard", "total_max_attempts": 2})


class MotoServer:
    """A ThreadedMotoServer on loopback plus the LambdaRuntime its functions run in."""

    def __init__(
        self,
        port: int = 0,
        *,
        runtime_path: Sequence[Path] = (),
        log_sink: LogSink | None = None,
        max_containers: int = 2,
        faults: FaultSwitch | None = None,
        xray_daemon_address: str | None = None,
    ) -> None:
        self._port = port
        # every AWS request and Lambda invocation, counted (`ingest run --json`, `ingest cost`)
        self.usage = Usage(dynamodb_lock=dynamodb_lock)
        # DynamoDB is served by a moto server of its own, in a process of its own
        self.dynamodb = DynamoDBProcess()
        self.usage.add_peer(self.dynamodb)
        self._runtime_args: dict[str, Any] = {
            "usage": self.usage,
            "runtime_path": list(runtime_path),
            "log_sink": log_sink,
            "max_containers": max_containers,
            "faults": faults,
            # the local X-Ray daemon (localcloud.xray_daemon) the functions send segments to
            "xray_daemon_address": xray_daemon_address,
        }
        self.region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self.endpoint = ""
        self.runtime: LambdaRuntime | None = None
        self._server: Any = None
        self._session = boto3.session.Session(
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
            region_name=self.region,
        )
        self._client_lock = threading.Lock()  # boto3 sessions are not thread-safe
        self._clients: dict[tuple[str, access.AccessKey | None, str], Any] = {}
        self._sessions: dict[access.AccessKey, Any] = {}

    def start(self) -> None:
        """Start the server, enable SFN execution and patch Lambda before anything is deployed."""
        from moto.server import ThreadedMotoServer

        if _runtime is not None:
            raise RuntimeError("a MotoServer is already running in this process")
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per call
        # moto narrates what it skips and every failed state (our own output says it better)
        logging.getLogger("moto").setLevel(logging.ERROR)
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        warnings.filterwarnings("ignore", module=r"moto\.cloudformation")
        self.dynamodb.start()
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        server.start()
        self._server = server
        # count each request where it arrives (ThreadedMotoServer offers no hook: its werkzeug
        # server reads `.app` per request); DynamoDB's are forwarded, and counted, in its process
        assert server._server is not None
        server._server.app = self.dynamodb.forwarding(
            self.usage.middleware(server._server.app),
            sync=lambda: self.dynamodb.sync_tables(self.region),
        )
        keepalive.install(server)  # connections kept alive, as AWS keeps them
        _, port = server.get_host_and_port()
        self.endpoint = f"http://127.0.0.1:{port}"
        # SFN tasks call http://localhost:$MOTO_PORT, read at each call.
        os.environ["MOTO_PORT"] = str(port)
        # moto's state lives in this process, not in the server: a server started after another
        # (tests, a second cloud) must not inherit what the first left behind
        self._post("/moto-api/reset", None)
        self._post("/moto-api/config", {"stepfunctions": {"execute_state_machine": True}})
        self.dynamodb.reset()
        self._runtime_args["service_endpoints"] = {"dynamodb": self.dynamodb.endpoint}
        self.runtime = LambdaRuntime(endpoint=self.endpoint, **self._runtime_args)
        _install_patches(self.runtime)

    def put_trace_segments(self, documents: Sequence[str]) -> dict[str, Any]:
        """PutTraceSegments for the local X-Ray daemon, in this process (trace_patches); answers
        as the API does."""
        from moto.core import DEFAULT_ACCOUNT_ID

        refused = trace_patches.store_segments(documents, DEFAULT_ACCOUNT_ID, self.region)
        return {"UnprocessedTraceSegments": refused}

    def client(
        self, service: str, key: access.AccessKey | None = None, *, caller: str = LOCALCLOUD
    ) -> Any:
        """A boto3 client for `service` pointed at this server, signing with moto's dummy
        credentials (the account's root) or with `key` (made once: clients are thread-safe, and
        making one costs milliseconds)."""
        with self._client_lock:
            made = self._clients.get((service, key, caller))
            if made is None:
                session = self._session
                if key is not None:
                    session = self._sessions.get(key)
                    if session is None:
                        session = boto3.session.Session(
                            aws_access_key_id=key.key_id,
                            aws_secret_access_key=key.secret,
                            region_name=self.region,
                        )
                        self._sessions[key] = session
                # the caller's name travels in the User-Agent (localcloud.calls counts by it)
                config = _CLIENT_CONFIG.merge(Config(user_agent_appid=caller))
                # DynamoDB straight to its own process (the main server would forward it)
                endpoint = self.dynamodb.endpoint if service == "dynamodb" else self.endpoint
                made = session.client(service, endpoint_url=endpoint, config=config)
                self._clients[(service, key, caller)] = made
            return made

    def spec_for(self, function_name: str) -> FunctionSpec:
        """The FunctionSpec of a deployed function (the `spec_for` that pollers need)."""
        from moto.backends import get_backend
        from moto.core import DEFAULT_ACCOUNT_ID

        assert self.runtime is not None, "MotoServer not started"
        fn = get_backend("lambda")[DEFAULT_ACCOUNT_ID][self.region].get_function(function_name)
        return self.runtime.spec_from_moto(fn)

    def reset(self) -> None:
        """Drop all moto state and all containers (stop pollers first; they hold the runtime)."""
        self._post("/moto-api/reset", None)
        self.dynamodb.reset()
        old, self.runtime = (
            self.runtime,
            LambdaRuntime(endpoint=self.endpoint, **self._runtime_args),
        )
        _install_patches(self.runtime)
        if old is not None:
            old.shutdown()

    def stop(self) -> None:
        """Undo the patches, kill all containers and stop the server."""
        if self._server is None:
            return
        _uninstall_patches()
        if self.runtime is not None:
            self.runtime.shutdown()
            self.runtime = None
        self._server.stop()
        keepalive.close_all(self._server)
        self._server = None
        self.dynamodb.stop()
        os.environ.pop("MOTO_PORT", None)

    def _post(self, path: str, body: Any) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - fixed http://127.0.0.1 URL
            self.endpoint + path, data=data, method="POST"
        )
        request.add_header("Content-Type", "application/json")
        # No proxy: this traffic must stay on loopback whatever HTTP(S)_PROXY says.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            response.read()
