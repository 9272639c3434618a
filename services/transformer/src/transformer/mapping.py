"""A valid `GroDeathRecord` as a `DeathNotification` v1 event.

Only what the GRO format reference defines becomes part of the event. Content the reference
does not define (`GroDeathRecord.extra`: foreign-namespace elements, unknown GRO elements) is
left out: the event's `extra` is always empty. The pipeline keeps no more than the event
contract needs, and an element nobody defined has no meaning a consumer could rely on, only a
risk (anything at all can be in it). How many elements were left out is counted, never named
(`Transformed.undefined_elements`).

Every value is collapsed (runs of whitespace to one space, empty to absent). This runs for every
record of every file, so it is written for speed: the record is collapsed once, as a whole
(`collapsed_record`: most records have nothing to collapse and come back as they are), and the
event is read off it.
"""

from __future__ import annotations

import msgspec

from contracts.events import (
    DEATH_NOTIFICATION_VERSION,
    EVENT_TYPE,
    SEX_CODES,
    UPDATE_REASON_CODES,
    Alias,
    DeathNotification,
    RecordType,
)
from contracts.gro import AliasName, AliasNameType, GroDeathRecord, PersonName
from transformer.rules import all_collapsed

_encode = msgspec.json.Encoder().encode


def _collapsed(value: object) -> object:
    if isinstance(value, str):
        return " ".join(value.split())
    if isinstance(value, list | tuple):
        return [_collapsed(v) for v in value]
    if isinstance(value, dict):
        return {k: _collapsed(v) for k, v in value.items()}
    return value


def collapsed_record(record: GroDeathRecord) -> GroDeathRecord:
    """The record with every value's runs of whitespace collapsed to one space (an empty or
    blank value stays present, as ""): the record itself when it has nothing to collapse."""
    if all_collapsed(_encode(record)):
        return record
    return msgspec.convert(_collapsed(msgspec.to_builtins(record)), GroDeathRecord)


def _present(values: tuple[str, ...]) -> tuple[str, ...]:
    """The collapsed values that are not empty, in order."""
    return values if all(values) else tuple([v for v in values if v])


def _alias(name: PersonName, alias_type: str | None) -> Alias:
    given = name.given_names
    if not all(given):
        given = tuple([v for v in given if v])
    return Alias(
        title=name.title or None,
        forenames=" ".join(given) or None,
        given_names=given,
        surname=name.family_name or None,
        suffix=name.suffix or None,
        alias_type=alias_type,
    )


def pair_aliases(record: GroDeathRecord) -> tuple[tuple[Alias, ...], tuple[str, ...]]:
    """Aliases with their types where the pairing is certain, and every type in order (of a
    collapsed record).

    Interleaved (Alias, Type, Alias, Type) pairs each name with the type after it; grouped
    (Alias, Alias, Type, Type) pairs them by position. Any other layout (say four names and
    one type) leaves every alias unpaired: the types still travel, in order, beside them.
    """
    elements = record.aliases
    is_name = [type(e) is AliasName for e in elements]
    names = [e.name for e in elements if type(e) is AliasName]
    types = tuple([e.text for e in elements if type(e) is AliasNameType])
    n = len(names)
    # n names and n types, interleaved when the names stand at even places, else grouped when
    # the names come first; a pairing needs one of the two (all() of a list: no generator)
    if n and n == len(types) and (all(is_name[::2]) or all(is_name[:n])):
        return tuple([_alias(name, t or None) for name, t in zip(names, types, strict=True)]), types
    return tuple([_alias(name, None) for name in names]), types


def _address_lines(flat: str | None, building: str | None, lines: tuple[str, ...]) -> list[str]:
    """The platform's four address lines: flat and building first, overflow in the fourth."""
    composed = [" ".join(p for p in (flat, building) if p)] if (flat or building) else []
    composed.extend(lines)
    if len(composed) > 4:
        composed = [*composed[:3], ", ".join(composed[3:])]
    return composed


_NO_NAME = PersonName()
# (an enum member looked up on its class costs a descriptor call in Python 3.11)
_UPDATE, _REGISTRATION = RecordType.UPDATE, RecordType.REGISTRATION


def to_event(record: GroDeathRecord, source_id: str) -> DeathNotification:
    """Map a record that passed `record_problems` to its event."""
    return event_of_collapsed(collapsed_record(record), source_id)


def event_of_collapsed(r: GroDeathRecord, source_id: str) -> DeathNotification:
    """`to_event` of a record already collapsed (`collapsed_record`, or one the id found had
    nothing to collapse)."""
    locked = r.record_locked_datetime or None
    updated = r.record_update_datetime or None
    reason = r.record_update_reason or None
    name = r.deceased_name or _NO_NAME
    given = name.given_names
    if not all(given):
        given = _present(given)
    aliases, alias_types = pair_aliases(r) if r.aliases else ((), ())
    maiden = r.maiden_names
    if not all(maiden):
        maiden = _present(maiden)
    death = r.death_date
    birth = r.birth_date
    address = r.address
    if address is not None:
        flat = address.flat or None
        building = address.building or None
        lines = _present(address.lines)
        four: list[str | None] = [*_address_lines(flat, building, lines), None, None, None, None]
        postcode = address.postcode or None
    else:
        flat = building = postcode = None
        lines = ()
        four = [None, None, None, None]
    return DeathNotification(
        source_id=source_id,
        event_type=EVENT_TYPE,
        event_version=DEATH_NOTIFICATION_VERSION,
        event_time=updated or locked or "",
        registration_id=r.registration_id or "",
        record_type=_UPDATE if updated else _REGISTRATION,
        record_locked_date_time=locked,
        record_update_date_time=updated,
        update_reason=UPDATE_REASON_CODES[reason] if updated and reason else None,
        sex=SEX_CODES[r.gender or ""],
        title=name.title or None,
        forenames=" ".join(given) or None,
        given_names=given,
        surname=name.family_name or None,
        name_suffix=name.suffix or None,
        aliases=aliases,
        alias_name_types=alias_types,
        maiden_surname=maiden[0] if maiden else None,
        maiden_names=maiden,
        date_of_death=(death.date or None) if death else None,
        verification_level=(death.verification_level or None) if death else None,
        partial_month_of_death=r.partial_month_of_death or None,
        partial_year_of_death=r.partial_year_of_death or None,
        death_date_qualifier=r.qualifier_text or None,
        free_format_death_date=r.free_format_death_date or None,
        date_of_birth=(birth.date or None) if birth else None,
        birth_verification_level=(birth.verification_level or None) if birth else None,
        partial_month_of_birth=r.partial_month_of_birth or None,
        partial_year_of_birth=r.partial_year_of_birth or None,
        free_format_birth_date=r.free_format_birth_date or None,
        flat=flat,
        building=building,
        address_lines=lines,
        address_line1=four[0],
        address_line2=four[1],
        address_line3=four[2],
        address_line4=four[3],
        postcode=postcode,
    )
