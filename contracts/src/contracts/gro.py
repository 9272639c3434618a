"""The GRO death registration record as it stands in the extract, losslessly.

Text is kept exactly as it appears (whitespace included). `None` means the element was absent;
`""` means it was present but empty: the format treats those differently and so do we. Repeated
elements keep their document order, and the aliases keep the exact interleaving of
`DeceasedAliasName` and `DeceasedAliasNameType`, because that order is how a type is paired
with its name.
"""

from __future__ import annotations

import msgspec

NS_GRO = "http://www.ons.gov.uk/gro/OGDDeathExtractDWP"
NS_PD = "http://www.govtalk.gov.uk/people/PersonDescriptives"
NS_ADDR = "http://www.ons.gov.uk/gro/people/GROAddressDescriptives"
NS_PERSON = "http://www.ons.gov.uk/gro/people/GROPersonDescriptives"

RAW_RECORD_VERSION = 1


class PersonName(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A GRO name structure (`DeceasedName` or `DeceasedAliasName`)."""

    title: str | None = None
    given_names: tuple[str, ...] = ()
    family_name: str | None = None
    suffix: str | None = None


class AliasName(msgspec.Struct, frozen=True, kw_only=True, tag="name"):
    """A `DeceasedAliasName` element, in its place among the alias elements."""

    name: PersonName


class AliasNameType(msgspec.Struct, frozen=True, kw_only=True, tag="type"):
    """A `DeceasedAliasNameType` element, in its place among the alias elements."""

    text: str


AliasElement = AliasName | AliasNameType


class RecordedDate(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`DeceasedDeathDate` / `DeceasedBirthDate`: a date and its verification level, as text."""

    date: str | None = None
    verification_level: str | None = None


class Address(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`DeceasedAddress`."""

    flat: str | None = None
    building: str | None = None
    lines: tuple[str, ...] = ()
    postcode: str | None = None


class ExtraElement(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An element the format reference does not describe, carried rather than dropped."""

    namespace: str
    name: str
    path: str
    text: str | None = None


class GroDeathRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One `DeathRegistration` element, every child kept as text."""

    registration_id: str | None = None
    record_locked_datetime: str | None = None
    record_update_datetime: str | None = None
    record_update_reason: str | None = None
    deceased_name: PersonName | None = None
    aliases: tuple[AliasElement, ...] = ()
    maiden_names: tuple[str, ...] = ()
    gender: str | None = None
    death_date: RecordedDate | None = None
    partial_month_of_death: str | None = None
    partial_year_of_death: str | None = None
    qualifier_text: str | None = None
    free_format_death_date: str | None = None
    birth_date: RecordedDate | None = None
    partial_month_of_birth: str | None = None
    partial_year_of_birth: str | None = None
    free_format_birth_date: str | None = None
    address: Address | None = None
    extra: tuple[ExtraElement, ...] = ()
