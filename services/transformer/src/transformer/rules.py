"""The validity rules of the GRO format reference, and nothing more.

The pipeline is a conduit: a record is refused only when it cannot become an event (no id, no
time, no name, no sex, no death date). Each reason names the element and the rule broken,
never the value, so reasons can go to logs and dead-letter queues.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime

from contracts.events import SEX_CODES, UPDATE_REASON_CODES
from contracts.gro import GroDeathRecord

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_YEAR = re.compile(r"^\d{4}$")
# a space followed by a space or a quote, or preceded by a quote (spaces are rare: the regex
# engine finds each one fast, then looks around it)
_SPACE_MARK = re.compile(rb' (?:[ "]|(?<=" ))')


def clean(value: str | None) -> str | None:
    """Collapse runs of whitespace; an empty or absent value is None."""
    if value is None:
        return None
    collapsed = " ".join(value.split())
    return collapsed or None


def all_collapsed(encoded: bytes) -> bool:
    """Whether every string in `encoded` (msgspec JSON) is as `clean` would leave it (or "").

    It looks for the marks of anything `clean` would change: a backslash (whitespace other than
    a space is escaped: \\t \\n \\f \\r \\u000b \\u001c-\\u001f); in a text that is not all
    ASCII, the first byte of a Unicode space in UTF-8 (U+0085 and U+00A0 start with C2, U+1680
    with E1, U+2000-U+200A, U+2028, U+2029, U+202F and U+205F with E2, U+3000 with E3: with the
    escaped ones, every character `str.split` splits on); and two spaces, or a space next to a
    quote (a value's first or last character; the encoding puts no space outside a string).
    A mark can also stand for something harmless (an escaped quote, a curly apostrophe): a
    false alarm costs only the slow path. (Each test is one scan: memchr-fast for a byte; the
    spaces, rare, found first and then looked around.)
    """
    if b"\\" in encoded or _SPACE_MARK.search(encoded):
        return False
    return encoded.isascii() or not (
        b"\xc2" in encoded or b"\xe1" in encoded or b"\xe2" in encoded or b"\xe3" in encoded
    )


def is_datetime(value: str | None) -> bool:
    """`yyyy-MM-ddTHH:mm:ss[.SSS]`, a real instant."""
    if value is None or not _DATETIME.match(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def is_date(value: str | None) -> bool:
    """`yyyy-MM-dd`, a real calendar date."""
    if value is None or not _DATE.match(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _or_none(value: str | None) -> str | None:
    """`clean` of a value known to have nothing to collapse."""
    return value or None


def _timestamp_reasons(
    record: GroDeathRecord, tidy: Callable[[str | None], str | None]
) -> list[str]:
    locked = tidy(record.record_locked_datetime)
    updated = tidy(record.record_update_datetime)
    reason = tidy(record.record_update_reason)
    if locked is None and updated is None:
        return [
            "neither RecordLockedDateTime (new registration) nor RecordUpdateDateTime (update)"
            " is given"
        ]
    if locked is not None and updated is not None:
        return ["both RecordLockedDateTime and RecordUpdateDateTime are given; exactly one must be"]
    out: list[str] = []
    if locked is not None:
        if not is_datetime(locked):
            out.append("RecordLockedDateTime is not a yyyy-MM-ddTHH:mm:ss[.SSS] date-time")
        if reason is not None:
            out.append(
                "RecordUpdateReason is given on a new registration (no RecordUpdateDateTime)"
            )
        return out
    if not is_datetime(updated):
        out.append("RecordUpdateDateTime is not a yyyy-MM-ddTHH:mm:ss[.SSS] date-time")
    if reason is None:
        out.append("RecordUpdateDateTime is given without a RecordUpdateReason")
    elif reason not in UPDATE_REASON_CODES:
        out.append("RecordUpdateReason is not one of 1, 2, 3, 4, 5")
    return out


def record_problems(record: GroDeathRecord, *, collapsed: bool = False) -> list[str]:
    """Every rule of the format reference this record breaks (empty when it is valid).
    `collapsed`: the record is known to have nothing to collapse (`all_collapsed`), so
    `clean` need not look at each value."""
    tidy = _or_none if collapsed else clean
    out: list[str] = []
    reg = tidy(record.registration_id)
    if reg is None:
        out.append("RegistrationID is missing or empty")
    elif not (reg.isascii() and reg.isdigit()):
        out.append("RegistrationID is not a number")
    out.extend(_timestamp_reasons(record, tidy))
    name = record.deceased_name
    if name is None:
        out.append("DeceasedName is missing")
    elif tidy(name.family_name) is None and not any(tidy(g) for g in name.given_names):
        out.append("DeceasedName has neither a PersonGivenName nor a PersonFamilyName")
    gender = tidy(record.gender)
    if gender is None:
        out.append("DeceasedGender is missing or empty")
    elif gender not in SEX_CODES:
        out.append("DeceasedGender is not one of 1, 2, 9")
    death = record.death_date
    death_date = tidy(death.date) if death else None
    year = tidy(record.partial_year_of_death)
    if not is_date(death_date) and not (year is not None and _YEAR.match(year)):
        if death_date is not None:
            out.append(
                "DeceasedDeathDate/PersonDeathDate is not a yyyy-MM-dd date and there is no"
                " PartialYearOfDeath"
            )
        elif year is not None:
            out.append("PartialYearOfDeath is not a yyyy year and there is no PersonDeathDate")
        else:
            out.append(
                "no death date: neither DeceasedDeathDate/PersonDeathDate nor"
                " PartialYearOfDeath is given"
            )
    return out
