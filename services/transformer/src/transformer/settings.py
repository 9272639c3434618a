"""The transformer's configuration, read from the environment once, at cold start."""

from __future__ import annotations

import os

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the transformer is told by its stack."""

    events_queue_url: str
    records_dlq_url: str
    ledger_table: str
    event_id_key_secret: str
    max_receive_count: int = 5

    @classmethod
    def from_env(cls) -> Settings:
        """Fail at cold start, naming what is missing, rather than mid-batch."""
        names = {
            "events_queue_url": "EVENTS_QUEUE_URL",
            "records_dlq_url": "RECORDS_DLQ_URL",
            "ledger_table": "LEDGER_TABLE",
            "event_id_key_secret": "EVENT_ID_KEY_SECRET",
            "max_receive_count": "MAX_RECEIVE_COUNT",
        }
        raw = {field: os.environ[var] for field, var in names.items() if var in os.environ}
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as err:
            raise RuntimeError(f"transformer settings: {err}") from None
