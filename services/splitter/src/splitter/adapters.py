"""The splitter's adapters: the landing bucket (S3), the state machine (Step Functions), and the
record sink (SQS batches, plus the ledger for records that cannot be sent)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, BinaryIO

import msgspec
from botocore.exceptions import ClientError

from contracts.messages import FileRef, RecordToTransform
from contracts.steps import SplitStepInput
from servicekit import tracing
from servicekit.ledger import Ledger, RecordStatus
from servicekit.objects import object_version
from splitter.sender import MAX_BATCH_BYTES, BatchSender

QUARANTINE_PREFIX = "quarantine/"
# SQS's limit on one message (body as UTF-8, plus attributes), and the records queue's
# MaximumMessageSize (infra/foundation.yaml).
MAX_MESSAGE_BYTES = MAX_BATCH_BYTES
# Kept free for message attributes (none today; a trace or schema attribute is ~100 bytes), so
# that adding some cannot push a record that fits today over the limit.
ATTRIBUTES_MARGIN_BYTES = 2_048
# The most a record's encoded `RecordToTransform` may weigh.
MAX_BODY_BYTES = MAX_MESSAGE_BYTES - ATTRIBUTES_MARGIN_BYTES
_MISSING = ("404", "NoSuchKey", "NotFound")


class S3Files:
    """`Files` over a boto3 S3 client."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    @contextlib.contextmanager
    def open(self, file: FileRef) -> Iterator[BinaryIO]:
        body = self._s3.get_object(**object_version(file))["Body"]
        try:
            yield body
        finally:
            body.close()

    def exists(self, file: FileRef) -> bool:
        try:
            self._s3.head_object(**object_version(file))
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in _MISSING:
                return False
            raise

    def arrived(self, file: FileRef) -> datetime:
        modified: datetime = self._s3.head_object(**object_version(file))["LastModified"]
        return modified.astimezone(UTC)

    def quarantine(self, file: FileRef, reason: str) -> None:
        """Move a refused file aside, with its reason, so the landing prefix holds only work."""
        source = object_version(file)
        self._s3.copy_object(
            Bucket=file.bucket,
            Key=QUARANTINE_PREFIX + file.key,
            CopySource=source,
            MetadataDirective="REPLACE",
            Metadata={"refusal-reason": reason.encode("ascii", "replace").decode()[:1024]},
        )
        self._s3.delete_object(**source)


class StepFunctionsExecutions:
    """`Executions` over a boto3 Step Functions client."""

    def __init__(self, sfn: Any, state_machine_arn: str) -> None:
        self._sfn = sfn
        self._arn = state_machine_arn

    def start(self, name: str, state: SplitStepInput) -> bool:
        try:
            self._sfn.start_execution(
                stateMachineArn=self._arn, name=name, input=msgspec.json.encode(state).decode()
            )
            return True
        except ClientError as err:
            # the same object announced twice (CompleteMultipartUpload does that): one execution
            if err.response.get("Error", {}).get("Code") != "ExecutionAlreadyExists":
                raise
            return False


class QueueSink:
    """Records to the records queue in parallel batches; the ones too large to send, to the
    ledger as rejected.

    The size that counts is the encoded message's, not the fragment's: JSON escaping (a quote
    or a newline takes two bytes, a control character six) can take a fragment under the
    reader's limit past SQS's. Such a record is rejected here, with its ordinal and size, and
    the split goes on with the next.
    """

    def __init__(self, sender: BatchSender, ledger: Ledger) -> None:
        self.sender = sender
        self._ledger = ledger
        self.emitted = 0
        self.rejected = 0

    def emit(self, message: RecordToTransform) -> None:
        body = msgspec.json.encode(message)
        if len(body) > MAX_BODY_BYTES:
            self.reject(message.file, message.ordinal, too_large_reason(message.ordinal, len(body)))
            return
        # each record starts a trace of its own (a file's million records in one trace would be
        # unreadable); its file_id annotation ties it to the split step that emitted it
        self.sender.add(str(message.ordinal), body, trace_header=tracing.new_trace())
        self.emitted += 1

    def reject(self, file: FileRef, ordinal: int, reason: str) -> None:
        self._ledger.record_ended(file, ordinal, RecordStatus.REJECTED, reasons=(reason,))
        self.rejected += 1

    def flush(self) -> None:
        self.sender.flush()

    def close(self) -> None:
        self.sender.close()


def too_large_reason(ordinal: int, size: int) -> str:
    """Why a record was not sent: what and where, never its content."""
    return (
        f"record {ordinal} is {size} bytes as a queue message, over the {MAX_BODY_BYTES}-byte "
        f"limit (SQS's {MAX_MESSAGE_BYTES} less {ATTRIBUTES_MARGIN_BYTES} kept for attributes)"
    )
