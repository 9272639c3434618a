"""Transform one record fragment: parse, check, map, identify. Pure: no AWS, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import DeathNotification
from contracts.gro import GroDeathRecord
from transformer.event_id import event_id
from transformer.mapping import to_event
from transformer.parse import FragmentError, parse_fragment
from transformer.rules import clean, record_problems


@dataclass(frozen=True, slots=True)
class Transformed:
    """A record that became an event."""

    record: GroDeathRecord
    event: DeathNotification


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot become an event: the reasons name fields, never values."""

    reasons: tuple[str, ...]
    registration_id: str | None = None


def transform_fragment(fragment: bytes | str, *, key: bytes) -> Transformed | Rejected:
    """Turn one `DeathRegistration` fragment into its event, or say why it cannot be one."""
    try:
        parsed = parse_fragment(fragment)
    except FragmentError as err:
        return Rejected(reasons=(str(err),))
    record = parsed.record
    reasons = [*parsed.problems, *record_problems(record)]
    reg = clean(record.registration_id)
    reg = reg if reg is not None and reg.isascii() and reg.isdigit() else None
    if reasons:
        return Rejected(reasons=tuple(reasons), registration_id=reg)
    return Transformed(record=record, event=to_event(record, event_id(record, key)))
