"""Every released contract still reads its golden samples, and the committed schemas match."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from contracts.deadletter import DeadLetterAttributes
from contracts.messages import EventsConsumed, EventToPublish, RecordToTransform
from contracts.schema import DEFAULT_DIR, RELEASED, schema_text
from contracts.steps import FinishStepInput, SplitStepInput

SAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "samples"
# name -> type, for the samples of every version still kept
KINDS: dict[str, type] = {name: kind for name, (_version, kind) in RELEASED.items()}
# what one queue may carry: told apart by the `kind` tag
QueueMessage = RecordToTransform | EventToPublish
ALL_SAMPLES = sorted(SAMPLES.glob("v*/*.json"))


def test_there_is_a_golden_sample_for_every_released_contract() -> None:
    named = {p.name.split(".")[0] for p in ALL_SAMPLES}
    assert set(RELEASED) <= named


@pytest.mark.parametrize("sample", ALL_SAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_current_code_decodes_every_committed_sample(sample: Path) -> None:
    kind = KINDS[sample.name.split(".")[0]]
    raw = sample.read_bytes()
    decoded = msgspec.json.decode(raw, type=kind)
    # and encodes it back to the same content: nothing the sample held was dropped
    assert msgspec.json.decode(msgspec.json.encode(decoded)) == msgspec.json.decode(raw)


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_the_committed_schema_matches_the_code(name: str) -> None:
    version, kind = RELEASED[name]
    committed = DEFAULT_DIR / f"v{version}" / f"{name}.json"
    assert committed.read_bytes() == schema_text(kind), (
        f"{committed} is stale: run `uv run python -m contracts.schema`"
    )


def test_queue_messages_are_told_apart_by_their_kind_tag() -> None:
    for name in ("RecordToTransform", "EventToPublish"):
        raw = (SAMPLES / "v1" / f"{name}.json").read_bytes()
        decoded = msgspec.json.decode(raw, type=QueueMessage)
        assert type(decoded).__name__ == name


def test_a_message_of_an_unknown_kind_is_refused_loudly() -> None:
    with pytest.raises(msgspec.ValidationError, match="kind"):
        msgspec.json.decode(b'{"kind": "record-to-transform.v9"}', type=QueueMessage)


def test_a_source_id_outside_the_platform_alphabet_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"id": "has space"}', type=EventsConsumed)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"id": "' + b"a" * 81 + b'"}', type=EventsConsumed)


def test_every_sample_is_of_a_released_contract() -> None:
    # a sample of something no longer released (or misnamed) is a contract nobody checks
    assert {p.name.split(".")[0] for p in ALL_SAMPLES} <= set(RELEASED)


@pytest.mark.parametrize(
    ("output", "next_input"),
    [
        ("SplitStepOutput", SplitStepInput),  # Split loops on its own output
        ("SplitStepOutput", FinishStepInput),  # then CheckRecords takes it
        ("FinishStepOutput", FinishStepInput),  # and loops on its own output
    ],
)
def test_each_state_machine_step_output_is_the_next_steps_input(
    output: str, next_input: type
) -> None:
    raw = (SAMPLES / "v1" / f"{output}.json").read_bytes()
    decoded = msgspec.json.decode(raw, type=next_input)
    assert decoded.file == msgspec.json.decode(raw, type=RELEASED[output][1]).file


def test_dead_letter_attributes_round_trip_through_sqs_message_attributes() -> None:
    attributes = DeadLetterAttributes(
        reason="DeceasedGender is not one of 1, 2, 9", failed_by="transformer", attempts=3
    )
    wire = attributes.to_sqs()
    assert wire["attempts"] == {"DataType": "Number", "StringValue": "3"}
    assert DeadLetterAttributes.from_sqs(wire) == attributes


def test_a_dead_letter_without_a_reason_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        DeadLetterAttributes.from_sqs(
            {"failed-by": {"StringValue": "x"}, "attempts": {"StringValue": "1"}}
        )
