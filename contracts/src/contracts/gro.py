"""The GRO death registration record as it stands in the extract, losslessly.

Text is kept exactly as it appears (whitespace included). `None` means the element was absent;
`""` means it was present but empty: the format treats those differently and so do we. Repeated
elements keep their document order, and the aliases keep the exact interleaving of
`DeceasedAliasName` and `DeceasedAliasNameType`, because that order is how a type is paired
with its name.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from contracts.personal import PERSONAL

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

    # Personal fields are marked PERSONAL (contracts.personal): what the format reference marks
    # as PII (the registration id is a quasi-identifier), and `extra`, which holds whatever the
    # file put there. The structures inside them (PersonName, RecordedDate, Address, the alias
    # elements, ExtraElement) are personal as a whole. (Comments, not the docstring: the
    # docstring is the JSON Schema's description.)

    registration_id: Annotated[str | None, PERSONAL] = None
    record_locked_datetime: str | None = None
    record_update_datetime: str | None = None
    record_update_reason: str | None = None
    deceased_name: Annotated[PersonName | None, PERSONAL] = None
    aliases: Annotated[tuple[AliasElement, ...], PERSONAL] = ()
    maiden_names: Annotated[tuple[str, ...], PERSONAL] = ()
    gender: Annotated[str | None, PERSONAL] = None
    death_date: Annotated[RecordedDate | None, PERSONAL] = None
    partial_month_of_death: Annotated[str | None, PERSONAL] = None
    partial_year_of_death: Annotated[str | None, PERSONAL] = None
    qualifier_text: Annotated[str | None, PERSONAL] = None
    free_format_death_date: Annotated[str | None, PERSONAL] = None
    birth_date: Annotated[RecordedDate | None, PERSONAL] = None
    partial_month_of_birth: Annotated[str | None, PERSONAL] = None
    partial_year_of_birth: Annotated[str | None, PERSONAL] = None
    free_format_birth_date: Annotated[str | None, PERSONAL] = None
    address: Annotated[Address | None, PERSONAL] = None
    extra: Annotated[tuple[ExtraElement, ...], PERSONAL] = ()
