"""Run the `ingest` tool as an operator does, against a given cloud, and read its --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def ingest_json(endpoint: str, state_dir: Path, *args: str, timeout: float = 300) -> Any:
    """`ingest ARGS --endpoint-url ENDPOINT --json`; fails the test on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, "-m", "ingest_cli.main", *args, "--endpoint-url", endpoint, "--json"],
        env={**os.environ, "INGEST_STATE_DIR": str(state_dir)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)
