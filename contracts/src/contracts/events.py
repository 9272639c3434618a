"""DeathNotification: the event a GRO death registration becomes.

Field names are the platform's own where it has one (`sourceId`, `dateOfDeath`, `addressLine1`
...); everything else the record holds is carried too, so that nothing in the source is lost on
the way to a consumer. Whitespace inside values is collapsed; empty elements become absent.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Final, Literal

import msgspec

from contracts.personal import PERSONAL

EVENT_TYPE: Final = "GRO_DEATH_NOTIFICATION"
DEATH_NOTIFICATION_VERSION: Final = 1

# The platform's rule for a supplier's id.
SOURCE_ID_PATTERN: Final = r"^[A-Za-z0-9+=,.@_-]{1,80}$"
SourceId = Annotated[str, msgspec.Meta(pattern=SOURCE_ID_PATTERN)]


class RecordType(StrEnum):
    """Whether the record is a new registration or an update to an earlier one."""

    REGISTRATION = "REGISTRATION"
    UPDATE = "UPDATE"


class UpdateReason(StrEnum):
    """`RecordUpdateReason`, by name rather than by GRO's code."""

    FORMAL_CORRECTION = "FORMAL_CORRECTION"
    QUALITY_ASSURANCE = "QUALITY_ASSURANCE"
    TYPOGRAPHICAL = "TYPOGRAPHICAL"
    CANCELLED = "CANCELLED"
    CANCELLATION_REMOVED = "CANCELLATION_REMOVED"


UPDATE_REASON_CODES: dict[str, UpdateReason] = {
    "1": UpdateReason.FORMAL_CORRECTION,
    "2": UpdateReason.QUALITY_ASSURANCE,
    "3": UpdateReason.TYPOGRAPHICAL,
    "4": UpdateReason.CANCELLED,
    "5": UpdateReason.CANCELLATION_REMOVED,
}


class Sex(StrEnum):
    """`DeceasedGender`: 1 male, 2 female, 9 indeterminate."""

    MALE = "MALE"
    FEMALE = "FEMALE"
    INDETERMINATE = "INDETERMINATE"


SEX_CODES: dict[str, Sex] = {"1": Sex.MALE, "2": Sex.FEMALE, "9": Sex.INDETERMINATE}


class Alias(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"):
    """One `DeceasedAliasName`, with its `DeceasedAliasNameType` where the pairing is certain."""

    title: str | None = None
    forenames: str | None = None
    given_names: tuple[str, ...] = ()
    surname: str | None = None
    suffix: str | None = None
    alias_type: str | None = None


class ExtraField(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An element the format reference does not name, passed on rather than dropped."""

    path: str
    namespace: str
    text: str | None = None


class DeathNotification(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"
):
    """Version 1 of the event: what the publisher stores and what enrichment returns."""

    # Personal fields are marked PERSONAL (contracts.personal): the registration id (a
    # quasi-identifier), sex, names, dates of death and birth, the address and `extra`. The ids,
    # the record's type and times, the update reason and the verification levels are not.

    source_id: SourceId
    # No defaults on these two: omit_defaults would leave them out of the JSON.
    event_type: Literal["GRO_DEATH_NOTIFICATION"]
    event_version: Literal[1]
    event_time: str
    registration_id: Annotated[str, PERSONAL]
    record_type: RecordType
    record_locked_date_time: str | None = None
    record_update_date_time: str | None = None
    update_reason: UpdateReason | None = None
    sex: Annotated[Sex, PERSONAL]
    title: Annotated[str | None, PERSONAL] = None
    forenames: Annotated[str | None, PERSONAL] = None
    given_names: Annotated[tuple[str, ...], PERSONAL] = ()
    surname: Annotated[str | None, PERSONAL] = None
    name_suffix: Annotated[str | None, PERSONAL] = None
    aliases: Annotated[tuple[Alias, ...], PERSONAL] = ()
    alias_name_types: Annotated[tuple[str, ...], PERSONAL] = ()
    maiden_surname: Annotated[str | None, PERSONAL] = None
    maiden_names: Annotated[tuple[str, ...], PERSONAL] = ()
    date_of_death: Annotated[str | None, PERSONAL] = None
    verification_level: str | None = None
    partial_month_of_death: Annotated[str | None, PERSONAL] = None
    partial_year_of_death: Annotated[str | None, PERSONAL] = None
    death_date_qualifier: Annotated[str | None, PERSONAL] = None
    free_format_death_date: Annotated[str | None, PERSONAL] = None
    date_of_birth: Annotated[str | None, PERSONAL] = None
    birth_verification_level: str | None = None
    partial_month_of_birth: Annotated[str | None, PERSONAL] = None
    partial_year_of_birth: Annotated[str | None, PERSONAL] = None
    free_format_birth_date: Annotated[str | None, PERSONAL] = None
    flat: Annotated[str | None, PERSONAL] = None
    building: Annotated[str | None, PERSONAL] = None
    address_lines: Annotated[tuple[str, ...], PERSONAL] = ()
    address_line1: Annotated[str | None, PERSONAL] = None
    address_line2: Annotated[str | None, PERSONAL] = None
    address_line3: Annotated[str | None, PERSONAL] = None
    address_line4: Annotated[str | None, PERSONAL] = None
    postcode: Annotated[str | None, PERSONAL] = None
    # Deprecated, always empty: the transformer no longer carries content the GRO format does
    # not define (it counts it: `undefined_elements_dropped` in its log, the metric
    # UndefinedElementsDropped, a line from `ingest transform`). Kept, optional, because v1 is
    # released and the compatibility gate refuses a removal; v2 drops it. (ExtraField's
    # docstring, the schema's description, still says "passed on": a v2 matter.)
    extra: Annotated[tuple[ExtraField, ...], PERSONAL] = ()


class MinimalEvent(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """The only thing the platform is told up front: an id and a type (and the record's time)."""

    event_type: Literal["GRO_DEATH_NOTIFICATION"] = EVENT_TYPE
    event_time: str
    id: SourceId
