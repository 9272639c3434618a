"""The splitter's reading loop against the fastest honest bare lxml loop, and its peak RSS.

    uv run python bench/split_bench.py [--records 200000] [--rounds 5]
                                       [--rss-small 10000] [--rss-large 1000000]
                                       [--extract FILE]

Throughput: in one fresh process, on one generated file (`ingest sample --seed 1`), the loops
run in alternating rounds (bare, splitter, bare, splitter...) so that whatever else the machine
is doing hits them alike; each figure is the median of its rounds, and the ratio is computed
from figures measured in this one run, never from remembered ones. Rates are per second of the
process's CPU time (user + system): the machine is shared, and wall time there measures the
neighbours. Wall-clock rates are printed beside them.

The bare loops are `etree.iterparse(path, events=("end",), tag=RECORD_TAG)` with each record
let go as it ends (constant memory, as the splitter), and nothing else, three ways: removed
(`el.getparent().remove(el)`); emptied, then removed (`el.clear()` first spares lxml moving the
record's subtree into a document of its own); and emptied, the records before it deleted (the
usual `fast_iter` idiom). The ratio is taken against whichever is fastest in this run. The
splitter is `ExtractReader(f).records()` run to the end: the whole-file checks and every
record's exact bytes, which is what `split_file` emits from.

Peak RSS: `ru_maxrss` of a fresh process that splits a whole file, for a small and a large
one; flat memory shows as a ratio near 1.

`--extract FILE` benchmarks another copy of `splitter/extract.py` in its place (say the
previous commit's, from `git show`), so a before and an after are printed by the same bench.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def _record_tag() -> str:
    from contracts.gro import NS_GRO

    return f"{{{NS_GRO}}}DeathRegistration"


def _bare_remove(path: str) -> int:
    from lxml import etree

    n = 0
    for _, el in etree.iterparse(path, events=("end",), tag=_record_tag()):
        n += 1
        el.getparent().remove(el)
    return n


def _bare_clear(path: str) -> int:
    from lxml import etree

    n = 0
    for _, el in etree.iterparse(path, events=("end",), tag=_record_tag()):
        n += 1
        el.clear(keep_tail=True)
        el.getparent().remove(el)
    return n


def _bare_fast_iter(path: str) -> int:
    from lxml import etree

    n = 0
    for _, el in etree.iterparse(path, events=("end",), tag=_record_tag()):
        n += 1
        el.clear(keep_tail=True)
        while el.getprevious() is not None:
            del el.getparent()[0]
    return n


def _reader(extract: str | None) -> type:
    """`ExtractReader`, from the package or from another copy of extract.py."""
    if not extract:
        from splitter.extract import ExtractReader

        return ExtractReader
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_extract", extract)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module.ExtractReader  # type: ignore[no-any-return]


def _split(reader: type) -> Callable[[str], int]:
    def run(path: str) -> int:
        n = 0
        with open(path, "rb") as f:
            for _ in reader(f).records():
                n += 1
        return n

    return run


def _check(reader: type) -> Callable[[str], int]:
    def run(path: str) -> int:
        with open(path, "rb") as f:
            return int(reader(f).check().records)

    return run


def _throughput(path: str, rounds: int, extract: str | None) -> None:
    """In this process: every loop once per round, in turns (the order reversed every other
    round, so that a drift in the machine's load favours none); print JSON."""
    reader = _reader(extract)
    loops = {
        "bare_remove": _bare_remove,
        "bare_clear": _bare_clear,
        "bare_fast_iter": _bare_fast_iter,
        "split": _split(reader),
        "check": _check(reader),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in loops}
    for turn in range(rounds):
        for name in list(loops)[:: 1 if turn % 2 == 0 else -1]:
            loop = loops[name]
            cpu, wall = time.process_time(), time.perf_counter()
            n = loop(path)
            runs[name].append(
                {
                    "records": n,
                    "cpu": time.process_time() - cpu,
                    "wall": time.perf_counter() - wall,
                }
            )
    print(json.dumps(runs))


def _peak_rss_kib() -> int:
    """This process's peak RSS. Linux's `ru_maxrss` carries the parent's RSS at fork over the
    exec (every child of this bench would report at least the bench's own ~30 MiB), so the
    peak of this process's own memory map, VmHWM, is read where there is one."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _peak_rss(path: str | None, extract: str | None) -> None:
    """In this (fresh) process: split the whole file, or only import; print JSON."""
    reader = _reader(extract)
    cpu, wall = time.process_time(), time.perf_counter()
    n = _split(reader)(path) if path else 0
    print(
        json.dumps(
            {
                "records": n,
                "cpu": time.process_time() - cpu,
                "wall": time.perf_counter() - wall,
                "rss_mib": _peak_rss_kib() / 1024,
            }
        )
    )


def _child(*args: str) -> object:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def _sample(records: int) -> Path:
    from ingest_cli.sample import write_sample

    OUT.mkdir(exist_ok=True)
    path = OUT / f"sample-{records}.xml"  # seed 1; bench/out is not under version control
    if not path.exists():
        started = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            write_sample(f, records, seed=1)
        tmp.replace(path)
        print(f"(generated {path.name} in {time.perf_counter() - started:.0f} s)", flush=True)
    return path


def _rates(runs: list[dict[str, float]], clock: str) -> list[float]:
    return [r["records"] / r[clock] for r in runs]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000, help="throughput file")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss-small", type=int, default=10_000)
    parser.add_argument("--rss-large", type=int, default=1_000_000)
    parser.add_argument("--extract", help="another copy of splitter/extract.py to measure")
    parser.add_argument("--throughput", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--peak-rss", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    extract = str(Path(args.extract).resolve()) if args.extract else None
    if args.throughput:
        _throughput(args.throughput, args.rounds, extract)
        return
    if args.peak_rss is not None:
        _peak_rss(args.peak_rss or None, extract)
        return

    path = _sample(args.records)
    small, large = _sample(args.rss_small), _sample(args.rss_large)
    with_extract = ["--extract", extract] if extract else []
    runs = _child("--throughput", str(path), "--rounds", str(args.rounds), *with_extract)
    assert isinstance(runs, dict)
    mb = path.stat().st_size / 1e6
    print(f"reader: {extract or 'splitter.extract'}")
    print(
        f"throughput: {args.records:,} records ({mb:,.0f} MB), {args.rounds} rounds in turns "
        "in one process; median records/s of CPU time (wall time beside it)"
    )
    labels = {
        "bare_remove": "bare iterparse, tag=, remove",
        "bare_clear": "bare iterparse, tag=, clear+remove",
        "bare_fast_iter": "bare iterparse, tag=, fast_iter",
        "split": "splitter records()",
        "check": "splitter check()",
    }
    median = {name: statistics.median(_rates(r, "cpu")) for name, r in runs.items()}
    for name, r in runs.items():
        rounds = " ".join(f"{x / 1000:.1f}k" for x in _rates(r, "cpu"))
        wall = statistics.median(_rates(r, "wall"))
        print(
            f"  {labels[name]:36} {median[name]:9,.0f} /s  (wall {wall:9,.0f} /s)  rounds: {rounds}"
        )
    bare = max(("bare_remove", "bare_clear", "bare_fast_iter"), key=median.__getitem__)
    per_round = [
        s / b for s, b in zip(_rates(runs["split"], "cpu"), _rates(runs[bare], "cpu"), strict=True)
    ]
    print(
        f"splitter / bare (the fastest: {labels[bare]}): {median['split'] / median[bare]:.2f}  "
        f"(target >= 0.8)\n  round by round {' '.join(f'{x:.2f}' for x in per_round)}, "
        f"median {statistics.median(per_round):.2f}"
    )
    print(f"check / bare: {median['check'] / median[bare]:.2f}")

    base = _child("--peak-rss", "", *with_extract)
    rss_small = _child("--peak-rss", str(small), *with_extract)
    rss_large = _child("--peak-rss", str(large), *with_extract)
    assert isinstance(base, dict) and isinstance(rss_small, dict) and isinstance(rss_large, dict)
    print("peak RSS (VmHWM), a fresh process each:")
    print(f"  interpreter and imports only             {base['rss_mib']:7.1f} MiB")
    for label, r, p in ((args.rss_small, rss_small, small), (args.rss_large, rss_large, large)):
        gb = p.stat().st_size / 1e9
        print(
            f"  splitter over {label:>9,} records ({gb:4.2f} GB) {r['rss_mib']:7.1f} MiB  "
            f"({r['cpu']:.1f} s CPU, {r['records'] / r['cpu']:,.0f} records/s; "
            f"{r['wall']:.1f} s wall)"
        )
    print(
        f"  {args.rss_large:,} / {args.rss_small:,} records: "
        f"{rss_large['rss_mib'] / rss_small['rss_mib']:.2f}  (flat memory: near 1)"
    )


if __name__ == "__main__":
    main()
