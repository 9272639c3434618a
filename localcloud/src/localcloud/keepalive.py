"""Kept-alive HTTP connections for the local cloud's moto servers.

moto serves through werkzeug's development server, which closes every connection after one
response (`Connection: close`). So every AWS call any part of the local cloud made (a
function's, a poller's, the platform's) opened a TCP connection and cost the server a thread
started for it: py-spy on the DynamoDB server during GetItems in a loop put half of its time
in accepting connections and starting and ending their threads, and 5% in GetItem itself.
AWS keeps connections alive, and so does every SDK client: so does this, on both servers.

werkzeug closes connections because `http.server` cannot tell where an unread request body
ends. Here the request's own `Content-Length` bounds what the application may read (a
`LimitedStream` as its input), and whatever it left unread is read to that bound after the
response, so the next request starts where it should. A request whose body has no length (a
chunked upload: boto3 sends none) still closes its connection, as before. werkzeug also reads
whatever the client sent after the response, to discard it before closing; on a kept-alive
connection that would be the next request, so that read is given nothing to read. Responses
go out with TCP_NODELAY (else Nagle's algorithm and the client's delayed ACK hold each for
40 ms). A connection closes after an answer the application broke off by raising (the client
sees the end at once), for an HTTP/1.0 client, when idle for `IDLE_S` (clients open another, as
after any close), and when the server stops (`close_all`: its threads would otherwise go on
answering on the connections they kept).

This is infrastructure glue, kept small: werkzeug offers no keep-alive switch, and moto no
other server.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from werkzeug.wsgi import LimitedStream

IDLE_S = 120.0  # an idle connection is closed after this


class _Drained:
    """What werkzeug's discard-what-follows reads from: nothing, at once."""

    def read(self, _size: int = -1) -> bytes:
        return b""


_FAILED = "localcloud.keepalive.failed"  # in the environ: the application raised


def _guarded(app: Any) -> Any:
    """`app`, noting in the environ when it raised (its answer may be cut short: the
    connection must close so that the client sees the end at once)."""

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        try:
            yield from app(environ, start_response)
        except Exception:
            environ[_FAILED] = True
            raise

    return serve


def keep_alive(handler: Any) -> Any:
    """A subclass of werkzeug's `WSGIRequestHandler` class `handler` that keeps connections
    alive, and a way to close the ones open (`close_all`)."""
    # one end of a pair whose other end wrote a byte nobody reads: always readable, so that
    # werkzeug's discard loop looks once, reads `_Drained`'s nothing and stops
    ready, writer = socket.socketpair()
    writer.send(b"x")
    drained = _Drained()
    open_connections: set[socket.socket] = set()
    lock = threading.Lock()

    class KeepAliveHandler(handler):
        connection: Any
        rfile: Any
        timeout = IDLE_S

        def setup(self) -> None:
            super().setup()
            # a response is written in more than one piece: without this, Nagle's algorithm
            # holds the last one until the client's delayed ACK (40 ms) on a kept connection
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with lock:
                open_connections.add(self.connection)

        def finish(self) -> None:
            with lock:
                open_connections.discard(self.connection)
            super().finish()

        def run_wsgi(self) -> None:
            if self.request_version != "HTTP/1.1":
                self.close_connection = True  # HTTP/1.0 reads to the end of the connection
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self.close_connection = True  # where its body ends is the app's business
                super().run_wsgi()
                return
            length = self.headers.get("Content-Length") or "0"
            if not length.isdigit():
                self.close_connection = True
                super().run_wsgi()
                return
            body = LimitedStream(self.rfile, int(length))
            self._body: LimitedStream | None = body
            self._environ: dict[str, Any] = {}
            rfile, connection = self.rfile, self.connection
            self.rfile, self.connection = drained, ready
            try:
                super().run_wsgi()
            finally:
                self.rfile, self.connection = rfile, connection
                self._body = None
            if self._environ.get(_FAILED):
                self.close_connection = True  # the answer may be cut short
            try:
                # the unread rest of this request, to its length only: before the next request,
                # or before a close (unread input makes the close a reset, which can destroy
                # the answer before the client reads it)
                body.exhaust()
            except Exception:  # the client went away mid-body
                self.close_connection = True

        def make_environ(self) -> dict[str, Any]:
            environ: dict[str, Any] = super().make_environ()
            body = getattr(self, "_body", None)
            if body is not None:
                environ["wsgi.input"] = body
                environ["werkzeug.socket"] = self.request
                self._environ = environ
            return environ

        def send_header(self, keyword: str, value: str) -> None:
            closing = keyword.lower() == "connection" and value.lower() == "close"
            if closing and not self.close_connection:
                return  # werkzeug's unconditional close: kept alive instead
            super().send_header(keyword, value)

        def log_error(self, format: str, *args: Any) -> None:
            if format.startswith("Request timed out"):
                return  # an idle kept-alive connection closing: nothing went wrong
            super().log_error(format, *args)

        @staticmethod
        def close_all() -> None:
            """Close every connection still open, and the pair: a stopped server's threads
            must not go on answering on the connections they kept."""
            with lock:
                connections = list(open_connections)
            for connection in connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            ready.close()
            writer.close()

    KeepAliveHandler.__name__ = f"KeepAlive{handler.__name__}"
    return KeepAliveHandler


def install(server: Any) -> None:
    """Keep the connections of a started `ThreadedMotoServer` alive (its werkzeug server
    makes a handler of this class for each connection it accepts). Call after its `app` is
    final; `close_all(server)` when it stops."""
    wsgi_server = server._server
    wsgi_server.app = _guarded(wsgi_server.app)
    wsgi_server.RequestHandlerClass = keep_alive(wsgi_server.RequestHandlerClass)


def close_all(server: Any) -> None:
    """Close the kept-alive connections of a server `install` patched (before or after its
    `stop`: its threads would otherwise answer on them for up to `IDLE_S`)."""
    wsgi_server = getattr(server, "_server", None)
    handler = getattr(wsgi_server, "RequestHandlerClass", None)
    if handler is not None and hasattr(handler, "close_all"):
        handler.close_all()
