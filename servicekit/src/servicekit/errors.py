"""The two kinds of failure every consumer tells apart (see `servicekit.consumer`). Light on
purpose: domain modules raise these without importing the consumer machinery."""

from __future__ import annotations

from servicekit.ledger import RecordStatus


class PermanentError(Exception):
    """No retry can help: dead-letter now, with the reasons, and account for the record."""

    def __init__(self, *reasons: str, status: RecordStatus = RecordStatus.DEAD_LETTERED) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.status = status


class TransientError(Exception):
    """Try again later; dead-letter only on the last allowed attempt. The message says why."""
