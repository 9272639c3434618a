"""`ingest` as installed: the file commands load nothing of the cloud, and work without it.

The package `gro-ingest-cli` installs the file commands (validate, transform, sample) with the
splitter's and transformer's cores only; the cloud commands (up, run, status, deploy) need the
`cloud` extra, and say so in one line when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploytools.stacks import STACKS
from ingest_cli import cloud_parsers
from ingest_cli.sample import write_sample

ROOT = Path(__file__).resolve().parents[2]
# What the file commands must not load: the `cloud` extra and what it brings.
HEAVY = ("boto3", "botocore", "moto", "yaml", "cfnlint", "localcloud", "deploytools", "servicekit")
CLOUD_COMMANDS = ("up", "run", "status", "deploy", "dlq list")
EXTRA_MESSAGE = "the cloud commands need the `cloud` extra: pip install 'gro-ingest-cli[cloud]'"

# Runs `ingest_cli.main.main(argv)` in a fresh interpreter, then names the heavy modules loaded.
_PROBE = """
import json, sys
from ingest_cli.main import main
try:
    code = main(sys.argv[2:])
except SystemExit as stop:  # --help
    code = stop.code
heavy = sorted(m for m in sys.modules if m.partition(".")[0] in sys.argv[1].split(","))
sys.stdout.flush()
print("\\nPROBE " + json.dumps({"code": code, "heavy": heavy}))
"""

# The same `ingest`, in an interpreter where the `cloud` extra's packages cannot be imported.
_WITHOUT_CLOUD = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None  # `import name` now raises ModuleNotFoundError
from ingest_cli.main import main
raise SystemExit(main(sys.argv[2:]))
"""


def _clean_env(state: Path) -> dict[str, str]:
    """The environment of a fresh shell, with the local cloud's state (and `ingest up`'s lock)
    in `state`, not in the home directory: a developer's running cloud stays out of it."""
    drop = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("INGEST_")}
    return {**env, "INGEST_STATE_DIR": str(state)}


@pytest.fixture(scope="module")
def sample_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "DWP_D_20240101.xml"
    with open(path, "wb") as out:
        write_sample(out, 25, seed=1)
    return path


def test_the_deploy_choices_are_the_deploy_tools_stacks() -> None:
    assert cloud_parsers.STACKS == STACKS


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["validate", "{file}"], id="validate"),
        pytest.param(["validate", "--json", "{file}"], id="validate-json"),
        pytest.param(["transform", "{file}"], id="transform"),
        pytest.param(["deploy", "--help"], id="deploy-help"),
        pytest.param(["dlq", "redrive", "--help"], id="dlq-help"),
        pytest.param(["trace", "--help"], id="trace-help"),
    ],
)
def test_the_file_commands_load_nothing_of_the_cloud(
    sample_file: Path, argv: list[str], tmp_path: Path
) -> None:
    args = [a.replace("{file}", str(sample_file)) for a in argv]
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, ",".join(HEAVY), *args],
        capture_output=True,
        text=True,
        env=_clean_env(tmp_path),
        timeout=120,
        check=False,
    )
    probe = json.loads(out.stdout.rsplit("\nPROBE ", 1)[-1])
    assert probe == {"code": 0, "heavy": []}, out.stderr


@pytest.mark.parametrize("command", CLOUD_COMMANDS)
def test_a_cloud_command_without_the_extra_says_what_to_install(
    sample_file: Path, command: str, tmp_path: Path
) -> None:
    args = {"run": [str(sample_file)], "deploy": ["foundation"]}.get(command, [])
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_CLOUD, ",".join(HEAVY), *command.split(), *args],
        capture_output=True,
        text=True,
        env=_clean_env(tmp_path),
        timeout=120,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr == f"ingest {command}: {EXTRA_MESSAGE}\n"
    assert out.stdout == ""


def _uv() -> str:
    found = shutil.which("uv")
    if found:
        return found
    from uv import find_uv_bin  # the `uv` package: deploytools depends on it

    return find_uv_bin()


@pytest.fixture(scope="module")
def bare_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding `gro-ingest-cli` and its own dependencies only (no extra)."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    env = _clean_env(venv.parent / "state")
    for cmd in (
        [_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)],
        # the workspace members it needs (contracts, splitter, transformer...) come from
        # cli/pyproject.toml's [tool.uv.sources]; the rest from the registry or uv's cache
        [_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "./cli"],
    ):
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600, check=False
        )
        assert done.returncode == 0, done.stderr
    return venv


def _in(venv: Path, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / program), *args],
        cwd=venv,  # not the repository: nothing of the workspace on sys.path
        capture_output=True,
        text=True,
        env=_clean_env(venv.parent / "state"),
        timeout=120,
        check=False,
    )


def test_installed_without_the_extra_the_file_commands_work(
    bare_install: Path, sample_file: Path
) -> None:
    helped = _in(bare_install, "ingest", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "validate" in helped.stdout and "deploy" in helped.stdout
    out = _in(bare_install, "ingest", "validate", str(sample_file))
    assert out.returncode == 0, out.stderr
    assert f"{sample_file}: acceptable: 25 records, 25 valid, 0 invalid" in out.stdout
    where = _in(bare_install, "python", "-c", "import ingest_cli; print(ingest_cli.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(bare_install), where.stdout


def test_installed_without_the_extra_there_is_no_boto3_and_the_cloud_commands_say_so(
    bare_install: Path,
) -> None:
    probe = _in(bare_install, "python", "-c", "import boto3")
    assert probe.returncode != 0 and "No module named 'boto3'" in probe.stderr
    out = _in(bare_install, "ingest", "up")
    assert out.returncode == 2
    assert out.stderr == f"ingest up: {EXTRA_MESSAGE}\n"
    assert "Traceback" not in out.stdout + out.stderr


def test_installed_without_the_extra_ingest_cost_prices_a_saved_run(
    bare_install: Path, tmp_path: Path
) -> None:
    from ingest_cli import cost

    usage = {
        "calls": {"gro-splitter-split": {"sqs.SendMessageBatch": {"calls": 1, "billed": 1}}},
        "lambda": {"gro-splitter-split": {"invocations": 1, "gb_seconds": 0.5}},
    }
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps({"records": 10, **cost.summarise(usage, 10, 4)}))

    out = _in(bare_install, "ingest", "cost", "--from", str(saved))

    assert out.returncode == 0, out.stderr
    assert "per million records:" in out.stdout
    assert "prices: ingest_cli/aws_prices.toml, read " in out.stdout
