"""The reaper's configuration, read from the environment once, at cold start."""

from __future__ import annotations

import os

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the reaper's functions are told by their stack."""

    store_table: str
    ledger_table: str
    consumed_dlq_url: str
    receipts_prefix: str = "receipts/"
    stall_seconds: int = 3600
    max_receive_count: int = 5

    @classmethod
    def from_env(cls) -> Settings:
        """Fail at cold start, naming what is missing, rather than mid-batch."""
        names = {
            "store_table": "STORE_TABLE",
            "ledger_table": "LEDGER_TABLE",
            "consumed_dlq_url": "CONSUMED_DLQ_URL",
            "receipts_prefix": "RECEIPTS_PREFIX",
            "stall_seconds": "STALL_SECONDS",
            "max_receive_count": "MAX_RECEIVE_COUNT",
        }
        raw = {field: os.environ[var] for field, var in names.items() if var in os.environ}
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as err:
            raise RuntimeError(f"reaper settings: {err}") from None
