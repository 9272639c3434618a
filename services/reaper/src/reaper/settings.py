"""The reaper's configuration, one Struct per function, read from the environment once, at
cold start. A test holds each against its function's variables in template.yaml."""

from __future__ import annotations

import msgspec

from servicekit.settings import EnvSettings


class ConsumedSettings(EnvSettings, frozen=True, kw_only=True):
    """`consumed`: the store it deletes from, the DLQ for notices it cannot read, the ledger
    where records leaving the store are noted (and receipts made from)."""

    store_table: str
    consumed_dlq_url: str
    ledger_table: str
    max_receive_count: int = 5


class FinishSettings(EnvSettings, frozen=True, kw_only=True):
    """`finish_file`: the ledger it sums, the store it asks what a file left there, when a
    file has stalled, and the longest wait between two checks of a file."""

    ledger_table: str
    store_table: str
    stall_seconds: int = 3600
    max_wait_seconds: int = 600


class SweepSettings(EnvSettings, frozen=True, kw_only=True):
    """`sweep`: the store it enforces retention on, the ledger of files whose receipts wait."""

    store_table: str
    ledger_table: str


# entry point (handler.py function) -> the settings it reads
ENTRY_POINTS: dict[str, type[msgspec.Struct]] = {
    "consumed": ConsumedSettings,
    "finish_file": FinishSettings,
    "sweep": SweepSettings,
}
