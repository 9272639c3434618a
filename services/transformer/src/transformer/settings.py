"""The transformer's configuration, read from the environment once, at cold start. A test
holds it against the function's variables in template.yaml."""

from __future__ import annotations

import msgspec

from servicekit.settings import EnvSettings


class Settings(EnvSettings, frozen=True, kw_only=True):
    """Everything the transformer is told by its stack (one variable per field)."""

    events_queue_url: str
    records_dlq_url: str
    ledger_table: str
    event_id_key_secret: str
    max_receive_count: int = 5


# entry point (handler.py function) -> the settings it reads
ENTRY_POINTS: dict[str, type[msgspec.Struct]] = {"transform": Settings}
