"""Fixtures for the local cloud: one moto server per module, state reset per test.

Module scope, not session: moto's patches are process-wide, so only one server may run at a
time, and the pipeline tests start a whole LocalCloud of their own.
"""

from __future__ import annotations

import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from localcloud.moto_server import MotoServer


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    """A started MotoServer on 127.0.0.1; functions get this venv's site-packages as runtime."""
    # The venv's site-packages plays the Lambda runtime's own libraries (boto3 and friends);
    # workspace packages are .pth links there, which `python -S` ignores, as Lambda would.
    server = MotoServer(runtime_path=[Path(sysconfig.get_paths()["purelib"])])
    server.start()
    yield server
    server.stop()


@pytest.fixture
def cloud(moto_server: MotoServer) -> MotoServer:
    """The session's MotoServer with all AWS state and Lambda containers reset."""
    moto_server.reset()
    return moto_server
