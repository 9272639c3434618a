"""The splitter's configuration, one Struct per function, read from the environment once, at
cold start. A test holds each against its function's variables in template.yaml."""

from __future__ import annotations

import msgspec

from servicekit.settings import EnvSettings


class StartSettings(EnvSettings, frozen=True, kw_only=True):
    """`start`: which state machine ingests a landed file."""

    state_machine_arn: str
    record_wait_seconds: int = 10


class SplitSettings(EnvSettings, frozen=True, kw_only=True):
    """`split`: where records go, how long one step may run."""

    records_queue_url: str
    ledger_table: str
    split_time_budget_seconds: float = 600.0
    send_concurrency: int = 8
    record_wait_seconds: int = 10
    max_queue_depth: int = 0


class QuarantineSettings(EnvSettings, frozen=True, kw_only=True):
    """`quarantine`: the ledger where a failed file's reason is recorded."""

    ledger_table: str


# entry point (handler.py function) -> the settings it reads
ENTRY_POINTS: dict[str, type[msgspec.Struct]] = {
    "start": StartSettings,
    "split": SplitSettings,
    "quarantine": QuarantineSettings,
}
