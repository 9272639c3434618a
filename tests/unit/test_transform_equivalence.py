"""The transformer gives, byte for byte, what it gave before it was made fast.

`tests/data/transform/` holds extracts and what the transformer made of them *before* the
rewrite for speed (issue 11), written by the code of commit 0a02ada (the oversized ones by a
copy of it), never by the code under test:

- the real-format samples (`gro-samples/`, copies of the reference's), a generated extract
  (`ingest sample --records 200 --seed 1`), and `edge-cases.xml`, written by hand: every rule
  broken, duplicates, text where children belong, whitespace, empty elements, entities, CDATA,
  comments, other prefixes, and content the format does not define at every level;
- per extract, `NAME.stdout.jsonl` and `NAME.stderr.txt` of `ingest transform` (the whole CLI,
  development key; `{FILE}` stands for the path), and `NAME.lambda.jsonl`: each fragment the
  splitter cuts, through `transform_fragment` as the Lambda path calls it;
- `fragments.json` and `fragments.lambda.jsonl`: fragments only a message can carry (not
  well-formed, a DOCTYPE, another root, the contract's golden record-to-transform);
- `oversized-NAME.*`: what `ingest transform` made of extracts built here (`OVERSIZED`), with
  records at or over the splitter's size limit.

A file the splitter refuses is refused with the splitter's reason, which is the splitter's to
word (its own tests pin it): the comparisons take the refusal's wording from the splitter as it
is, and everything else from the goldens.

One change is deliberate (privacy, issue 10): content the GRO reference does not define is no
longer carried into the event, so `extra` is gone from every event, and `ingest transform` says
on stderr how many such elements it left out. `expected_*` below apply exactly that change to
the old output and nothing else (and prove that on a line without `extra` they change nothing).
Everything else, ids included, must be as it was.

To re-record after an intended change of output, run the old and the new CLI over the same
files and review the difference; never re-record from the code under test alone.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from ingest_cli import main as cli
from splitter.extract import ExtractReader, FileRejectedError, Fragment
from tests.builders import extract, record
from transformer.core import Rejected, Transformed, transform_fragment

DATA = Path(__file__).resolve().parents[1] / "data" / "transform"
LAMBDA_KEY = b"golden-lambda-path-key-0123456789abcdef"
EXTRACTS = sorted(p.relative_to(DATA) for p in DATA.rglob("*.xml"))


def _pad(text: str) -> str:
    return f"<Pad xmlns='urn:example:pad'>{text}</Pad>"


def _with_root_namespaces(data: bytes, count: int) -> bytes:
    declarations = "".join(f' xmlns:p{i}="urn:example:{"x" * 200}:{i}"' for i in range(count))
    return data.replace(
        b"<DeathRegistrationGroup ", f"<DeathRegistrationGroup{declarations} ".encode(), 1
    )


# Extracts with records at or over the splitter's size limit, built here (they are large).
OVERSIZED = {
    # the second far over the limit (cut while read), the third just over it
    "cut-and-near": lambda: extract(
        record(registration_id="1"),
        record(registration_id="2", rest=_pad("x" * 300_000)),
        record(registration_id="3", rest=_pad("y" * (256 * 1024 - 300))),
        record(registration_id="4"),
    ),
    # a comment stops the splitter's byte slicing: the record is written out by lxml, which
    # escapes every `>`: 70 KB in the file, 280 KB as a fragment
    "escaped-when-written-out": lambda: extract(
        record(registration_id="1"),
        "<!-- a comment -->\n" + record(registration_id="2"),
        record(registration_id="3", rest=_pad(">" * 70_000)),
        record(registration_id="4"),
    ),
    # every fragment carries the root's namespace declarations: here 260 KB of them
    "long-root-namespaces": lambda: _with_root_namespaces(
        extract(record(registration_id="1"), record(registration_id="2")), 1300
    ),
    # the last record is the one over the limit
    "last-record-cut": lambda: extract(
        record(registration_id="1"), record(registration_id="2", rest=_pad("q" * 400_000))
    ),
}


# -- how an outcome is written down (the goldens were written with these) -----------------


def render(ordinal: int, outcome: Transformed | Rejected) -> bytes:
    """One Lambda-path outcome as one JSON line."""
    if isinstance(outcome, Transformed):
        return msgspec.json.encode({"ordinal": ordinal, "event": outcome.event}) + b"\n"
    return (
        msgspec.json.encode(
            {
                "ordinal": ordinal,
                "reasons": list(outcome.reasons),
                "registration_id": outcome.registration_id,
            }
        )
        + b"\n"
    )


def lambda_path(data: bytes) -> bytes:
    """Every fragment the splitter cuts from `data`, through `transform_fragment`."""
    out = io.BytesIO()
    reader = ExtractReader(io.BytesIO(data))
    try:
        for item in reader.records():
            if isinstance(item, Fragment):
                out.write(render(item.ordinal, transform_fragment(item.xml, key=LAMBDA_KEY)))
    except FileRejectedError as err:
        out.write(msgspec.json.encode({"refused": str(err)}) + b"\n")
    return out.getvalue()


def cli_path(
    path: Path, capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, bytes, str]:
    """`ingest transform PATH` in-process, with the development key: exit code, stdout, and
    stderr with the path written `{FILE}`."""
    for name in list(os.environ):
        if name.startswith("INGEST_"):
            monkeypatch.delenv(name)
    capsysbinary.readouterr()
    code = cli.main(["transform", str(path)])
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err.decode().replace(str(path), "{FILE}")


# -- the one deliberate change ------------------------------------------------------------


def _drop_extra(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "extra"}


def expected_lines(golden: bytes, *, nested: str | None = None) -> bytes:
    """The old output with `extra` taken out of every event, and nothing else changed."""
    out = []
    for line in golden.splitlines(keepends=True):
        document = msgspec.json.decode(line)
        if nested is not None and nested in document:
            document[nested] = _drop_extra(document[nested])
        elif nested is None:
            document = _drop_extra(document)
        again = msgspec.json.encode(document) + b"\n"
        if b'"extra":' not in line:
            assert again == line, "the normalisation must not touch a line without extra"
        out.append(again)
    return b"".join(out)


def undefined_elements(golden: bytes) -> tuple[int, int]:
    """How many elements `extra` held in the old output, and in how many events."""
    counts = [len(json.loads(line).get("extra", ())) for line in golden.splitlines()]
    return sum(counts), sum(1 for c in counts if c)


def expected_stderr(golden_stderr: str, golden_stdout: bytes) -> str:
    elements, events = undefined_elements(golden_stdout)
    if not elements:
        return golden_stderr
    return golden_stderr + cli.undefined_elements_line("{FILE}", elements, events) + "\n"


def refusal(data: bytes) -> str | None:
    """The splitter's reason for refusing the file, as it words it now (None: accepted)."""
    try:
        ExtractReader(io.BytesIO(data)).check()
    except FileRejectedError as err:
        return str(err)
    return None


def with_refusal(golden: str, reason: str | None, *, mark: str, write: Callable[[str], str]) -> str:
    """`golden`, with the refusal it holds (the line starting with `mark`) worded as the
    splitter words it now."""
    lines = golden.splitlines(keepends=True)
    refused = [i for i, line in enumerate(lines) if line.startswith(mark)]
    assert len(refused) == (reason is not None), "the goldens refused what the splitter refuses"
    for i in refused:
        lines[i] = write(str(reason))
    return "".join(lines)


# -- the comparisons ----------------------------------------------------------------------


def _golden(name: Path, suffix: str) -> Path:
    return DATA / name.parent / f"{name.stem}.{suffix}"


def _not_this_way(*_args: object) -> None:
    raise AssertionError("the file went fragment by fragment")


@pytest.mark.parametrize("way", ["one pass", "fragment by fragment"])
@pytest.mark.parametrize("name", EXTRACTS, ids=str)
def test_ingest_transform_prints_what_it_printed_before_byte_for_byte(
    name: Path,
    way: str,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # both of its ways: one pass that keeps the output until the file is checked, and the
    # exact one it falls back to (here: when the output would not fit in what it keeps)
    if way == "one pass":
        monkeypatch.setattr(cli, "_transform_fragments", _not_this_way)
    else:
        monkeypatch.setattr(cli, "_KEEP_BYTES", -1)
    golden_out = _golden(name, "stdout.jsonl").read_bytes()
    golden_err = _golden(name, "stderr.txt").read_text(encoding="utf-8")
    manifest = json.loads((DATA / "exit-codes.json").read_text())
    reason = refusal((DATA / name).read_bytes())
    golden_err = with_refusal(
        golden_err, reason, mark="{FILE}: refused: ", write=lambda r: f"{{FILE}}: refused: {r}\n"
    )
    code, out, err = cli_path(DATA / name, capsysbinary, monkeypatch)
    assert code == manifest[str(name)]
    assert out == expected_lines(golden_out)
    assert err == expected_stderr(golden_err, golden_out)


@pytest.mark.parametrize("name", sorted(OVERSIZED))
def test_ingest_transform_reports_records_over_the_size_limit_as_before(
    name: str,
    tmp_path: Path,
    capsysbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / f"{name}.xml"
    path.write_bytes(OVERSIZED[name]())
    golden_out = (DATA / f"oversized-{name}.stdout.jsonl").read_bytes()
    golden_err = (DATA / f"oversized-{name}.stderr.txt").read_text(encoding="utf-8")
    code, out, err = cli_path(path, capsysbinary, monkeypatch)
    assert code == 0
    assert out == expected_lines(golden_out)
    assert err == expected_stderr(golden_err, golden_out)
    assert "over the 262144-byte limit" in err


@pytest.mark.parametrize("name", EXTRACTS, ids=str)
def test_the_lambda_path_gives_what_it_gave_before_byte_for_byte(name: Path) -> None:
    data = (DATA / name).read_bytes()
    golden = _golden(name, "lambda.jsonl").read_text(encoding="utf-8")
    reason = refusal(data)
    golden = with_refusal(
        golden,
        reason,
        mark='{"refused":',
        write=lambda r: msgspec.json.encode({"refused": r}).decode() + "\n",
    )
    assert lambda_path(data) == expected_lines(golden.encode(), nested="event")


def test_fragments_only_a_message_can_carry_give_what_they_gave_before() -> None:
    fragments = json.loads((DATA / "fragments.json").read_text(encoding="utf-8"))
    got = b"".join(
        render(i, transform_fragment(text, key=LAMBDA_KEY))
        for i, text in enumerate(fragments, start=1)
    )
    golden = (DATA / "fragments.lambda.jsonl").read_bytes()
    assert got == expected_lines(golden, nested="event")


def test_the_goldens_cover_rejections_undefined_content_and_every_sample() -> None:
    # the comparisons above are only as good as what the goldens hold
    edge = (DATA / "edge-cases.stdout.jsonl").read_bytes()
    elements, events = undefined_elements(edge)
    assert elements >= 10 and events >= 3
    assert (DATA / "edge-cases.stderr.txt").read_text().count(": rejected: ") >= 8
    assert len((DATA / "generated-200-seed-1.stdout.jsonl").read_bytes().splitlines()) == 200
    samples = {p.name for p in (DATA / "gro-samples").glob("*.xml")}
    assert {"DWP_D_20220301.xml", "tf_test.xml", "nonAsciiCharacters.xml"} <= samples
    assert all((DATA / f"oversized-{name}.stderr.txt").exists() for name in OVERSIZED)
