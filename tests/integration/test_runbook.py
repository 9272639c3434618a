"""The operator's runbook in the README, run as written against a local cloud: platform down ->
every record dead-lettered with its reason -> platform back -> redrive -> every record
published exactly once and consumed. The commands are read from the README itself, so the
README cannot drift from what works."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

from lxml import etree

from contracts.gro import NS_PERSON
from deploytools.stacks import ROOT

README = ROOT / "README.md"


def runbook_lines() -> list[str]:
    text = README.read_text()
    start = text.index("A rehearsal on the local cloud, as written")
    block = re.search(r"```sh\n(.*?)```", text[start:], re.S)
    assert block is not None
    lines = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def names_in(path: Path) -> set[str]:
    tree = etree.parse(str(path))
    return {e.text for e in tree.iter(f"{{{NS_PERSON}}}PersonFamilyName") if e.text}


def test_the_readme_runbook_takes_a_file_through_an_outage_and_a_redrive(tmp_path: Path) -> None:
    env = {**os.environ, "INGEST_STATE_DIR": str(tmp_path / "state")}
    lines = runbook_lines()
    assert lines[0].endswith("&") and lines[-1] == "kill %1"
    background: subprocess.Popen[str] | None = None
    outputs: list[tuple[str, str]] = []
    try:
        for line in lines:
            if line == "kill %1":
                assert background is not None
                background.send_signal(signal.SIGINT)
                assert background.wait(timeout=60) == 0
                background = None
                continue
            if line.endswith("&"):
                background = subprocess.Popen(
                    shlex.split(line[:-1]),
                    cwd=ROOT,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                continue
            done = subprocess.run(
                shlex.split(line), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
            )
            assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
            outputs.append((line, done.stdout + done.stderr))

        # then: the run ended with every record dead-lettered, with the platform's answer as why
        run = next(out for line, out in outputs if line.endswith("ingest run build/drill.xml"))
        assert re.search(r"dead-lettered\s+50", run)
        shown = next(out for line, out in outputs if "dlq show" in line)
        assert "platform answered 503" in shown
        statuses = [out for line, out in outputs if "ingest status" in line]
        assert len(statuses) == 2
        assert "published 0, rejected 0, dead-lettered 50" in statuses[0]
        # and after the redrive: every record published once, none left dead-lettered
        assert "published 50, rejected 0, dead-lettered 0" in statuses[-1]
        assert "redriven: 50 moved dead-lettered -> published" in statuses[-1]
        redriven = next(out for line, out in outputs if "dlq redrive" in line)
        assert "50 moved" in redriven and "0 back in the dead-letter queue" in redriven
        # and nothing of any record reached the operator's screen
        everything = "\n".join(out for _, out in outputs)
        for name in names_in(ROOT / "build" / "drill.xml"):
            assert name not in everything, "a family name reached the output"
    finally:
        if background is not None:
            background.send_signal(signal.SIGINT)
            background.wait(timeout=60)


def test_status_without_a_local_cloud_says_so_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "INGEST_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        ["uv", "run", "ingest", "status", "drill.xml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "no local cloud is running" in done.stderr
    assert "Traceback" not in done.stderr
