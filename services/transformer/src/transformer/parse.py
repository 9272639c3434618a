"""Read one record fragment into the lossless `GroDeathRecord`.

Elements are matched on namespace URI and local name, never on prefixes. What the format
reference does not describe is carried in `extra`, not dropped; what breaks the record's shape
(an element that may occur once occurring twice, text where children belong) is reported as a
problem naming the element, never its content.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

# GRO simple elements that occur at most once, by local name -> GroDeathRecord field.
_SINGLE_TEXT = {
    "RegistrationID": "registration_id",
    "RecordLockedDateTime": "record_locked_datetime",
    "RecordUpdateDateTime": "record_update_datetime",
    "RecordUpdateReason": "record_update_reason",
    "DeceasedGender": "gender",
    "PartialMonthOfDeath": "partial_month_of_death",
    "PartialYearOfDeath": "partial_year_of_death",
    "QualifierText": "qualifier_text",
    "FreeFormatDeathDate": "free_format_death_date",
    "PartialMonthOfBirth": "partial_month_of_birth",
    "PartialYearOfBirth": "partial_year_of_birth",
    "FreeFormatBirthDate": "free_format_birth_date",
}


class FragmentError(Exception):
    """The fragment is not one well-formed DeathRegistration element."""


@dataclass(slots=True)
class ParsedRecord:
    """A record and the shape problems met while reading it."""

    record: GroDeathRecord
    problems: list[str] = field(default_factory=list)


def _qname(el: etree._Element) -> tuple[str, str]:
    q = etree.QName(el)
    return q.namespace or "", q.localname


def _path(parent: str, el: etree._Element) -> str:
    return f"{parent}/{etree.QName(el).localname}"


class _Reader:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.extra: list[ExtraElement] = []

    def text(self, el: etree._Element, path: str) -> str:
        children = [c for c in el if isinstance(c.tag, str)]
        if children:
            self.problems.append(f"{path} holds child elements where text belongs")
        return el.text or ""

    def carry(self, el: etree._Element, path: str) -> None:
        ns, local = _qname(el)
        text = el.text if len(el) == 0 else None
        self.extra.append(ExtraElement(namespace=ns, name=local, path=path, text=text))
        for child in el:
            if isinstance(child.tag, str):
                self.carry(child, _path(path, child))

    def once(self, seen: set[str], local: str, path: str) -> bool:
        if local in seen:
            self.problems.append(f"{path} occurs more than once")
            return False
        seen.add(local)
        return True

    def fields(
        self, el: etree._Element, path: str, ns: str, once: tuple[str, ...], many: tuple[str, ...]
    ) -> tuple[dict[str, str], dict[str, list[str]]]:
        """The text of `el`'s children in namespace `ns`: the ones that may occur once, and the
        repeated ones in document order; anything else is carried in `extra`."""
        single: dict[str, str] = {}
        repeated: dict[str, list[str]] = {name: [] for name in many}
        seen: set[str] = set()
        for child in el:
            if not isinstance(child.tag, str):
                continue
            child_ns, local = _qname(child)
            cpath = _path(path, child)
            if child_ns == ns and local in repeated:
                repeated[local].append(self.text(child, cpath))
            elif child_ns == ns and local in once:
                if self.once(seen, local, cpath):
                    single[local] = self.text(child, cpath)
            else:
                self.carry(child, cpath)
        return single, repeated

    def name(self, el: etree._Element, path: str) -> PersonName:
        single, repeated = self.fields(
            el,
            path,
            NS_PERSON,
            once=("PersonNameTitle", "PersonFamilyName", "PersonNameSuffix"),
            many=("PersonGivenName",),
        )
        return PersonName(
            title=single.get("PersonNameTitle"),
            given_names=tuple(repeated["PersonGivenName"]),
            family_name=single.get("PersonFamilyName"),
            suffix=single.get("PersonNameSuffix"),
        )

    def recorded_date(self, el: etree._Element, path: str, date_name: str) -> RecordedDate:
        single, _ = self.fields(el, path, NS_PD, once=(date_name, "VerificationLevel"), many=())
        return RecordedDate(
            date=single.get(date_name), verification_level=single.get("VerificationLevel")
        )

    def address(self, el: etree._Element, path: str) -> Address:
        single, repeated = self.fields(
            el, path, NS_ADDR, once=("Flat", "Building", "Postcode"), many=("Line",)
        )
        return Address(
            flat=single.get("Flat"),
            building=single.get("Building"),
            lines=tuple(repeated["Line"]),
            postcode=single.get("Postcode"),
        )


_STRUCTURED = {
    "DeceasedName": "deceased_name",
    "DeceasedDeathDate": "death_date",
    "DeceasedBirthDate": "birth_date",
    "DeceasedAddress": "address",
}


def _read_structured(reader: _Reader, local: str, el: etree._Element, path: str) -> object:
    if local == "DeceasedName":
        return reader.name(el, path)
    if local == "DeceasedDeathDate":
        return reader.recorded_date(el, path, "PersonDeathDate")
    if local == "DeceasedBirthDate":
        return reader.recorded_date(el, path, "PersonBirthDate")
    return reader.address(el, path)


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
    if _qname(root) != (NS_GRO, "DeathRegistration"):
        raise FragmentError("fragment is not a DeathRegistration in the GRO namespace")
    reader = _Reader()
    fields: dict[str, object] = {}
    aliases: list[AliasElement] = []
    maiden: list[str] = []
    seen: set[str] = set()
    for child in root:
        if not isinstance(child.tag, str):
            continue
        ns, local = _qname(child)
        path = local
        if ns != NS_GRO:
            reader.carry(child, path)
        elif local in _SINGLE_TEXT:
            if reader.once(seen, local, path):
                fields[_SINGLE_TEXT[local]] = reader.text(child, path)
        elif local in _STRUCTURED:
            if reader.once(seen, local, path):
                fields[_STRUCTURED[local]] = _read_structured(reader, local, child, path)
        elif local == "DeceasedAliasName":
            aliases.append(AliasName(name=reader.name(child, path)))
        elif local == "DeceasedAliasNameType":
            aliases.append(AliasNameType(text=reader.text(child, path)))
        elif local == "DeceasedMaidenName":
            maiden.append(reader.text(child, path))
        else:
            reader.carry(child, path)
    record = GroDeathRecord(
        **fields,  # type: ignore[arg-type]
        aliases=tuple(aliases),
        maiden_names=tuple(maiden),
        extra=tuple(reader.extra),
    )
    return ParsedRecord(record=record, problems=reader.problems)
