"""GetItem's answer written as JSON directly, not through moto's shape walker (installed by
`moto_server.install_dynamodb_patches`, in the DynamoDB server's process).

moto serialises every response by walking botocore's model of it in Python, member by member
and attribute by attribute. For GetItem, two calls a record (the platform's enrichment, one per
consumer), that walk was the DynamoDB server's largest single cost after UpdateItem (py-spy:
14% of its process). An item whose values are strings, numbers, booleans, nulls, string or
number sets, lists and maps of those is already its own JSON in DynamoDB's wire format, and
the walk changes nothing in it: such an answer is `json.dumps` of moto's own result, the body
the walk would have written. An item holding binary values (`B`, `BS`, which the walk
base64-encodes) goes the walk's way, as before.
"""

from __future__ import annotations

import json
from typing import Any

_PLAIN = frozenset({"S", "N", "BOOL", "NULL", "SS", "NS"})
CONTENT_TYPE = "application/x-amz-json-1.0"  # DynamoDB's protocol: JSON 1.0


def plain(item: dict[str, Any]) -> bool:
    """Whether every value of `item` (an attribute map) is written the same by the walk and by
    `json.dumps`: no binary anywhere in it."""
    for value in item.values():
        if not isinstance(value, dict) or len(value) != 1:
            return False
        ((kind, inner),) = value.items()
        if kind in _PLAIN:
            continue
        if kind == "M":
            if not (isinstance(inner, dict) and plain(inner)):
                return False
        elif kind == "L":
            if not (isinstance(inner, list) and plain({str(i): v for i, v in enumerate(inner)})):
                return False
        else:
            return False
    return True


def _answer_class() -> Any:
    from moto.core.responses import ActionResult

    class GetItemAnswer(ActionResult):
        """moto's GetItem result, written as JSON when the item is plain."""

        def execute_result(self, context: Any) -> Any:
            result: dict[str, Any] = self.result  # type: ignore[assignment]  # GetItem's dict
            item = result.get("Item")
            if set(result) <= {"Item"} and (item is None or plain(item)):
                return 200, {"Content-Type": CONTENT_TYPE}, json.dumps(result)
            return super().execute_result(context)

    return GetItemAnswer


def _get_item(get_item: Any, answer: Any) -> Any:
    def get_item_answered_plainly(self: Any) -> Any:
        return answer(get_item(self).result)

    return get_item_answered_plainly


def install() -> None:
    """Patch moto's GetItem handler (idempotent: the process installs it once)."""
    from moto.dynamodb.responses import DynamoHandler

    handler: Any = DynamoHandler  # patching methods: what mypy rightly dislikes
    if getattr(handler.get_item, "__name__", "") == "get_item_answered_plainly":
        return
    handler.get_item = _get_item(handler.get_item, _answer_class())
