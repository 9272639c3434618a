"""Export the JSON Schemas of every released contract: `python -m contracts.schema [DIR]`.

The exported files are committed; a test fails when the code and the committed schemas drift.
"""

from __future__ import annotations

import sys
from pathlib import Path

import msgspec

from contracts.deadletter import DeadLetterAttributes
from contracts.enrichment import EnrichRequest, EnrichResponse
from contracts.events import DeathNotification, MinimalEvent
from contracts.gro import GroDeathRecord
from contracts.messages import EventsConsumed, EventToPublish, RecordToTransform
from contracts.receipts import DeletionReceipt
from contracts.steps import (
    FinishStepInput,
    FinishStepOutput,
    QuarantineStepInput,
    SplitStepInput,
    SplitStepOutput,
)
from contracts.stored import StoredEvent

# name -> (version, type). A new version gets a new entry; an old one stays while anything
# still produces or reads it.
RELEASED: dict[str, tuple[int, type]] = {
    "GroDeathRecord": (1, GroDeathRecord),
    "DeathNotification": (1, DeathNotification),
    "MinimalEvent": (1, MinimalEvent),
    "RecordToTransform": (1, RecordToTransform),
    "EventToPublish": (1, EventToPublish),
    "EventsConsumed": (1, EventsConsumed),
    "StoredEvent": (1, StoredEvent),
    "SplitStepInput": (1, SplitStepInput),
    "SplitStepOutput": (1, SplitStepOutput),
    "FinishStepInput": (1, FinishStepInput),
    "FinishStepOutput": (1, FinishStepOutput),
    "QuarantineStepInput": (1, QuarantineStepInput),
    "EnrichRequest": (1, EnrichRequest),
    "EnrichResponse": (1, EnrichResponse),
    "DeletionReceipt": (1, DeletionReceipt),
    "DeadLetterAttributes": (1, DeadLetterAttributes),
}

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_text(kind: type) -> bytes:
    """The JSON Schema of one contract, formatted stably."""
    return msgspec.json.format(msgspec.json.encode(msgspec.json.schema(kind)), indent=2) + b"\n"


def export(directory: Path) -> list[Path]:
    """Write every released contract's schema under `directory/v{N}/`."""
    written = []
    for name, (version, kind) in RELEASED.items():
        path = directory / f"v{version}" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(schema_text(kind))
        written.append(path)
    return written


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR
    for p in export(target):
        print(p)
