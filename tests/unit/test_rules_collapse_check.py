"""`rules.all_collapsed`, the one look that lets most records skip collapsing value by value,
says what its earlier form said on every encoding: the same records take the quick way, and no
record that needs collapsing does.

The earlier form (split the encoding at each space and look at the two sides) is kept here as
the reference: the current one finds the same marks with a few substring scans.
"""

from __future__ import annotations

from itertools import pairwise

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.gro import AliasName, AliasNameType, GroDeathRecord, PersonName
from transformer.rules import all_collapsed


def _reference(encoded: bytes) -> bool:
    """`all_collapsed` as it was written before it was made one scan per mark."""
    if b"\\" in encoded:
        return False
    if not encoded.isascii() and (
        b"\xc2" in encoded or b"\xe1" in encoded or b"\xe2" in encoded or b"\xe3" in encoded
    ):
        return False
    pieces = encoded.split(b" ")
    for before, after in pairwise(pieces):
        if not after or after[0] == 0x22 or before[-1] == 0x22:
            return False
    return True


# Texts made of what matters to the check: spaces (ASCII and Unicode), quotes, backslashes,
# other escaped characters, letters with and without the UTF-8 lead bytes it looks for.
_MARKS = [" ", "  ", '"', "\\", "\t", "\n", "\u00a0", "\u2003", "\u3000", "\u0085", "\u2028"]
_OTHERS = ["a", "Z", "7", "-", "'", "Æ", "Ğ", "Ř", "©", "\u1000", "\u2019", "\u3042", ""]
_pieces = st.sampled_from([*_MARKS, *_OTHERS])
_texts = st.lists(_pieces, max_size=8).map("".join)


@settings(max_examples=800, deadline=None)
@given(values=st.lists(_texts, max_size=6))
def test_the_check_says_what_its_earlier_form_said_on_any_list_of_texts(
    values: list[str],
) -> None:
    encoded = msgspec.json.encode(values)
    assert all_collapsed(encoded) == _reference(encoded)


@settings(max_examples=400, deadline=None)
@given(
    family=_texts,
    given_names=st.lists(_texts, max_size=3),
    alias_type=_texts,
    registration=_texts,
)
def test_the_check_says_what_its_earlier_form_said_on_a_record_encoded_for_its_id(
    family: str, given_names: list[str], alias_type: str, registration: str
) -> None:
    record = GroDeathRecord(
        registration_id=registration,
        deceased_name=PersonName(family_name=family, given_names=tuple(given_names)),
        aliases=(AliasName(name=PersonName(family_name=family)), AliasNameType(text=alias_type)),
    )
    encoded = msgspec.json.Encoder(order="sorted").encode(record)
    assert all_collapsed(encoded) == _reference(encoded)
    if all_collapsed(encoded):
        assert all(" ".join(v.split()) == v for v in (family, *given_names, alias_type))


@pytest.mark.parametrize(
    ("values", "quick"),
    [
        (["one space", "x"], True),
        (["", "ÆRIN", "O'NEILL"], True),
        (["two  spaces"], False),
        ([" leading"], False),
        (["trailing "], False),
        ([" "], False),
        (["tab\there"], False),
        (['a "quoted" word'], False),  # an escaped quote: a false alarm, as before
        (["no\u00a0break"], False),
        (["\u3000"], False),
        (["curly\u2019s"], False),  # its lead byte is a Unicode space's: a false alarm, as before
    ],
)
def test_the_check_takes_the_quick_way_only_when_nothing_needs_collapsing(
    values: list[str], quick: bool
) -> None:
    encoded = msgspec.json.encode(values)
    assert all_collapsed(encoded) is quick
    assert _reference(encoded) is quick
