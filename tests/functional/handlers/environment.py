"""A controlled environment for building a composition root: the function's variables only."""

from __future__ import annotations

import msgspec
import pytest

from servicekit.settings import variables


def function_environment(
    monkeypatch: pytest.MonkeyPatch, kind: type[msgspec.Struct], **values: str
) -> None:
    """Exactly `values` for the variables `kind` reads (any other of them unset), and an AWS
    region and dummy credentials: what Lambda gives a function, less the network."""
    for name in variables(kind):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws/config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws/credentials")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
