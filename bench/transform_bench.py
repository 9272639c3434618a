"""`ingest transform` (the whole CLI, as a subprocess) against a bare lxml iterparse loop.

    uv run python bench/transform_bench.py [--records 20000] [--seed 1] [--rounds 3]

The bare loop is the honest one the issue names: `etree.iterparse(path, events=("end",),
tag="{ns}DeathRegistration")`, each element cleared as it ends, and nothing else. The CLI runs
as an operator runs it, `python -m ingest_cli.main transform FILE`, stdout to /dev/null: its
start-up, the file's checks, every record's event (typed record, keyed id, JSON line) and the
writing all count. The two are measured in turns, in this one run, on the same file; each
figure is the best of `--rounds` (the machine is shared: the best run is the one least
disturbed), and the ratio is computed from those two figures, never from remembered ones. The
same is printed for CPU time (the loop's process time; the CLI's user + system time as a child),
which a busy machine disturbs far less than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def _sample(records: int, seed: int) -> Path:
    from ingest_cli.sample import write_sample

    OUT.mkdir(exist_ok=True)
    path = OUT / f"sample-{records}-seed-{seed}.xml"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as out:
            write_sample(out, records, seed)
        tmp.replace(path)
    return path


def bare(path: Path) -> tuple[int, float, float]:
    """The bare loop: records seen, wall seconds, CPU seconds."""
    from lxml import etree

    from contracts.gro import NS_GRO

    tag = f"{{{NS_GRO}}}DeathRegistration"
    started, cpu = time.perf_counter(), time.process_time()
    n = 0
    for _, el in etree.iterparse(str(path), events=("end",), tag=tag):
        n += 1
        el.clear()
    return n, time.perf_counter() - started, time.process_time() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _env() -> dict[str, str]:
    # the development key, as an operator without a key would run it
    return {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}


def cli(path: Path) -> tuple[float, float]:
    """`ingest transform PATH > /dev/null`, start-up included: wall seconds, CPU seconds."""
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(
        [sys.executable, "-m", "ingest_cli.main", "transform", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
        check=True,
    )
    return time.perf_counter() - started, _children_cpu() - cpu


def events(path: Path) -> int:
    """How many events `ingest transform PATH` writes (counted outside the timing)."""
    done = subprocess.run(
        [sys.executable, "-m", "ingest_cli.main", "transform", str(path)],
        capture_output=True,
        env=_env(),
        check=True,
    )
    return done.stdout.count(b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    path = _sample(args.records, args.seed)
    size = path.stat().st_size
    bare_runs: list[float] = []
    cli_runs: list[float] = []
    bare_cpu: list[float] = []
    cli_cpu: list[float] = []
    n_bare = 0
    for _ in range(args.rounds):
        n_bare, seconds, cpu = bare(path)
        bare_runs.append(seconds)
        bare_cpu.append(cpu)
        seconds, cpu = cli(path)
        cli_runs.append(seconds)
        cli_cpu.append(cpu)
    n_events = events(path)
    if n_bare != args.records or n_events != args.records:
        raise SystemExit(
            f"expected {args.records} records: bare saw {n_bare}, the CLI wrote {n_events}"
        )
    bare_rate = args.records / min(bare_runs)
    cli_rate = args.records / min(cli_runs)
    print(f"file: {path.name}, {args.records} records, {size / 1e6:.1f} MB")
    print(
        f"bare iterparse:   {bare_rate:>9,.0f} records/s"
        f"  (best of {args.rounds}: {min(bare_runs):.3f} s)"
    )
    print(
        f"ingest transform: {cli_rate:>9,.0f} records/s"
        f"  (best of {args.rounds}: {min(cli_runs):.3f} s, whole CLI, start-up included)"
    )
    print(f"ratio:            {cli_rate / bare_rate:.2f} of bare iterparse")
    print(
        f"by CPU time:      bare {args.records / min(bare_cpu):,.0f} records/s, ingest transform"
        f" {args.records / min(cli_cpu):,.0f} records/s, ratio {min(bare_cpu) / min(cli_cpu):.2f}"
    )
    pairs = ", ".join(f"{b / c:.2f}" for b, c in zip(bare_runs, cli_runs, strict=True))
    print(f"ratio per round:  {pairs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
