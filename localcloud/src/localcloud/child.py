"""A child process of the local cloud's: this interpreter running one of our modules, talking on
its stdin and stdout, and exiting when its stdin closes (so it never outlives its parent)."""

from __future__ import annotations

import os
import subprocess
import sys


def start(module: str) -> subprocess.Popen[str]:
    """`python -m MODULE` with pipes for stdin and stdout (line-buffered text)."""
    return subprocess.Popen(  # the interpreter running us, a module of ours
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def stop(process: subprocess.Popen[str]) -> None:
    """Close its stdin (it exits), and make sure it did."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
