"""Typed settings from the environment: each field is read from the variable of its name in
upper case, once, at cold start, so a missing or malformed one fails there, by name."""

from __future__ import annotations

import os
import re
from typing import Self, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


class SettingsError(RuntimeError):
    """The function's configuration is incomplete or malformed."""


def from_env(kind: type[S]) -> S:
    """Build `kind` from the environment (`records_queue_url` <- `RECORDS_QUEUE_URL`)."""
    fields = msgspec.structs.fields(kind)
    missing = [f.name.upper() for f in fields if f.required and f.name.upper() not in os.environ]
    if missing:
        raise SettingsError(f"{kind.__name__}: {', '.join(missing)} not set in the environment")
    raw = {f.name: os.environ[f.name.upper()] for f in fields if f.name.upper() in os.environ}
    try:
        return msgspec.convert(raw, kind, strict=False)
    except msgspec.ValidationError as err:
        # `$.max_receive_count` -> the variable's own name
        named = re.sub(r"`\$\.(\w+)`", lambda m: m.group(1).upper(), str(err))
        raise SettingsError(f"{kind.__name__}: {named}") from None


class EnvSettings(msgspec.Struct, frozen=True, kw_only=True):
    """A function's settings: subclass it with one field per environment variable. Every
    function knows the release it belongs to (`ingest deploy --version`), to say who handled
    a record."""

    service_version: str = "unlabelled"

    @classmethod
    def from_env(cls) -> Self:
        """Read at cold start: fail there, naming the variable, rather than mid-batch."""
        return from_env(cls)


def variables(kind: type[msgspec.Struct]) -> dict[str, bool]:
    """The environment variables `kind` reads, each with whether it is required."""
    return {f.name.upper(): f.required for f in msgspec.structs.fields(kind)}
