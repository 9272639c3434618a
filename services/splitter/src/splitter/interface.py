"""How the splitter reads the contracts it accepts (pyproject.toml's [tool.gro.contracts]); the
handler reads through these, and the compatibility gate runs them on every golden sample."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.steps import QuarantineStepInput, SplitStepInput


def read_split_input(event: Any) -> SplitStepInput:
    """The Split step's input, as the state machine passes it (a JSON object)."""
    return msgspec.convert(event, SplitStepInput)


def read_quarantine_input(event: Any) -> QuarantineStepInput:
    """The QuarantineFile step's input."""
    return msgspec.convert(event, QuarantineStepInput)


READERS = {"SplitStepInput": read_split_input, "QuarantineStepInput": read_quarantine_input}
