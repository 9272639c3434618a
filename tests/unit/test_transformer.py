"""The transformer against every row of the format reference, its validity rules and ids."""

from __future__ import annotations

import io

import msgspec
import pytest

from contracts.events import RecordType, Sex, UpdateReason
from contracts.gro import AliasName, AliasNameType, RecordedDate
from splitter.extract import ExtractReader, Fragment
from tests.builders import GENDER, LOCKED, NAME, extract, fragment, record
from transformer.core import Rejected, Transformed, transform_fragment
from transformer.event_id import event_id
from transformer.parse import parse_fragment

KEY = b"test-key"


def ok(rec: str) -> Transformed:
    out = transform_fragment(fragment(rec), key=KEY)
    assert isinstance(out, Transformed), out
    return out


def rejected(rec: str) -> Rejected:
    out = transform_fragment(fragment(rec), key=KEY)
    assert isinstance(out, Rejected), out
    return out


# -- one fixture per row of the format reference ------------------------------------------


@pytest.mark.parametrize("reg", ["1", "999999999", "500045735"])
def test_registration_id_of_one_to_nine_digits_is_carried_as_given(reg: str) -> None:
    assert ok(record(registration_id=reg)).event.registration_id == reg


def test_a_new_registration_takes_its_event_time_from_record_locked_date_time() -> None:
    event = ok(record()).event
    assert event.record_type is RecordType.REGISTRATION
    assert event.event_time == "2022-03-01T12:09:33"
    assert event.update_reason is None


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("1", UpdateReason.FORMAL_CORRECTION),
        ("2", UpdateReason.QUALITY_ASSURANCE),
        ("3", UpdateReason.TYPOGRAPHICAL),
        ("4", UpdateReason.CANCELLED),
        ("5", UpdateReason.CANCELLATION_REMOVED),
    ],
)
def test_an_update_carries_its_time_and_each_reason(code: str, reason: UpdateReason) -> None:
    stamps = (
        "<RecordUpdateDateTime>2014-12-30T06:56:14.000</RecordUpdateDateTime>"
        f"<RecordUpdateReason>{code}</RecordUpdateReason>"
    )
    event = ok(record(timestamps=stamps)).event
    assert event.record_type is RecordType.UPDATE
    assert event.event_time == "2014-12-30T06:56:14.000"
    assert event.update_reason is reason


def test_the_name_structure_keeps_title_every_forename_in_order_surname_and_suffix() -> None:
    name = (
        "<DeceasedName><ns4:PersonNameTitle>Dr</ns4:PersonNameTitle>"
        "<ns4:PersonGivenName>Alfie</ns4:PersonGivenName>"
        "<ns4:PersonGivenName>Test</ns4:PersonGivenName>"
        "<ns4:PersonGivenName>Katalon</ns4:PersonGivenName>"
        "<ns4:PersonFamilyName>MONTGOMERY</ns4:PersonFamilyName>"
        "<ns4:PersonNameSuffix>OBE</ns4:PersonNameSuffix></DeceasedName>"
    )
    event = ok(record(name=name)).event
    assert (event.title, event.surname, event.name_suffix) == ("Dr", "MONTGOMERY", "OBE")
    assert event.given_names == ("Alfie", "Test", "Katalon")
    assert event.forenames == "Alfie Test Katalon"


def _alias(given: str) -> str:
    return (
        f"<DeceasedAliasName><ns4:PersonGivenName>{given}</ns4:PersonGivenName></DeceasedAliasName>"
    )


def _type(text: str) -> str:
    return f"<DeceasedAliasNameType>{text}</DeceasedAliasNameType>"


def test_interleaved_aliases_pair_each_name_with_the_type_after_it() -> None:
    after = _alias("Alfie") + _type("otherwise") + _alias("Chris") + _type("formerly known as")
    event = ok(record(after_name=after)).event
    assert [(a.forenames, a.alias_type) for a in event.aliases] == [
        ("Alfie", "otherwise"),
        ("Chris", "formerly known as"),
    ]


def test_grouped_aliases_pair_names_and_types_by_position() -> None:
    after = _alias("Alfie") + _alias("Chris") + _type("otherwise") + _type("became a doctor")
    event = ok(record(after_name=after)).event
    assert [(a.forenames, a.alias_type) for a in event.aliases] == [
        ("Alfie", "otherwise"),
        ("Chris", "became a doctor"),
    ]


def test_an_uneven_alias_layout_pairs_nothing_but_loses_nothing() -> None:
    after = _alias("A") + _alias("B") + _alias("C") + _type("formerly known as")
    result = ok(record(after_name=after))
    assert [a.alias_type for a in result.event.aliases] == [None, None, None]
    assert result.event.alias_name_types == ("formerly known as",)
    kinds = [type(e) for e in result.record.aliases]
    assert kinds == [AliasName, AliasName, AliasName, AliasNameType]


def test_an_alias_may_hold_any_single_part() -> None:
    after = (
        "<DeceasedAliasName><ns4:PersonNameTitle>Dr</ns4:PersonNameTitle></DeceasedAliasName>"
        + _type("became a doctor")
    )
    (alias,) = ok(record(after_name=after)).event.aliases
    assert (alias.title, alias.forenames, alias.surname, alias.alias_type) == (
        "Dr",
        None,
        None,
        "became a doctor",
    )


def test_every_maiden_name_is_kept_in_order_and_the_first_is_the_maiden_surname() -> None:
    after = "".join(
        f"<DeceasedMaidenName>{m}</DeceasedMaidenName>" for m in ("CLARK", "SCRATCH", "PARTEN")
    )
    event = ok(record(after_name=after)).event
    assert event.maiden_names == ("CLARK", "SCRATCH", "PARTEN")
    assert event.maiden_surname == "CLARK"


@pytest.mark.parametrize(
    ("code", "sex"), [("1", Sex.MALE), ("2", Sex.FEMALE), ("9", Sex.INDETERMINATE)]
)
def test_deceased_gender_codes_become_sex(code: str, sex: Sex) -> None:
    assert ok(record(gender=f"<DeceasedGender>{code}</DeceasedGender>")).event.sex is sex


@pytest.mark.parametrize("level", ["00", "01", "02", "03"])
def test_a_death_date_keeps_its_verification_level_with_the_leading_zero(level: str) -> None:
    death = (
        "<DeceasedDeathDate><ns1:PersonDeathDate>2022-03-01</ns1:PersonDeathDate>"
        f"<ns1:VerificationLevel>{level}</ns1:VerificationLevel></DeceasedDeathDate>"
    )
    result = ok(record(death=death))
    assert result.event.date_of_death == "2022-03-01"
    assert result.event.verification_level == level
    assert result.record.death_date == RecordedDate(date="2022-03-01", verification_level=level)


def test_partial_and_free_format_death_dates_are_carried() -> None:
    death = (
        "<PartialMonthOfDeath>4</PartialMonthOfDeath><PartialYearOfDeath>1989</PartialYearOfDeath>"
        "<QualifierText>on or about</QualifierText>"
        "<FreeFormatDeathDate>early spring</FreeFormatDeathDate>"
    )
    event = ok(record(death=death)).event
    assert event.date_of_death is None
    assert (event.partial_month_of_death, event.partial_year_of_death) == ("4", "1989")
    assert event.death_date_qualifier == "on or about"
    assert event.free_format_death_date == "early spring"


def test_birth_date_its_level_partial_and_free_format_birth_dates_are_carried() -> None:
    rest = (
        "<DeceasedBirthDate><ns1:PersonBirthDate>1954-04-11</ns1:PersonBirthDate>"
        "<ns1:VerificationLevel>02</ns1:VerificationLevel></DeceasedBirthDate>"
        "<PartialMonthOfBirth>6</PartialMonthOfBirth><PartialYearOfBirth>1954</PartialYearOfBirth>"
        "<FreeFormatBirthDate>summer</FreeFormatBirthDate>"
    )
    event = ok(record(rest=rest)).event
    assert (event.date_of_birth, event.birth_verification_level) == ("1954-04-11", "02")
    assert (event.partial_month_of_birth, event.partial_year_of_birth) == ("6", "1954")
    assert event.free_format_birth_date == "summer"


def test_an_address_keeps_flat_building_every_line_and_postcode() -> None:
    lines = "".join(
        f"<ns3:Line>{w}</ns3:Line>"
        for w in ("West Smithfield", "Max", "Number", "Of", "Address", "Lines")
    )
    rest = (
        f"<DeceasedAddress><ns3:Flat>46</ns3:Flat><ns3:Building>Chiltern House</ns3:Building>"
        f"{lines}<ns3:Postcode>DD1 9GG</ns3:Postcode></DeceasedAddress>"
    )
    event = ok(record(rest=rest)).event
    assert (event.flat, event.building, event.postcode) == ("46", "Chiltern House", "DD1 9GG")
    assert event.address_lines == ("West Smithfield", "Max", "Number", "Of", "Address", "Lines")
    assert event.address_line1 == "46 Chiltern House"
    assert (event.address_line2, event.address_line3) == ("West Smithfield", "Max")
    assert event.address_line4 == "Number, Of, Address, Lines"


def test_empty_elements_are_present_and_empty_not_errors() -> None:
    name = (
        "<DeceasedName><ns4:PersonNameTitle></ns4:PersonNameTitle>"
        "<ns4:PersonGivenName></ns4:PersonGivenName>"
        "<ns4:PersonFamilyName>LEE</ns4:PersonFamilyName></DeceasedName>"
    )
    rest = (
        "<PartialYearOfBirth></PartialYearOfBirth>"
        "<DeceasedAddress><ns3:Line></ns3:Line></DeceasedAddress>"
    )
    result = ok(
        record(name=name, after_name="<DeceasedMaidenName></DeceasedMaidenName>", rest=rest)
    )
    assert result.record.deceased_name is not None
    assert result.record.deceased_name.title == ""
    assert result.record.deceased_name.given_names == ("",)
    assert result.record.partial_year_of_birth == ""
    assert result.record.maiden_names == ("",)
    assert result.event.title is None and result.event.forenames is None
    assert result.event.maiden_names == () and result.event.partial_year_of_birth is None


def test_non_ascii_names_pass_through_unchanged() -> None:
    name = (
        "<DeceasedName><ns4:PersonGivenName>Zoë Ğül Şule</ns4:PersonGivenName>"
        "<ns4:PersonFamilyName>ŘEHOŘ-ÁLVAREZ ÆÇÉÍÏÓÖÜ Ě</ns4:PersonFamilyName></DeceasedName>"
    )
    event = ok(record(name=name)).event
    assert (event.forenames, event.surname) == ("Zoë Ğül Şule", "ŘEHOŘ-ÁLVAREZ ÆÇÉÍÏÓÖÜ Ě")


def test_whitespace_inside_a_value_is_collapsed_in_the_event_but_kept_in_the_record() -> None:
    name = (
        "<DeceasedName><ns4:PersonFamilyName>DE\n      BASTIANI\n  </ns4:PersonFamilyName>"
        "</DeceasedName>"
    )
    result = ok(record(name=name))
    assert result.event.surname == "DE BASTIANI"
    assert result.record.deceased_name is not None
    assert result.record.deceased_name.family_name == "DE\n      BASTIANI\n  "


UNDEFINED = (
    "<RegistrationType>1</RegistrationType>"
    '<JohnSmith xmlns="urn:example:john-smith"><Born>1950</Born>PRIVATE NOTE</JohnSmith>'
)


def test_content_the_reference_does_not_define_is_left_out_of_the_event_and_counted() -> None:
    result = ok(record(rest=UNDEFINED))
    assert result.event.extra == ()
    assert result.undefined_elements == 3  # RegistrationType, JohnSmith and Born in it
    encoded = msgspec.json.encode(result.event)
    for word in (b"RegistrationType", b"JohnSmith", b"john-smith", b"Born", b"PRIVATE", b"1950"):
        assert word not in encoded
    # the same record without it: the same event, but for its id
    plain = ok(record())
    assert plain.undefined_elements == 0
    assert msgspec.structs.replace(result.event, source_id=plain.event.source_id) == plain.event


def test_the_event_id_covers_the_record_as_sent_undefined_content_included() -> None:
    # Ids of records without such content are what they always were; a record that carries
    # some keeps the id it had when that content was still passed on (so a re-sent file makes
    # no second event), and differs from the same record without it.
    with_it = ok(record(rest=UNDEFINED)).event.source_id
    assert with_it != ok(record()).event.source_id
    assert with_it == event_id(parse_fragment(fragment(record(rest=UNDEFINED))).record, KEY)


def test_undefined_content_inside_a_structure_is_left_out_and_counted_too() -> None:
    name = (
        "<DeceasedName><ns4:PersonFamilyName>LEE</ns4:PersonFamilyName>"
        '<o:Nick xmlns:o="urn:o"><o:Short>Bob</o:Short></o:Nick></DeceasedName>'
    )
    result = ok(record(name=name))
    assert (result.event.surname, result.event.extra) == ("LEE", ())
    assert result.undefined_elements == 2
    assert b"Bob" not in msgspec.json.encode(result.event)


def test_no_reason_names_an_element_or_namespace_the_file_invented() -> None:
    # a file can name an element after a person: reasons name only what the reference defines
    person = '<JohnSmith xmlns="urn:john-smith">x</JohnSmith>'
    out = rejected(
        record(
            registration_id=None,
            gender=f"<DeceasedGender>1{person}</DeceasedGender><DeceasedGender>2</DeceasedGender>",
            name=f"<DeceasedName>{person}<ns4:PersonNameTitle>Mr</ns4:PersonNameTitle></DeceasedName>",
            rest=person,
        )
    )
    assert out.reasons == (
        "DeceasedGender holds child elements where text belongs",
        "DeceasedGender occurs more than once",
        "RegistrationID is missing or empty",
        "DeceasedName has neither a PersonGivenName nor a PersonFamilyName",
    )
    for hostile in (f"<{person}", "<JohnSmith/>", '<x xmlns="urn:john-smith"/>'):
        (reason,) = rejected(hostile).reasons
        assert "john" not in reason.lower(), reason


def test_matching_is_by_namespace_uri_not_prefix() -> None:
    rec = (
        '<DeathRegistration xmlns="http://www.ons.gov.uk/gro/OGDDeathExtractDWP" '
        'xmlns:who="http://www.ons.gov.uk/gro/people/GROPersonDescriptives" '
        'xmlns:when="http://www.govtalk.gov.uk/people/PersonDescriptives">'
        "<RegistrationID>7</RegistrationID>"
        + LOCKED
        + "<DeceasedName><who:PersonFamilyName>LEE</who:PersonFamilyName></DeceasedName>"
        + GENDER
        + "<DeceasedDeathDate><when:PersonDeathDate>2022-03-01</when:PersonDeathDate>"
        + "</DeceasedDeathDate>"
        + "</DeathRegistration>"
    )
    out = transform_fragment(rec.encode(), key=KEY)
    assert isinstance(out, Transformed)
    assert (out.event.surname, out.event.date_of_death) == ("LEE", "2022-03-01")


# -- the validity rules -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rec", "reason"),
    [
        (record(registration_id=None), "RegistrationID is missing"),
        (record(registration_id="12A"), "RegistrationID is not a number"),
        (record(timestamps=""), "neither RecordLockedDateTime"),
        (
            record(
                timestamps=LOCKED
                + "<RecordUpdateDateTime>2022-03-01T12:09:33</RecordUpdateDateTime>"
                "<RecordUpdateReason>1</RecordUpdateReason>"
            ),
            "exactly one",
        ),
        (
            record(timestamps="<RecordUpdateDateTime>2022-03-01T12:09:33</RecordUpdateDateTime>"),
            "without a RecordUpdateReason",
        ),
        (
            record(
                timestamps="<RecordUpdateDateTime>2022-03-01T12:09:33</RecordUpdateDateTime>"
                "<RecordUpdateReason>7</RecordUpdateReason>"
            ),
            "not one of 1, 2, 3, 4, 5",
        ),
        (
            record(timestamps="<RecordLockedDateTime>01/03/2022</RecordLockedDateTime>"),
            "RecordLockedDateTime is not a yyyy-MM-ddTHH:mm:ss",
        ),
        (record(name=""), "DeceasedName is missing"),
        (
            record(
                name="<DeceasedName><ns4:PersonNameTitle>Mr</ns4:PersonNameTitle></DeceasedName>"
            ),
            "neither a PersonGivenName nor a PersonFamilyName",
        ),
        (record(gender=""), "DeceasedGender is missing"),
        (
            record(gender="<DeceasedGender>3</DeceasedGender>"),
            "DeceasedGender is not one of 1, 2, 9",
        ),
        (record(death=""), "no death date"),
        (
            record(
                death="<DeceasedDeathDate><ns1:PersonDeathDate>2022-02-30</ns1:PersonDeathDate></DeceasedDeathDate>"
            ),
            "PersonDeathDate is not a yyyy-MM-dd date",
        ),
        (record(rest="<DeceasedGender>2</DeceasedGender>"), "DeceasedGender occurs more than once"),
    ],
)
def test_a_record_breaking_a_rule_is_rejected_with_a_reason_naming_the_field(
    rec: str, reason: str
) -> None:
    out = rejected(rec)
    assert any(reason in r for r in out.reasons), out.reasons


def test_a_name_with_only_a_given_name_or_only_a_family_name_is_valid() -> None:
    only_given = "<DeceasedName><ns4:PersonGivenName>Cher</ns4:PersonGivenName></DeceasedName>"
    only_family = "<DeceasedName><ns4:PersonFamilyName>TICO</ns4:PersonFamilyName></DeceasedName>"
    assert ok(record(name=only_given)).event.surname is None
    assert ok(record(name=only_family)).event.forenames is None


def test_a_partial_year_alone_is_enough_of_a_death_date() -> None:
    assert (
        ok(
            record(death="<PartialYearOfDeath>1978</PartialYearOfDeath>")
        ).event.partial_year_of_death
        == "1978"
    )


def test_reasons_never_quote_the_value_that_broke_the_rule() -> None:
    out = rejected(
        record(registration_id="SECRETNAME", gender="<DeceasedGender>HIDDENVALUE</DeceasedGender>")
    )
    text = " ".join(out.reasons)
    assert "SECRETNAME" not in text and "HIDDENVALUE" not in text


def test_a_bad_record_does_not_stop_the_good_records_around_it() -> None:
    data = extract(record(registration_id="1"), record(timestamps=""), record(registration_id="3"))
    outcomes = [
        transform_fragment(f.xml, key=KEY)
        for f in ExtractReader(io.BytesIO(data)).records()
        if isinstance(f, Fragment)
    ]
    assert [type(o).__name__ for o in outcomes] == ["Transformed", "Rejected", "Transformed"]


# -- event ids ----------------------------------------------------------------------------


def test_the_same_record_always_gets_the_same_id_whatever_its_layout() -> None:
    a = ok(record()).event.source_id
    b = ok(record(name=NAME.replace("><", ">\n      <"))).event.source_id
    assert a == b


def test_an_update_is_a_different_event_from_the_registration_it_updates() -> None:
    update = (
        "<RecordUpdateDateTime>2022-03-01T12:09:33</RecordUpdateDateTime>"
        "<RecordUpdateReason>1</RecordUpdateReason>"
    )
    assert ok(record()).event.source_id != ok(record(timestamps=update)).event.source_id


def test_ids_depend_on_the_key_and_fit_the_platform_rules() -> None:
    parsed = parse_fragment(fragment(record())).record
    a, b = event_id(parsed, b"one key"), event_id(parsed, b"another key")
    assert a != b
    assert len(a) <= 80 and a.startswith("gro1-")
    assert set(a) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        event_id(parse_fragment(fragment(record())).record, b"")
