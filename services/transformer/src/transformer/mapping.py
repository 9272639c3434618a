"""A valid `GroDeathRecord` as a `DeathNotification` v1 event."""

from __future__ import annotations

from contracts.events import (
    DEATH_NOTIFICATION_VERSION,
    EVENT_TYPE,
    SEX_CODES,
    UPDATE_REASON_CODES,
    Alias,
    DeathNotification,
    ExtraField,
    RecordType,
)
from contracts.gro import AliasName, AliasNameType, GroDeathRecord, PersonName
from transformer.rules import clean


def _present(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for v in (clean(x) for x in values) if v is not None)


def _alias(name: PersonName, alias_type: str | None) -> Alias:
    given = _present(name.given_names)
    return Alias(
        title=clean(name.title),
        forenames=" ".join(given) or None,
        given_names=given,
        surname=clean(name.family_name),
        suffix=clean(name.suffix),
        alias_type=alias_type,
    )


def pair_aliases(record: GroDeathRecord) -> tuple[tuple[Alias, ...], tuple[str, ...]]:
    """Aliases with their types where the pairing is certain, and every type in order.

    Interleaved (Alias, Type, Alias, Type) pairs each name with the type after it; grouped
    (Alias, Alias, Type, Type) pairs them by position. Any other layout (say four names and
    one type) leaves every alias unpaired: the types still travel, in order, beside them.
    """
    elements = record.aliases
    names = [e.name for e in elements if isinstance(e, AliasName)]
    types = [clean(e.text) or "" for e in elements if isinstance(e, AliasNameType)]
    kinds = "".join("N" if isinstance(e, AliasName) else "T" for e in elements)
    n = len(names)
    paired: list[str | None]
    if (n and kinds == "NT" * n) or (n and kinds == "N" * n + "T" * n):
        paired = [t or None for t in types]
    else:
        paired = [None] * n
    aliases = tuple(_alias(name, t) for name, t in zip(names, paired, strict=True))
    return aliases, tuple(types)


def _address_lines(flat: str | None, building: str | None, lines: tuple[str, ...]) -> list[str]:
    """The platform's four address lines: flat and building first, overflow in the fourth."""
    composed = [" ".join(p for p in (flat, building) if p)] if (flat or building) else []
    composed.extend(lines)
    if len(composed) > 4:
        composed = [*composed[:3], ", ".join(composed[3:])]
    return composed


def to_event(record: GroDeathRecord, source_id: str) -> DeathNotification:
    """Map a record that passed `record_problems` to its event."""
    locked = clean(record.record_locked_datetime)
    updated = clean(record.record_update_datetime)
    reason = clean(record.record_update_reason)
    name = record.deceased_name or PersonName()
    given = _present(name.given_names)
    aliases, alias_types = pair_aliases(record)
    maiden = _present(record.maiden_names)
    death = record.death_date
    birth = record.birth_date
    address = record.address
    flat = clean(address.flat) if address else None
    building = clean(address.building) if address else None
    lines = _present(address.lines) if address else ()
    four: list[str | None] = [*_address_lines(flat, building, lines), None, None, None, None]
    return DeathNotification(
        source_id=source_id,
        event_type=EVENT_TYPE,
        event_version=DEATH_NOTIFICATION_VERSION,
        event_time=updated or locked or "",
        registration_id=clean(record.registration_id) or "",
        record_type=RecordType.UPDATE if updated else RecordType.REGISTRATION,
        record_locked_date_time=locked,
        record_update_date_time=updated,
        update_reason=UPDATE_REASON_CODES[reason] if updated and reason else None,
        sex=SEX_CODES[clean(record.gender) or ""],
        title=clean(name.title),
        forenames=" ".join(given) or None,
        given_names=given,
        surname=clean(name.family_name),
        name_suffix=clean(name.suffix),
        aliases=aliases,
        alias_name_types=alias_types,
        maiden_surname=maiden[0] if maiden else None,
        maiden_names=maiden,
        date_of_death=clean(death.date) if death else None,
        verification_level=clean(death.verification_level) if death else None,
        partial_month_of_death=clean(record.partial_month_of_death),
        partial_year_of_death=clean(record.partial_year_of_death),
        death_date_qualifier=clean(record.qualifier_text),
        free_format_death_date=clean(record.free_format_death_date),
        date_of_birth=clean(birth.date) if birth else None,
        birth_verification_level=clean(birth.verification_level) if birth else None,
        partial_month_of_birth=clean(record.partial_month_of_birth),
        partial_year_of_birth=clean(record.partial_year_of_birth),
        free_format_birth_date=clean(record.free_format_birth_date),
        flat=flat,
        building=building,
        address_lines=lines,
        address_line1=four[0],
        address_line2=four[1],
        address_line3=four[2],
        address_line4=four[3],
        postcode=clean(address.postcode) if address else None,
        extra=tuple(
            ExtraField(path=e.path, namespace=e.namespace, text=clean(e.text)) for e in record.extra
        ),
    )
