"""How the transformer reads the contracts it accepts (pyproject.toml's [tool.gro.contracts]);
the handler reads through these, and the compatibility gate runs them on every golden sample."""

from __future__ import annotations

import msgspec

from contracts.messages import RecordToTransform

read_record = msgspec.json.Decoder(RecordToTransform).decode

READERS = {"RecordToTransform": read_record}
