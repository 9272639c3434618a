"""Read one record into the lossless `GroDeathRecord`.

`read_record` reads a `DeathRegistration` element, wherever it was parsed: from a fragment on
a queue (`parse_fragment`, the Lambda path) or straight out of a whole file (`ingest
transform`). Elements are matched on namespace URI and local name, never on prefixes (on the
tag as lxml holds it, `{uri}local`, looked up in one table per structure). What the format
reference does not define is kept in the record's `extra`, so that the event id covers the
record as it was sent; the event leaves it out (`mapping`). What breaks the record's shape (an
element that may occur once occurring twice, text where children belong) is reported as a
problem naming the element by its name in the format reference, never its content: a problem
only ever names an element the reference defines, so no name or namespace the file invented
reaches a reason.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from lxml import etree

from contracts.gro import (
    NS_ADDR,
    NS_GRO,
    NS_PD,
    NS_PERSON,
    Address,
    AliasElement,
    AliasName,
    AliasNameType,
    ExtraElement,
    GroDeathRecord,
    PersonName,
    RecordedDate,
)

_PARSER = etree.XMLParser(
    resolve_entities=False,
    load_dtd=False,
    no_network=True,
    huge_tree=False,
    remove_comments=True,
    remove_pis=True,
    collect_ids=False,
)

_G, _PD, _ADDR, _PERSON = (f"{{{ns}}}" for ns in (NS_GRO, NS_PD, NS_ADDR, NS_PERSON))
RECORD_TAG = f"{_G}DeathRegistration"
# (a NamedTuple's own __new__ is a Python function: this is a few times cheaper)
_new_tuple = tuple.__new__

# What each child of a DeathRegistration is, by its tag: (kind, local name, GroDeathRecord
# field). The simple elements and the structures may occur once; the alias elements and the
# maiden names repeat, in document order.
_TEXT, _NAME, _DATE, _ADDRESS, _ALIAS, _ALIAS_TYPE, _MAIDEN = range(7)
_RECORD: dict[str, tuple[int, str, str]] = {
    _G + local: (kind, local, name)
    for kind, local, name in (
        (_TEXT, "RegistrationID", "registration_id"),
        (_TEXT, "RecordLockedDateTime", "record_locked_datetime"),
        (_TEXT, "RecordUpdateDateTime", "record_update_datetime"),
        (_TEXT, "RecordUpdateReason", "record_update_reason"),
        (_NAME, "DeceasedName", "deceased_name"),
        (_ALIAS, "DeceasedAliasName", ""),
        (_ALIAS_TYPE, "DeceasedAliasNameType", ""),
        (_MAIDEN, "DeceasedMaidenName", ""),
        (_TEXT, "DeceasedGender", "gender"),
        (_DATE, "DeceasedDeathDate", "death_date"),
        (_TEXT, "PartialMonthOfDeath", "partial_month_of_death"),
        (_TEXT, "PartialYearOfDeath", "partial_year_of_death"),
        (_TEXT, "QualifierText", "qualifier_text"),
        (_TEXT, "FreeFormatDeathDate", "free_format_death_date"),
        (_DATE, "DeceasedBirthDate", "birth_date"),
        (_TEXT, "PartialMonthOfBirth", "partial_month_of_birth"),
        (_TEXT, "PartialYearOfBirth", "partial_year_of_birth"),
        (_TEXT, "FreeFormatBirthDate", "free_format_birth_date"),
        (_ADDRESS, "DeceasedAddress", "address"),
    )
}

# The children of each structure, by tag: (local name, field of the structure, may repeat).
_Spec = dict[str, tuple[str, str, bool]]
_NAME_PARTS: _Spec = {
    _PERSON + "PersonNameTitle": ("PersonNameTitle", "title", False),
    _PERSON + "PersonGivenName": ("PersonGivenName", "given_names", True),
    _PERSON + "PersonFamilyName": ("PersonFamilyName", "family_name", False),
    _PERSON + "PersonNameSuffix": ("PersonNameSuffix", "suffix", False),
}
_DATE_PARTS: dict[str, _Spec] = {
    "DeceasedDeathDate": {
        _PD + "PersonDeathDate": ("PersonDeathDate", "date", False),
        _PD + "VerificationLevel": ("VerificationLevel", "verification_level", False),
    },
    "DeceasedBirthDate": {
        _PD + "PersonBirthDate": ("PersonBirthDate", "date", False),
        _PD + "VerificationLevel": ("VerificationLevel", "verification_level", False),
    },
}
_ADDRESS_PARTS: _Spec = {
    _ADDR + "Flat": ("Flat", "flat", False),
    _ADDR + "Building": ("Building", "building", False),
    _ADDR + "Line": ("Line", "lines", True),
    _ADDR + "Postcode": ("Postcode", "postcode", False),
}


class FragmentError(Exception):
    """The fragment is not one well-formed DeathRegistration element."""


class ParsedRecord(NamedTuple):
    """A record and the shape problems met while reading it. (A tuple: made once a record.)"""

    record: GroDeathRecord
    problems: list[str]


def _split_tag(tag: str) -> tuple[str, str]:
    """`{uri}local` -> (uri, local); a tag in no namespace -> ("", tag)."""
    if tag[:1] == "{":
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _text_only(el: etree._Element, path: str, problems: list[str]) -> None:
    """Called for an element that has children where text belongs (rare): a problem if any is
    an element (the parsers drop comments and PIs; an entity reference would need a DTD, which
    both paths refuse)."""
    if any(isinstance(c.tag, str) for c in el):
        problems.append(f"{path} holds child elements where text belongs")


def _carry(el: etree._Element, path: str, extra: list[ExtraElement]) -> None:
    """Keep an element the reference does not define, and everything inside it."""
    namespace, local = _split_tag(el.tag)
    text = el.text if len(el) == 0 else None
    extra.append(ExtraElement(namespace=namespace, name=local, path=path, text=text))
    for child in el:
        tag = child.tag
        if isinstance(tag, str):
            _carry(child, f"{path}/{_split_tag(tag)[1]}", extra)


def _parts(
    el: etree._Element, path: str, spec: _Spec, problems: list[str], extra: list[ExtraElement]
) -> dict[str, Any]:
    """The fields of a structure from `el`'s children that `spec` names (the text of one that
    may occur once; the texts of a repeated one, in document order); anything else is carried
    in `extra`."""
    found: dict[str, Any] = {}
    repeated: list[str] | None = None  # the texts of the one part of `spec` that may repeat
    many_name = ""
    for child in el:
        tag = child.tag
        known = spec.get(tag)
        if known is None:
            if isinstance(tag, str):
                _carry(child, f"{path}/{_split_tag(tag)[1]}", extra)
            continue
        local, name, many = known
        if many:
            if len(child):
                _text_only(child, f"{path}/{local}", problems)
            if repeated is None:
                repeated, many_name = [], name
            repeated.append(child.text or "")
        elif name in found:
            problems.append(f"{path}/{local} occurs more than once")
        else:
            if len(child):
                _text_only(child, f"{path}/{local}", problems)
            found[name] = child.text or ""
    if repeated is not None:
        found[many_name] = tuple(repeated)
    return found


def read_record(root: etree._Element) -> ParsedRecord:
    """Read a `DeathRegistration` element (in the GRO namespace) into a record and its shape
    problems. The one reader of both paths: a fragment's root, or an element of a file.

    It runs for every record of every file, so it is one loop with the table lookups hoisted:
    what lxml costs per element (a proxy object, its tag as a string) is most of it.
    """
    problems: list[str] = []
    extra: list[ExtraElement] = []
    fields: dict[str, Any] = {}
    aliases: list[AliasElement] = []
    maiden: list[str] = []
    known_tag = _RECORD.get
    for child in root:
        tag = child.tag
        known = known_tag(tag)
        if known is None:
            if isinstance(tag, str):
                _carry(child, _split_tag(tag)[1], extra)
            continue
        kind, local, name = known
        if kind == _TEXT:
            if name in fields:
                problems.append(f"{local} occurs more than once")
                continue
            if len(child):
                _text_only(child, local, problems)
            fields[name] = child.text or ""
        elif kind in (_MAIDEN, _ALIAS_TYPE):
            if len(child):
                _text_only(child, local, problems)
            text = child.text or ""
            if kind == _MAIDEN:
                maiden.append(text)
            else:
                aliases.append(AliasNameType(text=text))
        elif kind == _ALIAS:
            parts = _parts(child, local, _NAME_PARTS, problems, extra)
            aliases.append(AliasName(name=PersonName(**parts)))
        elif name in fields:
            problems.append(f"{local} occurs more than once")
        elif kind == _NAME:
            fields[name] = PersonName(**_parts(child, local, _NAME_PARTS, problems, extra))
        elif kind == _DATE:
            spec = _DATE_PARTS[local]
            fields[name] = RecordedDate(**_parts(child, local, spec, problems, extra))
        else:
            fields[name] = Address(**_parts(child, local, _ADDRESS_PARTS, problems, extra))
    # (each only when there is one: their default is empty, and passing none is cheaper)
    if aliases:
        fields["aliases"] = tuple(aliases)
    if maiden:
        fields["maiden_names"] = tuple(maiden)
    if extra:
        fields["extra"] = tuple(extra)
    return _new_tuple(ParsedRecord, (GroDeathRecord(**fields), problems))


def parse_fragment(fragment: bytes | str) -> ParsedRecord:
    """Read a standalone `DeathRegistration` document into a record and its shape problems."""
    data = fragment.encode() if isinstance(fragment, str) else fragment
    try:
        root = etree.fromstring(data, _PARSER)
    except etree.XMLSyntaxError as err:
        line = err.position[0] if err.position else err.lineno
        raise FragmentError(f"record is not well-formed XML (line {line})") from None
    if root.getroottree().docinfo.doctype:
        raise FragmentError("record has a DOCTYPE declaration")
    if root.tag != RECORD_TAG:
        raise FragmentError("fragment is not a DeathRegistration in the GRO namespace")
    return read_record(root)
