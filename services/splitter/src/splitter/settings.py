"""The splitter's configuration, read from the environment once, at cold start."""

from __future__ import annotations

import msgspec

from contracts.config import from_env


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the splitter's functions are told by their stack (one variable per field)."""

    records_queue_url: str
    records_dlq_url: str
    ledger_table: str
    landing_bucket: str
    state_machine_arn: str
    split_time_budget_seconds: float = 600.0
    send_concurrency: int = 8
    record_wait_seconds: int = 10
    max_queue_depth: int = 0

    @classmethod
    def from_env(cls) -> Settings:
        """Read at cold start: fail there, naming the variable, rather than mid-file."""
        return from_env(cls)
