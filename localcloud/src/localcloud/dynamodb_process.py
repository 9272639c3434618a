"""DynamoDB in a moto server of its own, in a process of its own.

moto keeps every backend in one interpreter, so one moto server can never use more than one
core; measured on a local run, DynamoDB was about a third of what that core did (two of every
five calls a record costs, and the costliest to serve). So the local cloud runs a second moto
server, in a child process, that serves DynamoDB only:

- **The functions call it directly**: the runtime gives each container `AWS_ENDPOINT_URL_DYNAMODB`
  (botocore's per-service endpoint variable), so the pipeline's DynamoDB calls never touch the
  main server's core.
- **Everyone else is unchanged**: the main server forwards any DynamoDB request it receives
  (`X-Amz-Target: DynamoDB_...`) to the child as it came, byte for byte, and hands back the
  answer. Operators, tests, Step Functions and `--endpoint-url` users keep one endpoint.
- **Tables come from the templates**: moto's CloudFormation creates them in the main server's
  backend, where nothing reads them. After every local deploy (`fixups.apply`), `POST
  /_localcloud/dynamodb/sync` on the main server copies each table's definition (keys,
  attributes, indexes, billing, stream, encryption, tags, TTL, PITR) into the child, creates the
  missing ones and drops those the stacks no longer have (a table made through DynamoDB's own
  API is never dropped); items live in the child only.
- **Counted where served**: the child counts its requests with the same `calls.Usage`, sizing
  request units from the items it holds; the main server's usage merges the child's
  (`Usage.add_peer`) so `ingest run --json` and `ingest cost` see one cloud. It also counts
  writes per partition key (`key_writes()`: how hot each key ran).

The child (`localcloud.dynamodb_server`) exits when its parent does: it reads its stdin until
the pipe closes.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from collections.abc import Callable, Iterable
from typing import Any

from localcloud import child

SYNC_PATH = "/_localcloud/dynamodb/sync"
TABLES_PATH = "/_localcloud/dynamodb/tables"
MARK_PATH = "/_localcloud/calls/mark"
CALLS_PATH = "/_localcloud/calls"
KEY_WRITES_PATH = "/_localcloud/dynamodb/key-writes"
_TARGETS = ("DynamoDB_", "DynamoDBStreams_")
# not forwarded: they describe the connection to the main server, not the request
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length"})

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# --- in the main server's process ----------------------------------------------------------------


class DynamoDBProcess:
    """The child process serving DynamoDB, seen from the main server."""

    def __init__(self) -> None:
        self.endpoint = ""
        self.pid = 0
        self._process: subprocess.Popen[str] | None = None
        self._local = threading.local()
        self._port = 0

    def start(self) -> None:
        """Start the child and wait for its port."""
        self._process = child.start("localcloud.dynamodb_server")
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise RuntimeError("the DynamoDB server process did not start")
        self._port = int(line)
        self.pid = self._process.pid
        self.endpoint = f"http://127.0.0.1:{self._port}"

    def stop(self) -> None:
        """Close its stdin (it exits), and make sure it did."""
        process, self._process = self._process, None
        if process is None:
            return
        child.stop(process)

    # -- requests --------------------------------------------------------------------------

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """One HTTP request to the child on this thread's kept-alive connection (a connection
        the child closed meanwhile is opened again, once)."""
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(
                    "127.0.0.1", self._port, timeout=905
                )
            try:
                conn.request(method, path, body=body, headers=headers or {})
                answer = conn.getresponse()
                return answer.status, answer.reason, answer.getheaders(), answer.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post_json(self, path: str, document: Any) -> Any:
        status, reason, _, data = self.request(
            "POST", path, json.dumps(document).encode(), {"Content-Type": "application/json"}
        )
        if status != 200:
            raise RuntimeError(f"DynamoDB server process: {path}: {status} {reason}")
        return json.loads(data)

    def reset(self) -> None:
        """Drop the child's moto state (its tables and items)."""
        status, reason, _, _ = self.request("POST", "/moto-api/reset")
        if status != 200:
            raise RuntimeError(f"DynamoDB server process: reset: {status} {reason}")

    # -- usage: the child's counts, merged into the main server's ----------------------------

    def mark(self) -> int:
        return int(self.post_json(MARK_PATH, None)["mark"])

    def since(self, mark: int | None) -> dict[str, Any]:
        query = "" if mark is None else f"?since={mark}"
        status, reason, _, data = self.request("GET", CALLS_PATH + query)
        if status != 200:
            raise RuntimeError(f"DynamoDB server process: usage: {status} {reason}")
        usage: dict[str, Any] = json.loads(data)
        return usage

    def key_writes(self) -> dict[str, dict[str, list[int]]]:
        """Writes per partition key by table, with the most in one second (calls.KeyWrites)."""
        status, reason, _, data = self.request("GET", KEY_WRITES_PATH)
        if status != 200:
            raise RuntimeError(f"DynamoDB server process: key writes: {status} {reason}")
        document: dict[str, dict[str, list[int]]] = json.loads(data)
        return document

    # -- the main server's side ---------------------------------------------------------------

    def forwarding(self, app: WSGIApp, sync: Callable[[], dict[str, Any]]) -> WSGIApp:
        """`app`, with DynamoDB requests forwarded to the child and the sync route served."""

        def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            target = str(environ.get("HTTP_X_AMZ_TARGET") or "")
            if not target.startswith(_TARGETS):
                if environ.get("PATH_INFO") == SYNC_PATH and environ["REQUEST_METHOD"] == "POST":
                    answer = json.dumps(sync()).encode()
                    start_response("200 OK", [("Content-Type", "application/json")])
                    return [answer]
                return app(environ, start_response)
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            headers = {
                name[5:].replace("_", "-"): str(value)
                for name, value in environ.items()
                if name.startswith("HTTP_")
            }
            if environ.get("CONTENT_TYPE"):
                headers["Content-Type"] = str(environ["CONTENT_TYPE"])
            headers["Content-Length"] = str(len(body))
            path = str(environ.get("PATH_INFO") or "/")
            if environ.get("QUERY_STRING"):
                path += "?" + str(environ["QUERY_STRING"])
            status, reason, answer_headers, data = self.request(
                str(environ["REQUEST_METHOD"]), path, body, headers
            )
            kept = [(k, v) for k, v in answer_headers if k.lower() not in _HOP_BY_HOP]
            start_response(f"{status} {reason}", [*kept, ("Content-Length", str(len(data)))])
            return [data]

        return serve

    def sync_tables(self, region: str) -> dict[str, Any]:
        """Copy the definitions of the tables moto's CloudFormation made in this process into the
        child (see the module docstring)."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][region]
        tables = [_table_spec(table) for table in list(backend.tables.values())]
        answer: dict[str, Any] = self.post_json(TABLES_PATH, {"region": region, "tables": tables})
        return answer


def _table_spec(table: Any) -> dict[str, Any]:
    """What the child needs to make `table` again (moto's own constructor arguments)."""
    return {
        "name": table.name,
        "params": {
            "schema": table.schema,
            "attr": table.attr,
            "throughput": table.throughput,
            "billing_mode": table.billing_mode,
            "indexes": [_index(i) for i in table.indexes],
            "global_indexes": [_index(i) for i in table.global_indexes],
            "streams": table.stream_specification,
            "sse_specification": table.sse_specification,
            "tags": table.tags,
            "deletion_protection_enabled": table.deletion_protection_enabled,
            "warm_throughput": None,  # moto derives it from the throughput
        },
        "ttl": table.ttl,
        "continuous_backups": table.continuous_backups,
    }


def _index(index: Any) -> dict[str, Any]:
    described: dict[str, Any] = index.describe()
    wanted = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
    return {k: described[k] for k in wanted if described.get(k) is not None}
