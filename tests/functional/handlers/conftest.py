"""In-process handler tests: no sockets, no tracing, and the services' logs where `capsys`
reads them."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import pytest_socket

import publisher.app
import reaper.app
import splitter.app
import transformer.app

APPS = (splitter.app, transformer.app, publisher.app, reaper.app)


class _CurrentStdout:
    """Whatever `sys.stdout` is when a line is written: pytest swaps it per test and phase,
    while a Powertools handler keeps the stream it was given when its module was imported."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def in_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Sockets off for every test (a unix socket is no network), X-Ray off, logs to stdout."""
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    for app in APPS:
        assert app.tracer.disabled, f"{app.__name__}: the tracer would try to reach X-Ray"
        for handler in app.logger._logger.handlers:
            monkeypatch.setattr(handler, "stream", _CurrentStdout())
    pytest_socket.disable_socket(allow_unix_socket=True)
    yield
    pytest_socket.enable_socket()
