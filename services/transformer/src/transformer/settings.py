"""The transformer's configuration, read from the environment once, at cold start."""

from __future__ import annotations

import msgspec

from contracts.config import from_env


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the transformer is told by its stack (one variable per field)."""

    events_queue_url: str
    records_dlq_url: str
    ledger_table: str
    event_id_key_secret: str
    max_receive_count: int = 5

    @classmethod
    def from_env(cls) -> Settings:
        """Read at cold start: fail there, naming the variable, rather than mid-batch."""
        return from_env(cls)
