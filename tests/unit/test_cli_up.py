"""`ingest up` says a cloud is starting before it loads the cloud commands, so that a command
typed right after `ingest up &` waits for it instead of starting a cloud of its own."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest_cli import cloud_parsers


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("INGEST_STATE_DIR", str(tmp_path))
    return tmp_path / "local-cloud.json"


def test_the_starting_state_is_written_before_the_cloud_commands_load(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, object]] = []

    def loading(_command: str, _function: str) -> cloud_parsers.Command:
        # what another `ingest` command would read while `up` is still loading
        seen.append(json.loads(state.read_text()))
        return lambda _args: 0

    monkeypatch.setattr(cloud_parsers, "_lazy", loading)

    assert cloud_parsers._up(argparse.Namespace()) == 0

    assert seen == [{"starting": True, "pid": os.getpid()}]
    assert not state.exists()  # taken back: this `up` ended without a cloud


def test_a_live_process_s_state_is_left_for_up_to_judge(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a state file held by a live process (another `ingest up`)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as other:
        try:
            held = {"endpoint": "http://127.0.0.1:1", "pid": other.pid}
            state.write_text(json.dumps(held))
            monkeypatch.setattr(cloud_parsers, "_lazy", lambda *_: lambda _args: 1)

            # when `up` starts
            cloud_parsers._up(argparse.Namespace())

            # then the file is as it was: `up` itself says a cloud is running
            assert json.loads(state.read_text()) == held
        finally:
            other.kill()


_HOLDER = """
import json, os, sys
from pathlib import Path
from ingest_cli import cloud_parsers
state = Path(sys.argv[1])
assert cloud_parsers._take_up_lock(state.with_suffix(".lock"))
if sys.argv[2] == "running":
    state.write_text(json.dumps({"starting": True, "pid": os.getpid()}))
print("held", flush=True)
sys.stdin.readline()  # until told to end; then, ending, it lets the lock go
"""


@contextlib.contextmanager
def another_up(state: Path, how: str) -> Iterator[subprocess.Popen[str]]:
    """Another `ingest up` (a process of its own) holding the lock: `running` (its state
    written) or `stopping` (its state gone, its cloud still stopping)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(state), how],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()
        for pipe in (holder.stdin, holder.stdout):
            if pipe is not None:
                pipe.close()


def _no_cloud(_command: str, _function: str) -> cloud_parsers.Command:
    raise AssertionError("a second `up` must not start a cloud")


def test_a_second_up_while_one_runs_ends_at_once(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cloud_parsers, "_lazy", _no_cloud)
    with another_up(state, "running"):
        started = time.monotonic()
        assert cloud_parsers._up(argparse.Namespace()) == 1
        assert time.monotonic() - started < 5  # not waited out
    assert "another `ingest up` is starting or running" in capsys.readouterr().err


def test_a_second_up_waits_for_one_that_is_stopping_then_starts(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    held_while_loading: list[bool] = []

    def loading(_command: str, _function: str) -> cloud_parsers.Command:
        # this `up` holds the lock now: a third one could not take it
        held_while_loading.append(not cloud_parsers._take_up_lock(state.with_suffix(".lock")))
        return lambda _args: 0

    monkeypatch.setattr(cloud_parsers, "_lazy", loading)
    with another_up(state, "stopping") as holder:
        pauses: list[float] = []

        def pause(seconds: float) -> None:
            # the first time this `up` waits, the holder finishes stopping
            if not pauses:
                assert holder.stdin is not None
                holder.stdin.close()
                holder.wait(timeout=30)
            pauses.append(seconds)

        clock = types.SimpleNamespace(monotonic=time.monotonic, sleep=pause)
        monkeypatch.setattr(cloud_parsers, "time", clock)
        assert cloud_parsers._up(argparse.Namespace()) == 0
    assert pauses  # it waited: the holder still held the lock when this `up` began
    assert held_while_loading == [True]
    assert "waiting for the `ingest up` that is stopping" in capsys.readouterr().err


def test_an_up_that_stays_stopping_is_waited_for_then_named(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cloud_parsers, "_lazy", _no_cloud)
    monkeypatch.setattr(cloud_parsers, "UP_STOPPING_WAIT_SECONDS", 0.5)
    with another_up(state, "stopping"):
        assert cloud_parsers._up(argparse.Namespace()) == 1
    err = capsys.readouterr().err
    assert "waiting for the `ingest up` that is stopping" in err
    assert "has held its lock for 0 s with no state" in err


def test_a_killed_up_leaves_the_lock_free(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with another_up(state, "running") as holder:
        holder.kill()
        holder.wait()
    monkeypatch.setattr(cloud_parsers, "_lazy", lambda *_: lambda _args: 0)
    assert cloud_parsers._up(argparse.Namespace()) == 0
