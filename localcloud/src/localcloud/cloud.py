"""The embedded local cloud: moto on 127.0.0.1 running the project's own templates, the local
Lambda runtime, SQS pollers with AWS semantics, and (unless an external platform is named) the
platform simulator with its consumers."""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from deploytools import bundle
from localcloud import access, deploy
from localcloud.calls import ESM, PLATFORM
from localcloud.control import ControlServer
from localcloud.faults import Faults, FaultSpecError, FaultSwitch
from localcloud.moto_server import MotoServer
from localcloud.platform_process import PlatformProcess
from localcloud.pollers import EventSourcePollers
from localcloud.xray_daemon import SegmentDocument, XRayDaemon

STATE_FILE = Path(os.environ.get("INGEST_STATE_DIR", Path.home() / ".cache" / "gro-ingest")) / (
    "local-cloud.json"
)
PLATFORM_CLIENT_SECRET = "gro-publisher-platform-client"  # noqa: S105 - a secret's name
CLIENT_ID = "gro-ingest-pipeline"


@dataclass(frozen=True)
class ExternalPlatform:
    """A platform speaking platform-api.md somewhere on 127.0.0.1, instead of the simulator."""

    url: str
    token_url: str
    client_id: str
    client_secret: str


def write_state(state: dict[str, Any]) -> None:
    """Write the state file whole (a reader never sees half of it)."""
    STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
    partial = STATE_FILE.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(state))
    partial.replace(STATE_FILE)


class LocalCloud:
    """Start, deploy and run the whole pipeline on 127.0.0.1."""

    def __init__(
        self,
        *,
        consumers: int = 2,
        port: int = 0,
        log_file: IO[str] | None = None,
        external: ExternalPlatform | None = None,
        say: Callable[[str], None] = lambda _: None,
        faults: Faults | None = None,
    ) -> None:
        self._consumers = consumers
        self._port = port
        self._log_file = log_file
        self._log_lock = threading.Lock()
        self._metrics: dict[str, dict[str, float]] = {}
        self.external = external
        self.say = say
        self.moto: MotoServer | None = None
        # the platform's IAM user's key: the simulator invokes enrichment and publishes consumed
        # notices with it (localcloud.access)
        self.platform_key: access.AccessKey | None = None
        self.platform: PlatformProcess | None = None
        self.pollers: EventSourcePollers | None = None
        self.xray: XRayDaemon | None = None
        self.outputs: dict[str, str] = {}
        self._sync_stop = threading.Event()
        self._sync_thread: threading.Thread | None = None
        if external is not None and faults is not None and faults.platform != "up":
            raise FaultSpecError("platform faults need the platform simulator")
        self.faults = FaultSwitch(faults)
        self.control: ControlServer | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start moto and the runtime, the platform, deploy every stack, start the pollers."""
        # The functions trace for real: their SDK (and the runtime, for the function segments)
        # sends to this daemon, which stores the segments in moto's X-Ray.
        self.xray = XRayDaemon(self._put_trace_segments)
        self.xray.start()
        self.moto = MotoServer(
            self._port,
            runtime_path=[bundle.runtime_libraries()],
            log_sink=self._log_line,
            # up to 4 concurrent invocations per function: Lambda scales a function out to
            # meet its callers, and with 2 the platform's 8 concurrent enrichments queued for
            # a container (the last third of a 10,000-record run went at ~24 records/s)
            max_containers=4,
            faults=self.faults,
            xray_daemon_address=self.xray.address,
        )
        self.moto.start()
        self.say(f"local cloud on {self.moto.endpoint}")
        # before the deploy, whose parameters name it (deploy.LOCAL_PARAMETERS)
        self.platform_key = access.create_platform_identity(self.client("iam"))
        if self.external is None:
            secret = secrets.token_urlsafe(24)
            # the platform is another system: a process of its own (localcloud.platform_process)
            self.platform = PlatformProcess(
                endpoint=self.moto.endpoint,
                region=self.moto.region,
                key=self.platform_key,
                client_id=CLIENT_ID,
                client_secret=secret,
                consumers=self._consumers,
                faults=self.faults,
            )
            self.platform.start()
            creds = ExternalPlatform(self.platform.url, self.platform.token_url, CLIENT_ID, secret)
            self.say(f"platform simulator on {self.platform.url} ({self._consumers} consumers)")
        else:
            creds = self.external
        for stack in deploy.STACKS:
            params = (
                {"PlatformUrl": creds.url, "TokenUrl": creds.token_url}
                if stack == "publisher"
                else {}
            )
            outputs = deploy.deploy(self.client, stack, parameters=params, log=self._log_deploy)
            self.outputs.update(outputs)
            if stack == "foundation" and self.platform is not None:
                self.platform.set_topic(outputs["EventsConsumedTopicArn"])
            if stack == "publisher":
                self.client("secretsmanager").put_secret_value(
                    SecretId=PLATFORM_CLIENT_SECRET,
                    SecretString=json.dumps(
                        {"client_id": creds.client_id, "client_secret": creds.client_secret}
                    ),
                )
        self.say("deployed: foundation, splitter, transformer, publisher, reaper")
        assert self.moto.runtime is not None
        self.pollers = EventSourcePollers(
            # Lambda's pollers: their receives and deletes are billed as SQS requests
            sqs=self.moto.client("sqs", caller=ESM),
            lambda_client=self.client("lambda"),
            runtime=self.moto.runtime,
            spec_for=self.moto.spec_for,
            faults=self.faults,
        )
        self.pollers.sync()
        # a service redeployed from another terminal gets its mappings polled again
        self._sync_thread = threading.Thread(target=self._keep_synced, daemon=True)
        self._sync_thread.start()
        self.control = ControlServer(
            self.faults,
            platform_simulated=self.platform is not None,
            metrics=self.metrics,
            usage=self.moto.usage,
            flush=self.xray.flush,
        )
        self.control.start()
        if self.faults.get().specs():
            self.say(f"faults in force: {' '.join(self.faults.get().specs())}")

    def stop(self) -> None:
        """Stop everything, in the reverse order."""
        self._sync_stop.set()
        if self.control is not None:
            self.control.stop()
        if self._sync_thread is not None:
            self._sync_thread.join(timeout=5)
        if self.pollers is not None:
            self.pollers.stop()
        if self.platform is not None:
            self.platform.stop()
        if self.xray is not None:
            self.xray.stop()
            lost = self.xray.stats()["lost"]
            if lost:
                self.say(f"x-ray daemon: {lost} trace documents could not be stored")
        if self.moto is not None:
            self.moto.stop()

    def __enter__(self) -> LocalCloud:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The moto server's URL."""
        assert self.moto is not None
        return self.moto.endpoint

    def client(self, service: str) -> Any:
        """A boto3 client on the local cloud (the account's root)."""
        assert self.moto is not None
        return self.moto.client(service)

    def platform_client(self, service: str) -> Any:
        """A boto3 client on the local cloud signed by the platform's principal."""
        assert self.moto is not None and self.platform_key is not None
        return self.moto.client(service, self.platform_key, caller=PLATFORM)

    def write_state_file(self) -> None:
        """Tell other `ingest` commands where this cloud is."""
        state: dict[str, Any] = {"endpoint": self.endpoint, "pid": os.getpid()}
        if self.platform is not None:
            state["platform_url"] = self.platform.url
        if self.control is not None:
            state["control_url"] = self.control.url
        write_state(state)

    # -- wiring -----------------------------------------------------------------------------

    def _keep_synced(self) -> None:
        while not self._sync_stop.wait(2.0):
            try:
                if self.pollers is not None:
                    self.pollers.sync()
            except Exception as err:  # keep polling whatever one sync met
                self._log_line("localcloud", json.dumps({"sync_error": type(err).__name__}))

    def _put_trace_segments(self, documents: list[SegmentDocument]) -> dict[str, Any]:
        assert self.moto is not None
        self.moto.usage.traced(d.trace_id for d in documents)  # X-Ray bills traces recorded
        return self.moto.put_trace_segments([d.text for d in documents])

    def _log_deploy(self, line: str) -> None:
        self._log_line("deploy", json.dumps({"message": line}))

    def metrics(self) -> dict[str, dict[str, float]]:
        """Every embedded metric the functions emitted since this cloud started, summed per
        service (what CloudWatch would have made of their EMF log lines)."""
        with self._log_lock:
            return {service: dict(names) for service, names in self._metrics.items()}

    def _tally(self, record: dict[str, Any]) -> None:
        """An EMF line (`_aws.CloudWatchMetrics`): add its values to the totals."""
        service = str(record.get("service", "?"))
        for directive in record["_aws"].get("CloudWatchMetrics", []):
            for metric in directive.get("Metrics", []):
                value = record.get(metric.get("Name"))
                values = value if isinstance(value, list) else [value]
                total = sum(v for v in values if isinstance(v, int | float))
                with self._log_lock:
                    names = self._metrics.setdefault(service, {})
                    names[metric["Name"]] = names.get(metric["Name"], 0) + total

    def _log_line(self, function: str, line: str) -> None:
        line = line.rstrip("\n")
        if not line:
            return
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                record = {"message": record}
        except ValueError:
            record = {"message": line}
        if isinstance(record.get("_aws"), dict):
            self._tally(record)
        if self.moto is not None and function not in ("deploy", "localcloud"):
            self.moto.usage.logged(function, line, record)  # CloudWatch Logs ingestion
        if self._log_file is None:
            return
        record.setdefault("function", function)
        with self._log_lock:
            self._log_file.write(json.dumps(record) + "\n")
            self._log_file.flush()
