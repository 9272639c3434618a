"""A record past the size limit is cut while it is read: what comes after it is still exact.

Cutting a record means not keeping it; the byte slicer then has to find where the record ended
to carry on. These tests hold the reader to three promises: the records around a cut record
come out byte for byte as they would without it, whatever the chunk size; where the end cannot
be pinned down the slicer stops (slower, still right) rather than guess; and the verdict on a
record never depends on how the file was read.
"""

from __future__ import annotations

import glob
import io
import os
import subprocess
import sys
import textwrap

import pytest

from contracts.gro import NS_GRO
from splitter.extract import (
    FEED_BYTES,
    MAX_RECORD_BYTES,
    ExtractReader,
    Fragment,
    OversizedRecord,
)
from tests.builders import extract, record

CHUNKS = [1 << 20, FEED_BYTES, FEED_BYTES + 1, 100_000, 29_989, 4_093]
EMPTY = "<Extra></Extra>"


def big(reg: str, *, elements: int = 60_000, end: str = "</DeathRegistration>") -> str:
    """A record of `elements` empty elements (15 bytes each), far past the limit."""
    return record(registration_id=reg, rest=EMPTY * elements).replace("</DeathRegistration>", end)


def read(data: bytes, chunk: int = 1 << 20, skip: int = 0) -> tuple[list, ExtractReader]:
    reader = ExtractReader(io.BytesIO(data), chunk_bytes=chunk)
    return list(reader.records(skip=skip)), reader


def fragments_of(*records: str) -> list[bytes]:
    """The fragments a file of just these records yields."""
    out, _ = read(extract(*records))
    assert all(isinstance(o, Fragment) for o in out)
    return [o.xml for o in out if isinstance(o, Fragment)]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_records_after_a_cut_record_are_exact_and_still_sliced(chunk: int) -> None:
    one, cut, three = record(registration_id="1"), big("2"), record(registration_id="3")
    out, reader = read(extract(one, cut, three), chunk)
    assert [(type(o), o.ordinal) for o in out] == [
        (Fragment, 1),
        (OversizedRecord, 2),
        (Fragment, 3),
    ]
    assert [o.xml for o in out if isinstance(o, Fragment)] == fragments_of(one, three)
    assert reader.records_sliced == 2  # the fast path carried on after the cut record
    assert out[1] == OversizedRecord(2, len(cut.strip()), line=3, exact=True)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_cut_records_first_last_and_back_to_back(chunk: int) -> None:
    two, four = record(registration_id="2"), record(registration_id="4")
    data = extract(big("1"), two, big("3", elements=40_000), four, big("5"))
    out, reader = read(data, chunk)
    assert [type(o).__name__[0] + str(o.ordinal) for o in out] == ["O1", "F2", "O3", "F4", "O5"]
    assert [o.xml for o in out if isinstance(o, Fragment)] == fragments_of(two, four)
    assert reader.records_sliced == 2
    resumed, _ = read(data, chunk, skip=3)
    assert resumed == out[3:]


@pytest.mark.parametrize("chunk", CHUNKS)
def test_end_tags_of_other_elements_inside_a_cut_record_do_not_end_it(chunk: int) -> None:
    foreign = '<X xmlns="urn:other"><DeathRegistration>a</DeathRegistration></X>' * 8_000
    one, three = record(registration_id="1"), record(registration_id="3")
    out, _ = read(extract(one, record(registration_id="2", rest=foreign), three), chunk)
    assert [type(o) for o in out] == [Fragment, OversizedRecord, Fragment]
    assert [o.xml for o in out if isinstance(o, Fragment)] == fragments_of(one, three)


@pytest.mark.parametrize("chunk", CHUNKS)
def test_an_end_tag_the_reader_cannot_pin_down_stops_the_slicer_instead_of_guessing(
    chunk: int,
) -> None:
    cut = big("2", end="</DeathRegistration\n   >")
    data = extract(record(registration_id="1"), cut, record(registration_id="3"))
    out, reader = read(data, chunk)
    assert [type(o) for o in out] == [Fragment, OversizedRecord, Fragment]
    oversized = out[1]
    assert isinstance(oversized, OversizedRecord)
    assert not oversized.exact
    assert MAX_RECORD_BYTES < oversized.size < len(cut)
    assert f"is more than {oversized.size} bytes" in oversized.reason
    assert reader.records_sliced == 1  # the record after it was re-serialised, not sliced
    parsed_after = out[2]
    assert isinstance(parsed_after, Fragment)
    assert b"<RegistrationID>3</RegistrationID>" in parsed_after.xml


@pytest.mark.parametrize("chunk", CHUNKS)
def test_a_comment_holding_a_fake_record_after_a_cut_record_is_never_emitted(chunk: int) -> None:
    fake = "<!-- </DeathRegistration> <DeathRegistration>FAKE</DeathRegistration> -->"
    data = extract(record(registration_id="1"), big("2") + fake, record(registration_id="3"))
    out, _ = read(data, chunk)
    assert [type(o) for o in out] == [Fragment, OversizedRecord, Fragment]
    assert not any(b"FAKE" in o.xml for o in out if isinstance(o, Fragment))
    last = out[2]
    assert isinstance(last, Fragment)
    assert b"<RegistrationID>3</RegistrationID>" in last.xml


def test_prefixed_records_are_cut_and_resumed_too() -> None:
    data = (
        extract(record(registration_id="1"), big("2"), record(registration_id="3"))
        .replace(b"<DeathRegistration>", b"<g:DeathRegistration>")
        .replace(b"</DeathRegistration>", b"</g:DeathRegistration>")
        .replace(f'xmlns="{NS_GRO}"'.encode(), f'xmlns="{NS_GRO}" xmlns:g="{NS_GRO}"'.encode())
    )
    for chunk in CHUNKS:
        out, reader = read(data, chunk)
        assert [type(o) for o in out] == [Fragment, OversizedRecord, Fragment]
        assert reader.records_sliced == 2
        assert out[1].exact  # type: ignore[union-attr]


def test_whether_a_record_is_cut_does_not_depend_on_the_chunk_size() -> None:
    # Re-serialised (a comment turns the slicer off), `<Extra></Extra>` shrinks to `<Extra/>`:
    # near the limit, a record can be over it in the file and under it as a fragment. Which of
    # the two decides must not change with the chunk size.
    first = record(registration_id="1", rest="<!-- a comment -->")
    verdicts = set()
    for elements in (17_000, 26_000, 27_000, 30_000):
        data = extract(first, big("2", elements=elements), record(registration_id="3"))
        outcomes = set()
        for chunk in (1 << 20, FEED_BYTES + 1, 29_989, 4_093):
            out, _ = read(data, chunk)
            outcomes.add(tuple(type(o).__name__ for o in out))
            assert ExtractReader(io.BytesIO(data), chunk_bytes=chunk).check().records == 3
        assert len(outcomes) == 1, (elements, outcomes)
        verdicts |= outcomes
    assert len(verdicts) == 2  # the sizes above straddle the limit: both verdicts occur


# -- the tree under the parser -------------------------------------------------------------

_MALLOC_DEBUG = sorted(glob.glob("/usr/lib/*/libc_malloc_debug.so.0"))

_LONG_GAPS = textwrap.dedent(
    """
    import io
    from splitter.extract import ExtractReader, Fragment
    NS = "http://www.ons.gov.uk/gro/OGDDeathExtractDWP"
    gap = "\\r\\n    " * 200
    rec = "<DeathRegistration><RegistrationID>{}</RegistrationID></DeathRegistration>"
    body = "".join(rec.format(i) + gap for i in range(1, 200))
    data = (f'<DeathRegistrationGroup xmlns="{NS}">\\r\\n' + body
            + "<RecordCount>199</RecordCount></DeathRegistrationGroup>").encode()
    for chunk in (1000, 1500, 2000, 4096, 65536, 1 << 20):
        out = list(ExtractReader(io.BytesIO(data), chunk_bytes=chunk).records())
        assert [o.ordinal for o in out if isinstance(o, Fragment)] == list(range(1, 200))
    print("ok")
    """
)


@pytest.mark.skipif(not _MALLOC_DEBUG, reason="needs glibc's libc_malloc_debug")
def test_long_whitespace_between_records_does_not_corrupt_the_parser_heap() -> None:
    """A record's tail still being parsed when the record is removed: libxml2 would append the
    rest of the tail to the whitespace before the record, at the removed tail's length (a heap
    overflow, caught by glibc's checking allocator). The reader drops that whitespace first."""
    env = dict(os.environ, LD_PRELOAD=_MALLOC_DEBUG[0], MALLOC_CHECK_="3", MALLOC_PERTURB_="165")
    done = subprocess.run(
        [sys.executable, "-c", _LONG_GAPS], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"
