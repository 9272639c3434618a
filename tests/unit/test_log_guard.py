"""The logging path refuses personal data: whatever a call site hands the logger (a record, an
event, a message holding one, a personal field by name, a body that is a record in JSON or XML)
is dropped and counted, never written; ids, ordinals, counts and reasons pass untouched.

Each test logs through a real Powertools Logger built by `servicekit.logging.service_logger`,
into a StringIO, and reads back the JSON lines.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NamedTuple

import msgspec
import pytest
from aws_lambda_powertools import Logger
from lxml import etree

from contracts.compat import SAMPLES
from contracts.deadletter import DeadLetterAttributes
from contracts.enrichment import EnrichRequest, EnrichResponse
from contracts.events import DeathNotification, MinimalEvent, RecordType, Sex
from contracts.gro import GroDeathRecord, PersonName
from contracts.messages import EventsConsumed, EventToPublish, FileRef, RecordToTransform
from contracts.personal import PERSONAL, personal_fields, personal_names, personal_types
from contracts.receipts import DeletionReceipt
from contracts.schema import RELEASED, schema_text
from contracts.steps import SplitStepInput
from contracts.stored import StoredEvent
from servicekit.errors import PermanentError
from servicekit.logging import (
    CONTRACTS,
    METRIC,
    REFUSED,
    REFUSED_MESSAGE,
    GuardedFormatter,
    service_logger,
)

SURNAME = "Quillfeatherby"
GIVEN = "Zephyrine"
POSTCODE = "NR99 1AB"
PLANTED = (SURNAME, GIVEN, POSTCODE, "1931-04-02")

EVENT = DeathNotification(
    source_id="evt-1",
    event_type="GRO_DEATH_NOTIFICATION",
    event_version=1,
    event_time="2022-03-01T10:15:00",
    registration_id="123456789",
    record_type=RecordType.REGISTRATION,
    sex=Sex.FEMALE,
    forenames=GIVEN,
    given_names=(GIVEN,),
    surname=SURNAME,
    date_of_birth="1931-04-02",
    postcode=POSTCODE,
)
RECORD = GroDeathRecord(
    registration_id="123456789",
    deceased_name=PersonName(given_names=(GIVEN,), family_name=SURNAME),
)
FILE = FileRef(bucket="landing", key="incoming/DWP_D_20220301.xml", version_id="v1")
FRAGMENT = (
    '<DeathRegistration xmlns="http://www.ons.gov.uk/gro/OGDDeathExtractDWP">'
    f"<DeceasedName><PersonFamilyName>{SURNAME}</PersonFamilyName></DeceasedName>"
    "</DeathRegistration>"
)


class Logged(NamedTuple):
    logger: Logger
    stream: io.StringIO
    counts: list[int]

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def line(self) -> dict[str, Any]:
        (only,) = self.lines()
        return only

    @property
    def formatter(self) -> GuardedFormatter:
        formatter = self.logger.registered_formatter
        assert isinstance(formatter, GuardedFormatter)
        return formatter


@pytest.fixture
def logged() -> Logged:
    # a logger name of its own: Python's loggers are global, and Powertools configures a name once
    counts: list[int] = []
    stream = io.StringIO()
    name = f"guard-test-{uuid.uuid4().hex[:12]}"
    return Logged(service_logger(name, stream=stream, on_refused=counts.append), stream, counts)


def assert_holds_none_of_the_values(text: str) -> None:
    for value in PLANTED:
        assert value not in text, text


# -- the contracts say what is personal ----------------------------------------------------


def test_the_contracts_mark_the_fields_the_reference_calls_personal_and_no_others() -> None:
    marked = {f.encode_name for f in personal_fields(DeathNotification)}

    assert {"registrationId", "sex", "forenames", "surname", "dateOfDeath", "dateOfBirth"} <= (
        marked
    )
    assert {"postcode", "addressLine1", "aliases", "maidenNames", "extra"} <= marked
    assert not marked & {"sourceId", "eventType", "eventTime", "recordType", "updateReason"}
    assert {f.name for f in personal_fields(RecordToTransform)} == {"fragment"}
    assert "deceased_name" in {f.name for f in personal_fields(GroDeathRecord)}
    assert {"surname", "dateOfDeath", "date_of_death", "fragment"} <= personal_names(CONTRACTS)


def test_every_contract_holding_a_record_or_an_event_is_personal_bearing_and_no_other() -> None:
    found = personal_types(CONTRACTS)

    assert {
        GroDeathRecord,
        PersonName,
        DeathNotification,
        RecordToTransform,
        EventToPublish,
        StoredEvent,
        EnrichResponse,
    } <= found
    for plain in (FileRef, MinimalEvent, EventsConsumed, EnrichRequest, SplitStepInput):
        assert plain not in found
    assert DeletionReceipt not in found and DeadLetterAttributes not in found


def test_the_marks_change_no_schema_and_no_encoding() -> None:
    for marked, plain in [(str, str), (tuple[str, ...], tuple[str, ...]), (Sex | None, Sex | None)]:
        assert msgspec.json.schema(Annotated[marked, PERSONAL]) == msgspec.json.schema(plain)
    for kind in (DeathNotification, GroDeathRecord):
        committed = SAMPLES.parent / "schemas" / "v1" / f"{kind.__name__}.json"
        assert committed.read_bytes() == schema_text(kind)
        assert b"personal" not in schema_text(kind)
    assert msgspec.json.decode(msgspec.json.encode(EVENT), type=DeathNotification) == EVENT


# -- what is refused -----------------------------------------------------------------------


def test_a_death_record_given_to_the_logger_is_dropped_and_counted_not_written(
    logged: Logged,
) -> None:
    logged.logger.info("parsed", extra={"record": RECORD, "ordinal": 3})

    line = logged.line()
    assert line["record"] == REFUSED
    assert line["ordinal"] == 3
    assert line["refused"] == 1
    assert logged.counts == [1]
    assert logged.formatter.refused_total == 1
    assert_holds_none_of_the_values(logged.stream.getvalue())


@pytest.mark.parametrize(
    "how",
    ["extra", "argument", "message", "appended-key", "in-a-list", "in-a-dict", "in-a-dataclass"],
)
def test_an_event_is_refused_however_it_reaches_the_logger(logged: Logged, how: str) -> None:
    @dataclass
    class Transformed:
        ordinal: int
        event: DeathNotification

    log = logged.logger
    if how == "extra":
        log.info("event", extra={"event": EVENT})
    elif how == "argument":
        log.info("event %s for %d", EVENT, 3)
    elif how == "message":
        log.info(EVENT)
    elif how == "appended-key":
        log.append_keys(current=EVENT)
        log.info("with the event appended")
        log.remove_keys(["current"])
    elif how == "in-a-list":
        log.info("events", extra={"batch": [{"ordinal": 1, "event": EVENT}, "ok"]})
    elif how == "in-a-dict":
        log.info({"outcome": "published", "detail": {"events": (EVENT,)}})
    else:
        log.info("transformed", extra={"result": Transformed(ordinal=3, event=EVENT)})

    text = logged.stream.getvalue()
    assert_holds_none_of_the_values(text)
    assert REFUSED in text
    assert logged.line()["refused"] == 1
    assert logged.counts == [1]


@pytest.mark.parametrize(
    "path",
    [
        p
        for p in sorted((SAMPLES / "v1").glob("*.json"))
        if RELEASED[p.name.split(".")[0]][1] in personal_types(CONTRACTS)
    ],
    ids=lambda p: p.name,
)
def test_every_released_personal_contract_is_refused_whole(logged: Logged, path: Path) -> None:
    kind = RELEASED[path.name.split(".")[0]][1]
    instance = msgspec.json.decode(path.read_bytes(), type=kind)

    logged.logger.info("an instance", extra={"value": instance})

    line = logged.line()
    assert line["value"] == REFUSED
    assert line["refused"] == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"surname": SURNAME},
        {"SURNAME": SURNAME},
        {"dateOfBirth": "1931-04-02"},
        {"date_of_birth": "1931-04-02"},
        {"people": [{"forenames": GIVEN}, {"postcode": POSTCODE}]},
        {"nested": {"deeper": {"address_lines": [f"1 {SURNAME} Lane"]}}},
        {"registration_id": 123456789},
    ],
    ids=[
        "surname",
        "any-case",
        "camel-case",
        "snake-case",
        "nested-list",
        "nested-dict",
        "int-value",
    ],
)
def test_a_key_named_as_a_personal_field_has_its_value_dropped_at_any_depth(
    logged: Logged, extra: dict[str, Any]
) -> None:
    logged.logger.info("something", extra=extra)

    text = logged.stream.getvalue()
    assert_holds_none_of_the_values(text)
    assert "123456789" not in text
    assert REFUSED in text
    line = logged.line()
    assert line["refused"] >= 1 and logged.counts == [line["refused"]]
    # the key itself stays: a field's name is not personal data
    assert next(iter(extra)) in line


@pytest.mark.parametrize(
    "body",
    [
        msgspec.json.encode(EventToPublish(file=FILE, ordinal=1, event=EVENT)).decode(),
        msgspec.json.encode(RecordToTransform(file=FILE, ordinal=1, fragment=FRAGMENT)).decode(),
        FRAGMENT.encode(),
        repr(RECORD),
        str({"surname": SURNAME}),
    ],
    ids=["event-body", "record-body", "fragment-bytes", "record-repr", "dict-repr"],
)
def test_a_record_in_another_form_is_refused_as_a_value_and_as_the_message(
    logged: Logged, body: str | bytes
) -> None:
    logged.logger.warning("undecodable", extra={"body": body})
    logged.logger.warning(body if isinstance(body, str) else body.decode())
    logged.logger.warning("got %s", body)

    assert_holds_none_of_the_values(logged.stream.getvalue())
    # a JSON message is read as an object by Powertools: each personal value in it is counted
    assert all(line["refused"] >= 1 for line in logged.lines())
    assert len(logged.counts) == 3


def test_a_line_that_fails_to_format_is_written_without_its_arguments(
    logged: Logged, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # only the guarded handler (on Lambda, Powertools' SuppressFilter keeps the service
    # logger's records off the root handlers; here pytest's capture handler would see it)
    monkeypatch.setattr(logged.logger._logger, "propagate", False)

    logged.logger.info("ordinal %d", SURNAME)  # a %d given a name: logging's error path

    line = logged.line()
    assert line["message"] == REFUSED
    assert line["level"] == "INFO"
    assert line["refused"] == 1
    assert_holds_none_of_the_values(logged.stream.getvalue() + capsys.readouterr().err)


# -- what passes -----------------------------------------------------------------------------


def test_ids_ordinals_counts_and_reasons_pass_exactly_as_powertools_writes_them(
    logged: Logged,
) -> None:
    plain_stream = io.StringIO()
    plain = Logger(service=f"plain-{uuid.uuid4().hex[:12]}", stream=plain_stream)
    extra = {
        "event_id": "Zm9vYmFy-1",
        "file_id": "DWP_D_20220301_xml-0123456789abcdef",
        "ordinal": 3,
        "counts": {"published": 120, "rejected": 2},
        "reasons": ["DeceasedGender is not one of 1, 2, 9", "DeathRegistration 2 is late"],
        "file": FILE,
        "sex_codes": "1, 2, 9",
    }

    logged.logger.info("record transformed", extra=extra)
    plain.info("record transformed", extra=extra)

    guarded = logged.line()
    expected = json.loads(plain_stream.getvalue())
    for line in (guarded, expected):
        del line["timestamp"], line["service"], line["location"]
    expected["file"] = msgspec.to_builtins(FILE)  # a contract is written as its JSON
    assert guarded == expected
    assert "refused" not in guarded
    assert logged.counts == [] and logged.formatter.refused_total == 0


# -- exceptions ------------------------------------------------------------------------------


def _raised(make: Any) -> BaseException:
    try:
        make()
    except BaseException as err:  # the test wants whatever was raised
        return err
    raise AssertionError("nothing was raised")


def test_our_own_exceptions_keep_their_message_it_names_fields_not_values(
    logged: Logged,
) -> None:
    def rejected() -> None:
        raise PermanentError("DeceasedGender is not one of")

    err = _raised(rejected)
    logged.logger.error("rejected", exc_info=err)

    line = logged.line()
    assert "PermanentError: DeceasedGender is not one of" in line["exception"]
    assert line["stack_trace"]["value"] == "DeceasedGender is not one of"
    assert "refused" not in line


@pytest.mark.parametrize(
    "make",
    [
        lambda: etree.fromstring(f"<{SURNAME}>x</{GIVEN}>"),
        lambda: msgspec.convert({"sex": SURNAME}, DeathNotification),
        lambda: int(SURNAME),
    ],
    ids=["lxml-quotes-tags", "msgspec-quotes-values", "builtin-quotes-input"],
)
def test_a_foreign_exceptions_message_is_refused_its_type_and_frames_kept(
    logged: Logged, make: Any
) -> None:
    err = _raised(make)
    assert SURNAME in str(err)  # the library quoted the input

    logged.logger.exception("failed", exc_info=err)

    line = logged.line()
    assert_holds_none_of_the_values(logged.stream.getvalue())
    assert line["exception_name"] == type(err).__name__
    assert f"{type(err).__name__}: {REFUSED_MESSAGE}" in line["exception"]
    assert line["stack_trace"]["value"] == REFUSED_MESSAGE
    assert line["stack_trace"]["frames"]
    assert line["refused"] == 1


def test_a_foreign_cause_under_our_own_exception_is_refused_in_the_chain(logged: Logged) -> None:
    def wrapped() -> None:
        try:
            int(SURNAME)
        except ValueError as err:
            err.add_note(f"while reading {SURNAME}")
            raise PermanentError("RegistrationID is not a number") from err

    logged.logger.exception("rejected", exc_info=_raised(wrapped))

    line = logged.line()
    assert_holds_none_of_the_values(logged.stream.getvalue())
    assert "RegistrationID is not a number" in line["exception"]
    assert "direct cause of the following exception" in line["exception"]
    assert f"ValueError: {REFUSED_MESSAGE}" in line["exception"]
    assert line["refused"] == 1


def test_a_foreign_exceptions_notes_are_refused(logged: Logged) -> None:
    def noted() -> None:
        err = ValueError("bad")
        err.add_note(f"the name was {SURNAME}")
        raise err

    logged.logger.exception("failed", exc_info=_raised(noted))

    assert_holds_none_of_the_values(logged.stream.getvalue())
    assert logged.line()["exception_notes"] == [REFUSED_MESSAGE]


# -- wiring ----------------------------------------------------------------------------------


def test_refusals_are_emitted_as_the_log_values_refused_metric_of_the_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = f"guard-metric-{uuid.uuid4().hex[:12]}"
    stream = io.StringIO()
    logger = service_logger(name, stream=stream)

    logger.info("two", extra={"surname": SURNAME, "event": EVENT})
    logger.info("none", extra={"ordinal": 1})

    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (directive,) = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "GroIngest"
    assert [m["Name"] for m in directive["Metrics"]] == [METRIC]
    assert emf[METRIC] == [2.0] or emf[METRIC] == 2.0
    assert emf["service"] == name


def test_a_logger_configured_earlier_without_the_guard_is_given_it() -> None:
    name = f"guard-late-{uuid.uuid4().hex[:12]}"
    stream = io.StringIO()
    Logger(service=name, stream=stream)  # someone got there first

    logger = service_logger(name, on_refused=lambda _n: None)
    logger.info("record", extra={"record": RECORD})

    assert isinstance(logger.registered_formatter, GuardedFormatter)
    assert_holds_none_of_the_values(stream.getvalue())
    assert json.loads(stream.getvalue())["record"] == REFUSED
