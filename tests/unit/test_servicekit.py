"""The shared runtime's pure parts: back-off, dead-letter attributes, settings."""

from __future__ import annotations

import socket
from enum import Enum
from typing import Any

import msgspec
import pytest
import pytest_socket

from contracts.deadletter import MAX_REASON_CHARS, DeadLetterAttributes
from servicekit.consumer import Backoff, without_values
from servicekit.deadletter import DeadLetterQueue
from servicekit.settings import SettingsError, from_env, variables


class _Sqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


@pytest.mark.filterwarnings("ignore:A test tried to use socket.socket")
def test_unit_tests_cannot_open_a_network_socket() -> None:
    with pytest.raises(pytest_socket.SocketBlockedError):
        socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def test_back_off_doubles_from_its_base_and_stops_at_its_cap() -> None:
    backoff = Backoff(visibility=None, base_seconds=5, cap_seconds=60, jitter=lambda top: top)  # type: ignore[arg-type]
    assert [backoff.seconds(n) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


def test_back_off_jitter_stays_between_half_and_all_of_the_step() -> None:
    backoff = Backoff(visibility=None, base_seconds=8, cap_seconds=900)  # type: ignore[arg-type]
    seen = {backoff.seconds(3) for _ in range(200)}
    assert min(seen) >= 16 and max(seen) <= 32 and len(seen) > 1


def test_a_dead_letter_carries_why_by_whom_and_after_how_many_attempts() -> None:
    sqs = _Sqs()
    DeadLetterQueue(sqs, "dlq-url", failed_by="publisher", version="1.2.3").send(
        "body", reason="x" * (MAX_REASON_CHARS + 50), attempts=0
    )
    (sent,) = sqs.sent
    assert (sent["QueueUrl"], sent["MessageBody"]) == ("dlq-url", "body")
    attributes = DeadLetterAttributes.from_sqs(sent["MessageAttributes"])
    assert len(attributes.reason) == MAX_REASON_CHARS  # cut to the contract's bound
    assert (attributes.failed_by, attributes.attempts) == ("publisher", 1)
    assert attributes.failed_by_version == "1.2.3"


def test_an_empty_reason_is_sent_as_unknown_rather_than_refused() -> None:
    sqs = _Sqs()
    DeadLetterQueue(sqs, "dlq-url", failed_by="reaper", version="1.2.3").send(
        "body", reason="", attempts=2
    )
    assert DeadLetterAttributes.from_sqs(sqs.sent[0]["MessageAttributes"]).reason == "unknown"


class _Settings(msgspec.Struct, frozen=True, kw_only=True):
    queue_url: str
    batch_size: int = 10


def test_settings_name_the_variables_they_read_and_which_are_required() -> None:
    assert variables(_Settings) == {"QUEUE_URL": True, "BATCH_SIZE": False}


def test_settings_come_from_upper_case_variables_converted_to_their_types(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("QUEUE_URL", "https://queue")
    monkeypatch.setenv("BATCH_SIZE", "25")
    assert from_env(_Settings) == _Settings(queue_url="https://queue", batch_size=25)


def test_a_missing_setting_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUE_URL", raising=False)
    with pytest.raises(SettingsError, match="QUEUE_URL not set"):
        from_env(_Settings)


def test_a_malformed_setting_fails_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_URL", "https://queue")
    monkeypatch.setenv("BATCH_SIZE", "ten")
    with pytest.raises(SettingsError, match="BATCH_SIZE"):
        from_env(_Settings)


class _Sex(Enum):
    MALE = "MALE"


class _Event(msgspec.Struct):
    sex: _Sex


@pytest.mark.parametrize(
    "value", ["Ğül ÏSOLDE", "O'NEILL", 'say "hello"', "x' - at `$.ok` '"], ids=repr
)
def test_a_decode_error_keeps_the_path_and_never_the_value(value: str) -> None:
    with pytest.raises(msgspec.ValidationError) as caught:
        msgspec.json.decode(msgspec.json.encode({"sex": value}), type=_Event)
    cleaned = without_values(str(caught.value))
    assert cleaned == "Invalid enum value - at `$.sex`"
    assert without_values("JSON is malformed: invalid character (byte 0)") == (
        "JSON is malformed: invalid character (byte 0)"
    )


# -- the store, many events at once ---------------------------------------------------------


class _Throttling:
    """BatchWriteItem / BatchGetItem that leave the ids in `stubborn` unprocessed every time,
    and the others in `once` unprocessed the first time they are asked."""

    def __init__(self, *, once: set[str], stubborn: frozenset[str] = frozenset()) -> None:
        self.once, self.stubborn = set(once), set(stubborn)
        self.calls: list[list[str]] = []

    def _split(self, ids: list[str]) -> tuple[list[str], list[str]]:
        self.calls.append(ids)
        left = [i for i in ids if i in self.stubborn or i in self.once]
        self.once -= set(ids)
        return [i for i in ids if i not in left], left

    def batch_write_item(self, *, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, requests),) = RequestItems.items()
        assert len(requests) <= 25
        _, left = self._split([r["DeleteRequest"]["Key"]["id"]["S"] for r in requests])
        unprocessed = [{"DeleteRequest": {"Key": {"id": {"S": i}}}} for i in left]
        return {"UnprocessedItems": {table: unprocessed} if unprocessed else {}}

    def batch_get_item(self, *, RequestItems: dict[str, Any]) -> dict[str, Any]:
        ((table, request),) = RequestItems.items()
        assert len(request["Keys"]) <= 100 and request["ConsistentRead"]
        done, left = self._split([k["id"]["S"] for k in request["Keys"]])
        items = [
            {"id": {"S": i}, "file_id": {"S": "f"}, "ordinal": {"N": i.removeprefix("e")}}
            for i in done
        ]
        unprocessed = {table: {**request, "Keys": [{"id": {"S": i}} for i in left]}}
        return {"Responses": {table: items}, "UnprocessedKeys": unprocessed if left else {}}


def test_deletes_left_unprocessed_are_sent_again_and_only_the_stubborn_ones_reported() -> None:
    from servicekit.store import Store

    ids = [f"e{n}" for n in range(1, 31)]
    db = _Throttling(once={"e3", "e27"}, stubborn={"e5"})
    pauses: list[float] = []

    failed = Store(db, "store", pause=pauses.append).delete_many([*ids, "e1"])

    assert list(failed) == ["e5"] and "unprocessed" in str(failed["e5"])
    # 25 a call, each id once, then again only what was left, at most five calls a chunk
    assert db.calls == [
        ids[:25],
        ["e3", "e5"],
        ["e5"],
        ["e5"],
        ["e5"],
        ids[25:],
        ["e27"],
    ]
    assert pauses[:4] == sorted(pauses[:4]) and len(pauses) == 5  # backing off


def test_a_batch_is_located_in_calls_of_100_keys_asking_again_for_what_was_left() -> None:
    from servicekit.store import Store

    ids = [f"e{n}" for n in range(1, 151)]
    db = _Throttling(once={"e7"})

    found = Store(db, "store", pause=lambda _s: None).locate_many(ids)

    assert sorted(found) == sorted(ids) and found["e7"].ordinal == 7
    assert [len(c) for c in db.calls] == [100, 1, 50]
