"""Refusal reasons say what and where, never the file's markup: a file can name an element, a
namespace, an attribute or an encoding after a person, and a reason goes to logs, the ledger,
the quarantined object's metadata and the state machine's history.

Every file here invents names after a made-up person (`JohnSmith`, `urn:person:JaneDoe`); no
reason may hold any part of them. Names the GRO format defines (`DeathRegistration`,
`RecordCount`, its namespace) may be named: they are not personal data.
"""

from __future__ import annotations

import io

import pytest

from contracts.gro import NS_GRO, NS_PERSON
from splitter.extract import ExtractReader, FileRejectedError
from transformer.parse import FragmentError, parse_fragment

PERSON = ("John", "Smith", "Jane", "Doe", "person")
FOREIGN_NS = "urn:person:JaneDoe"


def record(inside: str = "") -> str:
    return (
        "<DeathRegistration>"
        "<RegistrationID>1</RegistrationID>"
        "<RecordLockedDateTime>2022-03-01T10:15:00</RecordLockedDateTime>"
        f'<DeceasedName><p:PersonFamilyName xmlns:p="{NS_PERSON}">X</p:PersonFamilyName>'
        "</DeceasedName>"
        f"{inside}"
        "<DeceasedGender>2</DeceasedGender>"
        "<PartialYearOfDeath>2022</PartialYearOfDeath>"
        "</DeathRegistration>\n"
    )


def extract(body: str, *, root: str = f'DeathRegistrationGroup xmlns="{NS_GRO}"') -> bytes:
    name = root.split()[0]
    return f"<{root}>\n{body}</{name}>\n".encode()


def refusal(data: bytes) -> FileRejectedError:
    """The whole-file check refuses `data`; so does the split pass; both say the same."""
    with pytest.raises(FileRejectedError) as checked:
        ExtractReader(io.BytesIO(data)).check()
    with pytest.raises(FileRejectedError) as split:
        for _ in ExtractReader(io.BytesIO(data)).records():
            pass
    assert str(split.value) == str(checked.value)
    return checked.value


def assert_holds_no_markup(text: str) -> None:
    for part in PERSON:
        assert part not in text, text
    assert "urn:" not in text, text


@pytest.mark.parametrize(
    ("root", "says"),
    [
        (f'JohnSmith xmlns="{NS_GRO}"', "the root element's name is not one the GRO format"),
        ("JohnSmith", "the root element's name is not one the GRO format"),
        (
            f'DeathRegistrationGroup xmlns="{FOREIGN_NS}"',
            "the root element is in a namespace the GRO format does not define",
        ),
        (
            f'p:DeathRegistrationGroup xmlns:p="{FOREIGN_NS}"',
            "the root element is in a namespace the GRO format does not define",
        ),
        (f'JohnSmith:Doe xmlns="{NS_GRO}"', "the root element's name is not one the GRO format"),
    ],
    ids=["invented-name", "invented-name-no-namespace", "invented-namespace", "prefixed", "colon"],
)
def test_a_wrong_root_is_refused_saying_what_was_expected_never_what_the_file_says(
    root: str, says: str
) -> None:
    err = refusal(extract(record() + "<RecordCount>1</RecordCount>\n", root=root))

    assert says in err.reason
    assert f"expected DeathRegistrationGroup in namespace {NS_GRO}" in err.reason
    assert err.line == 1
    assert_holds_no_markup(str(err))


@pytest.mark.parametrize(
    ("body", "where", "line"),
    [
        ("<JohnSmith>x</JohnSmith>\n" + record() + "<RecordCount>1</RecordCount>\n", "before", 2),
        (record() + "<JohnSmith/>\n" + record() + "<RecordCount>2</RecordCount>\n", "before", 3),
        (record() + f'<x:Note xmlns:x="{FOREIGN_NS}"/>\n<RecordCount>1</RecordCount>\n', "", 3),
        (record() + "<RecordCount>1</RecordCount>\n<JohnSmith/>\n", "after the records", 4),
        (record() + "<JohnSmith:Doe>x</JohnSmith:Doe>\n<RecordCount>1</RecordCount>\n", "", 3),
    ],
    ids=["before-a-record", "between-records", "foreign-namespace", "after-count", "colon"],
)
def test_an_element_with_an_invented_name_is_refused_by_its_place_and_line_not_its_name(
    body: str, where: str, line: int
) -> None:
    err = refusal(extract(body))

    assert err.reason.startswith("unexpected element")
    assert "of a name the GRO format does not define" in err.reason
    assert where in err.reason
    assert err.line == line and f"(line {line})" in str(err)
    assert_holds_no_markup(str(err))


def test_an_element_the_format_defines_in_an_invented_namespace_is_named_without_it() -> None:
    body = record() + f'<RecordCount xmlns="{FOREIGN_NS}">1</RecordCount>\n'
    err = refusal(extract(body + "<RecordCount>1</RecordCount>\n"))

    assert "RecordCount in a namespace the GRO format does not define" in err.reason
    assert_holds_no_markup(str(err))


@pytest.mark.parametrize(
    ("inside", "category"),
    [
        ("<JohnSmith>x</JaneDoe>", "an end tag does not match its start tag"),
        ('<Note JohnSmith="1" JohnSmith="2"/>', "an attribute occurs twice on one element"),
        ("<JohnSmith Doe>x</JohnSmith>", "not well-formed XML at line 3"),
        ("<JohnSmith>x", "not well-formed XML at line 3"),
    ],
    ids=["tags-do-not-match", "attribute-twice", "attribute-without-value", "unclosed"],
)
def test_lxmls_error_is_given_by_category_and_position_never_its_message(
    inside: str, category: str
) -> None:
    # lxml's own message quotes the tags: "Opening and ending tag mismatch: JohnSmith ..."
    body = record() + record(inside) + "<RecordCount>2</RecordCount>\n"
    err = refusal(extract(body))

    assert category in err.reason
    assert "not well-formed XML at line 3, column" in err.reason
    assert err.line == 3
    assert_holds_no_markup(str(err))


def test_an_invented_encoding_is_not_repeated_and_a_real_one_is_named_as_python_knows_it() -> None:
    invented = refusal(b'<?xml version="1.0" encoding="JohnSmith"?>\n' + extract(record()))
    latin = refusal(b'<?xml version="1.0" encoding="Latin-1"?>\n' + extract(record()))

    assert "declares an encoding that is not one Python knows; expected UTF-8" in invented.reason
    assert_holds_no_markup(str(invented))
    assert "declares encoding iso8859-1; expected UTF-8" in latin.reason


def test_the_transformers_reasons_for_invented_markup_hold_none_of_it() -> None:
    # read only: the transformer's reasons are built from the names the format defines
    carried = record(f'<JohnSmith xmlns="{FOREIGN_NS}"><Doe>1</Doe></JohnSmith>')
    parsed = parse_fragment(
        carried.replace("<DeathRegistration>", f'<DeathRegistration xmlns="{NS_GRO}">', 1)
    )
    with pytest.raises(FragmentError) as not_a_record:
        parse_fragment(f'<JohnSmith xmlns="{FOREIGN_NS}"/>')
    with pytest.raises(FragmentError) as malformed:
        parse_fragment(f'<DeathRegistration xmlns="{NS_GRO}"><JohnSmith></JaneDoe>')
    doubled = parse_fragment(
        f'<DeathRegistration xmlns="{NS_GRO}">'
        "<RegistrationID>1</RegistrationID><RegistrationID>2</RegistrationID>"
        "<DeceasedName><JohnSmith/></DeceasedName></DeathRegistration>"
    )

    assert parsed.problems == []
    assert doubled.problems == ["RegistrationID occurs more than once"]
    for text in (str(not_a_record.value), str(malformed.value), *doubled.problems):
        assert_holds_no_markup(text)
