"""How the publisher reads the contracts it accepts (pyproject.toml's [tool.gro.contracts]); the
handler reads through these, and the compatibility gate runs them on every golden sample."""

from __future__ import annotations

from typing import Any

import msgspec

from contracts.enrichment import EnrichRequest
from contracts.messages import EventToPublish
from contracts.stored import StoredEvent

read_event = msgspec.json.Decoder(EventToPublish).decode
read_stored = msgspec.json.Decoder(StoredEvent).decode


def read_enrich_request(event: Any) -> EnrichRequest:
    """The platform's enrichment request (a JSON object)."""
    return msgspec.convert(event, EnrichRequest)


READERS = {
    "EventToPublish": read_event,
    "EnrichRequest": read_enrich_request,
    "StoredEvent": read_stored,
}
