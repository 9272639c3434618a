"""A small local Lambda runtime: each function runs in its own pool of subprocess containers."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localcloud import function_segments
from localcloud.calls import Usage
from localcloud.container import END_MARKER
from localcloud.faults import FaultSwitch

LogSink = Callable[[str, str], None]

_CONTAINER_PY = Path(__file__).with_name("container.py")
_INIT_TIMEOUT_S = 10.0  # AWS allows a function's init phase 10 s
_LOG_GRACE_S = 0.5  # how long to wait for a response's log lines, which travel on another pipe
_REAP_S = 2.0  # bound on waiting for a killed container and its reader threads


@dataclass(frozen=True)
class FunctionSpec:
    """What is needed to run one deployed function."""

    name: str
    handler: str
    env: dict[str, str]
    timeout_s: int
    memory_mb: int
    arn: str
    code_dir: Path
    architecture: str = "x86_64"


@dataclass(frozen=True)
class InvokeResult:
    """Outcome of one invocation, shaped like the Lambda Invoke API's."""

    payload: bytes
    error_type: str | None
    logs: str


def new_trace_header() -> str:
    """A fresh, sampled X-Ray trace header, as the Lambda service makes for an untraced call."""
    root = f"1-{int(time.time()):08x}-{secrets.token_hex(12)}"
    return f"Root={root};Parent={secrets.token_hex(8)};Sampled=1"


def _discard(_function: str, _line: str) -> None:
    return None


class _Container:
    """One `python -S container.py` process serving a single function spec."""

    def __init__(self, spec: FunctionSpec, proc: subprocess.Popen[bytes], sink: LogSink) -> None:
        self.spec = spec
        self.proc = proc
        self._sink = sink
        self._responses: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._logs = threading.Condition()
        self._lines: list[str] = []
        self._markers_seen = 0
        self._markers_expected = 0
        self._eof = False
        self.timed_out = False
        self.elapsed_s = 0.0  # the last exchange: request written to response read
        self._readers = [
            threading.Thread(target=self._read_responses, daemon=True),
            threading.Thread(target=self._read_logs, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc.poll() is None

    def _read_responses(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._responses.put(json.loads(line))
            except ValueError:
                break
        self._responses.put(None)

    def _read_logs(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            text, marker, _ = raw.decode("utf-8", "replace").rstrip("\r\n").partition(END_MARKER)
            with self._logs:
                if text:
                    self._lines.append(text)
                if marker:
                    self._markers_seen += 1
                    self._logs.notify_all()
            if text:
                # A broken sink must not break the function.
                with contextlib.suppress(Exception):
                    self._sink(self.spec.name, text)
        with self._logs:
            self._eof = True
            self._logs.notify_all()

    def exchange(self, request: dict[str, Any] | None, timeout_s: float) -> dict[str, Any] | None:
        """Send a request (None: await the init report); None if no answer in time or it died."""
        with self._logs:
            self._markers_expected += 1
        started = time.perf_counter()
        if request is not None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps(request).encode() + b"\n")
                self.proc.stdin.flush()
            except OSError:
                return None
        try:
            response = self._responses.get(timeout=timeout_s)
        except queue.Empty:
            self.timed_out = True
            self.elapsed_s = timeout_s
            return None
        self.elapsed_s = time.perf_counter() - started
        if response is not None:
            with self._logs:
                self._logs.wait_for(
                    lambda: self._eof or self._markers_seen >= self._markers_expected, _LOG_GRACE_S
                )
        return response

    def take_logs(self) -> str:
        """Return and forget the log lines collected so far."""
        with self._logs:
            lines, self._lines = self._lines, []
        return "\n".join(lines)

    def kill(self) -> None:
        """Kill the process and wait (bounded) for its output to drain."""
        if self.alive():
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=_REAP_S)
        for reader in self._readers:
            reader.join(timeout=_REAP_S)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass


@dataclass
class _Pool:
    idle: list[_Container] = field(default_factory=list)
    size: int = 0


SPLIT_FUNCTION = "gro-splitter-split"
SPARED_FROM_DELIVERY = 3  # fault crash=SERVICE:P never crashes a message's third delivery


class LambdaRuntime:
    """Runs deployed functions in per-function pools of subprocess containers, like Lambda does."""

    def __init__(
        self,
        *,
        endpoint: str,
        python: str = sys.executable,
        runtime_path: Sequence[Path] = (),
        log_sink: LogSink | None = None,
        max_containers: int = 2,
        faults: FaultSwitch | None = None,
        xray_daemon_address: str | None = None,
        usage: Usage | None = None,
        service_endpoints: Mapping[str, str] | None = None,
    ) -> None:
        self._endpoint = endpoint
        # services served elsewhere than `endpoint` (localcloud.dynamodb_process), as
        # botocore's per-service endpoint variables: {"dynamodb": URL} -> AWS_ENDPOINT_URL_DYNAMODB
        self._service_endpoints = {
            f"AWS_ENDPOINT_URL_{name.upper()}": url
            for name, url in (service_endpoints or {}).items()
        }
        # what each invocation lasted, per function (localcloud.calls: Lambda's GB-seconds)
        self._usage = usage
        # Where the functions' X-Ray SDK sends its subsegments, and this runtime the function
        # segments the Lambda service would emit (none without a daemon).
        self._xray_address = xray_daemon_address
        self._segments = (
            function_segments.SegmentSender(xray_daemon_address) if xray_daemon_address else None
        )
        self._python = python
        self._runtime_path = [str(p) for p in runtime_path]
        self._sink = log_sink or _discard
        self._max = max(1, max_containers)
        self._faults = faults or FaultSwitch()
        self._cond = threading.Condition()
        self._pools: dict[str, _Pool] = {}
        self._containers: set[_Container] = set()
        self._closed = False
        self._code_root = Path(tempfile.mkdtemp(prefix="localcloud-code-"))
        self._code_lock = threading.Lock()
        self._code_dirs: dict[str, Path] = {}

    def invoke(
        self, spec: FunctionSpec, event: Any, *, trace_header: str | None = None
    ) -> InvokeResult:
        """Run one invocation of `spec` in a warm container, or a new one (cold start)."""
        if self._segments is None:
            return self._invoke(spec, event, trace_header)
        # As the Lambda service does: the invocation's segment, the Parent of its trace header.
        segment = function_segments.begin(spec.name, spec.arn, trace_header)
        result = self._invoke(spec, event, segment.header)
        if segment.sampled:
            end = time.time()
            self._segments.send(segment.document(end_time=end, error_type=result.error_type))
        return result

    def _invoke(self, spec: FunctionSpec, event: Any, trace_header: str | None) -> InvokeResult:
        request_id = str(uuid.uuid4())
        event, crash = self._crash(spec, event)
        container, cold = self._acquire(spec)
        init_s: float | None = None
        try:
            if cold:
                ready = container.exchange(None, _INIT_TIMEOUT_S)
                init_s = container.elapsed_s
                if ready is None or not ready.get("ok"):
                    container.kill()
                    self._count(spec, None, init_s, error=True)
                    return self._failure(request_id, ready, container, "INIT")
            deadline_ms = int(time.time() * 1000) + spec.timeout_s * 1000
            request = {
                "event": event,
                "request_id": request_id,
                "deadline_ms": deadline_ms,
                # Lambda always gives a traced function a trace header, starting a trace when the
                # caller sent none; without one the X-Ray SDK drops every subsegment.
                "trace_header": trace_header or new_trace_header(),
            }
            if spec.name == SPLIT_FUNCTION:
                request["kill_after_records"] = self._faults.take_kill()
            response = container.exchange(request, spec.timeout_s)
            error = response is None or crash is not None or not response.get("ok")
            self._count(spec, container.elapsed_s, init_s, error=error)
            if response is not None and response.get("killed"):
                # fault kill=splitter:N: the container died mid-step, as at a Lambda timeout
                container.timed_out = True
                response = None
            if response is None:
                container.kill()
                return self._failure(request_id, None, container, "INVOKE")
            if crash is not None:
                body = {"errorType": "InjectedCrash", "errorMessage": crash, "stackTrace": []}
                return self._failure(request_id, body, container, "INVOKE")
            if not response.get("ok"):
                return self._failure(request_id, response, container, "INVOKE")
            payload = json.dumps(response.get("result")).encode()
            return InvokeResult(payload=payload, error_type=None, logs=container.take_logs())
        finally:
            self._release(container)

    def _count(
        self, spec: FunctionSpec, duration_s: float | None, init_s: float | None, *, error: bool
    ) -> None:
        if self._usage is not None:
            self._usage.invoked(
                spec.name,
                memory_mb=spec.memory_mb,
                architecture=spec.architecture,
                duration_s=duration_s,
                init_s=init_s,
                error=error,
            )

    def _crash(self, spec: FunctionSpec, event: Any) -> tuple[Any, str | None]:
        """Fault `crash=SERVICE:P`: the handler gets the first half of its batch, then fails."""
        service = spec.name.split("-")[1] if spec.name.count("-") >= 2 else ""
        share = self._faults.get().crash.get(service)
        records = event.get("Records") if isinstance(event, dict) else None
        if not share or not isinstance(records, list) or not records:
            return event, None
        # a message on its third delivery or later is spared: the scenario is a crash that the
        # retries outlast, not the redrive policy's silent move (`kill` and the DLQ cover that)
        deliveries = [
            int(r.get("attributes", {}).get("ApproximateReceiveCount", "1") or 1)
            for r in records
            if isinstance(r, dict)
        ]
        if max(deliveries, default=1) >= SPARED_FROM_DELIVERY:
            return event, None
        if not self._faults.chance(share):
            return event, None
        done = max(1, len(records) // 2)
        message = f"injected fault crash={service}:{share:g} after {done} of {len(records)} records"
        return {**event, "Records": records[:done]}, message

    def _failure(
        self, request_id: str, response: dict[str, Any] | None, container: _Container, phase: str
    ) -> InvokeResult:
        extra_log = ""
        if response is not None:
            error_type, message = str(response["errorType"]), str(response["errorMessage"])
        elif container.timed_out:
            # We killed it at its deadline: AWS's "Task timed out" is reported as Sandbox.Timedout.
            limit = _INIT_TIMEOUT_S if phase == "INIT" else float(container.spec.timeout_s)
            error_type = "Sandbox.Timedout"
            message = f"RequestId: {request_id} Error: Task timed out after {limit:.2f} seconds"
            extra_log = f"\n{message}"
        else:
            error_type = "Runtime.ExitError"
            message = (
                f"RequestId: {request_id} Error: Runtime exited with error: "
                f"exit status {container.proc.returncode}"
            )
        body = {
            "errorMessage": message,
            "errorType": error_type,
            "requestId": request_id,
            "stackTrace": (response or {}).get("stackTrace", []),
        }
        logs = (container.take_logs() + extra_log).strip("\n")
        return InvokeResult(payload=json.dumps(body).encode(), error_type=error_type, logs=logs)

    def _acquire(self, spec: FunctionSpec) -> tuple[_Container, bool]:
        stale: list[_Container] = []
        warm: _Container | None = None
        with self._cond:
            while warm is None:
                if self._closed:
                    raise RuntimeError("LambdaRuntime has been shut down")
                pool = self._pools.setdefault(spec.name, _Pool())
                while pool.idle and warm is None:
                    candidate = pool.idle.pop()
                    if candidate.spec == spec and candidate.alive():
                        warm = candidate
                    else:
                        # Redeployed (new code or configuration) or dead: retire it, as Lambda does.
                        stale.append(candidate)
                        self._containers.discard(candidate)
                        pool.size -= 1
                if warm is None and pool.size < self._max:
                    pool.size += 1
                    break
                if warm is None:
                    self._cond.wait(timeout=1.0)
        for container in stale:
            container.kill()
        if warm is not None:
            return warm, False
        try:
            container = self._start(spec)
        except BaseException:
            with self._cond:
                pool.size -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._containers.add(container)
        return container, True

    def _release(self, container: _Container) -> None:
        with self._cond:
            pool = self._pools.get(container.spec.name)
            keep = not self._closed and container.alive() and pool is not None
            if pool is not None and keep:
                pool.idle.append(container)
            else:
                self._containers.discard(container)
                if pool is not None:
                    pool.size -= 1
            self._cond.notify_all()
        if not keep:
            container.kill()

    def _start(self, spec: FunctionSpec) -> _Container:
        proc = subprocess.Popen(
            [self._python, "-S", str(_CONTAINER_PY)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._environment(spec),
            cwd=spec.code_dir,
        )
        return _Container(spec, proc, self._sink)

    def _environment(self, spec: FunctionSpec) -> dict[str, str]:
        arn_parts = spec.arn.split(":")
        region = (
            arn_parts[3]
            if len(arn_parts) > 3 and arn_parts[3]
            else os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        )
        stream = time.strftime("%Y/%m/%d") + f"/[$LATEST]{uuid.uuid4().hex}"
        # Nothing is inherited from this process: the function sees its deployed env plus what
        # the Lambda runtime defines (those win, as AWS reserves them).
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TZ": "UTC",
            **spec.env,
            "_HANDLER": spec.handler,
            "AWS_ENDPOINT_URL": self._endpoint,
            **self._service_endpoints,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            # Keep a developer's ~/.aws profiles out of the function, as on Lambda.
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{spec.name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": stream,
            "AWS_XRAY_DAEMON_ADDRESS": self._xray_address or "127.0.0.1:2000",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            # Not Lambda's: the SDK sends it in its User-Agent (`app/NAME`), which is how
            # localcloud.calls tells this function's AWS requests from everyone else's.
            "AWS_SDK_UA_APP_ID": spec.name,
            "LAMBDA_TASK_ROOT": str(spec.code_dir),
            "LOCALCLOUD_FUNCTION_ARN": spec.arn,
            "PYTHONPATH": os.pathsep.join([str(spec.code_dir), *self._runtime_path]),
            # Without this, container.py's own directory (this package) would be importable.
            "PYTHONSAFEPATH": "1",
            "PYTHONUNBUFFERED": "1",
        }

    def spec_from_moto(self, fn: Any) -> FunctionSpec:
        """Build a spec from a moto LambdaFunction, running the code bytes that were deployed."""
        digest = str(getattr(fn, "code_digest", "") or "")
        # moto's Invoke API asks for this on every call: hashing the zip each time is costly
        code_dir = self._code_dirs.get(digest) if digest else None
        if code_dir is None:
            # moto copies the zip into `code_bytes` at Create/UpdateFunctionCode
            code = bytes(getattr(fn, "code_bytes", b"") or b"") or self._code_from_s3(fn)
            code_dir = self._extract(code, digest)
        return FunctionSpec(
            name=str(fn.function_name),
            handler=str(fn.handler),
            env={str(k): str(v) for k, v in (fn.environment_vars or {}).items()},
            timeout_s=int(fn.timeout),
            memory_mb=int(fn.memory_size),
            arn=str(fn.function_arn),
            code_dir=code_dir,
            architecture=str((getattr(fn, "architectures", None) or ["x86_64"])[0]),
        )

    @staticmethod
    def _code_from_s3(fn: Any) -> bytes:
        # Only reached if moto could not read the S3 object at deploy time; read the named one now.
        from moto.s3.models import s3_backends

        bucket, key = fn.code.get("S3Bucket"), fn.code.get("S3Key")
        if not bucket or not key:
            raise ValueError(f"function {fn.function_name} has no deployed code")
        obj = s3_backends[fn.account_id][fn.partition].get_object(bucket, key)
        if obj is None:
            raise ValueError(f"function {fn.function_name}: s3://{bucket}/{key} not found")
        return bytes(obj.value)

    def _extract(self, code: bytes, digest: str = "") -> Path:
        target = self._code_root / hashlib.sha256(code).hexdigest()
        with self._code_lock:
            if not target.is_dir():
                staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self._code_root))
                with zipfile.ZipFile(io.BytesIO(code)) as archive:
                    archive.extractall(staging)  # zipfile strips ".." and absolute paths
                staging.rename(target)
        if digest:
            self._code_dirs[digest] = target  # only once it is there to run
        return target

    def shutdown(self) -> None:
        """Kill every container and delete the extracted code; the runtime cannot be reused."""
        with self._cond:
            self._closed = True
            containers = list(self._containers)
            self._containers.clear()
            self._pools.clear()
            self._cond.notify_all()
        for container in containers:
            container.kill()
        if self._segments is not None:
            self._segments.close()
        shutil.rmtree(self._code_root, ignore_errors=True)
