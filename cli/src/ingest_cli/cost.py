"""`ingest cost`: what a run's counted AWS usage would cost on AWS, per million records.

A run's usage is counted on the local cloud (`localcloud.calls`): the AWS requests the pipeline
made (its functions, its event source mappings, Step Functions' service integrations), by
service and operation, in AWS's billing units (SQS requests per 64 KB chunk, DynamoDB request
units), each Lambda invocation's duration, the state transitions of the file's execution, the
X-Ray traces recorded and the log bytes written. `summarise` turns that into the `calls`,
`lambda`, ... members of `ingest run --json`; `price` multiplies them by the price table
(`aws_prices.toml`: its date and source per price, eu-west-2 and us-east-1) for N records, with
an x86_64 and an arm64 column. Nothing here is estimated but the prices: what was not counted
or not priced is named.

Pure standard library, like the file commands: `ingest cost --from FILE` needs no boto3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

DEFAULT_REGION = "eu-west-2"  # the UK government's region
ARCHITECTURES = ("x86_64", "arm64")
GB = 1024**3  # AWS bills log ingestion per GB of 2^30 bytes
# Who is the pipeline in a usage document: Step Functions' integrations, Lambda's pollers and
# the functions (every caller not named here). localcloud.calls names them; its names are
# repeated so that this module needs nothing of the cloud extra (a test holds them equal).
PIPELINE_SERVICES = frozenset({"states", "lambda-esm"})
NOT_PIPELINE = frozenset({"platform", "xray-daemon", "localcloud", "operator"})
EMULATED = (
    "Lambda durations were measured on the local emulator (each function in a local subprocess, "
    "moto answering every AWS call over HTTP on a shared machine): several times what AWS would "
    "measure, so the GB-seconds and their cost are an upper bound. The counts of calls, units, "
    "invocations, transitions and traces are not emulated."
)
NOT_COUNTED = (
    "Not counted: requests AWS makes inside itself (S3 -> EventBridge -> SQS, SNS -> SQS "
    "deliveries, KMS data keys for SQS, DynamoDB and S3 encryption, cached for minutes), "
    "Lambda's own START/END/REPORT log lines, storage (GB-months), data transfer, and free tiers."
)
PER_FILE = (
    "Per-file work (the state machine's transitions, the file's S3 requests, the completeness "
    "checks) is divided by this run's records: a larger file spreads it thinner."
)
SAMPLED = (
    "X-Ray: the local cloud records every trace; AWS's default sampling rule records the first "
    "request each second and 5% of the rest, so on AWS this line is an upper bound."
)


def state_dir() -> Path:
    """Where the local cloud keeps its state file, and `ingest run` the last run's counts
    (`localcloud.cloud.STATE_FILE`'s directory; a test holds the two equal)."""
    return Path(os.environ.get("INGEST_STATE_DIR", Path.home() / ".cache" / "gro-ingest"))


def last_run_path() -> Path:
    """The last `ingest run`'s JSON summary, counts included."""
    return state_dir() / "last-run.json"


def write_whole(path: Path, document: Any) -> None:
    """Write `document` as JSON to `path` whole: a reader sees the old file or the new one,
    never half of one (a file of this process's own, then renamed over `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(document))
    partial.replace(path)


def is_pipeline(caller: str) -> bool:
    """Whether `caller` (in a usage document) is the pipeline itself."""
    return caller in PIPELINE_SERVICES or caller not in NOT_PIPELINE


# --- the counts, for `ingest run --json` ------------------------------------------------------


def summarise(
    usage: Mapping[str, Any], records: int, state_transitions: int | None
) -> dict[str, Any]:
    """`ingest run --json`'s counted members, from the local cloud's usage for the run."""
    by_stage: dict[str, dict[str, Any]] = {}
    totals: dict[str, int] = {}
    excluded: dict[str, int] = {}
    empty = 0
    for caller, operations in sorted((usage.get("calls") or {}).items()):
        if not is_pipeline(caller):
            excluded[caller] = sum(int(c.get("calls", 0)) for c in operations.values())
            continue
        by_stage[caller] = operations
        for operation, count in operations.items():
            calls = int(count.get("calls", 0)) - int(count.get("empty", 0))
            empty += int(count.get("empty", 0))
            if calls:
                totals[operation] = totals.get(operation, 0) + calls
    ordered = dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))
    per_record = {op: round(n / records, 4) for op, n in ordered.items()} if records else {}
    logs = usage.get("logs") or {}
    return {
        "calls": {
            "records": records,
            "per_record": per_record,
            "per_record_total": round(sum(ordered.values()) / records, 4) if records else None,
            "total": ordered,
            "by_stage": by_stage,
            # receives that found the queue empty: the pollers' idle time, not the records
            "empty_receives": empty,
            "excluded": excluded,
            "seconds": usage.get("seconds"),
        },
        "lambda": usage.get("lambda") or {},
        "state_transitions": state_transitions,
        "xray_traces": int(usage.get("xray_traces") or 0),
        "logs": {
            "bytes": sum(int(v.get("bytes", 0)) for v in logs.values()),
            "events": sum(int(v.get("events", 0)) for v in logs.values()),
            "by_function": logs,
        },
        "metrics": int(usage.get("metrics") or 0),
        "emulated": EMULATED,
    }


def format_calls(run: Mapping[str, Any], limit: int = 8) -> str:
    """A few lines for `ingest run`'s human summary: the calls a record cost."""
    calls = run.get("calls") or {}
    per_record = calls.get("per_record") or {}
    if not per_record:
        return "AWS calls per record: none counted"
    lines = [f"AWS calls per record (the pipeline's): {calls.get('per_record_total'):g}"]
    for operation, n in list(per_record.items())[:limit]:
        lines.append(f"  {n:>8.3f}  {operation}")
    if len(per_record) > limit:
        lines.append(f"  ... {len(per_record) - limit} more (`--json`); `ingest cost` prices them")
    else:
        lines.append("  `ingest cost` prices them")
    return "\n".join(lines)


# --- prices ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """One line of the price table, for one region."""

    key: str
    what: str
    unit: str
    usd: float | None  # None: not found
    status: str
    as_of: str
    source: str


@dataclass(frozen=True)
class Prices:
    """The price table (`aws_prices.toml`) for one region."""

    region: str
    region_name: str
    as_of: str
    path: str
    lines: dict[str, Price]

    def get(self, key: str) -> Price:
        return self.lines[key]


def load_prices(region: str = DEFAULT_REGION, path: Path | None = None) -> Prices:
    """The price table for `region`; a region it has no column for is refused, by name."""
    if path is None:
        text = resources.files("ingest_cli").joinpath("aws_prices.toml").read_text("utf-8")
        where = "ingest_cli/aws_prices.toml"
    else:
        text, where = path.read_text("utf-8"), str(path)
    table = tomllib.loads(text)
    regions = table.get("regions", {})
    if region not in regions:
        raise ValueError(f"no prices for region {region!r} (the table has {', '.join(regions)})")
    lines = {}
    for key, spec in table["prices"].items():
        cell = spec.get(region, {})
        lines[key] = Price(
            key=key,
            what=str(spec.get("what", key)),
            unit=str(spec.get("unit", "")),
            usd=float(cell["usd"]) if "usd" in cell else None,
            status=str(cell.get("status", "missing")),
            as_of=str(cell.get("as_of", "")),
            source=str(cell.get("source") or cell.get("missing") or ""),
        )
    return Prices(
        region, str(regions[region].get("name", region)), str(table["as_of"]), where, lines
    )


# --- pricing a run -----------------------------------------------------------------------------


_S3_FREE = frozenset({"DeleteObject", "AbortMultipartUpload"})  # DELETE and CANCEL
_S3_TIER1 = ("Put", "Copy", "Post", "List", "Create", "Upload", "Complete", "Restore")


def _s3_line(operation: str) -> str:
    """S3's request tier: DeleteObjects is a POST, billed as one."""
    if operation in _S3_FREE:
        return "s3.delete"
    if operation.startswith(_S3_TIER1) or operation == "DeleteObjects":
        return "s3.tier1"
    return "s3.tier2"


def _quantities(run: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, int]]:
    """The run's billable quantities per price key, and the calls no price applies to."""
    quantities: dict[str, float] = {}
    unpriced: dict[str, int] = {}

    def add(key: str, amount: float) -> None:
        quantities[key] = quantities.get(key, 0.0) + amount

    calls = run.get("calls") or {}
    for operations in (calls.get("by_stage") or {}).values():
        for operation, count in operations.items():
            service, _, name = operation.partition(".")
            n = int(count.get("calls", 0))
            if service == "sqs":
                add("sqs.request", int(count.get("billed", n)) - int(count.get("empty", 0)))
            elif service == "sns":
                add("sns.publish", int(count.get("billed", n)))
            elif service == "s3":
                add(_s3_line(name), n)
            elif service == "dynamodb":
                add("dynamodb.write_unit", float(count.get("write_units", 0.0)))
                add("dynamodb.read_unit", float(count.get("read_units", 0.0)))
            elif service == "kms":
                add("kms.request", n)
            elif service == "secretsmanager":
                add("secretsmanager.request", n)
            elif service in ("lambda", "stepfunctions", "xray"):
                # Lambda bills invocations (counted below), Step Functions its transitions,
                # X-Ray its traces: their API calls carry no charge of their own
                continue
            else:
                unpriced[operation] = unpriced.get(operation, 0) + n
    functions = run.get("lambda") or {}
    add("lambda.request", sum(int(f.get("invocations", 0)) for f in functions.values()))
    add("lambda.gb_seconds", sum(float(f.get("gb_seconds", 0.0)) for f in functions.values()))
    if run.get("state_transitions") is not None:
        add("stepfunctions.transition", int(run["state_transitions"]))
    add("xray.trace", int(run.get("xray_traces") or 0))
    add("logs.ingest_gb", int((run.get("logs") or {}).get("bytes", 0)) / GB)
    return quantities, unpriced


_ORDER = (
    ("lambda", "requests", "lambda.request"),
    ("lambda", "GB-seconds", "lambda.gb_seconds"),
    ("sqs", "requests (64 KB chunks)", "sqs.request"),
    ("sns", "publishes", "sns.publish"),
    ("dynamodb", "write request units", "dynamodb.write_unit"),
    ("dynamodb", "read request units", "dynamodb.read_unit"),
    ("s3", "PUT/COPY/POST/LIST", "s3.tier1"),
    ("s3", "GET/HEAD/other", "s3.tier2"),
    ("s3", "DELETE", "s3.delete"),
    ("stepfunctions", "state transitions", "stepfunctions.transition"),
    ("kms", "requests", "kms.request"),
    ("secretsmanager", "API calls", "secretsmanager.request"),
    ("xray", "traces recorded", "xray.trace"),
    ("logs", "GB ingested", "logs.ingest_gb"),
)


def price(run: Mapping[str, Any], prices: Prices, records: int = 1_000_000) -> dict[str, Any]:
    """What `records` records cost at `prices`, from a run's counts (`ingest run --json`)."""
    counted = int((run.get("calls") or {}).get("records") or run.get("records") or 0)
    if counted <= 0:
        raise ValueError("the run counted no records: nothing to price per record")
    if "calls" not in run or "lambda" not in run:
        raise ValueError(
            "the run has no counts (`calls`, `lambda`): it was made before `ingest run` "
            "counted them, or on a cloud that does not"
        )
    quantities, unpriced = _quantities(run)
    scale = records / counted
    lines = []
    totals = dict.fromkeys(ARCHITECTURES, 0.0)
    missing = []
    for service, what, key in _ORDER:
        amount = quantities.get(key, 0.0)
        if not amount:
            continue
        if key == "lambda.gb_seconds":
            cells = {a: prices.get(f"lambda.gb_second.{a}") for a in ARCHITECTURES}
        else:
            cells = dict.fromkeys(ARCHITECTURES, prices.get(key))
        usd: dict[str, float | None] = {}
        for arch, cell in cells.items():
            usd[arch] = None if cell.usd is None else amount * scale * cell.usd
            if usd[arch] is not None:
                totals[arch] += usd[arch] or 0.0
        first = cells["x86_64"]
        if first.usd is None:
            missing.append(f"{service} {what}")
        lines.append(
            {
                "service": service,
                "what": what,
                "per_record": amount / counted,
                "quantity": amount * scale,
                "usd": {a: (None if v is None else round(v, 6)) for a, v in usd.items()},
                "unit_price": {a: c.usd for a, c in cells.items()},
                "price_status": first.status,
                "price_as_of": first.as_of,
                "price_source": first.source,
            }
        )
    metric_price = prices.get("cloudwatch.metric_month")
    metrics = int(run.get("metrics") or 0)
    return {
        "region": prices.region,
        "region_name": prices.region_name,
        "records": records,
        "from_run": {
            "records": counted,
            "file": run.get("file"),
            "seconds": run.get("seconds"),
        },
        "prices": {"file": prices.path, "as_of": prices.as_of},
        "lines": lines,
        "total": {a: round(v, 4) for a, v in totals.items()},
        "per_record_usd": {a: v / records for a, v in totals.items()},
        "missing_prices": missing,
        "unpriced_calls": unpriced,
        "fixed_per_month": {
            "custom_metrics": metrics,
            "usd": None if metric_price.usd is None else round(metrics * metric_price.usd, 2),
        },
        "lambda": run.get("lambda") or {},
        "notes": [
            EMULATED + " Lambda seconds include cold starts (init), which AWS bills too.",
            PER_FILE,
            *([SAMPLED] if quantities.get("xray.trace") else []),
            NOT_COUNTED,
        ],
    }


# --- output --------------------------------------------------------------------------------


def _money(value: float | None) -> str:
    if value is None:
        return "no price"
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _amount(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_report(report: Mapping[str, Any]) -> str:
    """The report for people: one line per priced quantity, totals, Lambda per stage."""
    records = int(report["records"])
    run = report["from_run"]
    out = [
        f"{records:,} records at AWS on-demand prices, {report['region']} "
        f"({report['region_name']}), from the counts of a run of {run['records']:,} records"
        + (f" ({run['file']})" if run.get("file") else ""),
        f"prices: {report['prices']['file']}, read {report['prices']['as_of']} "
        "(each price's source and date: --json); free tiers not deducted",
        "",
    ]
    header = ("service", "what", "per record", "quantity", "x86_64", "arm64")
    rows = [header]
    for line in report["lines"]:
        rows.append(
            (
                line["service"],
                line["what"] + ("  (derived price)" if line["price_status"] == "derived" else ""),
                f"{line['per_record']:.4g}",
                _amount(line["quantity"]),
                _money(line["usd"]["x86_64"]),
                _money(line["usd"]["arm64"]),
            )
        )
    total = report["total"]
    rows.append(("total", "", "", "", _money(total["x86_64"]), _money(total["arm64"])))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    for n, row in enumerate(rows):
        if n == len(rows) - 1:
            out.append("  ".join("-" * w for w in widths))
        cells = [
            str(c).ljust(w) if i < 2 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    per_million = {a: v * 1_000_000 for a, v in report["per_record_usd"].items()}
    out.append(
        f"per million records: {_money(per_million['x86_64'])} on x86_64, "
        f"{_money(per_million['arm64'])} on arm64"
    )
    if report["missing_prices"]:
        out.append(f"left out of the total (no price found): {', '.join(report['missing_prices'])}")
    if report["unpriced_calls"]:
        shown = ", ".join(f"{op} x{n}" for op, n in sorted(report["unpriced_calls"].items()))
        out.append(f"calls no price applies to: {shown}")
    fixed = report["fixed_per_month"]
    if fixed["custom_metrics"]:
        out.append(
            f"fixed, per month (not per record): {fixed['custom_metrics']} custom metrics "
            f"(embedded metric format): {_money(fixed['usd'])}"
        )
    out.extend(["", _format_lambda(report["lambda"])])
    out.extend(["", *report["notes"]])
    return "\n".join(out)


def _format_lambda(functions: Mapping[str, Any]) -> str:
    header = (
        "Lambda per stage",
        "invocations",
        "p50 ms",
        "p95 ms",
        "seconds",
        "MB",
        "arch",
        "GB-s",
    )
    rows: list[tuple[str, ...]] = [header]
    for name, f in sorted(functions.items()):
        rows.append(
            (
                name,
                str(f.get("invocations", 0)),
                f"{f.get('p50_ms', 0):.0f}",
                f"{f.get('p95_ms', 0):.0f}",
                f"{f.get('seconds', 0) + f.get('init_seconds', 0):.1f}",
                str(f.get("memory_mb", "")),
                str(f.get("architecture", "")),
                f"{f.get('gb_seconds', 0):.2f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in cells))
    return "\n".join(lines)


# --- the command -----------------------------------------------------------------------------


def _read_run(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text("utf-8"))
    except ValueError as err:
        raise ValueError(f"{path}: not the JSON of `ingest run --json` ({err})") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not the JSON of `ingest run --json` (not an object)")
    return document


def cost(args: argparse.Namespace) -> int:
    """`ingest cost`: price the last run's counts (or a saved `ingest run --json`)."""
    if args.records <= 0:
        print("ingest cost: --records must be 1 or more", file=sys.stderr)
        return 2
    path = Path(args.from_file) if args.from_file else last_run_path()
    if not path.is_file():
        if args.from_file:
            print(f"ingest cost: {path}: no such file", file=sys.stderr)
        else:
            print(
                f"ingest cost: no run recorded yet ({path}): `ingest run FILE` first, "
                "or `--from FILE` (a saved `ingest run --json`)",
                file=sys.stderr,
            )
        return 1
    try:
        report = price(_read_run(path), load_prices(args.region), args.records)
    except ValueError as err:
        print(f"ingest cost: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0
