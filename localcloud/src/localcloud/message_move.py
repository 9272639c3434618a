"""SQS's message-move API (DLQ redrive) for moto, which lacks it.

moto 5.2.5 answers StartMessageMoveTask, ListMessageMoveTasks and CancelMessageMoveTask with an
HTTP 500 (`NotImplementedError`). `install()` adds the three actions to moto's `SQSResponse`,
whose `call_action` dispatches the JSON protocol's `X-Amz-Target: AmazonSQS.<Action>` to the
method of the same name in snake case; the results and errors are serialized by moto from
botocore's own service model, so boto3 sees AWS's shapes and error codes.

AWS's semantics, as far as moto lets us have them:

- A task moves messages from a queue that is some queue's DLQ (else `InvalidParameterValue`),
  one active task per source queue (a second start: `UnsupportedOperation`).
- Each message is sent to the destination as a new message (new MessageId, receive count 0;
  body, message attributes and the trace header kept), then deleted from the source.
- `MaxNumberOfMessagesPerSecond` (1-500) paces the moves; without it they go as fast as they can.
- The task stops when it has moved `ApproximateNumberOfMessagesToMove` (the visible depth at
  start) or the source has nothing visible: COMPLETED. Cancel: CANCELLING, then CANCELLED once
  the message in hand is moved. Anything that goes wrong: FAILED with a `FailureReason`.
- Without `DestinationArn` AWS sends each message back to the queue it was dead-lettered from.
  moto's redrive moves the message object as it is and records nothing of where it came from,
  and consumers that dead-letter a message themselves send a new one, so the source cannot be
  known per message: the task moves everything to the one queue whose RedrivePolicy names this
  DLQ, and fails (`CouldNotDetermineMessageSource`, as AWS does) if several do.

The moves go through moto's backend in-process, not through a boto3 client to the server's own
endpoint: the task is part of the service, as on AWS, so it needs no endpoint, credentials or
HTTP round trips, and `backend.send_message` makes the new message exactly as SendMessage does.
The tasks live on the SQS backend object, so moto's reset drops them with the queues (a task
running then fails on its next move, the queue being gone).
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

RUNNING, COMPLETED, CANCELLING, CANCELLED, FAILED = (
    "RUNNING",
    "COMPLETED",
    "CANCELLING",
    "CANCELLED",
    "FAILED",
)
_ACTIVE = (RUNNING, CANCELLING)
MAX_RATE = 500  # AWS's upper limit on MaxNumberOfMessagesPerSecond
_MAX_LISTED = 10  # ListMessageMoveTasks: MaxResults 1 (default) to 10
_BATCH = 10  # messages received at a time
_HIDE_SECONDS = 30  # how long a batch in hand stays invisible, beyond its paced duration
_TASKS = "_gro_message_move_tasks"  # attribute on moto's SQSBackend: {source arn: [tasks]}

_lock = threading.Lock()  # every task's status and count, and each backend's registry
_live: set[_Task] = set()  # running tasks, stopped by uninstall()


@dataclass(eq=False)
class _Task:
    task_id: str
    source_arn: str
    destination_arn: str | None
    rate: int | None
    to_move: int
    started_ms: int
    status: str = RUNNING
    moved: int = 0
    failure_reason: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def handle(self) -> str:
        # AWS's handles are base64 JSON naming the task and its source; so are these.
        raw = json.dumps({"taskId": self.task_id, "sourceArn": self.source_arn})
        return base64.b64encode(raw.encode()).decode()

    def entry(self) -> dict[str, Any]:
        """As a ListMessageMoveTasks result (TaskHandle only while RUNNING, as AWS does)."""
        out: dict[str, Any] = {
            "Status": self.status,
            "SourceArn": self.source_arn,
            "ApproximateNumberOfMessagesMoved": self.moved,
            "ApproximateNumberOfMessagesToMove": self.to_move,
            "StartedTimestamp": self.started_ms,
        }
        if self.status == RUNNING:
            out["TaskHandle"] = self.handle
        if self.destination_arn is not None:
            out["DestinationArn"] = self.destination_arn
        if self.rate is not None:
            out["MaxNumberOfMessagesPerSecond"] = self.rate
        if self.failure_reason is not None:
            out["FailureReason"] = self.failure_reason
        return out


def _error(code: str, message: str) -> Exception:
    from moto.sqs.exceptions import SQSException

    return SQSException(code, message)


def _queue(arn: Any, parameter: str) -> tuple[Any, Any]:
    """The (backend, queue) an SQS queue ARN names."""
    from moto.sqs.exceptions import QueueDoesNotExist
    from moto.sqs.models import sqs_backends

    parts = arn.split(":") if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise _error("InvalidParameterValue", f"Value for parameter {parameter} is invalid.")
    _, _, _, region, account, name = parts
    backend = sqs_backends[account][region]
    try:
        queue = backend.get_queue(name)
    except QueueDoesNotExist:
        raise _error(
            "ResourceNotFoundException",
            f"The resource that you specified for the {parameter} parameter doesn't exist.",
        ) from None
    if queue.queue_arn != arn:  # e.g. another partition
        raise _error("ResourceNotFoundException", f"The {parameter} queue does not exist.")
    return backend, queue


def _registry(backend: Any) -> dict[str, list[_Task]]:
    tasks: dict[str, list[_Task]] | None = getattr(backend, _TASKS, None)
    if tasks is None:
        tasks = {}
        setattr(backend, _TASKS, tasks)
    return tasks


# --- the actions, as methods of moto's SQSResponse ----------------------------------------------


def start_message_move_task(self: Any) -> Any:
    from moto.core.responses import ActionResult

    source_arn = self._get_param("SourceArn")
    destination_arn = self._get_param("DestinationArn")
    rate = self._get_param("MaxNumberOfMessagesPerSecond")
    backend, source = _queue(source_arn, "SourceArn")
    if destination_arn is not None:
        _queue(destination_arn, "DestinationArn")
    if rate is not None and not 1 <= int(rate) <= MAX_RATE:
        raise _error(
            "InvalidParameterValue",
            f"Value for parameter MaxNumberOfMessagesPerSecond is invalid. "
            f"Reason: must be between 1 and {MAX_RATE}.",
        )
    if not backend.list_dead_letter_source_queues(source.name):
        raise _error(
            "InvalidParameterValue", "Source queue must be configured as a Dead Letter Queue."
        )
    with _lock:
        tasks = _registry(backend).setdefault(source_arn, [])
        if any(t.status in _ACTIVE for t in tasks):
            raise _error(
                "UnsupportedOperation",
                "There is already a task running. Only one active task is allowed for each "
                "source queue arn at a given time.",
            )
        task = _Task(
            task_id=str(uuid.uuid4()),
            source_arn=source_arn,
            destination_arn=destination_arn,
            rate=None if rate is None else int(rate),
            to_move=int(source.approximate_number_of_messages),
            started_ms=int(time.time() * 1000),
        )
        tasks.append(task)
        _live.add(task)
    threading.Thread(
        target=_run, args=(task, backend, source.name), name="sqs-message-move", daemon=True
    ).start()
    return ActionResult({"TaskHandle": task.handle})


def list_message_move_tasks(self: Any) -> Any:
    from moto.core.responses import ActionResult

    source_arn = self._get_param("SourceArn")
    wanted = self._get_param("MaxResults")
    limit = 1 if wanted is None else int(wanted)
    if not 1 <= limit <= _MAX_LISTED:
        raise _error(
            "InvalidParameterValue",
            f"Value for parameter MaxResults is invalid. Reason: must be between 1 and "
            f"{_MAX_LISTED}.",
        )
    backend, _ = _queue(source_arn, "SourceArn")
    with _lock:
        tasks = list(_registry(backend).get(source_arn, []))
        results = [task.entry() for task in reversed(tasks)][:limit]  # most recent first
    return ActionResult({"Results": results})


def cancel_message_move_task(self: Any) -> Any:
    from moto.core.responses import ActionResult

    handle = self._get_param("TaskHandle")
    missing = _error("ResourceNotFoundException", "The task handle does not name a task.")
    try:
        named = json.loads(base64.b64decode(str(handle), validate=True))
        task_id, source_arn = named["taskId"], named["sourceArn"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise missing from None
    backend, _ = _queue(source_arn, "SourceArn")
    with _lock:
        task = next(
            (t for t in _registry(backend).get(source_arn, []) if t.task_id == task_id), None
        )
        if task is None:
            raise missing
        if task.status != RUNNING:
            raise _error(
                "UnsupportedOperation",
                f"Only a RUNNING task can be cancelled; this one is {task.status}.",
            )
        task.status = CANCELLING
        task.cancel.set()
        moved = task.moved
    return ActionResult({"ApproximateNumberOfMessagesMoved": moved})


_ACTIONS = {
    "start_message_move_task": start_message_move_task,
    "list_message_move_tasks": list_message_move_tasks,
    "cancel_message_move_task": cancel_message_move_task,
}


# --- the task ----------------------------------------------------------------------------------


def _destination(task: _Task, backend: Any, source_name: str) -> tuple[Any, str]:
    """The (backend, queue name) the task moves to."""
    if task.destination_arn is not None:
        to_backend, queue = _queue(task.destination_arn, "DestinationArn")
        return to_backend, str(queue.name)
    sources = backend.list_dead_letter_source_queues(source_name)
    if len(sources) != 1:
        raise _MoveFailed(
            "CouldNotDetermineMessageSource: without a DestinationArn each message goes back "
            f"to the queue it came from, which is not recorded, and {len(sources)} queues "
            "use this queue as their dead-letter queue"
        )
    return backend, str(sources[0].name)


class _MoveFailed(Exception):
    pass


def _run(task: _Task, backend: Any, source_name: str) -> None:
    in_hand: list[Any] = []
    try:
        to_backend, destination = _destination(task, backend, source_name)
        began = time.monotonic()
        while task.moved < task.to_move and not task.cancel.is_set():
            count = min(_BATCH, task.to_move - task.moved, task.rate or _BATCH)
            hide = _HIDE_SECONDS + (count // task.rate if task.rate else 0)
            in_hand = list(backend.receive_message(source_name, count, 0, hide, ["All"]))
            if not in_hand:
                break  # the source is empty (or all of it is in flight)
            while in_hand:
                if task.rate is not None:
                    due = began + task.moved / task.rate
                    task.cancel.wait(max(0.0, due - time.monotonic()))
                if task.cancel.is_set():
                    break
                message = in_hand[0]
                to_backend.send_message(
                    destination,
                    message.body,
                    message_attributes=copy.deepcopy(message.message_attributes),
                    system_attributes=copy.deepcopy(message.system_attributes) or None,
                )
                backend.delete_message(source_name, message.receipt_handle)
                in_hand.pop(0)
                with _lock:
                    task.moved += 1
        _release(backend, source_name, in_hand)  # before the status says the task is over
        _finish(task, CANCELLED if task.cancel.is_set() else COMPLETED)
    except Exception as err:  # e.g. a queue deleted (or moto reset) under the task
        _release(backend, source_name, in_hand)
        _finish(task, FAILED, str(err) if isinstance(err, _MoveFailed) else _describe(err))


def _describe(err: Exception) -> str:
    code = getattr(err, "code", None)
    message = getattr(err, "message", None) or str(err)
    return f"{code or type(err).__name__}: {message}"


def _release(backend: Any, source_name: str, messages: list[Any]) -> None:
    """Make the messages received but not moved visible again on the source."""
    for message in messages:
        try:
            backend.change_message_visibility(source_name, message.receipt_handle, 0)
        except Exception:  # noqa: S112 - gone with its queue: nothing left to release
            continue


def _finish(task: _Task, status: str, reason: str | None = None) -> None:
    with _lock:
        task.status = status
        task.failure_reason = reason
        _live.discard(task)


# --- install / uninstall -----------------------------------------------------------------------


def install() -> None:
    """Add the three actions to moto's SQSResponse (idempotent)."""
    from moto.sqs.responses import SQSResponse

    for name, action in _ACTIONS.items():
        setattr(SQSResponse, name, action)


def uninstall() -> None:
    """Remove them, and stop every running task."""
    from moto.sqs.responses import SQSResponse

    with _lock:
        for task in _live:
            task.cancel.set()
    for name in _ACTIONS:
        if SQSResponse.__dict__.get(name) is _ACTIONS[name]:
            delattr(SQSResponse, name)
