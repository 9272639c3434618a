"""The splitter's configuration, read from the environment once, at cold start."""

from __future__ import annotations

import os

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the splitter's functions are told by their stack."""

    records_queue_url: str
    records_dlq_url: str
    ledger_table: str
    landing_bucket: str
    state_machine_arn: str
    time_budget_seconds: float = 600.0
    send_concurrency: int = 8
    wait_seconds: int = 10

    @classmethod
    def from_env(cls) -> Settings:
        """Fail at cold start, naming the variable, rather than mid-file."""
        names = {
            "records_queue_url": "RECORDS_QUEUE_URL",
            "records_dlq_url": "RECORDS_DLQ_URL",
            "ledger_table": "LEDGER_TABLE",
            "landing_bucket": "LANDING_BUCKET",
            "state_machine_arn": "STATE_MACHINE_ARN",
            "time_budget_seconds": "SPLIT_TIME_BUDGET_SECONDS",
            "send_concurrency": "SEND_CONCURRENCY",
            "wait_seconds": "RECORD_WAIT_SECONDS",
        }
        raw = {field: os.environ[var] for field, var in names.items() if var in os.environ}
        missing = [var for field, var in names.items() if field not in raw][:5]
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as err:
            raise RuntimeError(f"splitter settings: {err} (unset among: {missing})") from None
