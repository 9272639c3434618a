"""The local cloud's servers keep connections alive, as AWS does (localcloud.keepalive): the
next request on a connection is answered whatever the one before it left unread, and a client
that asks to close, or sends a body of no stated length, gets its connection closed."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from werkzeug.serving import make_server

from localcloud import keepalive
from localcloud.moto_server import MotoServer

DATA = "/moto-api/data.json"


def _connect(endpoint: str) -> http.client.HTTPConnection:
    url = urlsplit(endpoint)
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)


@pytest.mark.parametrize("server", ["main", "dynamodb"])
def test_one_connection_serves_request_after_request(cloud: MotoServer, server: str) -> None:
    endpoint = cloud.endpoint if server == "main" else cloud.dynamodb.endpoint
    conn = _connect(endpoint)
    sockets = []
    for _ in range(3):
        conn.request("GET", DATA)
        answer = conn.getresponse()
        body = answer.read()
        assert answer.status == 200, body[:200]
        assert answer.getheader("Connection") is None
        json.loads(body)
        sockets.append(conn.sock)
    assert sockets[0] is not None
    assert sockets[0] is sockets[1] is sockets[2]  # never reopened
    conn.close()


def test_a_body_the_server_did_not_read_does_not_reach_the_next_request(
    cloud: MotoServer,
) -> None:
    # given a request whose body moto's data route never reads, on a kept-alive connection
    conn = _connect(cloud.endpoint)
    unread = b"GET /not-a-request HTTP/1.1\r\n\r\n" * 20
    conn.request("GET", DATA, body=unread, headers={"Content-Length": str(len(unread))})
    first = conn.getresponse()
    first.read()

    # when the next request comes on the same connection
    conn.request("GET", DATA)
    second = conn.getresponse()

    # then it is answered as itself: the body before it was read to its length and dropped
    assert (first.status, second.status) == (200, 200)
    json.loads(second.read())
    conn.close()


def test_a_client_that_asks_to_close_is_closed(cloud: MotoServer) -> None:
    conn = _connect(cloud.endpoint)
    conn.request("GET", DATA, headers={"Connection": "close"})
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 200
    assert answer.getheader("Connection") == "close"
    assert answer.will_close


def test_a_body_of_no_stated_length_closes_its_connection(cloud: MotoServer) -> None:
    # given a chunked body (where it ends is the application's business)
    conn = _connect(cloud.endpoint)
    conn.request("GET", DATA, body=iter([b"abc", b"def"]), encode_chunked=True)
    answer = conn.getresponse()
    answer.read()
    # then it is answered, and the connection is not kept
    assert answer.status == 200
    assert answer.getheader("Connection") == "close"


class _Server:
    """A werkzeug threaded server (the kind moto runs) with a small app, kept alive."""

    def __init__(self, app: Any) -> None:
        self.wsgi = make_server("127.0.0.1", 0, app, threaded=True)
        self._server = self.wsgi  # what keepalive.install reads, as on ThreadedMotoServer
        keepalive.install(self)
        self.thread = threading.Thread(target=self.wsgi.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.wsgi.server_port}"

    def stop(self) -> None:
        self.wsgi.shutdown()
        self.wsgi.server_close()
        keepalive.close_all(self)


def _answer(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Length", "10")])
    yield b"first half"
    if environ.get("PATH_INFO") == "/fail":
        raise RuntimeError("the answer breaks off")


def test_an_answer_the_app_broke_off_closes_its_connection_at_once() -> None:
    server = _Server(_answer)
    try:
        conn = _connect(server.endpoint)
        conn.request("GET", "/ok")
        assert conn.getresponse().read() == b"first half"
        # when the app raises after its headers went out
        conn.request("GET", "/fail")
        answer = conn.getresponse()
        # then the client is not left waiting for more: the connection closes
        assert answer.read() == b"first half"
        conn.request("GET", "/ok")
        with pytest.raises((http.client.HTTPException, OSError)):
            conn.getresponse()
    finally:
        server.stop()


def test_a_stopped_server_answers_no_more_on_the_connections_it_kept() -> None:
    server = _Server(_answer)
    conn = _connect(server.endpoint)
    conn.request("GET", "/ok")
    assert conn.getresponse().read() == b"first half"
    server.stop()
    conn.request("GET", "/ok")
    with pytest.raises((http.client.HTTPException, OSError)):
        conn.getresponse()


def test_an_http_1_0_client_is_closed() -> None:
    server = _Server(_answer)
    try:
        with socket.create_connection(("127.0.0.1", server.wsgi.server_port), timeout=10) as raw:
            raw.sendall(b"GET /ok HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            received = b""
            while chunk := raw.recv(4096):  # ends only if the server closes
                received += chunk
        assert received.startswith(b"HTTP/1.") and received.endswith(b"first half")
    finally:
        server.stop()
