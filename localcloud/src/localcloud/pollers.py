"""SQS event source mappings with AWS semantics: batching, partial batch failures, redrive."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from localcloud.faults import FaultSwitch
from localcloud.lambda_runtime import FunctionSpec, LambdaRuntime

_LOG = logging.getLogger(__name__)
_ACTIVE_STATES = {"Creating", "Enabling", "Enabled", "Updating"}
_ERROR_PAUSE_S = 0.5
_STOP_JOIN_S = 2.0
# The system attributes Lambda copies into a record (the FIFO ones only exist on FIFO queues).
_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "AWSTraceHeader",
    "SequenceNumber",
    "MessageGroupId",
    "MessageDeduplicationId",
)


@dataclass(frozen=True)
class _Mapping:
    """The parts of an event source mapping a poller needs; a changed mapping is a new one."""

    uuid: str
    queue_arn: str
    function_name: str
    batch_size: int
    window_s: int
    report_item_failures: bool

    @property
    def region(self) -> str:
        return self.queue_arn.split(":")[3]


FILE_ARRIVALS_QUEUE = "gro-file-arrivals"
DUPLICATE_ATTRIBUTE = "localcloud-duplicate"


class EventSourcePollers:
    """Poller threads for every enabled SQS event source mapping, invoking the local runtime."""

    def __init__(
        self,
        *,
        sqs: Any,
        lambda_client: Any,
        runtime: LambdaRuntime,
        spec_for: Callable[[str], FunctionSpec],
        pollers_per_mapping: int = 2,
        faults: FaultSwitch | None = None,
    ) -> None:
        self._sqs = sqs
        self._lambda = lambda_client
        self._runtime = runtime
        self._spec_for = spec_for
        self._per_mapping = max(1, pollers_per_mapping)
        self._faults = faults or FaultSwitch()
        self._lock = threading.Lock()
        self._running: dict[_Mapping, tuple[threading.Event, list[threading.Thread]]] = {}
        self._busy = 0

    def sync(self) -> None:
        """Start pollers for new enabled SQS mappings and stop those of vanished or changed ones."""
        wanted = set(self._list_mappings())
        with self._lock:
            for mapping in [m for m in self._running if m not in wanted]:
                stop, _ = self._running.pop(mapping)
                stop.set()  # its threads end on their own within one receive
            for mapping in wanted - self._running.keys():
                stop = threading.Event()
                threads = [
                    threading.Thread(
                        target=self._poll,
                        args=(mapping, stop),
                        name=f"sqs-poller-{mapping.function_name}-{i}",
                        daemon=True,
                    )
                    for i in range(self._per_mapping)
                ]
                self._running[mapping] = (stop, threads)
                for thread in threads:
                    thread.start()

    def stop(self) -> None:
        """Stop every poller, waiting at most about two seconds."""
        with self._lock:
            running = list(self._running.values())
            self._running.clear()
        for stop, _ in running:
            stop.set()
        deadline = time.monotonic() + _STOP_JOIN_S
        for _, threads in running:
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def idle(self) -> bool:
        """Whether no poller currently holds a batch (received but not yet settled)."""
        with self._lock:
            return self._busy == 0

    def _list_mappings(self) -> list[_Mapping]:
        mappings: list[_Mapping] = []
        for page in self._lambda.get_paginator("list_event_source_mappings").paginate():
            for m in page.get("EventSourceMappings", []):
                arn = m.get("EventSourceArn", "")
                if not arn.startswith("arn:aws:sqs:") or m.get("State") not in _ACTIVE_STATES:
                    continue
                mappings.append(
                    _Mapping(
                        uuid=m["UUID"],
                        queue_arn=arn,
                        function_name=m["FunctionArn"].split(":")[6],
                        batch_size=int(m.get("BatchSize") or 10),
                        window_s=int(m.get("MaximumBatchingWindowInSeconds") or 0),
                        report_item_failures="ReportBatchItemFailures"
                        in (m.get("FunctionResponseTypes") or []),
                    )
                )
        return mappings

    def _poll(self, mapping: _Mapping, stop: threading.Event) -> None:
        queue_url: str | None = None
        while not stop.is_set():
            try:
                if queue_url is None:
                    _, _, _, _, account, name = mapping.queue_arn.split(":")
                    queue_url = self._sqs.get_queue_url(
                        QueueName=name, QueueOwnerAWSAccountId=account
                    )["QueueUrl"]
                messages = self._receive(mapping, queue_url, stop)
                if messages:
                    try:
                        self._process(mapping, queue_url, messages)
                    finally:
                        with self._lock:
                            self._busy -= 1
            except Exception as exc:
                # Type and AWS error code only: exception texts could quote message contents.
                code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
                _LOG.warning("poller %s: %s %s", mapping.uuid, type(exc).__name__, code)
                stop.wait(_ERROR_PAUSE_S)

    def _receive(
        self, mapping: _Mapping, queue_url: str, stop: threading.Event
    ) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        window_end = 0.0
        try:
            while not stop.is_set():
                remaining = window_end - time.monotonic()
                response = self._sqs.receive_message(
                    QueueUrl=queue_url,
                    MaxNumberOfMessages=min(10, mapping.batch_size - len(messages)),
                    WaitTimeSeconds=1 if not messages or remaining >= 1 else 0,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                received = response.get("Messages", [])
                if received and not messages:
                    with self._lock:
                        self._busy += 1
                    # Lambda's batching window starts with the first message of a batch.
                    window_end = time.monotonic() + mapping.window_s
                messages.extend(received)
                if not messages:
                    return []
                if len(messages) >= mapping.batch_size or time.monotonic() >= window_end:
                    break
                if not received:
                    stop.wait(min(0.1, max(0.0, window_end - time.monotonic())))
        except BaseException:
            if messages:  # the batch is abandoned; it reappears after its visibility timeout
                with self._lock:
                    self._busy -= 1
            raise
        if not messages:
            return []
        return messages

    def _duplicate_notices(self, mapping: _Mapping, queue_url: str, messages: list[Any]) -> None:
        """Fault `duplicate=s3-events`: S3 announces an object twice (it does, now and then)."""
        if not mapping.queue_arn.endswith(f":{FILE_ARRIVALS_QUEUE}"):
            return
        if not self._faults.get().duplicate_s3_events:
            return
        for message in messages:
            if DUPLICATE_ATTRIBUTE in message.get("MessageAttributes", {}):
                continue  # already the duplicate
            self._sqs.send_message(
                QueueUrl=queue_url,
                MessageBody=message["Body"],
                MessageAttributes={DUPLICATE_ATTRIBUTE: {"DataType": "String", "StringValue": "1"}},
            )

    def _process(self, mapping: _Mapping, queue_url: str, messages: list[dict[str, Any]]) -> None:
        self._duplicate_notices(mapping, queue_url, messages)
        records = [self._record(mapping, m) for m in messages]
        trace_header = records[0]["attributes"].get("AWSTraceHeader")
        result = self._runtime.invoke(
            self._spec_for(mapping.function_name), {"Records": records}, trace_header=trace_header
        )
        if result.error_type is not None:
            # Delete nothing: the batch comes back after the visibility timeout (then the DLQ).
            _LOG.info(
                "poller %s: %s failed with %s; %d messages will be retried",
                mapping.uuid,
                mapping.function_name,
                result.error_type,
                len(messages),
            )
            return
        failed = self._failed_ids(mapping, result.payload, {m["MessageId"] for m in messages})
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            response = self._sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                _LOG.warning("poller %s: %d deletes failed", mapping.uuid, len(response["Failed"]))

    @staticmethod
    def _failed_ids(mapping: _Mapping, payload: bytes, batch: set[str]) -> set[str]:
        """The messages to keep, per Lambda's ReportBatchItemFailures rules."""
        if not mapping.report_item_failures:
            return set()
        try:
            response = json.loads(payload)
        except ValueError:
            return batch
        if response is None:
            return set()
        if not isinstance(response, dict):
            return batch
        failures = response.get("batchItemFailures")
        if failures is None:
            return set()
        if not isinstance(failures, list):
            return batch
        failed: set[str] = set()
        for failure in failures:
            item = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not isinstance(item, str) or item not in batch:
                return batch  # empty, null or unknown identifiers fail the whole batch on AWS
            failed.add(item)
        return failed

    @staticmethod
    def _record(mapping: _Mapping, message: dict[str, Any]) -> dict[str, Any]:
        attributes = message.get("Attributes", {})
        record: dict[str, Any] = {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": {k: attributes[k] for k in _RECORD_ATTRIBUTES if k in attributes},
            "messageAttributes": {
                name: _lambda_attribute(value)
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
        }
        if "MD5OfMessageAttributes" in message:
            record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
        record.update(
            eventSource="aws:sqs", eventSourceARN=mapping.queue_arn, awsRegion=mapping.region
        )
        return record


def _lambda_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """An SQS message attribute in the camelCase shape Lambda puts into records."""
    out: dict[str, Any] = {}
    if "StringValue" in value:
        out["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        out["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    out["stringListValues"] = list(value.get("StringListValues", []))
    out["binaryListValues"] = [
        base64.b64encode(b).decode() for b in value.get("BinaryListValues", [])
    ]
    out["dataType"] = value["DataType"]
    return out
