"""Contract compatibility as code: can a consumer still read what was released?

A released version is pinned by its golden samples (`samples/vN/`), which never change once
released (`samples/MANIFEST.sha256` says so). A type is compatible with a released version when
every golden sample of it still reads with no field lost:

- a field a sample holds that the type no longer has: removed or renamed;
- a value a sample holds that the type no longer accepts: retyped;
- a field the type requires that a sample lacks: a new required field (old producers cannot
  send it).

Adding an optional field is fine (expand). Removing, renaming or retyping one is not: a new
major version goes beside the old (`samples/v2/`, a new entry in `schema.RELEASED`) until every
consumer accepts it, and only then is the old one retired (contract).
"""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MANIFEST = SAMPLES / "MANIFEST.sha256"


def problems(kind: Any, sample: Any) -> list[str]:
    """Why `kind` would not read `sample` as it was written (empty: it would)."""
    return _walk(mi.type_info(kind), sample, "$")


def _walk(info: mi.Type, value: Any, path: str) -> list[str]:
    if isinstance(info, mi.Metadata):  # a mark for introspection (`contracts.personal`)
        return _walk(info.type, value, path)
    if isinstance(info, mi.StructType):
        return _struct(info, value, path)
    if isinstance(info, mi.UnionType):
        attempts = [_walk(member, value, path) for member in info.types]
        if any(not found for found in attempts):
            return []
        return min(attempts, key=len)
    if isinstance(info, mi.VarTupleType | mi.ListType | mi.SetType | mi.FrozenSetType):
        if not isinstance(value, list):
            return [f"{path}: retyped (was a list)"]
        return [
            p for i, item in enumerate(value) for p in _walk(info.item_type, item, f"{path}[{i}]")
        ]
    if isinstance(info, mi.DictType):
        if not isinstance(value, dict):
            return [f"{path}: retyped (was an object)"]
        return [p for k, v in value.items() for p in _walk(info.value_type, v, f"{path}.{k}")]
    if isinstance(info, mi.NoneType):
        return [] if value is None else [f"{path}: retyped (was not null)"]
    try:
        msgspec.convert(value, _python_type(info), strict=False)
    except (msgspec.ValidationError, TypeError):
        return [f"{path}: retyped (the released value no longer fits)"]
    return []


def _struct(info: mi.StructType, value: Any, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: retyped (was an object)"]
    fields = {f.encode_name: f for f in info.fields}
    found: list[str] = []
    for key, item in value.items():
        if key == info.tag_field:
            if item != info.tag:
                found.append(f"{path}.{key}: tag changed ({info.tag!r} reads no other)")
            continue
        field = fields.get(key)
        if field is None:
            found.append(f"{path}.{key}: removed or renamed")
            continue
        found += _walk(field.type, item, f"{path}.{key}")
    for name, field in fields.items():
        if field.required and name not in value:
            found.append(f"{path}.{name}: a new required field (released data lacks it)")
    return found


def _python_type(info: mi.Type) -> Any:
    """The Python type a leaf type_info stands for, to convert a sample value with."""
    leaf: dict[type, Any] = {
        mi.StrType: str,
        mi.IntType: int,
        mi.FloatType: float,
        mi.BoolType: bool,
        mi.AnyType: Any,
        mi.DateTimeType: datetime.datetime,
        mi.DateType: datetime.date,
    }
    for kind, python in leaf.items():
        if isinstance(info, kind):
            return python
    if isinstance(info, mi.EnumType):
        return info.cls
    if isinstance(info, mi.LiteralType):
        from typing import Literal

        return Literal[info.values]
    raise TypeError(f"no rule for {type(info).__name__}")


def sample_paths() -> list[Path]:
    """Every golden sample of every version."""
    return sorted(SAMPLES.glob("v*/*.json"))


def digest(path: Path) -> str:
    """A sample's fingerprint, as the manifest records it."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest() -> dict[str, str]:
    """The recorded fingerprint of every released sample (relative path -> sha256)."""
    lines = MANIFEST.read_text().splitlines() if MANIFEST.exists() else []
    return {name: sha for sha, name in (line.split(maxsplit=1) for line in lines if line.strip())}


def write_manifest() -> None:
    """Record every sample present now; released ones must never change afterwards."""
    recorded = manifest()
    for path in sample_paths():
        name = path.relative_to(SAMPLES).as_posix()
        if name in recorded and recorded[name] != digest(path):
            raise ValueError(f"{name} is released: add a new sample instead of changing it")
        recorded[name] = digest(path)
    MANIFEST.write_text("".join(f"{sha}  {name}\n" for name, sha in sorted(recorded.items())))


if __name__ == "__main__":
    write_manifest()
    print(MANIFEST)
