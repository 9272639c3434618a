"""`ingest`: the operator's command line for GRO death extracts."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import BinaryIO

import msgspec
from lxml import etree

from ingest_cli.keys import event_id_key
from splitter.extract import (
    HEAD_BYTES,
    MAX_RECORD_BYTES,
    ExtractReader,
    FileRejectedError,
    OversizedRecord,
)
from transformer.core import Rejected, Transformed, transform_element, transform_fragment


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


# `ingest transform` reads the file once: each record, as the reader ends it, goes through the
# transformer (`transform_element`, the Lambda path's own code after its fragment is parsed), and
# what is to be printed is kept until the whole file has passed its checks, so that a truncated
# or corrupt file prints no event at all. Two things send it down the slower, exact way (a check
# pass, then each record's fragment as the splitter cuts it, printed as it comes): more output
# than it keeps in memory, and a record that might be over the splitter's size limit, which only
# the fragment can tell (the read below bounds each record's size from where the reader was in
# the file when the record ended).
_KEEP_BYTES = 128 << 20
_READ_BYTES = 8 * 1024
# How much longer than the file's bytes a fragment can be when lxml writes it out (an escaped
# character: `>` as `&gt;` in text, `"` as `&quot;` in an attribute).
_ESCAPED = 6


def _rejected_line(path: str, ordinal: int, result: Rejected) -> str:
    reg = f" (RegistrationID {result.registration_id})" if result.registration_id else ""
    return f"{path}: record {ordinal}{reg}: rejected: {'; '.join(result.reasons)}"


def undefined_elements_line(path: str, elements: int, records: int) -> str:
    """What `ingest transform` says on stderr when it left content out of the events."""
    noun = "element" if elements == 1 else "elements"
    where = "record" if records == 1 else "records"
    return (
        f"{path}: left out of the events: {elements} {noun} the GRO format does not define,"
        f" in {records} {where} (counted, not kept)"
    )


class _OnePass:
    """The records of one file through the transformer as the reader ends them, the output
    kept; or, if it cannot be sure of a record's size or the output grows too large, the
    reason it gave up (and the reader goes on checking the file)."""

    def __init__(self, path: str, key: bytes) -> None:
        self.path = path
        self.key = key
        self.bytes_read = lambda: 0  # where the reader is in the file
        self.out = bytearray()
        self.err: list[str] = []
        self.gave_up = False
        self.undefined = Undefined()
        self._encode_into = msgspec.json.Encoder().encode_into
        self._ordinal = 0  # of the record the reader last passed on
        self._ended_before = 0  # where the reader was when the record before ended
        self._declarations = -1  # the most the root's namespace declarations add to a fragment

    def run(self) -> None:
        """Read the file; `FileRejectedError` if it is refused."""
        with _open(self.path) as stream:
            reader = ExtractReader(stream, chunk_bytes=_READ_BYTES, on_record=self.record)
            self.bytes_read = lambda: reader.bytes_read
            reader.check()
        if self._ordinal != reader.records_seen:
            self._give_up()  # the last record was over the limit: the reader did not pass it on

    def record(self, ordinal: int, element: etree._Element) -> None:
        # a record over the limit is not passed on: the ordinals then skip it
        skipped = ordinal != self._ordinal + 1
        self._ordinal = ordinal
        if self.gave_up:
            return
        if skipped or not self._surely_within_limit(element) or len(self.out) > _KEEP_BYTES:
            self._give_up()
            return
        result = transform_element(element, key=self.key)
        # Done with it: emptied, the reader's check pass (which only removes it next) moves one
        # element out of the document rather than its whole subtree.
        element.clear(keep_tail=True)
        if isinstance(result, Rejected):
            self.err.append(_rejected_line(self.path, ordinal, result))
        else:
            self._encode_into(result.event, self.out, -1)
            self.out += b"\n"
            if result.record.extra:
                self.undefined.add(result)

    def _give_up(self) -> None:
        self.gave_up = True
        self.out, self.err = bytearray(), []

    def _surely_within_limit(self, element: etree._Element) -> bool:
        """Whether the record's fragment is surely within the splitter's size limit.

        The record ended in what the reader had read (`ended`); it began after the record
        before it ended, which was at most two reads before where the reader then was (the read
        it was in, and one for the parser's lag), or anywhere in the first read (the file's
        head). Its fragment is at most that span and the root's namespace declarations; or, if
        the reader writes it out, that times `_ESCAPED`. Only when that bound is over the limit
        is the record written out here to know.
        """
        ended = self.bytes_read()
        before = self._ended_before
        began = before - 2 * _READ_BYTES if before > HEAD_BYTES + _READ_BYTES else 0
        self._ended_before = ended
        if self._declarations < 0:
            root = element.getparent()
            nsmap = root.nsmap if root is not None else {}
            self._declarations = 64 + sum(
                12 + len(prefix or "") + _ESCAPED * len(uri) for prefix, uri in nsmap.items()
            )
        span = ended - began + self._declarations
        if _ESCAPED * span <= MAX_RECORD_BYTES:
            return True
        written = len(etree.tostring(element, encoding="utf-8", with_tail=False))
        return span <= MAX_RECORD_BYTES and written <= MAX_RECORD_BYTES


class Undefined:
    """Elements the GRO format does not define, left out of the events: how many, in how many
    records. Never which."""

    def __init__(self) -> None:
        self.elements = 0
        self.records = 0

    def add(self, result: Transformed) -> None:
        if n := result.undefined_elements:
            self.elements += n
            self.records += 1


def _transform(args: argparse.Namespace) -> int:
    path: str = args.file
    key = event_id_key(args.key_file)
    one = _OnePass(path, key)
    try:
        one.run()
    except FileRejectedError as err:
        print(f"{path}: refused: {err}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    if not one.gave_up:
        out.write(one.out)
        out.flush()
        for line in one.err:
            print(line, file=sys.stderr)
        undefined = one.undefined
    else:
        undefined = _transform_fragments(path, key, out)
    if undefined.elements:
        print(undefined_elements_line(path, undefined.elements, undefined.records), file=sys.stderr)
    return 0


def _transform_fragments(path: str, key: bytes, out: BinaryIO) -> Undefined:
    """The exact way, for a file already checked: each record as the splitter cuts it, printed
    as it comes (the transformer still reads the element the reader built, not the fragment)."""
    undefined = Undefined()
    ended: dict[int, etree._Element] = {}  # the record the reader last ended, by ordinal
    with _open(path) as stream:
        reader = ExtractReader(stream, on_record=ended.__setitem__)
        for item in reader.records():
            element = ended.pop(item.ordinal, None)
            ended.clear()
            if isinstance(item, OversizedRecord):
                print(f"{path}: record {item.ordinal}: rejected: {item.reason}", file=sys.stderr)
                continue
            result = (
                transform_element(element, key=key)
                if element is not None
                else transform_fragment(item.xml, key=key)
            )
            if isinstance(result, Rejected):
                print(_rejected_line(path, item.ordinal, result), file=sys.stderr)
                continue
            out.write(msgspec.json.encode(result.event) + b"\n")
            undefined.add(result)
    out.flush()
    return undefined


def _sample(args: argparse.Namespace) -> int:
    from ingest_cli.sample import write_sample  # (its imports cost every other command 20 ms)

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


# The commands that work on a file, with no cloud: one of them skips the cloud commands' parsers.
_FILE_COMMANDS = frozenset({"validate", "transform", "sample"})


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; for a file `command`, without the cloud commands' (a
    module of their own, which `ingest transform` need not load on every start)."""
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
    if command not in _FILE_COMMANDS:
        # the cloud commands: their arguments only; their code (and boto3) loads when one runs
        from ingest_cli import cloud_parsers

        cloud_parsers.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ingest` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(argv[0] if argv else None).parse_args(argv)
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
