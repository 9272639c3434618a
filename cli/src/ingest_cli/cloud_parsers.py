"""The cloud commands' arguments (`up`, `run`, `status`, `deploy`), and shims that load them.

The file commands (validate, transform, sample) must start without boto3, moto, the local cloud
or the deploy tools, which come with the `cloud` extra. So this module imports nothing beyond
the standard library: each command's `run` is a shim that imports `ingest_cli.cloud_commands`
only when that command runs, and says in one line what to install if it cannot.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from typing import Any

# `deploytools.stacks.STACKS`, written out so that `ingest --help` needs no deploytools
# (a test holds the two equal).
STACKS = ("foundation", "splitter", "transformer", "publisher", "reaper")
INSTALL_HINT = "pip install 'gro-ingest-cli[cloud]'"
# What the `cloud` extra brings, directly or through its packages: a missing one means the
# extra is not installed, not that our code is broken.
CLOUD_MODULES = frozenset(
    {"boto3", "botocore", "moto", "yaml", "cfnlint", "localcloud", "deploytools", "servicekit"}
)

Command = Callable[[argparse.Namespace], int]


def _lazy(command: str, function: str) -> Command:
    """A `run` for `ingest COMMAND` that imports `cloud_commands.FUNCTION` when it is called."""

    def run(args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module("ingest_cli.cloud_commands")
        except ImportError as err:
            missing = err.name.partition(".")[0] if err.name else ""
            if isinstance(err, ModuleNotFoundError) and missing in CLOUD_MODULES:
                print(
                    f"ingest {command}: the cloud commands need the `cloud` extra: {INSTALL_HINT}",
                    file=sys.stderr,
                )
            else:  # the extra is there but something in it is not what we expect
                print(
                    f"ingest {command}: cannot load the cloud commands ({err}); "
                    f"they need the `cloud` extra: {INSTALL_HINT}",
                    file=sys.stderr,
                )
            return 2
        code: int = getattr(module, function)(args)
        return code

    run.__name__ = run.__qualname__ = f"lazy_{function}"
    return run


def add_parsers(sub: Any) -> None:
    """Add the cloud commands to `ingest`'s sub-command parser."""
    p = sub.add_parser("up", help="run the local cloud in the foreground until Ctrl-C")
    p.add_argument("--consumers", type=int, default=2, help="platform simulator consumers")
    p.add_argument("--port", type=int, default=0, help="moto's port (default: a free one)")
    p.add_argument("--logs", help="write every function's log lines (JSON lines) here")
    p.set_defaults(run=_lazy("up", "up"))

    p = sub.add_parser("run", help="ingest a file end to end and print a summary per stage")
    p.add_argument("file")
    p.add_argument("--consumers", type=int, default=2)
    p.add_argument("--logs", help="write every function's log lines (JSON lines) here")
    p.add_argument("--json", action="store_true", help="print the summary as one object")
    p.add_argument("--timeout", type=float, default=3600, help="give up after this many seconds")
    p.add_argument("--platform-url")
    p.add_argument("--token-url")
    p.add_argument("--client-id")
    p.add_argument("--client-secret")
    p.set_defaults(run=_lazy("run", "run"))

    p = sub.add_parser("status", help="where a file (or every file) is in the pipeline")
    p.add_argument("file", nargs="?")
    p.add_argument("--endpoint-url")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_lazy("status", "status"))

    p = sub.add_parser("deploy", help="package and deploy one stack")
    p.add_argument("stack", choices=STACKS)
    p.add_argument("--endpoint-url", help="a local cloud (default: AWS, with your credentials)")
    p.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(run=_lazy("deploy", "deploy"))
