"""One local Lambda "container": loads a handler and serves invocations over a private pipe."""

# Runs as `python -S container.py` with the deployment package on PYTHONPATH: stdlib only, and no
# side effects at import time (lambda_runtime imports the protocol constants from here).

from __future__ import annotations

import decimal
import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, BinaryIO

# Written to the log stream (fds 1/2) after each invocation so the parent can cut logs per request.
END_MARKER = "\x1elocalcloud-end\x1e"


class LambdaContext:
    """The attributes the AWS Python runtime (awslambdaric) puts on `context`."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = os.environ["AWS_LAMBDA_FUNCTION_VERSION"]
        self.invoked_function_arn = os.environ["LOCALCLOUD_FUNCTION_ARN"]
        # awslambdaric reads these straight from the environment, so they are strings on AWS too.
        self.memory_limit_in_mb = os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"]
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.aws_request_id = request_id
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the runtime kills this invocation."""
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _decimal_default(value: object) -> float:
    # awslambdaric serialises Decimal (as returned by DynamoDB) as a number; mirror it.
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _error(error_type: str, message: str, exc: BaseException | None = None) -> dict[str, Any]:
    stack = traceback.format_tb(exc.__traceback__) if exc is not None else []
    return {"ok": False, "errorType": error_type, "errorMessage": message, "stackTrace": stack}


def _log_error(response: dict[str, Any], exc: BaseException | None) -> None:
    # Like the AWS runtime: an "[ERROR]" line plus the traceback go to the function's log.
    print(f"[ERROR] {response['errorType']}: {response['errorMessage']}", file=sys.stderr)
    if exc is not None:
        traceback.print_exception(exc, file=sys.stderr)


def _load_handler() -> tuple[Callable[[Any, LambdaContext], Any] | None, dict[str, Any]]:
    module_name, _, func_name = os.environ["_HANDLER"].rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        message = f"Unable to import module '{module_name}': {exc}"
        response = _error("Runtime.ImportModuleError", message, exc)
        _log_error(response, exc)
        return None, response
    handler = getattr(module, func_name, None)
    if not callable(handler):
        message = f"Handler '{func_name}' missing on module '{module_name}'"
        response = _error("Runtime.HandlerNotFound", message)
        _log_error(response, None)
        return None, response
    return handler, {"ok": True, "ready": True}


# Fault kill=splitter:N (localcloud.faults): the step dies once it has sent N records. Counted
# where every SDK call passes (botocore's BaseClient._make_api_call), so no service code knows.
_KILL: dict[str, Any] = {"after": None, "sent": 0, "out": None}
_KILL_LOCK = threading.Lock()


def _die() -> None:
    _end_of_logs()
    _send(_KILL["out"], json.dumps({"ok": False, "killed": True}))
    os._exit(137)


def _arm_kill(after: int | None, out: BinaryIO) -> None:
    _KILL.update(after=after, sent=0, out=out)
    if after is None:
        return
    import botocore.client  # the runtime's own, like boto3

    client = botocore.client.BaseClient
    if getattr(client, "_localcloud_counting", False):
        return
    original = client._make_api_call

    def counting(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation == "SendMessageBatch" and _KILL["after"] is not None:
            with _KILL_LOCK:  # batches go out from several threads at once: count first
                _KILL["sent"] += len(params.get("Entries", []))
                if _KILL["sent"] > _KILL["after"]:
                    _die()
        return original(self, operation, params)

    client._make_api_call = counting
    client._localcloud_counting = True


def _invoke(handler: Callable[[Any, LambdaContext], Any], request: dict[str, Any]) -> str:
    trace_header = request.get("trace_header")
    if trace_header:
        os.environ["_X_AMZN_TRACE_ID"] = trace_header
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    context = LambdaContext(request["request_id"], request["deadline_ms"])
    try:
        result = handler(request["event"], context)
    except Exception as exc:
        response = _error(type(exc).__name__, str(exc), exc)
        _log_error(response, exc)
        return json.dumps(response)
    try:
        return json.dumps({"ok": True, "result": result}, default=_decimal_default)
    except (TypeError, ValueError) as exc:
        response = _error("Runtime.MarshalError", f"Unable to marshal response: {exc}", exc)
        _log_error(response, exc)
        return json.dumps(response)


def _end_of_logs() -> None:
    sys.stdout.flush()
    sys.stderr.write(f"{END_MARKER}\n")
    sys.stderr.flush()


def _send(out: BinaryIO, line: str) -> None:
    out.write(line.encode() + b"\n")
    out.flush()


def main() -> int:
    """Serve newline-delimited JSON requests from the original stdin until it closes."""
    # Keep the protocol on private copies of fds 0/1; the handler's stdin is /dev/null and its
    # stdout joins stderr, so nothing it prints can corrupt the protocol stream.
    requests = os.fdopen(os.dup(0), "rb")
    responses = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)

    handler, ready = _load_handler()
    _end_of_logs()
    _send(responses, json.dumps(ready))
    if handler is None:
        return 1
    for line in requests:
        request = json.loads(line)
        if "kill_after_records" in request:
            _arm_kill(request["kill_after_records"], responses)
        response = _invoke(handler, request)
        _end_of_logs()
        _send(responses, response)
    return 0


if __name__ == "__main__":
    sys.exit(main())
