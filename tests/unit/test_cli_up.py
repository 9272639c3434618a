"""`ingest up` says a cloud is starting before it loads the cloud commands, so that a command
typed right after `ingest up &` waits for it instead of starting a cloud of its own."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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


def test_a_second_up_started_while_one_holds_the_lock_ends_at_once(
    state: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given another `ingest up` (a process of its own) that has taken the lock, and has not
    # yet written any state: the two were started together
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from ingest_cli import cloud_parsers;"
            " assert cloud_parsers._take_up_lock(Path(sys.argv[1]));"
            " print('held', flush=True); time.sleep(30)",
            str(state.with_suffix(".lock")),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"

        def loading(_command: str, _function: str) -> cloud_parsers.Command:
            raise AssertionError("a second `up` must not start a cloud")

        monkeypatch.setattr(cloud_parsers, "_lazy", loading)

        # when this `up` starts, it ends at once, saying why, and writes no state
        assert cloud_parsers._up(argparse.Namespace()) == 1
        assert "another `ingest up` is starting or running" in capsys.readouterr().err
        assert not state.exists()
    finally:
        holder.kill()
        holder.wait()

    # and once the holder has ended (killed: nothing cleaned up), the lock is free again
    monkeypatch.setattr(cloud_parsers, "_lazy", lambda *_: lambda _args: 0)
    assert cloud_parsers._up(argparse.Namespace()) == 0
