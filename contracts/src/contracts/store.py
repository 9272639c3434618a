"""The temporary store: the full event, kept only until it is consumed or its time is up.

Written by the publisher, read by its enrichment function, emptied by the reaper: the item
shape is a contract between services, so it lives here. The client is any DynamoDB low-level
client (boto3's), passed in.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from contracts.events import DeathNotification

KEY = "id"
EXPIRES_AT = "expires_at"


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One item of the store. The event is kept as its own JSON, exactly as it will be served."""

    id: str
    event: DeathNotification
    expires_at: int
    file_id: str
    ordinal: int


_event_decoder = msgspec.json.Decoder(DeathNotification)


class Store:
    """DynamoDB access for the store table."""

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def put_if_absent(self, item: StoredEvent) -> bool:
        """Store the event unless its id is there already; True if this call stored it."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    "id": {"S": item.id},
                    "event": {"S": msgspec.json.encode(item.event).decode()},
                    "expires_at": {"N": str(item.expires_at)},
                    "file_id": {"S": item.file_id},
                    "ordinal": {"N": str(item.ordinal)},
                },
                ConditionExpression="attribute_not_exists(id)",
            )
            return True
        except self._db.exceptions.ConditionalCheckFailedException:
            return False

    def get_live(self, event_id: str, now: float | None = None) -> DeathNotification | None:
        """The stored event, unless it is absent or past its expiry (TTL deletion can lag)."""
        answer = self._db.get_item(
            TableName=self._table, Key={"id": {"S": event_id}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None or int(item["expires_at"]["N"]) <= int(now or time.time()):
            return None
        return _event_decoder.decode(item["event"]["S"])

    def delete(self, event_id: str) -> None:
        """Delete the event (idempotent: deleting what is gone is fine)."""
        self._db.delete_item(TableName=self._table, Key={"id": {"S": event_id}})

    def expired_ids(self, now: float | None = None, page_size: int = 500) -> list[str]:
        """Ids of items past their expiry (TTL deletes can lag 48 h: the sweep does not wait)."""
        ids: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "ProjectionExpression": "id",
            "FilterExpression": "expires_at <= :now",
            "ExpressionAttributeValues": {":now": {"N": str(int(now or time.time()))}},
            "Limit": page_size,
        }
        while True:
            answer = self._db.scan(**kwargs)
            ids.extend(item["id"]["S"] for item in answer.get("Items", []))
            if "LastEvaluatedKey" not in answer:
                return ids
            kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
