"""Every service's logger is the guarded one: whatever a handler's code hands it, a record or
an event is dropped and counted, and its own errors keep their message."""

from __future__ import annotations

import json
from types import ModuleType

import pytest

import publisher.app
import reaper.app
import splitter.app
import transformer.app
from contracts.events import DeathNotification, RecordType, Sex
from servicekit.logging import REFUSED, GuardedFormatter

SURNAME = "Quillfeatherby"
EVENT = DeathNotification(
    source_id="evt-1",
    event_type="GRO_DEATH_NOTIFICATION",
    event_version=1,
    event_time="2022-03-01T10:15:00",
    registration_id="770077007",
    record_type=RecordType.REGISTRATION,
    sex=Sex.MALE,
    surname=SURNAME,
)
SERVICES = {
    "splitter": splitter.app,
    "transformer": transformer.app,
    "publisher": publisher.app,
    "reaper": reaper.app,
}


@pytest.mark.parametrize(("service", "app"), SERVICES.items(), ids=list(SERVICES))
def test_each_services_logger_refuses_an_event_under_its_own_service_name(
    service: str, app: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    formatter = app.logger.registered_formatter
    assert isinstance(formatter, GuardedFormatter)
    assert service in formatter.guard.own_packages

    app.logger.info("an event", extra={"event": EVENT, "ordinal": 3})

    out = capsys.readouterr().out
    assert SURNAME not in out and "770077007" not in out
    lines = [json.loads(line) for line in out.splitlines()]
    (line,) = [line for line in lines if line.get("message") == "an event"]
    assert line["service"] == service
    assert (line["event"], line["ordinal"], line["refused"]) == (REFUSED, 3, 1)
    # and the LogValuesRefused metric, in the service's dimension
    (metric,) = [line for line in lines if "_aws" in line]
    assert metric["service"] == service and "LogValuesRefused" in metric
