"""The publisher's configuration, one Struct per function, read from the environment once, at
cold start. A test holds each against its function's variables in template.yaml."""

from __future__ import annotations

import msgspec

from servicekit.settings import EnvSettings


class PublishSettings(EnvSettings, frozen=True, kw_only=True):
    """`publish`: the store, the ledger, the DLQ, and the platform."""

    store_table: str
    ledger_table: str
    events_dlq_url: str
    platform_url: str
    token_url: str
    platform_client_secret_name: str
    store_retention_seconds: int = 7 * 24 * 3600
    max_receive_count: int = 10
    http_timeout_seconds: float = 10.0
    backoff_base_seconds: int = 5
    backoff_cap_seconds: int = 900


class EnrichSettings(EnvSettings, frozen=True, kw_only=True):
    """`enrich`: only the store it reads from."""

    store_table: str


# entry point (handler.py function) -> the settings it reads
ENTRY_POINTS: dict[str, type[msgspec.Struct]] = {
    "publish": PublishSettings,
    "enrich": EnrichSettings,
}
