"""`ingest`: the operator's command line for GRO death extracts."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import BinaryIO

import msgspec

from ingest_cli import cloud_parsers
from ingest_cli.keys import event_id_key
from ingest_cli.sample import write_sample
from splitter.extract import ExtractReader, FileRejectedError, OversizedRecord
from transformer.core import Rejected, transform_fragment


class InvalidRecord(msgspec.Struct, omit_defaults=True):
    """One record that cannot become an event."""

    ordinal: int
    reasons: list[str]
    registration_id: str | None = None


class ValidationReport(msgspec.Struct):
    """`ingest validate --json`."""

    file: str
    acceptable: bool
    records: int
    valid: int
    invalid: list[InvalidRecord]
    error: str | None
    bytes: int
    seconds: float


def _open(path: str) -> BinaryIO:
    return open(path, "rb")


def _validate(args: argparse.Namespace) -> int:
    path: str = args.file
    key = b"validate"  # ids are not shown; any key will do
    started = time.perf_counter()
    invalid: list[InvalidRecord] = []
    valid = 0
    error: str | None = None
    reader: ExtractReader | None = None
    with _open(path) as stream:
        reader = ExtractReader(stream)
        try:
            for item in reader.records():
                if isinstance(item, OversizedRecord):
                    invalid.append(InvalidRecord(ordinal=item.ordinal, reasons=[item.reason]))
                    continue
                out = transform_fragment(item.xml, key=key)
                if isinstance(out, Rejected):
                    invalid.append(
                        InvalidRecord(
                            ordinal=item.ordinal,
                            reasons=list(out.reasons),
                            registration_id=out.registration_id,
                        )
                    )
                else:
                    valid += 1
        except FileRejectedError as err:
            error = str(err)
    report = ValidationReport(
        file=path,
        acceptable=error is None,
        records=reader.records_seen,
        valid=valid,
        invalid=invalid,
        error=error,
        bytes=reader.bytes_read,
        seconds=round(time.perf_counter() - started, 3),
    )
    if args.json:
        sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    else:
        _print_report(report)
    if error is not None:
        print(f"{path}: refused: {error}", file=sys.stderr)
        return 1
    return 0


def _print_report(report: ValidationReport) -> None:
    if report.acceptable:
        print(
            f"{report.file}: acceptable: {report.records} records, {report.valid} valid, "
            f"{len(report.invalid)} invalid"
        )
    else:
        print(f"{report.file}: NOT acceptable ({report.records} records read before the error)")
    for bad in report.invalid:
        reg = f" (RegistrationID {bad.registration_id})" if bad.registration_id else ""
        print(f"  record {bad.ordinal}{reg}: {'; '.join(bad.reasons)}")


def _transform(args: argparse.Namespace) -> int:
    path: str = args.file
    key = event_id_key(args.key_file)
    # Whole-file check first: a truncated or corrupt file gives no event at all.
    try:
        with _open(path) as stream:
            ExtractReader(stream).check()
    except FileRejectedError as err:
        print(f"{path}: refused: {err}", file=sys.stderr)
        return 1
    rejected = 0
    out = sys.stdout.buffer
    with _open(path) as stream:
        for item in ExtractReader(stream).records():
            if isinstance(item, OversizedRecord):
                rejected += 1
                print(f"{path}: record {item.ordinal}: rejected: {item.reason}", file=sys.stderr)
                continue
            result = transform_fragment(item.xml, key=key)
            if isinstance(result, Rejected):
                rejected += 1
                reg = (
                    f" (RegistrationID {result.registration_id})" if result.registration_id else ""
                )
                print(
                    f"{path}: record {item.ordinal}{reg}: rejected: {'; '.join(result.reasons)}",
                    file=sys.stderr,
                )
                continue
            out.write(msgspec.json.encode(result.event) + b"\n")
    out.flush()
    return 0


def _sample(args: argparse.Namespace) -> int:
    if args.records < 0:
        print("ingest sample: --records must be 0 or more", file=sys.stderr)
        return 2
    if args.out == "-":
        write_sample(sys.stdout.buffer, args.records, args.seed)
        return 0
    with open(args.out, "wb") as out:
        size = write_sample(out, args.records, args.seed)
    print(f"{args.out}: {args.records} records, {size} bytes (seed {args.seed})", file=sys.stderr)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ingest", description="Check, transform and generate GRO death extracts."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="say whether a file is acceptable, and why not")
    validate.add_argument("file")
    validate.add_argument("--json", action="store_true", help="print the report as one object")
    validate.set_defaults(run=_validate)
    transform = sub.add_parser("transform", help="print each valid record's event as JSON lines")
    transform.add_argument("file")
    transform.add_argument("--key-file", help="file holding the event id key")
    transform.set_defaults(run=_transform)
    sample = sub.add_parser("sample", help="write a deterministic synthetic extract")
    sample.add_argument("--records", type=int, required=True)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", required=True, help="output path, or - for stdout")
    sample.set_defaults(run=_sample)
    # the cloud commands: their arguments only; their code (and boto3) loads when one runs
    cloud_parsers.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ingest` command."""
    args = _parser().parse_args(argv)
    file = getattr(args, "file", None)
    try:
        code: int = args.run(args)
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours; keep Python quiet on exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:
        target = err.filename or file or "output"
        print(f"ingest: {target}: {err.strerror or err}", file=sys.stderr)
        return 1
    except ValueError as err:
        print(f"ingest: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    raise SystemExit(main())
