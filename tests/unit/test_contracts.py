"""Every released contract still reads its golden samples, and the committed schemas match."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from contracts.events import DeathNotification, MinimalEvent
from contracts.gro import GroDeathRecord
from contracts.messages import (
    EventsConsumed,
    EventToPublish,
    PipelineMessage,
    RecordRejected,
    RecordToTransform,
)
from contracts.schema import DEFAULT_DIR, RELEASED, schema_text

SAMPLES = Path(__file__).resolve().parents[2] / "contracts" / "samples"
KINDS: dict[str, type] = {
    "GroDeathRecord": GroDeathRecord,
    "DeathNotification": DeathNotification,
    "MinimalEvent": MinimalEvent,
    "RecordToTransform": RecordToTransform,
    "EventToPublish": EventToPublish,
    "RecordRejected": RecordRejected,
    "EventsConsumed": EventsConsumed,
}
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
    for name in ("RecordToTransform", "EventToPublish", "RecordRejected"):
        raw = (SAMPLES / "v1" / f"{name}.json").read_bytes()
        decoded = msgspec.json.decode(raw, type=PipelineMessage)
        assert type(decoded).__name__ == name


def test_a_message_of_an_unknown_kind_is_refused_loudly() -> None:
    with pytest.raises(msgspec.ValidationError, match="kind"):
        msgspec.json.decode(b'{"kind": "record-to-transform.v9"}', type=PipelineMessage)


def test_a_source_id_outside_the_platform_alphabet_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"id": "has space"}', type=EventsConsumed)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"id": "' + b"a" * 81 + b'"}', type=EventsConsumed)
