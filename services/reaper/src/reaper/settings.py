"""The reaper's configuration, read from the environment once, at cold start."""

from __future__ import annotations

import msgspec

from contracts.config import from_env


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the reaper's functions are told by their stack (one variable per field)."""

    store_table: str
    ledger_table: str
    consumed_dlq_url: str
    receipts_prefix: str = "receipts/"
    stall_seconds: int = 3600
    max_receive_count: int = 5

    @classmethod
    def from_env(cls) -> Settings:
        """Read at cold start: fail there, naming the variable, rather than mid-batch."""
        return from_env(cls)
