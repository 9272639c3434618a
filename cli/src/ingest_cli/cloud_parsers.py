"""The cloud commands' arguments (`up`, `run`, `status`, `receipts`, `deploy`, `dlq`, `trace`),
and shims that load them.

The file commands (validate, transform, sample) must start without boto3, moto, the local cloud
or the deploy tools, which come with the `cloud` extra. So this module imports nothing beyond
the standard library and `ingest_cli.cost` (which imports nothing else either): each
command's `run` is a shim that imports `ingest_cli.cloud_commands` only when that command
runs, and says in one line what to install if it cannot.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingest_cli.cost import state_dir, write_whole

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


def _lazy(command: str, function: str, module_name: str = "ingest_cli.cloud_commands") -> Command:
    """A `run` for `ingest COMMAND` that imports `MODULE_NAME.FUNCTION` when it is called."""

    def run(args: argparse.Namespace) -> int:
        try:
            module = importlib.import_module(module_name)
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


def alive(pid: object) -> bool:
    """Whether process `pid` is running."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _state_file() -> Path:
    # localcloud.cloud.STATE_FILE, without loading it (a test holds the two equal)
    return state_dir() / "local-cloud.json"


# The lock file descriptors this process holds (kept open: closing one lets the lock go).
_held: list[int] = []


# How long a new `up` waits for one that is stopping (its state file gone, its lock still
# held while it stops its cloud: a few seconds).
UP_STOPPING_WAIT_SECONDS = 60.0


def _take_up_lock(
    path: Path,
    *,
    stopping: Callable[[], bool] = lambda: False,
    waiting: Callable[[], None] = lambda: None,
) -> bool:
    """Take the lock that one `ingest up` at a time holds for as long as it lives; False if
    another process holds it. While `stopping()` says the holder is on its way out, wait for
    it (at most UP_STOPPING_WAIT_SECONDS), telling `waiting()` once. (A `flock`: the kernel
    lets it go when its holder ends, however it ends, so a crashed `up` leaves nothing to
    clean.)"""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + UP_STOPPING_WAIT_SECONDS
    waited = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if not stopping() or time.monotonic() > deadline:
                os.close(fd)
                return False
            if not waited:
                waiting()
                waited = True
            time.sleep(0.2)
    _held.append(fd)
    return True


def _up(args: argparse.Namespace) -> int:
    """`ingest up`, saying at once that a cloud is starting.

    Loading the cloud commands takes a second or more (several on a busy machine), and a
    command typed right after `ingest up &` that finds no state file starts a cloud of its own.
    So the "starting" state is written first, unless a live process holds the file already
    (then `up` itself decides, as it always did); it is taken back if `up` ends before its
    cloud does.

    Two `ingest up`s started together would both find no state and both start a cloud: the
    state file is read and written, not locked. So `up` first takes a lock beside it, held
    until it ends; a second `up` that cannot take it says so and ends, unless the holder is
    stopping: then it waits for it.
    """
    path = _state_file()
    # the holder writes its state as soon as it has the lock, and removes it as it stops: no
    # state file, then, is an `up` stopping (or, for an instant, one just started)
    waited: list[bool] = []

    def waiting() -> None:
        waited.append(True)
        print("ingest up: waiting for the `ingest up` that is stopping", file=sys.stderr)

    lock = path.with_suffix(".lock")
    if not _take_up_lock(lock, stopping=lambda: not path.exists(), waiting=waiting):
        if waited:
            why = f"has held its lock for {UP_STOPPING_WAIT_SECONDS:.0f} s with no state ({lock})"
        else:
            why = f"is starting or running a local cloud ({path})"
        print(f"ingest up: another `ingest up` {why}", file=sys.stderr)
        return 1
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        current = None
    announced = not (isinstance(current, dict) and alive(current.get("pid")))
    if announced:
        write_whole(path, {"starting": True, "pid": os.getpid()})
    try:
        return _lazy("up", "up")(args)
    finally:
        if announced:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(path.read_text()).get("pid") == os.getpid():
                    path.unlink()


def add_parsers(sub: Any) -> None:
    """Add the cloud commands to `ingest`'s sub-command parser."""
    p = sub.add_parser("up", help="run the local cloud in the foreground until Ctrl-C")
    p.add_argument("--consumers", type=int, default=2, help="platform simulator consumers")
    p.add_argument("--port", type=int, default=0, help="moto's port (default: a free one)")
    p.add_argument("--logs", help="write every function's log lines (JSON lines) here")
    _fault_option(p)
    p.set_defaults(run=_up)

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
    p.add_argument(
        "--traces",
        metavar="FILE",
        help="save the run's traces here, for `ingest trace EVENT_ID --from FILE` after the run",
    )
    _fault_option(p)
    p.set_defaults(run=_lazy("run", "run"))

    p = sub.add_parser(
        "status",
        help="where a file (or every file) is in the pipeline; for one FILE (its key or file "
        "id) also its failures by reason and its deletion receipt",
    )
    p.add_argument("file", nargs="?")
    p.add_argument("--endpoint-url")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--metrics",
        action="store_true",
        help="only the functions' metrics since the local cloud started, per service",
    )
    p.set_defaults(run=_lazy("status", "status"))

    p = sub.add_parser("deploy", help="package and deploy one stack")
    p.add_argument("stack", choices=STACKS)
    p.add_argument("--endpoint-url", help="a local cloud (default: AWS, with your credentials)")
    p.add_argument("--parameter", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--version",
        metavar="LABEL",
        help="the release label (default: package version + commit); a label released before "
        "is deployed again as it was: that is a rollback",
    )
    p.set_defaults(run=_lazy("deploy", "deploy"))

    p = sub.add_parser(
        "versions",
        help="which release of each service is deployed, with its contracts; warns when a "
        "producer's output is not accepted by the consumer deployed beside it (exit 1)",
    )
    p.add_argument("--endpoint-url", help="a local cloud (default: the running one, else AWS)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_lazy("versions", "versions"))

    p = sub.add_parser(
        "fault",
        help="break the running local cloud on purpose (or `fault clear`); no spec: list",
        description=FAULT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", nargs="*", help="fault specs, or `clear`")
    p.add_argument("--json", action="store_true", help="print the faults in force as JSON")
    p.set_defaults(run=_lazy("fault", "fault"))

    p = sub.add_parser(
        "receipts",
        help="every deletion receipt: per file its records by how they ended and left the "
        "store, when the source was deleted and the last record left, complete or not",
    )
    p.add_argument(
        "--endpoint-url",
        help="a local cloud (default: the running `ingest up`, else AWS with your credentials)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list of the receipts")
    p.set_defaults(run=_lazy("receipts", "receipts"))

    _add_dlq_parsers(sub)
    _add_trace_parser(sub)
    _add_cost_parser(sub)


def _add_cost_parser(sub: Any) -> None:
    """`ingest cost` (code in `ingest_cli.cost`: standard library only, no extra needed)."""
    text = (
        "what a run's counted AWS usage costs at AWS's prices, per million records (x86_64 and "
        "arm64), beside the Lambda GB-seconds measured per stage; the last `ingest run`, or "
        "--from a saved `ingest run --json`"
    )
    p = sub.add_parser("cost", help=text, description=text)
    p.add_argument(
        "--records", type=int, default=1_000_000, metavar="N", help="price N records (1,000,000)"
    )
    p.add_argument(
        "--region",
        default="eu-west-2",
        choices=("eu-west-2", "us-east-1"),
        help="whose prices (default eu-west-2, London)",
    )
    p.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="a saved `ingest run --json` (default: the last run's, kept by `ingest run`)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(run=_lazy("cost", "cost", "ingest_cli.cost"))


def _add_trace_parser(sub: Any) -> None:
    """`ingest trace EVENT_ID | --file KEY` (code in `ingest_cli.trace_command`)."""
    text = (
        "the life of one record (its steps in time order: service, version, start, duration, "
        "outcome; both attempts of a redriven one), or with --file a whole file per stage; "
        "from X-Ray, on the running local cloud, --endpoint-url, or AWS"
    )
    p = sub.add_parser("trace", help=text, description=text)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("event_id", nargs="?", metavar="EVENT_ID", help="an event id")
    what.add_argument(
        "--file",
        metavar="KEY",
        help="a file's key (or file id): count, p50/p95/max duration and failures per stage, "
        "its slowest and its failed records",
    )
    p.add_argument(
        "--since",
        type=float,
        default=24.0,
        metavar="HOURS",
        help="look at traces of the last HOURS hours (default 24)",
    )
    p.add_argument(
        "--endpoint-url",
        help="a local cloud (default: the running `ingest up`, else AWS with your credentials)",
    )
    p.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="read the traces a run saved (`ingest run --traces FILE`) instead of X-Ray",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=_lazy("trace", "trace", "ingest_cli.trace_command"))


def _add_dlq_parsers(sub: Any) -> None:
    """`ingest dlq list | show | redrive` (code in `ingest_cli.dlq`, loaded when one runs)."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--endpoint-url",
        help="a local cloud (default: the running `ingest up`, else AWS with your credentials)",
    )
    where.add_argument("--json", action="store_true", help="print one JSON document")
    dlq = sub.add_parser("dlq", help="inspect and redrive the pipeline's dead-letter queues")
    commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> Any:
        return commands.add_parser(name, parents=[where], help=text, description=text)

    p = command(
        "list",
        "every DLQ: depth, age of the oldest message (sampled: up to 100 are peeked and "
        "released at once), the queue it redrives to",
    )
    p.set_defaults(run=_lazy("dlq list", "list_dlqs", "ingest_cli.dlq"))
    p = command(
        "show",
        "each message's ids, who gave up on it and why, never the record (peeked and released "
        "at once: a sample); then the reasons with counts",
    )
    p.add_argument("queue", help="e.g. events-to-publish (see `ingest dlq list`)")
    p.add_argument("--limit", type=int, default=50, help="messages to peek (default 50)")
    p.set_defaults(run=_lazy("dlq show", "show", "ingest_cli.dlq"))
    p = command(
        "redrive",
        "move every message back to the queue it was dead-lettered from, with an SQS "
        "message-move task, following it to the end (Ctrl-C cancels it)",
    )
    p.add_argument("queue", help="e.g. events-to-publish (see `ingest dlq list`)")
    p.add_argument(
        "--max-per-second", type=int, metavar="R", help="move at most R messages a second (1-500)"
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="then wait until the queue has handled them (each one published, or back in the DLQ)",
    )
    p.set_defaults(run=_lazy("dlq redrive", "redrive", "ingest_cli.dlq"))


FAULT_HELP = """\
Faults act on a running local cloud (`ingest up`), and on the one `ingest up/run --fault`
starts. A spec of a kind replaces the one in force; `ingest fault clear` removes them all.

  platform=down                every POST /events answers 503 (platform=up: behaves again)
  platform=flaky:P             a share P of POSTs answer 500 or 429, at random
  platform=accept-then-fail:P  a share P of new events are stored, then answered 504
  crash=SERVICE:P              a share P of SERVICE's batches: first half handled, then a crash
  kill=splitter:N[:always]     the next (every) split step dies after N records, like a timeout
  duplicate=s3-events          every "Object Created" notice is delivered twice
  duplicate=consumed           every consumed notice is published twice
"""


def _fault_option(parser: Any) -> None:
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault (see `ingest fault --help`); repeatable",
    )
