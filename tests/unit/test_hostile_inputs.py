"""Hostile and broken extracts: each is refused as a whole, quickly, and the refusal never
quotes the file.

Every hostile file is built here from strings, around a record that carries a distinctive
made-up surname (`PLANTED`); no refusal may repeat it. `check()` is the pass that guarantees
nothing is emitted from a bad file, so every case asserts that `check()` raises; `records()`
streams, so it is only asserted to raise in the end (and, where the file is refused at its
root, to raise before yielding anything).
"""

from __future__ import annotations

import io
import resource
import socket
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable, Iterator

import pytest

from contracts.gro import NS_ADDR, NS_GRO, NS_PD, NS_PERSON
from ingest_cli.sample import iter_sample
from splitter.extract import (
    MAX_RECORD_BYTES,
    ExtractReader,
    FileRejectedError,
    Fragment,
    OversizedRecord,
)
from transformer.parse import parse_fragment

PLANTED = "Quillfeatherby"
PLANTED_GIVEN = "Zephyrine"
TIME_LIMIT_S = 10.0
MEMORY_LIMIT_BYTES = 200 * 1024 * 1024

ROOT_OPEN = (
    f'<DeathRegistrationGroup xmlns="{NS_GRO}"\n'
    f'    xmlns:ns1="{NS_PD}"\n'
    '    xmlns:ns2="http://www.govtalk.gov.uk/people/AddressAndPersonalDetails"\n'
    f'    xmlns:ns3="{NS_ADDR}"\n'
    f'    xmlns:ns4="{NS_PERSON}">\n'
)
ROOT_CLOSE = "</DeathRegistrationGroup>\n"


def record(reg_id: int, family: str = PLANTED, *, inside: str = "") -> str:
    """One valid DeathRegistration naming the planted person (`inside` goes after the name)."""
    return (
        "  <DeathRegistration>\n"
        f"    <RegistrationID>{reg_id}</RegistrationID>\n"
        "    <RecordLockedDateTime>2022-03-01T10:15:00</RecordLockedDateTime>\n"
        "    <DeceasedName>\n"
        f"      <ns4:PersonGivenName>{PLANTED_GIVEN}</ns4:PersonGivenName>\n"
        f"      <ns4:PersonFamilyName>{family}</ns4:PersonFamilyName>\n"
        "    </DeceasedName>\n"
        f"{inside}"
        "    <DeceasedGender>2</DeceasedGender>\n"
        "    <DeceasedDeathDate>\n"
        "      <ns1:PersonDeathDate>2022-02-27</ns1:PersonDeathDate>\n"
        "    </DeceasedDeathDate>\n"
        "    <DeceasedAddress>\n"
        f"      <ns3:Line>1 {PLANTED} Lane</ns3:Line>\n"
        "      <ns3:Postcode>NR99 1AB</ns3:Postcode>\n"
        "    </DeceasedAddress>\n"
        "  </DeathRegistration>\n"
    )


def count(n: int | str) -> str:
    return f"  <RecordCount>{n}</RecordCount>\n"


def extract(
    body: str,
    *,
    prolog: str = "",
    root_open: str = ROOT_OPEN,
    root_close: str = ROOT_CLOSE,
) -> bytes:
    return (prolog + root_open + body + root_close).encode()


def valid_extract(n: int = 2) -> bytes:
    return extract("".join(record(i) for i in range(1, n + 1)) + count(n))


def generated_extract(records: int = 12) -> bytes:
    """A file from the CLI's sample generator, with the planted surname in every family name."""
    data = b"".join(iter_sample(records, seed=7))
    tag = b"<ns4:PersonFamilyName>"
    assert tag in data
    return data.replace(tag, tag + PLANTED.encode() + b" ")


def exhaust(outputs: Iterator[object]) -> None:
    """Run a `records()` pass to its end without keeping what it yields."""
    deque(outputs, maxlen=0)


def assert_no_personal_data(err: FileRejectedError) -> None:
    text = f"{err} {err.reason}"
    assert PLANTED not in text
    assert PLANTED_GIVEN not in text


def refuse(data: bytes, *, chunk_bytes: int | None = None) -> FileRejectedError:
    """`check()` refuses the file within the time limit; `records()` refuses it too.

    Returns the `check()` error after asserting that neither error quotes the planted names.
    """
    kwargs = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    started = time.perf_counter()
    with pytest.raises(FileRejectedError) as checked:
        ExtractReader(io.BytesIO(data), **kwargs).check()
    assert time.perf_counter() - started < TIME_LIMIT_S
    assert_no_personal_data(checked.value)

    with pytest.raises(FileRejectedError) as streamed:
        exhaust(ExtractReader(io.BytesIO(data), **kwargs).records())
    assert_no_personal_data(streamed.value)
    return checked.value


def refuse_before_any_record(data: bytes) -> FileRejectedError:
    """As `refuse`, and `records()` raises before yielding a single record."""
    err = refuse(data)
    emitted: list[object] = []
    with pytest.raises(FileRejectedError):
        emitted.extend(ExtractReader(io.BytesIO(data)).records())
    assert emitted == []
    return err


class _Peak:
    """Wall time, Python heap peak (tracemalloc) and process RSS high-water growth."""

    def __enter__(self) -> _Peak:
        self._rss_before = _max_rss_bytes()
        tracemalloc.start()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        _, self.python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        self.rss_growth = _max_rss_bytes() - self._rss_before


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class _FlatPeak(_Peak):
    """As `_Peak`, and where Linux allows it, the RSS peak measured from a high-water mark reset
    on entry (`rss_peak`, else None): libxml2's allocations show there, not in tracemalloc."""

    def __enter__(self) -> _FlatPeak:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._hwm_before: int | None = _high_water_bytes()
        except OSError:
            self._hwm_before = None
        super().__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        after = _high_water_bytes() if self._hwm_before is not None else None
        self.rss_peak = None if after is None else after - self._hwm_before  # type: ignore[operator]


def _high_water_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A local TCP port that records whether anything connected to it."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.setblocking(False)
    yield srv
    srv.close()


def assert_never_connected(srv: socket.socket) -> None:
    try:
        conn, _ = srv.accept()
    except BlockingIOError:
        return
    conn.close()
    pytest.fail("the splitter opened a network connection")


# -- the control: the files below are these, broken one way each ---------------------------


def test_the_well_formed_files_the_hostile_cases_start_from_are_accepted() -> None:
    assert ExtractReader(io.BytesIO(valid_extract(2))).check().records == 2
    assert ExtractReader(io.BytesIO(extract(count(0)))).check().records == 0
    assert ExtractReader(io.BytesIO(generated_extract(12))).check().records == 12
    out = list(ExtractReader(io.BytesIO(valid_extract(2))).records())
    assert [type(o) for o in out] == [Fragment, Fragment]


# -- DTDs and entities ---------------------------------------------------------------------


def test_a_file_with_a_doctype_is_refused_before_any_record() -> None:
    prolog = "<!DOCTYPE DeathRegistrationGroup [<!ELEMENT RecordCount (#PCDATA)>]>\n"
    err = refuse_before_any_record(extract(record(1) + count(1), prolog=prolog))
    assert "DOCTYPE" in err.reason


def test_an_external_file_entity_is_refused_for_its_doctype_and_never_read(tmp_path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET-LINE-root:x:0:0\n")
    for target in ("file:///etc/passwd", secret.as_uri()):
        prolog = f'<!DOCTYPE x [<!ENTITY e SYSTEM "{target}">]>\n'
        data = extract(record(1, family=f"{PLANTED} &e;") + count(1), prolog=prolog)
        err = refuse_before_any_record(data)
        assert "DOCTYPE" in err.reason
        assert "root:" not in str(err)
        assert "TOPSECRET" not in str(err)


@pytest.mark.enable_socket  # its own listener, to prove nothing connects to it
def test_an_external_entity_over_http_is_refused_without_any_connection(listener) -> None:
    port = listener.getsockname()[1]
    prolog = f'<!DOCTYPE x [<!ENTITY e SYSTEM "http://127.0.0.1:{port}/e">]>\n'
    err = refuse_before_any_record(extract(record(1, family="&e;") + count(1), prolog=prolog))
    assert "DOCTYPE" in err.reason
    assert_never_connected(listener)


@pytest.mark.enable_socket  # its own listener, to prove nothing connects to it
def test_an_external_dtd_is_refused_without_any_network_call(listener) -> None:
    port = listener.getsockname()[1]
    for url in ("http://127.0.0.1:9/x.dtd", f"http://127.0.0.1:{port}/x.dtd"):
        prolog = f'<!DOCTYPE DeathRegistrationGroup SYSTEM "{url}">\n'
        err = refuse_before_any_record(extract(record(1) + count(1), prolog=prolog))
        assert "DOCTYPE" in err.reason
    assert_never_connected(listener)


def _laughs(depth: int) -> str:
    decls = ['<!ENTITY lol0 "lol">']
    decls += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, depth + 1)]
    return f"<!DOCTYPE lolz [{''.join(decls)}]>\n"


@pytest.mark.parametrize("referenced", [True, False], ids=["referenced", "declared-only"])
def test_a_billion_laughs_file_is_refused_quickly_and_in_little_memory(referenced) -> None:
    family = f"{PLANTED} &lol9;" if referenced else PLANTED
    data = extract(record(1, family=family) + count(1), prolog=_laughs(9))
    with _Peak() as peak:
        err = refuse(data)
    assert peak.seconds < TIME_LIMIT_S
    assert peak.python_peak < MEMORY_LIMIT_BYTES
    assert peak.rss_growth < MEMORY_LIMIT_BYTES
    # Refused for its DTD, or (when the expansion is reached first) by libxml2's amplification
    # guard, which the splitter words as a size limit. Either way: nothing expanded, nothing out.
    assert "DOCTYPE" in err.reason or "size limit" in err.reason
    assert "lol" not in str(err)


# -- truncation ----------------------------------------------------------------------------


def _mid_record(data: bytes) -> int:
    return data.index(b"<ns4:PersonFamilyName>", len(data) // 2) + 30


def _inside_a_start_tag(data: bytes) -> int:
    return data.index(b"<DeceasedGender>", len(data) // 3) + 5


def _between_two_records(data: bytes) -> int:
    return data.index(b"</DeathRegistration>", len(data) // 2) + len(b"</DeathRegistration>\n")


def _after_the_last_record_before_record_count(data: bytes) -> int:
    return data.rindex(b"<RecordCount>")


def _inside_record_count(data: bytes) -> int:
    return data.rindex(b"<RecordCount>") + len(b"<RecordCount>") + 1


def _after_record_count(data: bytes) -> int:
    return data.rindex(b"</RecordCount>") + len(b"</RecordCount>\n")


def _inside_the_closing_root_tag(data: bytes) -> int:
    return data.rindex(b"</DeathRegistrationGroup>") + 10


def _in_the_root_start_tag(data: bytes) -> int:
    return data.index(b"xmlns:ns3")


@pytest.mark.parametrize(
    "cut",
    [
        _in_the_root_start_tag,
        _mid_record,
        _inside_a_start_tag,
        _between_two_records,
        _after_the_last_record_before_record_count,
        _inside_record_count,
        _after_record_count,
        _inside_the_closing_root_tag,
    ],
    ids=lambda f: f.__name__.strip("_"),
)
def test_a_truncated_file_is_refused_by_the_check_pass(cut: Callable[[bytes], int]) -> None:
    data = generated_extract(12)
    at = cut(data)
    assert 0 < at < len(data) - 2
    err = refuse(data[:at])
    assert "truncated" in err.reason


def test_a_truncated_file_yields_no_record_past_the_cut_and_raises_at_the_end() -> None:
    data = generated_extract(12)
    cut = data[: _between_two_records(data)]
    complete = cut.count(b"</DeathRegistration>")
    seen: list[Fragment | OversizedRecord] = []
    with pytest.raises(FileRejectedError, match="truncated"):
        seen.extend(ExtractReader(io.BytesIO(cut)).records())
    assert [out.ordinal for out in seen] == list(range(1, len(seen) + 1))
    assert len(seen) <= complete


def test_a_file_closed_early_without_its_trailer_is_refused_as_truncated() -> None:
    err = refuse(extract(record(1) + record(2)))
    assert "RecordCount" in err.reason
    assert "missing" in err.reason
    assert "truncated" in err.reason


# -- wrong document ------------------------------------------------------------------------


def test_a_root_in_another_namespace_is_refused_naming_the_expected_one_not_the_files() -> None:
    other = "http://www.ons.gov.uk/gro/SomethingElse"
    err = refuse_before_any_record(
        extract(record(1) + count(1), root_open=ROOT_OPEN.replace(NS_GRO, other))
    )
    assert other not in err.reason  # a namespace the file chose is not repeated
    assert "a namespace the GRO format does not define" in err.reason
    assert NS_GRO in err.reason
    assert "root element" in err.reason


def test_a_file_without_namespaces_like_the_old_made_up_one_is_refused() -> None:
    data = (
        "<DeathRegistrationGroup>\n"
        "  <DeathRegistration>\n"
        "    <RegistrationID>1</RegistrationID>\n"
        "    <RecordLockedDateTime>2022-03-01T10:15:00</RecordLockedDateTime>\n"
        f"    <DeceasedName><PersonGivenName>{PLANTED_GIVEN}</PersonGivenName>"
        f"<PersonFamilyName>{PLANTED}</PersonFamilyName></DeceasedName>\n"
        "    <DeceasedGender>2</DeceasedGender>\n"
        "  </DeathRegistration>\n"
        "  <RecordCount>1</RecordCount>\n"
        "</DeathRegistrationGroup>\n"
    ).encode()
    err = refuse_before_any_record(data)
    assert "no namespace" in err.reason
    assert NS_GRO in err.reason


def test_a_root_with_the_wrong_name_is_refused_without_repeating_the_name() -> None:
    data = extract(
        record(1) + count(1),
        root_open=ROOT_OPEN.replace("<DeathRegistrationGroup", "<BirthRegistrationGroup"),
        root_close="</BirthRegistrationGroup>\n",
    )
    err = refuse_before_any_record(data)
    assert "BirthRegistrationGroup" not in str(err)  # a name the file chose is not repeated
    assert "the root element's name is not one the GRO format defines" in err.reason
    assert "expected DeathRegistrationGroup" in err.reason


# -- encodings -----------------------------------------------------------------------------


def test_a_latin_1_byte_inside_a_name_is_refused_as_not_utf_8() -> None:
    text = (ROOT_OPEN + record(1, family=f"{PLANTED}é") + count(1) + ROOT_CLOSE).encode("latin-1")
    err = refuse(text)
    assert "not valid UTF-8" in err.reason
    assert err.line is not None


def test_a_file_declaring_iso_8859_1_is_refused_for_its_declared_encoding() -> None:
    prolog = '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    body = prolog + ROOT_OPEN + record(1, family=f"{PLANTED}é") + count(1) + ROOT_CLOSE
    err = refuse_before_any_record(body.encode("latin-1"))
    assert "declares encoding iso8859-1" in err.reason  # by the name Python knows it by
    assert "expected UTF-8" in err.reason


@pytest.mark.parametrize("declared", [False, True], ids=["bom-only", "bom-and-declaration"])
def test_a_utf_16_file_with_a_byte_order_mark_is_refused(declared) -> None:
    prolog = '<?xml version="1.0" encoding="UTF-16"?>\n' if declared else ""
    data = (prolog + ROOT_OPEN + record(1) + count(1) + ROOT_CLOSE).encode("utf-16")
    assert data[:2] in (b"\xff\xfe", b"\xfe\xff")
    err = refuse_before_any_record(data)
    assert "UTF-16" in err.reason
    assert "expected UTF-8" in err.reason


@pytest.mark.parametrize("data", [b"", b"   \n\t\r\n  \n"], ids=["empty", "whitespace-only"])
def test_an_empty_or_blank_file_is_refused_as_empty(data) -> None:
    err = refuse_before_any_record(data)
    assert "empty" in err.reason


# -- size ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["check", "records"])
@pytest.mark.parametrize("position", [1, 2], ids=["first-record", "second-record"])
def test_a_20_mb_text_node_is_refused_within_seconds_and_bounded_memory(mode, position) -> None:
    huge = PLANTED * (20_000_000 // len(PLANTED) + 1)
    records = [record(1), record(2)]
    records[position - 1] = record(position, family=huge)
    data = extract("".join(records) + count(2))
    del huge, records
    assert len(data) > 20_000_000
    reader = ExtractReader(io.BytesIO(data))
    run = reader.check if mode == "check" else lambda: exhaust(reader.records())
    with _Peak() as peak, pytest.raises(FileRejectedError) as refused:
        run()
    assert peak.seconds < TIME_LIMIT_S
    assert peak.python_peak < MEMORY_LIMIT_BYTES
    assert peak.rss_growth < MEMORY_LIMIT_BYTES
    err = refused.value
    assert "size limit" in err.reason
    assert_no_personal_data(err)
    assert len(str(err)) < 500


def test_deeply_nested_elements_inside_a_record_are_refused() -> None:
    nest = "<Deep>" * 50_000 + "</Deep>" * 50_000
    err = refuse(extract(record(1, inside=nest) + count(1)))
    assert "not well-formed XML" in err.reason


# Limits applied while a file is read, not after: measured before the change (lxml building
# the whole record, then freeing it) at ~16 MB of RSS and 1.6 s for the record below, ~40 MB for
# the header; the bounds here are what reading within the limits costs, with room for noise.
FLAT_PYTHON_BYTES = 4 * 1024 * 1024
FLAT_RSS_BYTES = 8 * 1024 * 1024
EMPTY = "<Extra></Extra>"  # 15 bytes: 100,000 of them make a 1.5 MB record


@pytest.mark.parametrize("mode", ["check", "records"])
def test_a_record_of_100000_empty_elements_is_oversized_and_read_in_flat_memory(mode) -> None:
    data = extract(record(1) + record(2, inside=EMPTY * 100_000) + record(3) + count(3))
    assert 1_500_000 < len(data) < 1_600_000
    reader = ExtractReader(io.BytesIO(data))
    with _FlatPeak() as peak:
        out = [] if mode == "check" else list(reader.records())
        if mode == "check":
            assert reader.check().records == 3
    assert peak.seconds < TIME_LIMIT_S
    assert peak.python_peak < FLAT_PYTHON_BYTES
    if peak.rss_peak is not None:
        assert peak.rss_peak < FLAT_RSS_BYTES
    if mode == "records":
        assert [(type(o), o.ordinal) for o in out] == [
            (Fragment, 1),
            (OversizedRecord, 2),
            (Fragment, 3),
        ]
        oversized = out[1]
        assert isinstance(oversized, OversizedRecord)
        size = len(record(2, inside=EMPTY * 100_000).strip())
        assert oversized == OversizedRecord(2, size, line=22, exact=True)
        assert oversized.reason == f"record 2 (line 22) is {size} bytes, over the 262144-byte limit"
        assert PLANTED not in oversized.reason
        assert "Extra" not in oversized.reason


@pytest.mark.parametrize("mode", ["check", "records"])
def test_a_5_mb_element_before_the_first_record_refuses_the_file_quickly_in_flat_memory(
    mode,
) -> None:
    header = f"  <{PLANTED}>" + EMPTY * 350_000 + f"{PLANTED}</{PLANTED}>\n"
    data = extract(header + record(1) + record(2) + count(2))
    assert len(data) > 5_000_000
    reader = ExtractReader(io.BytesIO(data))
    run = reader.check if mode == "check" else lambda: exhaust(reader.records())
    with _FlatPeak() as peak, pytest.raises(FileRejectedError) as refused:
        run()
    assert peak.seconds < TIME_LIMIT_S
    assert peak.python_peak < FLAT_PYTHON_BYTES
    if peak.rss_peak is not None:
        assert peak.rss_peak < FLAT_RSS_BYTES
    assert reader.bytes_read < 2 * 1024 * 1024  # refused long before the end of the file
    err = refused.value
    assert err.line == 6
    assert err.reason == (
        "more than 327680 bytes before the first record hold no record: an element that is not "
        "a record starts at line 6 (the limit is 262144 bytes)"
    )
    assert_no_personal_data(err)


@pytest.mark.parametrize(
    ("body", "where", "line"),
    [
        (
            record(1) + "  <Note>" + EMPTY * 30_000 + "</Note>\n" + record(2) + count(2),
            "after DeathRegistration 1",
            22,
        ),
        (
            record(1) + "  <RecordCount>" + EMPTY * 30_000 + "1</RecordCount>\n",
            "after DeathRegistration 1",
            22,
        ),
        (record(1) + count(1) + "  <Note>" + EMPTY * 30_000 + "</Note>\n", "after RecordCount", 23),
        (
            f"  <Note>{PLANTED}" + " " * 400_000 + "</Note>\n" + record(1) + count(1),
            "before the first record",
            6,
        ),
    ],
    ids=["between-records", "inside-record-count", "after-record-count", "long-text"],
)
def test_a_large_element_at_the_root_is_refused_while_read_naming_its_line_not_its_name(
    body, where, line
) -> None:
    err = refuse(extract(body))
    assert err.line == line
    assert f"bytes {where} hold no record" in err.reason
    assert f"starts at line {line}" in err.reason
    assert "Note" not in err.reason
    assert "RecordCount" not in err.reason.replace("after RecordCount", "")


@pytest.mark.parametrize(
    "filler",
    [" \n" * 450_000, "<!-- " + ". " * 450_000 + " -->"],
    ids=["whitespace", "comment"],
)
def test_a_long_run_of_whitespace_or_a_comment_between_records_is_no_reason_to_refuse(
    filler,
) -> None:
    data = extract(record(1) + filler + record(2) + count(2))
    assert len(data) > 3 * MAX_RECORD_BYTES
    assert ExtractReader(io.BytesIO(data)).check().records == 2
    out = list(ExtractReader(io.BytesIO(data)).records())
    assert [(type(o), o.ordinal) for o in out] == [(Fragment, 1), (Fragment, 2)]


# -- the RecordCount trailer ---------------------------------------------------------------


def test_a_missing_record_count_is_refused() -> None:
    err = refuse(extract(record(1) + record(2) + record(3)))
    assert "RecordCount trailer is missing" in err.reason
    assert "3 records" in err.reason


def test_a_record_count_that_disagrees_with_the_records_is_refused() -> None:
    err = refuse(extract(record(1) + record(2) + count(3)))
    assert "RecordCount says 3" in err.reason
    assert "holds 2" in err.reason


@pytest.mark.parametrize("value", ["three", "", "-1", "2.0", "0x2", "٢", PLANTED])
def test_a_record_count_that_is_not_a_whole_number_is_refused(value) -> None:
    err = refuse(extract(record(1) + record(2) + count(value)))
    assert "RecordCount is not a whole number" in err.reason
    assert value == "" or value not in err.reason


def test_a_record_after_the_record_count_is_refused() -> None:
    err = refuse(extract(record(1) + count(1) + record(2)))
    assert "DeathRegistration 2 comes after RecordCount" in err.reason
    assert err.line is not None


def test_a_second_record_count_is_refused() -> None:
    err = refuse(extract(record(1) + count(1) + count(1)))
    assert "RecordCount occurs more than once" in err.reason


def test_a_record_count_nested_in_a_record_is_refused() -> None:
    err = refuse(extract(record(1, inside=count(1)) + count(1)))
    assert "RecordCount is not a child of the root element" in err.reason


# -- structure -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "  <Batch>\n" + record(1) + "  </Batch>\n" + count(1),
        record(1, inside=record(2)) + count(1),
        record(1) + f'  <x:Wrapper xmlns:x="urn:other">\n{record(2)}  </x:Wrapper>\n' + count(2),
    ],
    ids=["inside-a-wrapper", "inside-another-record", "inside-a-foreign-element"],
)
def test_a_death_registration_nested_inside_another_element_is_refused(body) -> None:
    err = refuse(extract(body))
    assert "is not a child of the root element" in err.reason
    assert "DeathRegistration" in err.reason


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (f"  <Header>{PLANTED}</Header>\n" + record(1) + count(1), "before DeathRegistration 1"),
        (
            record(1) + f"  <Note>{PLANTED}</Note>\n" + record(2) + count(2),
            "before DeathRegistration 2",
        ),
        (record(1) + f"  <Note>{PLANTED}</Note>\n" + count(1), "before RecordCount"),
        (record(1) + count(1) + f"  <Footer>{PLANTED}</Footer>\n", "after the records"),
    ],
    ids=["before-the-first-record", "between-records", "before-the-count", "after-the-count"],
)
def test_an_unexpected_root_level_element_is_refused_saying_where_not_its_name_or_content(
    body, where
) -> None:
    err = refuse(extract(body))
    assert "unexpected element" in err.reason
    assert where in err.reason
    assert err.line is not None
    for invented in ("Header", "Note", "Footer"):  # names the file chose are not repeated
        assert invented not in str(err)


def test_content_after_the_root_element_is_refused() -> None:
    err = refuse(valid_extract(1) + f"<Extra>{PLANTED}</Extra>\n".encode())
    assert "content after the root element" in err.reason


# -- oversized records ---------------------------------------------------------------------


def _with_oversized_second_record(root_open: str = ROOT_OPEN, close: str = ROOT_CLOSE) -> bytes:
    big = PLANTED * (MAX_RECORD_BYTES // len(PLANTED) + 10)
    body = record(1) + record(2, family=big) + record(3) + count(3)
    return (root_open + body + close).encode()


# The prefixed root leaves the default namespace to the records, so the byte slicer is used.
_PREFIXED_ROOT = ROOT_OPEN.replace(
    "<DeathRegistrationGroup xmlns=", f'<g:DeathRegistrationGroup xmlns:g="{NS_GRO}" xmlns='
)
_PREFIXED_CLOSE = "</g:DeathRegistrationGroup>\n"


@pytest.mark.parametrize(
    ("root_open", "close"),
    [(ROOT_OPEN, ROOT_CLOSE), (_PREFIXED_ROOT, _PREFIXED_CLOSE)],
    ids=["default-namespace-root", "prefixed-root"],
)
def test_an_oversized_record_is_reported_and_the_records_around_it_still_come_out(
    root_open, close
) -> None:
    data = _with_oversized_second_record(root_open, close)
    assert ExtractReader(io.BytesIO(data)).check().records == 3

    out = list(ExtractReader(io.BytesIO(data)).records())
    assert [type(o) for o in out] == [Fragment, OversizedRecord, Fragment]
    assert [o.ordinal for o in out] == [1, 2, 3]
    oversized = out[1]
    assert isinstance(oversized, OversizedRecord)
    assert oversized.size > MAX_RECORD_BYTES
    assert str(MAX_RECORD_BYTES) in oversized.reason
    assert PLANTED not in oversized.reason
    for fragment, reg_id in ((out[0], "1"), (out[2], "3")):
        assert isinstance(fragment, Fragment)
        assert len(fragment.xml) < MAX_RECORD_BYTES
        parsed = parse_fragment(fragment.xml)
        assert parsed.problems == []
        assert parsed.record.registration_id == reg_id
        assert parsed.record.deceased_name is not None
        assert parsed.record.deceased_name.family_name == PLANTED

    resumed = list(ExtractReader(io.BytesIO(data)).records(skip=1))
    assert [(type(o), o.ordinal) for o in resumed] == [(OversizedRecord, 2), (Fragment, 3)]
    assert resumed[1] == out[2]


def test_an_oversized_record_does_not_hide_a_broken_trailer() -> None:
    data = _with_oversized_second_record().replace(b"<RecordCount>3<", b"<RecordCount>4<")
    err = refuse(data)
    assert "RecordCount says 4" in err.reason


# -- the byte slicer, where it is used -----------------------------------------------------


def test_a_foreign_element_named_death_registration_inside_a_record_does_not_cut_it() -> None:
    foreign = '    <X xmlns="urn:other"><DeathRegistration>inner</DeathRegistration></X>\n'
    body = record(1, inside=foreign) + record(2) + count(2)
    data = (_PREFIXED_ROOT + body + _PREFIXED_CLOSE).encode()
    out = list(ExtractReader(io.BytesIO(data)).records())
    assert [o.ordinal for o in out] == [1, 2]
    first = out[0]
    assert isinstance(first, Fragment)
    parsed = parse_fragment(first.xml)
    assert parsed.record.registration_id == "1"
    assert [e.path for e in parsed.record.extra] == ["X", "X/DeathRegistration"]


# -- the head checks, with short reads -----------------------------------------------------


@pytest.mark.parametrize("chunk_bytes", [1, 2])
def test_leading_whitespace_is_accepted_whatever_the_chunk_size(chunk_bytes) -> None:
    data = b"  \n" + valid_extract(1)
    assert ExtractReader(io.BytesIO(data)).check().records == 1
    assert ExtractReader(io.BytesIO(data), chunk_bytes=chunk_bytes).check().records == 1


class _ShortReads(io.RawIOBase):
    """A stream that returns at most `most` bytes a read, as a socket or S3's body may."""

    def __init__(self, data: bytes, most: int) -> None:
        self._data = io.BytesIO(data)
        self._most = most

    def read(self, size: int = -1) -> bytes:
        return self._data.read(self._most if size < 0 else min(size, self._most))


# how a file may be read: (chunk_bytes, at most this much a read)
_READS = [(None, None), (1 << 20, None), (8_192, None), (4_093, None), (None, 7_000), (None, 999)]


def _verdicts(data: bytes) -> set[int | str]:
    """What a whole-file check says of `data` (records counted, or the reason it refuses the
    file), each way it may be read: one verdict, if the reads do not matter."""
    out: set[int | str] = set()
    for chunk_bytes, most in _READS:
        stream = io.BytesIO(data) if most is None else _ShortReads(data, most)
        kwargs = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
        try:
            out.add(ExtractReader(stream, **kwargs).check().records)  # type: ignore[arg-type]
        except FileRejectedError as err:
            out.add(str(err))
    return out


def _comment(size: int) -> bytes:
    return b"<!--" + b"x" * (size - 7) + b"-->"


_NO_ROOT = "no DeathRegistrationGroup root element in the first MiB"
_MIB = 1 << 20


def test_a_root_whose_start_tag_is_whole_in_the_first_mib_is_accepted_whatever_the_reads() -> None:
    # A head (the first 64 KiB) of nothing but whitespace is not an empty file, and a root
    # after a long prolog is a root, however long the file (here over 1 MiB).
    big = valid_extract(2_500)
    assert len(big) > _MIB
    tag = len(extract("").split(b">")[0]) + 1  # the root's start tag
    assert _verdicts(b"\n" * 70_000 + valid_extract(1)) == {1}
    assert _verdicts(b" " * 100_000 + big) == {2_500}
    assert _verdicts(_comment(100_000) + big) == {2_500}
    assert _verdicts(b" " * (_MIB - tag) + big) == {2_500}
    assert _verdicts(_comment(_MIB - tag) + big) == {2_500}


def test_a_root_not_whole_in_the_first_mib_is_refused_whatever_the_reads() -> None:
    big = valid_extract(2_500)
    tag = len(extract("").split(b">")[0]) + 1
    assert _verdicts(b" " * (_MIB - tag + 1) + big) == {_NO_ROOT}
    assert _verdicts(_comment(_MIB - 30) + big) == {_NO_ROOT}
    assert _verdicts(b" " * 1_200_000 + valid_extract(1)) == {_NO_ROOT}
    assert _verdicts(_comment(_MIB + 8_192) + big) == {_NO_ROOT}


def test_whitespace_alone_is_empty_whatever_the_reads() -> None:
    assert _verdicts(b" \n" * 10) == {"the file is empty"}
    assert _verdicts(b" " * 200_000) == {"the file is empty"}
    # past the first MiB, all that can be said is that no root started there
    assert _verdicts(b" " * 1_100_000) == {_NO_ROOT}


def test_a_wrong_root_after_a_long_blank_head_is_named_at_once() -> None:
    # (named by the sniff, as without the blank head: not read to the first MiB first)
    (verdict,) = _verdicts(b"\n" * 70_000 + b"<html><body/></html>")
    assert isinstance(verdict, str)
    assert verdict.startswith("the root element's name is not one the GRO format defines")


def test_a_plain_file_is_sliced_not_reserialised() -> None:
    # the fast path is the point of the splitter's design: prove it is taken on a normal file
    reader = ExtractReader(io.BytesIO(valid_extract(5)))
    fragments = list(reader.records())
    assert len(fragments) == 5
    assert reader.records_sliced == 5
