"""The publisher's configuration, read from the environment once, at cold start."""

from __future__ import annotations

import msgspec

from contracts.config import from_env


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the publisher's functions are told by their stack (one variable per field)."""

    store_table: str
    ledger_table: str
    events_dlq_url: str
    platform_url: str
    token_url: str
    platform_client_secret_name: str
    store_retention_seconds: int = 7 * 24 * 3600
    max_receive_count: int = 10
    http_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        """Read at cold start: fail there, naming the variable, rather than mid-batch."""
        return from_env(cls)
