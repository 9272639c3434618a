"""The DynamoDB server process's own side (see localcloud.dynamodb_process): a moto server that
serves DynamoDB only, on a free loopback port it prints, with the routes the main server uses
to copy the stacks' tables into it and to read its counts. Run as
`python -m localcloud.dynamodb_server`; it stops when its stdin closes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from localcloud import keepalive
from localcloud.calls import Usage
from localcloud.dynamodb_process import (
    CALLS_PATH,
    KEY_WRITES_PATH,
    MARK_PATH,
    TABLES_PATH,
    WSGIApp,
)
from localcloud.moto_server import dynamodb_lock, install_dynamodb_patches

# the tables a sync made or kept: only those may a later sync drop
_from_templates: set[str] = set()


def _apply_tables(document: dict[str, Any]) -> dict[str, Any]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][document["region"]]
    wanted = {spec["name"]: spec for spec in document["tables"]}
    created, dropped = [], []
    with dynamodb_lock:
        for name, table in list(backend.tables.items()):
            spec = wanted.get(name)
            if spec is None and name not in _from_templates:
                continue  # made through DynamoDB's own API: not the stacks' to drop
            if spec is None or _keys(table) != _keys_of(spec):
                table.deletion_protection_enabled = False  # the stack let it go: so do we
                backend.delete_table(name)
                dropped.append(name)
        for name, spec in wanted.items():
            if name not in backend.tables:
                backend.create_table(name, **spec["params"])
                created.append(name)
            _from_templates.add(name)
            table = backend.tables[name]
            table.ttl = spec["ttl"] if spec["ttl"] else table.ttl
            table.continuous_backups = spec["continuous_backups"]
    return {"created": created, "dropped": [n for n in dropped if n not in created]}


def _keys(table: Any) -> Any:
    return json.dumps([table.schema, table.attr], sort_keys=True)


def _keys_of(spec: dict[str, Any]) -> Any:
    return json.dumps([spec["params"]["schema"], spec["params"]["attr"]], sort_keys=True)


def _control(usage: Usage, app: WSGIApp) -> WSGIApp:
    """The child's own routes: table sync and its usage counts."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ["REQUEST_METHOD"]
        answer: Any
        if path == TABLES_PATH and method == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            answer = _apply_tables(json.loads(environ["wsgi.input"].read(length)))
        elif path == MARK_PATH and method == "POST":
            answer = {"mark": usage.mark()}
        elif path == KEY_WRITES_PATH and method == "GET":
            answer = usage.key_writes.document()
        elif path == CALLS_PATH and method == "GET":
            since = parse_qs(str(environ.get("QUERY_STRING") or "")).get("since")
            answer = usage.since(int(since[0]) if since else None)
        else:
            return app(environ, start_response)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(answer).encode()]

    return serve


def main() -> None:
    """Serve DynamoDB on a free loopback port (printed), until stdin closes."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    install_dynamodb_patches()
    usage = Usage(dynamodb_lock=dynamodb_lock)
    assert server._server is not None
    server._server.app = _control(usage, usage.middleware(server._server.app))
    keepalive.install(server)
    _, port = server.get_host_and_port()
    print(port, flush=True)
    sys.stdin.read()  # the parent's pipe: closed when it stops, or when it dies
    server.stop()


if __name__ == "__main__":
    main()
