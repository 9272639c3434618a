"""The publisher's configuration, read from the environment once, at cold start."""

from __future__ import annotations

import os

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the publisher's functions are told by their stack."""

    store_table: str
    ledger_table: str
    events_dlq_url: str
    platform_url: str
    token_url: str
    platform_secret: str
    retention_seconds: int = 7 * 24 * 3600
    max_receive_count: int = 10
    http_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls) -> Settings:
        """Fail at cold start, naming what is missing, rather than mid-batch."""
        names = {
            "store_table": "STORE_TABLE",
            "ledger_table": "LEDGER_TABLE",
            "events_dlq_url": "EVENTS_DLQ_URL",
            "platform_url": "PLATFORM_URL",
            "token_url": "TOKEN_URL",
            "platform_secret": "PLATFORM_CLIENT_SECRET_NAME",
            "retention_seconds": "STORE_RETENTION_SECONDS",
            "max_receive_count": "MAX_RECEIVE_COUNT",
            "http_timeout_seconds": "HTTP_TIMEOUT_SECONDS",
        }
        raw = {field: os.environ[var] for field, var in names.items() if var in os.environ}
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as err:
            raise RuntimeError(f"publisher settings: {err}") from None
