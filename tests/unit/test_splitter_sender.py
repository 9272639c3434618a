"""The records-queue sink without AWS: batches bounded by count and by bytes, every message sent
once and in order, and a record too large once encoded rejected in the ledger, not raised."""

from __future__ import annotations

import io
import random
import threading
from typing import Any

import msgspec
import pytest

from contracts.messages import FileRef, RecordToTransform
from servicekit.ledger import RecordStatus
from splitter import sender as sender_module
from splitter.adapters import MAX_BODY_BYTES, MAX_MESSAGE_BYTES, QueueSink
from splitter.extract import MAX_RECORD_BYTES
from splitter.sender import BATCH, MAX_BATCH_BYTES, BatchSender, SendError
from splitter.split import Cursor, split_file
from tests.builders import extract, record

FILE = FileRef(bucket="landing", key="incoming/DWP_D_20220301.xml", version_id="v1")
PLANTED = "Quillfeatherby"


class FakeSqs:
    """Records every SendMessageBatch call; can fail chosen entries on their first attempt, and
    refuses a call over SQS's limits the way SQS would."""

    def __init__(self, fail_once: frozenset[str] = frozenset()) -> None:
        self.calls: list[list[dict[str, str]]] = []
        self._fail_once = set(fail_once)
        self._lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        total = sum(len(e["MessageBody"].encode()) for e in Entries)
        if len(Entries) > BATCH or total > MAX_BATCH_BYTES:
            raise AssertionError(f"SQS would refuse: {len(Entries)} entries, {total} bytes")
        with self._lock:
            self.calls.append([dict(e) for e in Entries])
            failed = [e["Id"] for e in Entries if e["Id"] in self._fail_once]
            self._fail_once -= set(failed)
        return {
            "Successful": [{"Id": e["Id"]} for e in Entries if e["Id"] not in failed],
            "Failed": [{"Id": i, "Code": "InternalError", "SenderFault": False} for i in failed],
        }

    def sent_ids(self) -> list[str]:
        return [e["Id"] for call in self.calls for e in call]


class FakeLedger:
    def __init__(self) -> None:
        self.ended: list[tuple[FileRef, int, RecordStatus, tuple[str, ...]]] = []

    def record_ended(
        self, ref: FileRef, ordinal: int, status: RecordStatus, *, reasons: tuple[str, ...] = ()
    ) -> bool:
        self.ended.append((ref, ordinal, status, reasons))
        return True


@pytest.fixture(autouse=True)
def _no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sender_module.time, "sleep", lambda _s: None)


def send_all(bodies: list[bytes], sqs: FakeSqs, concurrency: int = 4) -> None:
    sender = BatchSender(sqs, "https://sqs.local/records", concurrency)
    try:
        for i, body in enumerate(bodies, start=1):
            sender.add(str(i), body)
        sender.flush()
    finally:
        sender.close()


def assert_each_sent_once_in_order(sqs: FakeSqs, n: int) -> None:
    """Every entry exactly once, and each batch a run of consecutive entries in the order they
    were added (batches go out in parallel, so the calls themselves may come in any order)."""
    batches = sorted(sqs.calls, key=lambda call: int(call[0]["Id"]))
    assert [e["Id"] for call in batches for e in call] == [str(i) for i in range(1, n + 1)]


def test_batches_respect_ten_entries_and_the_batch_byte_limit() -> None:
    rng = random.Random(7)
    bodies = [b"x" * rng.choice([200, 1_500, 30_000, 90_000, 200_000]) for _ in range(300)]
    sqs = FakeSqs()
    send_all(bodies, sqs)
    for call in sqs.calls:
        assert len(call) <= BATCH
        assert sum(len(e["MessageBody"].encode()) for e in call) <= MAX_BATCH_BYTES
    assert_each_sent_once_in_order(sqs, len(bodies))
    # byte-bounded batches really were cut short, and small messages still fill batches of ten
    assert any(len(call) < BATCH for call in sqs.calls[:-1])
    assert any(len(call) == BATCH for call in sqs.calls)


def test_a_batch_goes_out_early_when_the_next_message_would_take_it_over() -> None:
    bodies = [b"a" * 100_000] * 5  # two fit in 262,144 bytes, three do not
    sqs = FakeSqs()
    send_all(bodies, sqs, concurrency=1)
    assert [len(call) for call in sqs.calls] == [2, 2, 1]
    assert_each_sent_once_in_order(sqs, 5)


def test_bytes_are_counted_as_utf_8_not_characters() -> None:
    body = ("é" * 70_000).encode()  # 70,000 characters, 140,000 bytes: two do not fit
    sqs = FakeSqs()
    send_all([body, body], sqs, concurrency=1)
    assert [len(call) for call in sqs.calls] == [1, 1]


def test_a_message_of_exactly_the_limit_goes_alone_and_one_over_it_is_refused() -> None:
    sqs = FakeSqs()
    send_all([b"s" * 10, b"m" * MAX_BATCH_BYTES, b"t" * 10], sqs, concurrency=1)
    assert [[e["Id"] for e in call] for call in sqs.calls] == [["1"], ["2"], ["3"]]
    sender = BatchSender(FakeSqs(), "q", 1)
    with pytest.raises(ValueError, match="over SQS's 262144-byte limit"):
        sender.add("1", b"m" * (MAX_BATCH_BYTES + 1))
    sender.close()


def test_failed_entries_alone_are_retried_and_every_entry_is_delivered_once() -> None:
    bodies = [b"y" * 60_000 for _ in range(25)]
    sqs = FakeSqs(fail_once=frozenset({"3", "4", "17"}))
    send_all(bodies, sqs)
    delivered = sqs.sent_ids()
    # each id once, plus one retry for each that failed once
    assert sorted(delivered, key=int) == sorted(
        [str(i) for i in range(1, 26)] + ["3", "4", "17"], key=int
    )
    for call in sqs.calls:
        assert sum(len(e["MessageBody"].encode()) for e in call) <= MAX_BATCH_BYTES
        ids = [int(e["Id"]) for e in call]
        assert ids == sorted(ids)


def test_entries_that_keep_failing_raise_a_send_error() -> None:
    class AlwaysFails(FakeSqs):
        def send_message_batch(
            self, QueueUrl: str, Entries: list[dict[str, str]]
        ) -> dict[str, Any]:
            return {"Failed": [{"Id": e["Id"]} for e in Entries]}

    with pytest.raises(SendError, match="2 messages could not be sent"):
        send_all([b"z", b"z"], AlwaysFails())


# -- the sink: the limit that counts is the encoded message ---------------------------------


def message(ordinal: int, fragment: str) -> RecordToTransform:
    return RecordToTransform(file=FILE, ordinal=ordinal, fragment=fragment, trace_header="Root=1")


def quoted_fragment(chars: int) -> str:
    """A fragment whose text is all quotes: each takes two bytes once JSON-escaped."""
    quotes = '"' * chars
    return f"<DeathRegistration><Note>{PLANTED}{quotes}</Note></DeathRegistration>"


def test_a_record_too_large_once_encoded_is_rejected_with_its_size_and_the_rest_go_on() -> None:
    fragment = quoted_fragment(140_000)
    assert len(fragment.encode()) < MAX_RECORD_BYTES  # the reader lets it through
    assert len(msgspec.json.encode(message(2, fragment))) > MAX_MESSAGE_BYTES
    sqs, ledger = FakeSqs(), FakeLedger()
    sink = QueueSink(BatchSender(sqs, "q", 2), ledger)  # type: ignore[arg-type]
    try:
        sink.emit(message(1, "<DeathRegistration/>"))
        sink.emit(message(2, fragment))
        sink.emit(message(3, "<DeathRegistration/>"))
        sink.flush()
    finally:
        sink.close()
    assert sqs.sent_ids() == ["1", "3"]
    assert (sink.emitted, sink.rejected) == (2, 1)
    [(ref, ordinal, status, reasons)] = ledger.ended
    assert (ref, ordinal, status) == (FILE, 2, RecordStatus.REJECTED)
    size = len(msgspec.json.encode(message(2, fragment)))
    assert reasons == (
        f"record 2 is {size} bytes as a queue message, over the {MAX_BODY_BYTES}-byte limit "
        f"(SQS's {MAX_MESSAGE_BYTES} less {MAX_MESSAGE_BYTES - MAX_BODY_BYTES} kept for "
        "attributes)",
    )
    assert PLANTED not in reasons[0]


def test_the_margin_for_attributes_is_kept_and_a_message_just_under_it_is_sent() -> None:
    envelope = len(msgspec.json.encode(message(1, "")))
    fits = "x" * (MAX_BODY_BYTES - envelope)
    over = "x" * (MAX_BODY_BYTES - envelope + 1)
    sqs, ledger = FakeSqs(), FakeLedger()
    sink = QueueSink(BatchSender(sqs, "q", 1), ledger)  # type: ignore[arg-type]
    try:
        sink.emit(message(1, fits))
        sink.emit(message(2, over))
        sink.flush()
    finally:
        sink.close()
    assert sqs.sent_ids() == ["1"]
    assert [o for _, o, _, _ in ledger.ended] == [2]
    assert MAX_BODY_BYTES < MAX_MESSAGE_BYTES == MAX_BATCH_BYTES == 262_144


def test_a_split_goes_on_past_a_record_too_large_once_encoded() -> None:
    """The whole path without AWS: reader, `split_file`, the sink, the sender."""
    quotes = '"' * 140_000
    data = extract(
        record(registration_id="1"),
        record(registration_id="2", rest=f"<DeceasedMaidenName>{quotes}</DeceasedMaidenName>"),
        record(registration_id="3"),
    )
    assert len(data) < MAX_RECORD_BYTES < 2 * 140_000
    sqs, ledger = FakeSqs(), FakeLedger()
    sink = QueueSink(BatchSender(sqs, "q", 2), ledger)  # type: ignore[arg-type]
    try:
        result = split_file(
            lambda: io.BytesIO(data), FILE, Cursor(), sink, out_of_time=lambda: False
        )
    finally:
        sink.close()
    assert result.done and result.records == 3
    assert sqs.sent_ids() == ["1", "3"]
    [(_, ordinal, status, (reason,))] = ledger.ended
    assert (ordinal, status) == (2, RecordStatus.REJECTED)
    assert reason.startswith("record 2 is ") and "as a queue message" in reason
