"""The local cloud's control endpoint on 127.0.0.1: what `ingest fault` and `ingest status` talk
to while an `ingest up` runs in another terminal. Faults, metric totals and AWS usage; nothing
else.

    GET    /metrics  {"metrics": {service: {name: total}}}   the functions' embedded metrics
    POST   /calls/mark  {"mark": N}   remember the AWS usage so far (localcloud.calls)
    GET    /calls?since=N  {"usage": {...}}   the usage after mark N (no `since`: since the start)
    GET    /faults   {"faults": [spec, ...]}
    PUT    /faults   {"faults": [spec, ...]}   add to what is in force (same kind: replaced)
    DELETE /faults   clear every fault
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from localcloud.calls import Usage
from localcloud.faults import Faults, FaultSpecError, FaultSwitch, parse

MAX_BODY = 64 * 1024


class ControlServer:
    """Serves /faults for one FaultSwitch until stopped."""

    def __init__(
        self,
        faults: FaultSwitch,
        *,
        platform_simulated: bool,
        metrics: Callable[[], dict[str, dict[str, float]]] = dict,
        usage: Usage | None = None,
        flush: Callable[[], object] = lambda: None,
    ) -> None:
        self._faults = faults
        self._simulated = platform_simulated
        switch, simulated, tally = faults, platform_simulated, metrics
        counted = usage or Usage()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # no access log

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._answer(200, {"metrics": tally()})
                    return
                url = urlsplit(self.path)
                if url.path == "/calls":
                    flush()  # what is still on its way (the X-Ray daemon's traces)
                    since = parse_qs(url.query).get("since", [""])[0]
                    try:
                        mark = int(since) if since else None
                        self._answer(200, {"usage": counted.since(mark)})
                    except (ValueError, KeyError) as err:
                        self._answer(400, {"error": str(err).strip("'\"")})
                    return
                if self.path != "/faults":
                    self._answer(404, {"error": "not found"})
                    return
                self._answer(200, {"faults": switch.get().specs()})

            def do_POST(self) -> None:
                if self.path != "/calls/mark":
                    self._answer(404, {"error": "not found"})
                    return
                self._answer(200, {"mark": counted.mark()})

            def do_DELETE(self) -> None:
                if self.path != "/faults":
                    self._answer(404, {"error": "not found"})
                    return
                switch.set(Faults())
                self._answer(200, {"faults": []})

            def do_PUT(self) -> None:
                if self.path != "/faults":
                    self._answer(404, {"error": "not found"})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self._answer(413, {"error": "too large"})
                    return
                try:
                    specs = json.loads(self.rfile.read(length) or b"{}").get("faults", [])
                    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
                        raise FaultSpecError("faults must be a list of specs")
                    updated = parse(specs, switch.get())
                    if updated.platform != "up" and not simulated:
                        raise FaultSpecError(
                            "platform faults need the platform simulator (this cloud uses an "
                            "external platform)"
                        )
                except (ValueError, AttributeError) as err:
                    self._answer(400, {"error": str(err)})
                    return
                switch.set(updated)
                self._answer(200, {"faults": updated.specs()})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2)
