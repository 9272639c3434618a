"""What the pipeline costs in AWS's units, counted as it runs on the local cloud.

Every request that reaches moto is counted where it arrives (a WSGI middleware around moto's
application), by who made it, by service and by operation:

- the service is the signing name of the request's SigV4 credential scope (`sqs`, `states` ->
  `stepfunctions`, `monitoring` -> `cloudwatch`); unsigned requests (moto's own `/moto-api`) are
  not AWS calls and are not counted;
- the operation is the `X-Amz-Target` header (JSON protocols), the path's last segment (CBOR),
  `Action=` (query protocol), or, for REST services (S3, Lambda, X-Ray), the botocore operation
  whose method, URI template, literal query keys and required headers the request matches;
- the caller is the SDK's application id in the User-Agent (`app/NAME`, which botocore sends
  from `AWS_SDK_UA_APP_ID` or `Config(user_agent_appid=...)`): the local Lambda runtime gives
  each function its own name (`app/gro-transformer-transform`), the event source mapping
  pollers sign as `lambda-esm`, the platform simulator as `platform`, the local cloud's own
  glue as `localcloud` (the local X-Ray daemon stores in process and makes no calls; its name,
  `xray-daemon`, stays reserved: runs saved before carry it); Step Functions' service
  integrations are recognised by the access key moto's interpreter signs with (`ak`); anything
  else is the operator (the CLI, a test, `ingest status`): counted, and excluded from what the
  pipeline costs.

Besides calls, what AWS bills in other units: SQS and SNS requests in 64 KB chunks of payload,
SQS messages per batch entry (and empty receives apart), DynamoDB read and write request units
(sized from the items moto holds, before and after the write, by DynamoDB's rules: 1 KB per
write unit, 4 KB per read unit, half for an eventually consistent read, double in a
transaction; Query and Scan from the items they return, a lower bound when a filter discards
some), each Lambda invocation's duration and init, the functions' log bytes (CloudWatch Logs
ingestion), their embedded metrics, and the distinct X-Ray traces they record.

`mark()` remembers the counts; `since(mark)` is what happened after it (one run).
"""

from __future__ import annotations

import io
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# Who made a request. A function's caller name is its function name.
STATES = "states"  # Step Functions' service integrations (moto's interpreter)
ESM = "lambda-esm"  # the SQS event source mappings' pollers (Lambda's, billed as SQS requests)
PLATFORM = "platform"  # the data exchange platform calling into the pipeline
XRAY_DAEMON = "xray-daemon"  # reserved: the X-Ray daemon stores in process; older runs carry it
LOCALCLOUD = "localcloud"  # the local cloud's glue: deploys, mapping sync, fix-ups
OPERATOR = "operator"  # unmarked: the CLI, tests, status and follow polling
RESERVED = frozenset({STATES, ESM, PLATFORM, XRAY_DAEMON, LOCALCLOUD, OPERATOR})
# What the pipeline itself makes (functions are every other caller name).
PIPELINE_SERVICES = frozenset({STATES, ESM})
EXCLUDED = frozenset({XRAY_DAEMON, LOCALCLOUD, OPERATOR})
SFN_ACCESS_KEY = "ak"  # moto.stepfunctions.parser.asl.utils.boto_client signs with these

CHUNK = 64 * 1024  # SQS and SNS bill a request per 64 KB chunk of payload
WRITE_UNIT = 1024
READ_UNIT = 4096
_KEEP_MARKS = 32

_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/,\s]+)/([^/,\s]+)/aws4_request")
_APP_ID = re.compile(r"(?:^|\s)app/(\S+)")
_SIGNING_TO_SERVICE = {"states": "stepfunctions", "monitoring": "cloudwatch"}
_QUERY_PROTOCOL = frozenset({"sns", "sts", "iam", "cloudformation", "cloudwatch", "ec2"})
_DYNAMODB_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_DYNAMODB_UNITS = _DYNAMODB_WRITES | frozenset(
    {"GetItem", "BatchGetItem", "BatchWriteItem", "TransactWriteItems", "TransactGetItems"}
    | {"Query", "Scan"}
)
_KEY_WRITES = _DYNAMODB_WRITES | frozenset({"BatchWriteItem", "TransactWriteItems"})
_SQS_ENTRIES = frozenset({"SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"})


def caller_kind(caller: str) -> str:
    """`function`, `pipeline-service` (Step Functions, the pollers), `platform` or `excluded`."""
    if caller in PIPELINE_SERVICES:
        return "pipeline-service"
    if caller == PLATFORM:
        return "platform"
    if caller in EXCLUDED:
        return "excluded"
    return "function"


def pipeline_caller(caller: str) -> bool:
    """Whether `caller` is the pipeline (a function, Step Functions, an event source mapping)."""
    return caller_kind(caller) in ("function", "pipeline-service")


@dataclass
class Count:
    """One caller's calls to one operation, in AWS's billing units."""

    calls: int = 0
    billed: int = 0  # SQS/SNS requests counted per 64 KB chunk
    messages: int = 0  # SQS messages sent, received or deleted (batch entries)
    write_units: float = 0.0  # DynamoDB
    read_units: float = 0.0  # DynamoDB
    empty: int = 0  # SQS receives that returned no message

    def add(self, other: Count) -> None:
        self.calls += other.calls
        self.billed += other.billed
        self.messages += other.messages
        self.write_units += other.write_units
        self.read_units += other.read_units
        self.empty += other.empty

    def minus(self, other: Count | None) -> Count:
        if other is None:
            return Count(**vars(self))
        return Count(
            calls=self.calls - other.calls,
            billed=self.billed - other.billed,
            messages=self.messages - other.messages,
            write_units=self.write_units - other.write_units,
            read_units=self.read_units - other.read_units,
            empty=self.empty - other.empty,
        )

    def document(self) -> dict[str, Any]:
        out: dict[str, Any] = {"calls": self.calls}
        for name in ("billed", "messages", "empty"):
            if getattr(self, name):
                out[name] = getattr(self, name)
        for name in ("write_units", "read_units"):
            if getattr(self, name):
                out[name] = round(getattr(self, name), 3)
        return out


@dataclass
class _Function:
    """One function's invocations since the cloud started."""

    memory_mb: int
    architecture: str
    durations_ms: list[float] = field(default_factory=list)
    inits_ms: list[float] = field(default_factory=list)
    errors: int = 0


@dataclass(frozen=True)
class _Request:
    caller: str
    service: str
    operation: str
    region: str
    length: int


@dataclass(frozen=True)
class _Mark:
    at: float
    calls: dict[tuple[str, str], Count]
    invocations: dict[str, tuple[int, int, int]]
    logs: dict[str, tuple[int, int]]
    traces: int
    metrics: int
    peers: list[int] = field(default_factory=list)  # each peer's own mark, taken with this one


class UsagePeer(Protocol):
    """Usage counted in another process (localcloud.dynamodb_process), merged into this one's."""

    def mark(self) -> int: ...

    def since(self, mark: int | None) -> dict[str, Any]: ...


class KeyWrites:
    """DynamoDB writes per partition key, by table, and the most one key took within one second
    (DynamoDB serves a partition key at most 1,000 write units a second): what shows whether a
    key is hot. Counted where DynamoDB is served (localcloud.dynamodb_process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total: dict[tuple[str, str], int] = {}
        self._peak: dict[tuple[str, str], int] = {}
        self._second = 0
        self._this_second: dict[tuple[str, str], int] = {}

    def add(self, table: str, key: str) -> None:
        now = int(time.monotonic())
        with self._lock:
            if now != self._second:
                self._roll()
                self._second = now
            k = (table, key)
            self._total[k] = self._total.get(k, 0) + 1
            self._this_second[k] = self._this_second.get(k, 0) + 1

    def document(self) -> dict[str, dict[str, list[int]]]:
        """{table: {key: [writes, most in one second]}}."""
        with self._lock:
            self._roll()
            out: dict[str, dict[str, list[int]]] = {}
            for (table, key), total in self._total.items():
                out.setdefault(table, {})[key] = [total, self._peak.get((table, key), 0)]
            return out

    def _roll(self) -> None:
        for k, n in self._this_second.items():
            if n > self._peak.get(k, 0):
                self._peak[k] = n
        self._this_second.clear()


class Usage:
    """Thread-safe tallies of a local cloud's AWS usage; see the module docstring."""

    def __init__(self, *, dynamodb_lock: AbstractContextManager[Any] | None = None) -> None:
        self._lock = threading.Lock()
        self._dynamodb_lock = dynamodb_lock or nullcontext()
        self._calls: dict[tuple[str, str], Count] = {}  # (caller, "service.Operation")
        self._functions: dict[str, _Function] = {}
        self._logs: dict[str, list[int]] = {}  # function -> [bytes, events]
        self._traces: set[str] = set()
        self._metrics: set[str] = set()
        self._marks: dict[int, _Mark] = {}
        self._next_mark = 0
        self._rest = _RestOperations()
        self._peers: list[UsagePeer] = []
        self.key_writes = KeyWrites()

    def add_peer(self, peer: UsagePeer) -> None:
        """Count `peer`'s calls as this cloud's too (`mark` and `since` span both)."""
        self._peers.append(peer)

    # -- what is counted -----------------------------------------------------------------------

    def middleware(self, app: WSGIApp) -> WSGIApp:
        """`app` with every AWS request it serves counted."""

        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            request = self._classify(environ)
            if request is None:
                return app(environ, start_response)
            body = _read_body(environ) if self._needs_body(request) else b""
            count = Count(calls=1)
            measure = request.service == "dynamodb" and request.operation in _DYNAMODB_UNITS
            if measure and request.caller not in EXCLUDED:
                payload = _json(body)  # read once for the sizes, the units and the keys
                sizes = self._dynamodb_sizes(request, payload)
                answer = _collect(app(environ, start_response))
                self._dynamodb_units(count, request, payload, answer, sizes)
                if request.operation in _KEY_WRITES:
                    self._count_key_writes(request.region, payload, request.operation)
            elif request.service == "sqs" and request.operation == "ReceiveMessage":
                answer = _collect(app(environ, start_response))
                received = _json(answer).get("Messages") or []
                count.messages = len(received)
                count.empty = 0 if received else 1
                count.billed = _chunks(len(answer))
            else:
                answer = None
                if request.service in ("sqs", "sns"):
                    count.billed = _chunks(request.length)
                if request.service == "sqs" and request.caller not in EXCLUDED:
                    count.messages = _sqs_entries(request.operation, body)
            self._add(request.caller, f"{request.service}.{request.operation}", count)
            if answer is None:
                return app(environ, start_response)
            return [answer]

        return counted

    def invoked(
        self,
        function: str,
        *,
        memory_mb: int,
        architecture: str,
        duration_s: float | None,
        init_s: float | None = None,
        error: bool = False,
    ) -> None:
        """One invocation of `function` by the Lambda runtime (durations as measured)."""
        with self._lock:
            made = self._functions.get(function)
            if made is None or made.memory_mb != memory_mb or made.architecture != architecture:
                made = self._functions[function] = _Function(
                    memory_mb,
                    architecture,
                    made.durations_ms if made else [],
                    made.inits_ms if made else [],
                    made.errors if made else 0,
                )
            if duration_s is not None:
                made.durations_ms.append(duration_s * 1000.0)
            if init_s is not None:
                made.inits_ms.append(init_s * 1000.0)
            made.errors += int(error)

    def logged(self, function: str, line: str, record: Mapping[str, Any] | None = None) -> None:
        """One line a function wrote to its log (CloudWatch Logs ingestion); an EMF line's
        metrics are remembered by namespace, name and dimensions."""
        size = len(line.encode("utf-8", "replace"))
        metrics = _emf_metrics(record) if record is not None else []
        with self._lock:
            tally = self._logs.setdefault(function, [0, 0])
            tally[0] += size
            tally[1] += 1
            self._metrics.update(metrics)

    def traced(self, trace_ids: Iterable[str]) -> None:
        """The trace ids of X-Ray segment documents on their way to be stored (a trace is
        counted once, however many documents it has)."""
        ids = set(trace_ids)
        with self._lock:
            self._traces.update(ids)

    # -- reading -------------------------------------------------------------------------------

    def mark(self) -> int:
        """Remember the counts so far; `since(mark)` returns what happened after."""
        peers = [peer.mark() for peer in self._peers]
        with self._lock:
            mark = self._next_mark
            self._next_mark += 1
            self._marks[mark] = _Mark(
                at=time.time(),
                calls={k: Count(**vars(v)) for k, v in self._calls.items()},
                invocations={
                    name: (len(f.durations_ms), len(f.inits_ms), f.errors)
                    for name, f in self._functions.items()
                },
                logs={name: (t[0], t[1]) for name, t in self._logs.items()},
                traces=len(self._traces),
                metrics=len(self._metrics),
                peers=peers,
            )
            for old in sorted(self._marks)[:-_KEEP_MARKS]:
                del self._marks[old]
            return mark

    def since(self, mark: int | None = None) -> dict[str, Any]:
        """The usage after `mark` (None: since the cloud started), as one JSON-able document."""
        usage = self._since(mark)
        base = self._marks.get(mark) if mark is not None else None
        for n, peer in enumerate(self._peers):
            peer_mark = base.peers[n] if base is not None and n < len(base.peers) else None
            _merge_calls(usage["calls"], peer.since(peer_mark).get("calls") or {})
        return usage

    def _since(self, mark: int | None) -> dict[str, Any]:
        with self._lock:
            if mark is not None and mark not in self._marks:
                raise KeyError(f"no such mark: {mark} (marks are kept for the last {_KEEP_MARKS})")
            base = self._marks.get(mark) if mark is not None else None
            calls: dict[str, dict[str, Any]] = {}
            for (caller, operation), count in sorted(self._calls.items()):
                diff = count.minus(base.calls.get((caller, operation)) if base else None)
                if diff.calls:
                    calls.setdefault(caller, {})[operation] = diff.document()
            functions = {}
            for name, f in sorted(self._functions.items()):
                done, inits, errors = base.invocations.get(name, (0, 0, 0)) if base else (0, 0, 0)
                durations, init_ms = f.durations_ms[done:], f.inits_ms[inits:]
                if durations or init_ms:
                    functions[name] = _function_document(f, durations, init_ms, f.errors - errors)
            logs = {}
            for name, (size, events) in sorted(self._logs.items()):
                size0, events0 = base.logs.get(name, (0, 0)) if base else (0, 0)
                if events - events0:
                    logs[name] = {"bytes": size - size0, "events": events - events0}
            return {
                "seconds": round(time.time() - base.at, 3) if base else None,
                "calls": calls,
                "lambda": functions,
                "logs": logs,
                "xray_traces": len(self._traces) - (base.traces if base else 0),
                "metrics": len(self._metrics),
            }

    # -- internals -----------------------------------------------------------------------------

    def _add(self, caller: str, operation: str, count: Count) -> None:
        with self._lock:
            self._calls.setdefault((caller, operation), Count()).add(count)

    def _classify(self, environ: dict[str, Any]) -> _Request | None:
        authorization = str(environ.get("HTTP_AUTHORIZATION") or "")
        scope = _SCOPE.search(authorization) or _SCOPE.search(
            "Credential=" + _query(environ).get("X-Amz-Credential", "")
        )
        if scope is None:
            return None  # not an AWS request: moto's own API, a health check
        access_key, region, signing_name = scope.groups()
        service = _SIGNING_TO_SERVICE.get(signing_name, signing_name)
        app_id = _APP_ID.search(str(environ.get("HTTP_USER_AGENT") or ""))
        if access_key == SFN_ACCESS_KEY:
            caller = STATES
        elif app_id:
            caller = app_id.group(1)
        else:
            caller = OPERATOR
        length = int(environ.get("CONTENT_LENGTH") or 0)
        operation = self._operation(environ, service)
        return _Request(caller, service, operation, region, length)

    def _operation(self, environ: dict[str, Any], service: str) -> str:
        target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
        if target:
            return target.rpartition(".")[2]
        path = str(environ.get("PATH_INFO") or "/")
        if path.startswith("/service/") and "/operation/" in path:  # smithy-rpc-v2-cbor
            return path.rpartition("/")[2]
        action = _query(environ).get("Action")
        if action:
            return action
        if service in _QUERY_PROTOCOL:
            content_type = str(environ.get("CONTENT_TYPE") or "")
            if content_type.startswith("application/x-www-form-urlencoded"):
                form = parse_qs(_read_body(environ).decode("utf-8", "replace"))
                if form.get("Action"):
                    return form["Action"][0]
        return self._rest.match(service, environ) or f"{environ.get('REQUEST_METHOD')} ?"

    @staticmethod
    def _needs_body(request: _Request) -> bool:
        if request.caller in EXCLUDED:
            return False
        if request.service == "dynamodb":
            return request.operation in _DYNAMODB_UNITS
        return request.service == "sqs" and request.operation in _SQS_ENTRIES

    # DynamoDB's request units, from the items moto holds

    def _dynamodb_sizes(self, request: _Request, payload: Mapping[str, Any]) -> list[int]:
        """The sizes, before the call, of the items a write touches."""
        if request.operation in ("GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"):
            return []
        return self._stored_sizes(request.region, payload, request.operation)

    def _dynamodb_units(
        self,
        count: Count,
        request: _Request,
        payload: Mapping[str, Any],
        answer: bytes,
        before: list[int],
    ) -> None:
        op = request.operation
        if op in ("Query", "Scan"):
            factor = 1.0 if payload.get("ConsistentRead") else 0.5
            items = _json(answer).get("Items") or []
            count.read_units += factor * max(1, math.ceil(sum(map(_item_size, items)) / READ_UNIT))
            return
        after = self._stored_sizes(request.region, payload, op)
        if op == "GetItem":
            factor = 1.0 if payload.get("ConsistentRead") else 0.5
            count.read_units += factor * _units(after[0] if after else 0, READ_UNIT)
        elif op == "BatchGetItem":
            consistent = [
                1.0 if spec.get("ConsistentRead") else 0.5
                for spec in (payload.get("RequestItems") or {}).values()
                for _ in spec.get("Keys") or []
            ]
            count.read_units += sum(
                f * _units(s, READ_UNIT) for f, s in zip(consistent, after, strict=False)
            )
        elif op == "TransactGetItems":
            count.read_units += sum(2 * _units(s, READ_UNIT) for s in after)
        else:
            new = _written_sizes(payload, op)
            sizes = [
                max(b, a, n)
                for b, a, n in zip(before, after or before, new or [0] * len(before), strict=False)
            ]
            factor = 2 if op == "TransactWriteItems" else 1
            count.write_units += sum(factor * _units(s, WRITE_UNIT) for s in sizes)

    def _count_key_writes(self, region: str, payload: Mapping[str, Any], op: str) -> None:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        written = _named_items(payload, op)
        with self._dynamodb_lock:
            try:
                backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]
                hash_keys = {t: backend.get_table(t).hash_key_attr for t, _ in written}
            except Exception:  # an unknown table: the call failed, nothing was written
                return
        for table, item in written:
            value = item.get(hash_keys[table]) or {}
            key = next(iter(value.values()), None) if isinstance(value, dict) else None
            if isinstance(key, str):
                self.key_writes.add(table, key)

    def _stored_sizes(self, region: str, payload: Mapping[str, Any], op: str) -> list[int]:
        """The current size of each item `payload` names (0 for an absent one)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        wanted = _named_items(payload, op)
        sizes = []
        with self._dynamodb_lock:
            try:
                backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]
            except KeyError:
                return [0] * len(wanted)
            for table_name, key in wanted:
                try:
                    table = backend.get_table(table_name)
                    keys = {table.hash_key_attr: key[table.hash_key_attr]}
                    if table.range_key_attr:
                        keys[table.range_key_attr] = key[table.range_key_attr]
                    item = backend.get_item(table_name, keys)
                    sizes.append(item.size() if item is not None else 0)
                except Exception:  # an unknown table or a malformed key: the call fails too
                    sizes.append(0)
        return sizes


def _named_items(payload: Mapping[str, Any], op: str) -> list[tuple[str, dict[str, Any]]]:
    """Each (table, key or item) a DynamoDB request names."""
    wanted: list[tuple[str, dict[str, Any]]] = []
    if op in ("GetItem", "UpdateItem", "DeleteItem"):
        wanted.append((payload.get("TableName", ""), payload.get("Key") or {}))
    elif op == "PutItem":
        wanted.append((payload.get("TableName", ""), payload.get("Item") or {}))
    elif op == "BatchGetItem":
        for table, spec in (payload.get("RequestItems") or {}).items():
            wanted.extend((table, key) for key in spec.get("Keys") or [])
    elif op == "BatchWriteItem":
        for table, writes in (payload.get("RequestItems") or {}).items():
            for write in writes:
                put, delete = write.get("PutRequest"), write.get("DeleteRequest")
                item = (put or {}).get("Item") or (delete or {}).get("Key") or {}
                wanted.append((table, item))
    elif op in ("TransactWriteItems", "TransactGetItems"):
        for entry in payload.get("TransactItems") or []:
            for spec in entry.values():
                key = spec.get("Key") or spec.get("Item") or {}
                wanted.append((spec.get("TableName", ""), key))
    return wanted


def _function_document(
    f: _Function, durations: list[float], inits: list[float], errors: int
) -> dict[str, Any]:
    ordered = sorted(durations)
    billed_ms = sum(math.ceil(d) for d in durations) + sum(math.ceil(i) for i in inits)
    return {
        "invocations": len(durations),
        "errors": errors,
        "memory_mb": f.memory_mb,
        "architecture": f.architecture,
        "seconds": round(sum(durations) / 1000.0, 3),
        "p50_ms": round(_percentile(ordered, 0.50), 1),
        "p95_ms": round(_percentile(ordered, 0.95), 1),
        "max_ms": round(ordered[-1], 1) if ordered else 0.0,
        "inits": len(inits),
        "init_seconds": round(sum(inits) / 1000.0, 3),
        # Lambda bills each invocation's duration rounded up to the millisecond, init included
        # (on-demand functions since August 2025), times the configured memory
        "gb_seconds": round(billed_ms / 1000.0 * f.memory_mb / 1024.0, 4),
    }


def _merge_calls(calls: dict[str, dict[str, Any]], more: Mapping[str, Any]) -> None:
    """Add `more` (a `since()` document's calls) into `calls`, caller by caller."""
    for caller, operations in more.items():
        mine = calls.setdefault(caller, {})
        for operation, count in operations.items():
            total = Count(**mine[operation]) if operation in mine else Count()
            total.add(Count(**count))
            mine[operation] = total.document()
    for caller in list(calls):
        calls[caller] = dict(sorted(calls[caller].items()))
    ordered = dict(sorted(calls.items()))
    calls.clear()
    calls.update(ordered)


def _percentile(ordered: list[float], share: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _units(size: int, unit: int) -> int:
    return max(1, math.ceil(size / unit))


def _chunks(length: int) -> int:
    return max(1, math.ceil(length / CHUNK))


def _item_size(item: Mapping[str, Any]) -> int:
    """An item's size by DynamoDB's rules (moto's own reckoning), from its wire JSON."""
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import bytesize

    try:
        return sum(bytesize(name) + DynamoType(value).size() for name, value in item.items())
    except Exception:
        return len(json.dumps(item))


def _written_sizes(payload: Mapping[str, Any], op: str) -> list[int]:
    """The size of each item a write puts whole (0 where it updates or deletes)."""
    if op == "PutItem":
        return [_item_size(payload.get("Item") or {})]
    if op == "BatchWriteItem":
        return [
            _item_size(((w.get("PutRequest") or {}).get("Item")) or {})
            for writes in (payload.get("RequestItems") or {}).values()
            for w in writes
        ]
    if op == "TransactWriteItems":
        return [
            _item_size(((entry.get("Put") or {}).get("Item")) or {})
            for entry in payload.get("TransactItems") or []
        ]
    return []


def _sqs_entries(operation: str, body: bytes) -> int:
    if operation in _SQS_ENTRIES:
        return len(_json(body).get("Entries") or [])
    return 1 if operation in ("SendMessage", "DeleteMessage", "ChangeMessageVisibility") else 0


def _emf_metrics(record: Mapping[str, Any]) -> list[str]:
    aws = record.get("_aws")
    if not isinstance(aws, Mapping):
        return []
    keys = []
    for directive in aws.get("CloudWatchMetrics") or []:
        namespace = directive.get("Namespace", "")
        for dimensions in directive.get("Dimensions") or [[]]:
            values = ",".join(f"{d}={record.get(d)}" for d in dimensions)
            for metric in directive.get("Metrics") or []:
                keys.append(f"{namespace}/{metric.get('Name')}/{values}")
    return keys


def _json(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data or b"{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _collect(answer: Iterable[bytes]) -> bytes:
    try:
        return b"".join(answer)
    finally:
        close = getattr(answer, "close", None)
        if close is not None:
            close()


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, left in place for the application to read again."""
    cached = environ.get("localcloud.body")
    if isinstance(cached, bytes):
        return cached
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["localcloud.body"] = body
    return body


def _query(environ: Mapping[str, Any]) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(str(environ.get("QUERY_STRING") or "")).items()}


@dataclass(frozen=True)
class _RestOperation:
    name: str
    method: str
    path: re.Pattern[str]
    query: tuple[tuple[str, str | None], ...]  # literal query keys (and values) in the URI
    headers: tuple[str, ...]  # required header members, as WSGI keys
    query_members: tuple[str, ...]  # required querystring members
    literal: int  # how much of the URI is literal: the more, the more specific


class _RestOperations:
    """REST operations (S3, Lambda, X-Ray...) told apart by botocore's own service models."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_service: dict[str, list[_RestOperation]] = {}

    def match(self, service: str, environ: Mapping[str, Any]) -> str | None:
        method = str(environ.get("REQUEST_METHOD") or "GET")
        path = str(environ.get("PATH_INFO") or "/")
        query = parse_qs(str(environ.get("QUERY_STRING") or ""), keep_blank_values=True)
        best: tuple[int, int] | None = None
        found = None
        for op in self._operations(service):
            if op.method != method or not op.path.fullmatch(path):
                continue
            if any(k not in query or (v is not None and query[k][0] != v) for k, v in op.query):
                continue
            if any(h not in environ for h in op.headers):
                continue
            if any(q not in query for q in op.query_members):
                continue
            score = (len(op.query) + len(op.headers) + len(op.query_members), op.literal)
            if best is None or score > best:
                best, found = score, op.name
        return found

    def _operations(self, service: str) -> list[_RestOperation]:
        with self._lock:
            known = self._by_service.get(service)
            if known is None:
                known = self._by_service[service] = list(_rest_operations(service))
            return known


def _rest_operations(service: str) -> Iterator[_RestOperation]:
    import botocore.session
    from botocore.exceptions import UnknownServiceError

    try:
        model = botocore.session.get_session().get_service_model(service)
    except UnknownServiceError:
        return
    for name in model.operation_names:
        op = model.operation_model(name)
        uri = str(op.http.get("requestUri", "/"))
        path_part, _, query_part = uri.partition("?")
        pattern, literal = "", 0
        for piece in re.split(r"(\{[^}]+\})", path_part):
            if piece.startswith("{"):
                pattern += "(.+)" if piece.endswith("+}") else "([^/]+)"
            else:
                pattern += re.escape(piece)
                literal += len(piece)
        query = tuple(
            (k, v if sep else None)
            for k, sep, v in (item.partition("=") for item in query_part.split("&") if item)
        )
        headers: list[str] = []
        members: list[str] = []
        shape = op.input_shape
        for member in shape.required_members if shape is not None else []:
            spec = shape.members[member].serialization
            location, wire = spec.get("location"), spec.get("name", member)
            if location == "header":
                headers.append("HTTP_" + wire.upper().replace("-", "_"))
            elif location == "querystring":
                members.append(wire)
        yield _RestOperation(
            name=name,
            method=str(op.http.get("method", "GET")),
            path=re.compile(pattern.rstrip("/") + "/?"),
            query=query,
            headers=tuple(headers),
            query_members=tuple(members),
            literal=literal,
        )
