"""The contract compatibility gate: no change lands that a deployed peer could not read.

Each service declares what it produces and accepts (its pyproject's [tool.gro.contracts]);
the gate reads every golden sample of every accepted version with the consumer's own reader,
holds the current contracts to the released samples (no field removed, renamed or retyped,
no new required field), and every producer to the versions its consumers accept."""

from __future__ import annotations

import importlib
import json
import tomllib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts.compat import SAMPLES, digest, manifest, problems, sample_paths
from contracts.messages import EventToPublish
from contracts.schema import RELEASED
from deploytools.stacks import ROOT, SERVICES

# contracts that travel as a queue message body (text); the rest arrive as JSON objects
QUEUE_BODIES = {"RecordToTransform", "EventToPublish", "EventsConsumed", "StoredEvent"}


def declared(service: str) -> dict[str, Any]:
    meta = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())
    contracts: dict[str, Any] = meta["tool"]["gro"]["contracts"]
    return contracts


def samples_of(name: str, version: int) -> list[Path]:
    return sorted((SAMPLES / f"v{version}").glob(f"{name}.json")) + sorted(
        (SAMPLES / f"v{version}").glob(f"{name}.*.json")
    )


ACCEPTED = [
    (service, name, version)
    for service in SERVICES
    for name, versions in declared(service)["accepts"].items()
    for version in versions
]


@pytest.mark.parametrize(("service", "name", "version"), ACCEPTED, ids=str)
def test_every_accepted_version_is_read_by_the_consumers_own_reader(
    service: str, name: str, version: int
) -> None:
    readers = importlib.import_module(f"{service}.interface").READERS
    assert name in readers, f"{service} accepts {name} but has no reader for it"
    paths = samples_of(name, version)
    assert paths, f"no golden sample of {name} v{version}"
    for path in paths:
        text = path.read_text()
        readers[name](text if name in QUEUE_BODIES else json.loads(text))


@pytest.mark.parametrize("path", sample_paths(), ids=lambda p: p.name)
def test_the_current_contracts_still_read_every_released_sample_field_for_field(path: Path) -> None:
    name = path.name.split(".")[0]
    assert problems(RELEASED[name][1], json.loads(path.read_bytes())) == []


def test_every_version_produced_is_accepted_by_every_service_that_reads_it() -> None:
    for producer in SERVICES:
        for name, version in declared(producer)["produces"].items():
            assert name in RELEASED, f"{producer} produces {name}, which is not released"
            for consumer in SERVICES:
                accepted = declared(consumer)["accepts"].get(name)
                if accepted is not None:
                    assert version in accepted, f"{consumer} does not accept {name} v{version}"


def test_released_samples_never_change() -> None:
    recorded = manifest()
    for path in sample_paths():
        name = path.relative_to(SAMPLES).as_posix()
        assert name in recorded, f"{name} is not in the manifest: `make schemas` records it"
        assert recorded[name] == digest(path), f"{name} is released: add a sample, never edit one"


# -- the gate on deliberate changes ---------------------------------------------------------

_GOLDEN = json.loads((SAMPLES / "v1" / "EventToPublish.json").read_text())


def _variant(**changes: Any) -> type:
    """EventToPublish with some fields dropped (None) or retyped/added (a (type, default))."""
    fields: list[Any] = []
    for f in msgspec.structs.fields(EventToPublish):
        if f.name in changes:
            continue
        fields.append((f.name, f.type) if f.required else (f.name, f.type, f.default))
    for name, spec in changes.items():
        if spec is not None:
            fields.append((name, *spec))
    return msgspec.defstruct(
        "EventToPublish", fields, kw_only=True, tag="event-to-publish.v1", tag_field="kind"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"ordinal": None}, "$.ordinal: removed or renamed"),
        ({"ordinal": None, "position": (int,)}, "$.ordinal: removed or renamed"),
        ({"ordinal": (str,)}, "$.ordinal: retyped"),
        ({"file": (str,)}, "$.file: retyped"),
        ({"priority": (int,)}, "$.priority: a new required field"),
    ],
    ids=["removed", "renamed", "retyped", "retyped-struct", "new-required"],
)
def test_the_gate_refuses_a_breaking_change(change: dict[str, Any], why: str) -> None:
    found = problems(_variant(**change), _GOLDEN)
    assert any(p.startswith(why) for p in found), found


def test_the_gate_lets_an_additive_change_through() -> None:
    additive = _variant(priority=(int | None, None), source_system=(str, "GRO"))
    assert problems(additive, _GOLDEN) == []
    # and the additive type still reads the released message
    assert msgspec.json.decode(json.dumps(_GOLDEN), type=additive).ordinal == _GOLDEN["ordinal"]


def test_a_nested_field_removed_from_the_event_is_caught_too() -> None:
    nested = msgspec.defstruct(
        "FileRefWithoutVersion", [("bucket", str), ("key", str)], kw_only=True
    )
    found = problems(_variant(file=(nested,)), _GOLDEN)
    assert "$.file.version_id: removed or renamed" in found
