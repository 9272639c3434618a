"""Splitter throughput against a bare lxml iterparse loop, and peak RSS at 10k vs 1M records.

    uv run python bench/split_bench.py [--records 1000000] [--small 10000]

Each measurement runs in a fresh subprocess, so peak RSS (ru_maxrss) belongs to that run
alone. Ratios are computed from figures measured in this one run, never from remembered ones.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def _bare(path: str) -> int:
    from lxml import etree

    from contracts.gro import NS_GRO

    tag = f"{{{NS_GRO}}}DeathRegistration"
    n = 0
    with open(path, "rb") as f:
        for _, el in etree.iterparse(
            f, events=("end",), tag=tag, resolve_entities=False, no_network=True
        ):
            n += 1
            el.getparent().remove(el)
    return n


def _split(path: str) -> int:
    from splitter.extract import ExtractReader

    n = 0
    with open(path, "rb") as f:
        for _ in ExtractReader(f).records():
            n += 1
    return n


def _check(path: str) -> int:
    from splitter.extract import ExtractReader

    with open(path, "rb") as f:
        return ExtractReader(f).check().records


def _measure(mode: str, path: str) -> None:
    fn = {"bare": _bare, "split": _split, "check": _check}[mode]
    started = time.perf_counter()
    n = fn(path)
    seconds = time.perf_counter() - started
    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"records": n, "seconds": seconds, "rss_mib": rss_kib / 1024}))


def _run(mode: str, path: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", mode, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def _sample(records: int) -> Path:
    from ingest_cli.sample import write_sample

    OUT.mkdir(exist_ok=True)
    path = OUT / f"sample-{records}.xml"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            write_sample(f, records, seed=1)
        tmp.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--measure", nargs=2, metavar=("MODE", "PATH"))
    args = parser.parse_args()
    if args.measure:
        _measure(*args.measure)
        return
    big, small = _sample(args.records), _sample(args.small)
    rows = {}
    # interleave runs so machine noise hits both sides alike; keep the best of two
    for mode in ("bare", "split", "check", "bare", "split", "check"):
        r = _run(mode, big)
        best = rows.get(mode)
        if best is None or r["seconds"] < best["seconds"]:
            rows[mode] = r
    small_split = _run("split", small)
    mib = big.stat().st_size / 2**20
    print(f"file: {args.records} records, {mib:.0f} MiB")
    for mode, r in rows.items():
        rate = r["records"] / r["seconds"]
        print(
            f"  {mode:5}  {rate:9,.0f} records/s  {r['seconds']:6.1f} s  "
            f"peak RSS {r['rss_mib']:.1f} MiB"
        )
    split_ratio = (rows["split"]["records"] / rows["split"]["seconds"]) / (
        rows["bare"]["records"] / rows["bare"]["seconds"]
    )
    check_ratio = (rows["check"]["records"] / rows["check"]["seconds"]) / (
        rows["bare"]["records"] / rows["bare"]["seconds"]
    )
    print(f"split / bare iterparse: {split_ratio:.2f}  (target >= 0.6, aim 0.8)")
    print(f"structural check / bare iterparse: {check_ratio:.2f}")
    growth = rows["split"]["rss_mib"] - small_split["rss_mib"]
    print(
        f"peak RSS splitting {args.small} records: {small_split['rss_mib']:.1f} MiB; "
        f"{args.records} records: {rows['split']['rss_mib']:.1f} MiB; growth {growth:+.1f} MiB "
        "(target within 10 MB)"
    )


if __name__ == "__main__":
    main()
