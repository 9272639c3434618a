"""Transform one record: parse, check, map, identify. Pure: no AWS, no I/O.

Two ways in, one way through: `transform_fragment` (a fragment off a queue, the Lambda path)
parses it and `transform_element` (an element of a file `ingest transform` is reading) does
not need to; both read the record with `parse.read_record` and end in `_transform`.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.events import DeathNotification
from contracts.gro import GroDeathRecord
from transformer.event_id import identity_and_plain, keyed_id
from transformer.mapping import collapsed_record, event_of_collapsed
from transformer.parse import FragmentError, ParsedRecord, parse_fragment, read_record
from transformer.rules import clean, record_problems


@dataclass(frozen=True, slots=True)
class Transformed:
    """A record that became an event."""

    record: GroDeathRecord
    event: DeathNotification

    @property
    def undefined_elements(self) -> int:
        """How many elements the format reference does not define the record held: left out
        of the event (`mapping`), counted here, never named."""
        return len(self.record.extra)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot become an event: the reasons name fields, never values."""

    reasons: tuple[str, ...]
    registration_id: str | None = None


def transform_fragment(
    fragment: bytes | str, *, key: bytes, key_version: int = 1
) -> Transformed | Rejected:
    """Turn one `DeathRegistration` fragment into its event, or say why it cannot be one."""
    try:
        parsed = parse_fragment(fragment)
    except FragmentError as err:
        return Rejected(reasons=(str(err),))
    return _transform(parsed, key, key_version)


def transform_element(
    element: object, *, key: bytes, key_version: int = 1
) -> Transformed | Rejected:
    """Turn a `DeathRegistration` element (in the GRO namespace, as a file's reader found it)
    into its event, or say why it cannot be one: as `transform_fragment` would its fragment."""
    return _transform(read_record(element), key, key_version)


def _transform(parsed: ParsedRecord, key: bytes, key_version: int) -> Transformed | Rejected:
    record, problems = parsed
    # One encoding of the record serves the id, and says whether anything in it needs
    # collapsing: most records have nothing, and then neither the rules nor the event look.
    identity, plain = identity_and_plain(record)
    reasons = record_problems(record, collapsed=plain)
    if problems or reasons:
        reg = clean(record.registration_id)
        reg = reg if reg is not None and reg.isascii() and reg.isdigit() else None
        return Rejected(reasons=(*problems, *reasons), registration_id=reg)
    source_id = keyed_id(identity, key, key_version)
    collapsed = record if plain else collapsed_record(record)
    return Transformed(record=record, event=event_of_collapsed(collapsed, source_id))
