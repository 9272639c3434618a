"""GetItem's plain answer is byte for byte what moto's shape walk writes; binary takes the walk."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from moto.core.responses import ActionContext, ActionResult
from moto.core.serialize import get_serializer_class
from moto.core.utils import get_service_model

from localcloud.dynamodb_answers import _answer_class, plain

PLAIN_ITEM: dict[str, Any] = {
    "id": {"S": "gro1-abc"},
    "event": {"S": '{"source_id": "gro1-abc", "surname": "\u00e9\\"quoted\\""}'},
    "expires_at": {"N": "1767225600"},
    "open": {"BOOL": True},
    "gone": {"NULL": True},
    "versions": {"SS": ["publisher 1.0.0", "publisher 1.1.0"]},
    "ordinals": {"NS": ["1", "2.5"]},
    "nested": {"M": {"a": {"L": [{"S": "x"}, {"N": "3"}, {"M": {"b": {"BOOL": False}}}]}}},
}


def _context() -> ActionContext:
    """What moto's serialiser is given for a GetItem answer."""
    service = get_service_model("dynamodb")
    return ActionContext(
        service,
        service.operation_model("GetItem"),
        get_serializer_class("dynamodb", "json"),
        object(),  # type: ignore[arg-type]  # (the walk reads no more of it than getattr)
    )


def walked(result: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    """What moto's own serialiser writes for a GetItem result."""
    status, headers, body = ActionResult(result).execute_result(_context())
    return status, dict(headers), body


def answered(result: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    """What the patched GetItem writes for it."""
    status, headers, body = _answer_class()(result).execute_result(_context())
    return status, dict(headers), body


@pytest.mark.parametrize(
    "result", [{"Item": PLAIN_ITEM}, {}, {"Item": {"id": {"S": ""}}}], ids=["item", "none", "empty"]
)
def test_a_plain_answer_is_what_the_walk_writes_byte_for_byte(result: dict[str, Any]) -> None:
    assert plain(result.get("Item") or {})
    assert answered(result) == walked(result)


def test_an_item_holding_binary_anywhere_takes_the_walk_which_base64_encodes_it() -> None:
    raw = b"\x00\xffbinary"
    for item in (
        {**PLAIN_ITEM, "blob": {"B": raw}},
        {**PLAIN_ITEM, "blobs": {"BS": [raw]}},
        {**PLAIN_ITEM, "deep": {"M": {"x": {"L": [{"B": raw}]}}}},
    ):
        assert not plain(item)
        status, _, body = answered({"Item": item})
        assert status == 200
        assert (status, body) == walked({"Item": item})[::2]
        assert base64.b64encode(raw).decode() in body


def test_an_answer_with_more_than_the_item_takes_the_walk() -> None:
    result = {"Item": PLAIN_ITEM, "ConsumedCapacity": {"TableName": "t", "CapacityUnits": 0.5}}
    assert answered(result) == walked(result)
    assert json.loads(answered(result)[2])["ConsumedCapacity"]["CapacityUnits"] == 0.5
