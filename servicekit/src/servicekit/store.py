"""The temporary store's DynamoDB adapter: put if absent, read while live, delete, find expired.

The item is `contracts.stored.StoredEvent`; this is how it sits in DynamoDB. The client is any
DynamoDB low-level client (boto3's), passed in.

Many events at once (a batch's): `locate_many` reads where they came from with BatchGetItem (100
keys a call) and `delete_many` deletes them with BatchWriteItem (25 a call). What DynamoDB
leaves unprocessed (throttling) is asked again, backing off, a few times; what is still left
is reported per event, so that only those events' messages are tried again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import msgspec

from contracts.events import DeathNotification
from contracts.stored import StoredEvent
from servicekit.errors import TransientError

KEY = "id"
EXPIRES_AT = "expires_at"
BATCH_GET = 100  # BatchGetItem's limit on keys
BATCH_WRITE = 25  # BatchWriteItem's limit on requests
ATTEMPTS = 5  # calls for one batch while DynamoDB leaves part of it unprocessed

_event_decoder = msgspec.json.Decoder(DeathNotification)
_REF_NAMES = {"#i": KEY, "#f": "file_id", "#o": "ordinal"}


class StoredRef(NamedTuple):
    """Where a stored event came from: its id, file and ordinal. Nothing of the record."""

    id: str
    file_id: str
    ordinal: int


def _ref(item: dict[str, Any]) -> StoredRef:
    return StoredRef(
        id=item[KEY]["S"], file_id=item["file_id"]["S"], ordinal=int(item["ordinal"]["N"])
    )


class Store:
    """DynamoDB access for the store table."""

    def __init__(
        self, dynamodb: Any, table: str, *, pause: Callable[[float], None] = time.sleep
    ) -> None:
        self._db = dynamodb
        self._table = table
        self._pause = pause  # between calls for what DynamoDB left unprocessed

    def put_if_absent(self, item: StoredEvent) -> bool:
        """Store the event unless its id is there already; True if this call stored it."""
        try:
            self._db.put_item(
                TableName=self._table,
                Item={
                    KEY: {"S": item.id},
                    "event": {"S": msgspec.json.encode(item.event).decode()},
                    EXPIRES_AT: {"N": str(item.expires_at)},
                    "file_id": {"S": item.file_id},
                    "ordinal": {"N": str(item.ordinal)},
                },
                ConditionExpression=f"attribute_not_exists({KEY})",
            )
            return True
        except self._db.exceptions.ConditionalCheckFailedException:
            return False

    def get_live(self, event_id: str, now: float | None = None) -> DeathNotification | None:
        """The stored event, unless it is absent or past its expiry (TTL deletion can lag)."""
        answer = self._db.get_item(
            TableName=self._table, Key={KEY: {"S": event_id}}, ConsistentRead=True
        )
        item = answer.get("Item")
        if item is None or int(item[EXPIRES_AT]["N"]) <= int(now or time.time()):
            return None
        return _event_decoder.decode(item["event"]["S"])

    def delete(self, event_id: str) -> None:
        """Delete the event (idempotent: deleting what is gone is fine)."""
        self._db.delete_item(TableName=self._table, Key={KEY: {"S": event_id}})

    def expired_ids(self, now: float | None = None, page_size: int = 500) -> Iterator[str]:
        """Ids of items past their expiry, every page (TTL deletes can lag 48 h: no waiting)."""
        pages = self._db.get_paginator("scan").paginate(
            TableName=self._table,
            ProjectionExpression=KEY,
            FilterExpression=f"{EXPIRES_AT} <= :now",
            ExpressionAttributeValues={":now": {"N": str(int(now or time.time()))}},
            PaginationConfig={"PageSize": page_size},
        )
        for page in pages:
            for item in page.get("Items", []):
                yield item[KEY]["S"]

    def locate(self, event_id: str) -> StoredRef | None:
        """Which file and ordinal a stored event came from (never the event), or None if the
        store does not hold it."""
        item = self._db.get_item(
            TableName=self._table,
            Key={KEY: {"S": event_id}},
            ConsistentRead=True,
            ProjectionExpression="#i, #f, #o",
            ExpressionAttributeNames=_REF_NAMES,
        ).get("Item")
        return _ref(item) if item else None

    def locate_many(self, event_ids: Iterable[str]) -> dict[str, StoredRef]:
        """Which file and ordinal each stored event came from (never the event), by id, for
        those the store holds: strongly consistent BatchGetItem, 100 keys a call."""
        ids = list(dict.fromkeys(event_ids))  # a key twice in one call is refused
        found: dict[str, StoredRef] = {}
        for start in range(0, len(ids), BATCH_GET):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{KEY: {"S": i}} for i in ids[start : start + BATCH_GET]],
                    "ConsistentRead": True,
                    "ProjectionExpression": "#i, #f, #o",
                    "ExpressionAttributeNames": _REF_NAMES,
                }
            }
            for attempt in range(ATTEMPTS):
                if attempt:
                    self._pause(0.05 * 2**attempt)
                answer = self._db.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self._table, []):
                    found[item[KEY]["S"]] = _ref(item)
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise TransientError(f"the store left keys unread after {ATTEMPTS} attempts")
        return found

    def delete_many(self, event_ids: Iterable[str]) -> dict[str, BaseException]:
        """Delete the events (idempotent), 25 to a BatchWriteItem; the ones that could not be
        deleted, with why (the others are gone)."""
        ids = list(dict.fromkeys(event_ids))  # a key twice in one call is refused
        failed: dict[str, BaseException] = {}
        for start in range(0, len(ids), BATCH_WRITE):
            pending = ids[start : start + BATCH_WRITE]
            try:
                for attempt in range(ATTEMPTS):
                    if attempt:
                        self._pause(0.05 * 2**attempt)
                    answer = self._db.batch_write_item(
                        RequestItems={
                            self._table: [
                                {"DeleteRequest": {"Key": {KEY: {"S": i}}}} for i in pending
                            ]
                        }
                    )
                    left = answer.get("UnprocessedItems", {}).get(self._table, [])
                    pending = [r["DeleteRequest"]["Key"][KEY]["S"] for r in left]
                    if not pending:
                        break
                else:
                    raise TransientError(
                        f"the store left deletes unprocessed after {ATTEMPTS} attempts"
                    )
            except Exception as err:
                failed.update(dict.fromkeys(pending, err))
        return failed

    def expired(self, now: float | None = None, page_size: int = 500) -> Iterator[StoredRef]:
        """Ids, files and ordinals of the items past their expiry, every page (no event)."""
        pages = self._db.get_paginator("scan").paginate(
            TableName=self._table,
            ProjectionExpression="#i, #f, #o",
            FilterExpression="#x <= :now",
            ExpressionAttributeNames={**_REF_NAMES, "#x": EXPIRES_AT},
            ExpressionAttributeValues={":now": {"N": str(int(now or time.time()))}},
            PaginationConfig={"PageSize": page_size},
        )
        for page in pages:
            yield from (_ref(item) for item in page.get("Items", []))

    def ordinals_of(self, fid: str) -> set[int]:
        """The ordinals of one file's events the store holds now (a consistent scan, every
        page: an event stored before the scan is seen)."""
        pages = self._db.get_paginator("scan").paginate(
            TableName=self._table,
            ConsistentRead=True,
            ProjectionExpression="#o",
            FilterExpression="#f = :f",
            ExpressionAttributeNames={"#o": "ordinal", "#f": "file_id"},
            ExpressionAttributeValues={":f": {"S": fid}},
        )
        return {int(item["ordinal"]["N"]) for page in pages for item in page.get("Items", [])}

    def count_for_file(self, fid: str) -> int:
        """How many events of one file the store still holds (every page: scans stop at 1 MB)."""
        pages = self._db.get_paginator("scan").paginate(
            TableName=self._table,
            Select="COUNT",
            FilterExpression="file_id = :f",
            ExpressionAttributeValues={":f": {"S": fid}},
        )
        return sum(int(page.get("Count", 0)) for page in pages)
