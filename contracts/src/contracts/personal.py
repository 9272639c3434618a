"""Which parts of the contracts are personal data, said on the contracts themselves.

A field is personal when the GRO format reference marks what it carries as PII ("yes" or
"quasi-identifier": the registration id, names, sex, dates, address) or when it carries what
the file holds without the reference defining it (`extra`: anything at all) or the record
itself (`fragment`: the record's XML). It says so in its type:

    surname: Annotated[str | None, PERSONAL] = None

`msgspec.Meta(extra=...)` is for introspection only: the JSON Schemas and the wire format do
not change, and `msgspec.inspect` shows the mark (`Metadata.extra`).

From the marks, by introspection (`msgspec.inspect`):

- `personal_fields(kind)`: a contract's personal fields, by name (`PersonalField`);
- `personal_types(roots)`: of the Structs reachable from `roots` (say, every released contract:
  `contracts.schema.RELEASED`), every one whose instances carry personal data: one with a
  personal field, one holding such a type anywhere in a field (`EventToPublish` holds a
  `DeathNotification`), and every Struct found inside a personal field (a `PersonName` is
  personal as a whole: its fields need no marks of their own);
- `personal_names(roots)`: the names (Python and wire) of every personal field of those Structs,
  for a logger that refuses a key so named (`servicekit.logging`).

Nothing here reads a value: it is what the types say. (The roots come in as an argument: the
registry imports every contract module, this module is imported by them.)
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any, Final, NamedTuple

import msgspec
import msgspec.inspect as mi

PERSONAL: Final = msgspec.Meta(extra={"personal": True})


class PersonalField(NamedTuple):
    """A field marked personal: its Python name and its name on the wire."""

    name: str
    encode_name: str


def _is_personal(info: mi.Type) -> bool:
    return isinstance(info, mi.Metadata) and bool((info.extra or {}).get("personal"))


def _structs_in(info: mi.Type) -> list[mi.StructType]:
    """Every Struct a field's type can hold, at any depth (not into the Structs' fields)."""
    if isinstance(info, mi.StructType):
        return [info]
    if isinstance(info, mi.Metadata):
        return _structs_in(info.type)
    if isinstance(info, mi.UnionType):
        return [s for member in info.types for s in _structs_in(member)]
    if isinstance(info, mi.VarTupleType | mi.ListType | mi.SetType | mi.FrozenSetType):
        return _structs_in(info.item_type)
    if isinstance(info, mi.TupleType):
        return [s for item in info.item_types for s in _structs_in(item)]
    if isinstance(info, mi.DictType):
        return _structs_in(info.key_type) + _structs_in(info.value_type)
    return []


def personal_fields(kind: type) -> tuple[PersonalField, ...]:
    """The fields of contract `kind` marked personal, in declaration order."""
    info = mi.type_info(kind)
    if not isinstance(info, mi.StructType):
        raise TypeError(f"{kind!r} is not a msgspec Struct")
    return tuple(PersonalField(f.name, f.encode_name) for f in info.fields if _is_personal(f.type))


class _Node(NamedTuple):
    marked: bool  # has a personal field of its own
    holds: frozenset[type]  # the Structs its fields can hold
    within_personal: frozenset[type]  # the Structs its personal fields can hold


@functools.cache
def _graph(roots: tuple[type, ...]) -> dict[type, _Node]:
    """Every Struct reachable from `roots`, with what its fields hold."""
    graph: dict[type, _Node] = {}
    todo: list[Any] = [i for i in map(mi.type_info, roots) if isinstance(i, mi.StructType)]
    while todo:
        info: mi.StructType = todo.pop()
        if info.cls in graph:
            continue
        holds: set[type] = set()
        within: set[type] = set()
        for f in info.fields:
            inner = _structs_in(f.type)
            holds.update(s.cls for s in inner)
            if _is_personal(f.type):
                within.update(s.cls for s in inner)
            todo.extend(inner)
        marked = any(_is_personal(f.type) for f in info.fields)
        graph[info.cls] = _Node(marked, frozenset(holds), frozenset(within))
    return graph


def personal_types(roots: Iterable[type]) -> frozenset[type]:
    """Every Struct type reachable from `roots` (them included) whose instances carry personal
    data."""
    return _personal_types(tuple(roots))


@functools.cache
def _personal_types(roots: tuple[type, ...]) -> frozenset[type]:
    graph = _graph(roots)
    # found inside a personal field: personal as a whole, and so is all it holds
    wholly: set[type] = set()
    frontier = [cls for node in graph.values() for cls in node.within_personal]
    while frontier:
        cls = frontier.pop()
        if cls not in wholly:
            wholly.add(cls)
            frontier.extend(graph[cls].holds)
    found = wholly | {cls for cls, node in graph.items() if node.marked}
    # and whatever holds a personal type, at any depth, carries personal data too
    changed = True
    while changed:
        changed = False
        for cls, node in graph.items():
            if cls not in found and node.holds & found:
                found.add(cls)
                changed = True
    return frozenset(found)


def personal_names(roots: Iterable[type]) -> frozenset[str]:
    """The Python and wire names of every personal field of the Structs reachable from
    `roots`."""
    return frozenset(
        name
        for kind in _graph(tuple(roots))
        for f in personal_fields(kind)
        for name in (f.name, f.encode_name)
    )
