"""The platform simulator in a process of its own.

The Data Exchange platform is another system: on AWS it runs on its own machines and reaches the
pipeline over the network, as its own principal. Locally, the simulator used to share the
`ingest` process, and so the one core that process can use with moto's main server; measured,
it was about a tenth of that core (its HTTP server, its consumers' enrichment invokes and consumed
notices through boto3). Here it runs in a child process and talks to the local cloud over HTTP
only, as the real one does:

- the child runs `PlatformSimulator` unchanged, its consumers invoking enrichment and publishing
  consumed notices with the platform's own IAM key (`localcloud.access`);
- the faults in force follow the local cloud's `FaultSwitch`: every change is sent to the child
  on its stdin and acknowledged before `FaultSwitch.set` returns, so a fault is in force for the
  next request after `ingest fault` answers;
- the events-consumed topic is sent once the foundation is deployed (the simulator starts before:
  its URL is a deploy parameter);
- `PlatformProcess` offers what the local cloud's users read of the simulator (`url`,
  `token_url`, `stats()`, `wait_idle()`), over the simulator's own stats endpoint.

The child exits when its stdin closes: when the local cloud stops, or dies.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any

from localcloud import access, child
from localcloud.faults import FaultSwitch, parse
from localcloud.platform import STATS_PATH, PlatformStats

_IDLE_POLL_SECONDS = 0.05
# Events each consumer reads at a time: a real platform's consumers are concurrent, and one
# event at a time made the simulator, not the pipeline, the slowest stage of a local run.
CONSUMER_WORKERS = 4


class PlatformProcess:
    """The simulator in a child process, seen from the local cloud."""

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        key: access.AccessKey,
        client_id: str,
        client_secret: str,
        consumers: int,
        faults: FaultSwitch,
    ) -> None:
        self._config = {
            "endpoint": endpoint,
            "region": region,
            "key_id": key.key_id,
            "secret": key.secret,
            "client_id": client_id,
            "client_secret": client_secret,
            "consumers": consumers,
        }
        self._faults = faults
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()  # one command at a time on the pipe
        self.url = ""
        self.pid = 0
        # no proxy: this traffic must stay on loopback whatever HTTP(S)_PROXY says
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def token_url(self) -> str:
        return self.url + "/oauth2/token"

    def start(self) -> None:
        """Start the child, hand it its configuration, and wait for its URL."""
        self._process = child.start("localcloud.platform_process")
        self.pid = self._process.pid
        self.url = self._command({**self._config, "faults": self._faults.get().specs()})
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError("the platform simulator's process did not start")
        self._faults.subscribe(self._faults_changed)

    def stop(self) -> None:
        """Close its stdin (it stops its server and consumers and exits); make sure it did."""
        process, self._process = self._process, None
        if process is None:
            return
        self._faults.unsubscribe(self._faults_changed)
        child.stop(process)

    def set_topic(self, topic_arn: str) -> None:
        """Where the consumed notices go."""
        self._command({"topic": topic_arn})

    def stats(self, *, with_ids: bool = True) -> PlatformStats:
        """What the platform saw and did (`with_ids=False`: without every accepted id)."""
        document = self._stats(with_ids)
        names = {f.name for f in dataclasses.fields(PlatformStats)}
        return PlatformStats(**{k: v for k, v in document.items() if k in names})

    def wait_idle(self, timeout: float) -> bool:
        """True once no accepted event is pending with any consumer (notices included)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._stats(False).get("idle"):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_IDLE_POLL_SECONDS)

    def _stats(self, with_ids: bool) -> dict[str, Any]:
        query = "" if with_ids else "?ids=0"
        with self._opener.open(self.url + STATS_PATH + query, timeout=30) as answer:
            document: dict[str, Any] = json.loads(answer.read())
        return document

    def _faults_changed(self, specs: list[str]) -> None:
        self._command({"faults": specs})

    def _command(self, command: dict[str, Any]) -> str:
        with self._lock:
            process = self._process
            if process is None or process.stdin is None or process.stdout is None:
                raise RuntimeError("the platform simulator's process is not running")
            process.stdin.write(json.dumps(command) + "\n")
            process.stdin.flush()
            return process.stdout.readline().strip()


# --- in the child ---------------------------------------------------------------------------------


def main() -> None:
    """Run the simulator until stdin closes; first line: the configuration, then commands."""
    import boto3
    from botocore.config import Config

    from localcloud.calls import LOCALCLOUD, PLATFORM
    from localcloud.platform import PlatformSimulator

    config = json.loads(sys.stdin.readline())
    switch = FaultSwitch(parse(config["faults"]))
    region, endpoint = config["region"], config["endpoint"]
    # a synchronous Invoke may last up to Lambda's 900 s limit: never time out before that
    retries = Config(read_timeout=905, retries={"mode": "standard", "total_max_attempts": 2})
    platform = boto3.session.Session(
        aws_access_key_id=config["key_id"],
        aws_secret_access_key=config["secret"],
        region_name=region,
    )
    signed = retries.merge(Config(user_agent_appid=PLATFORM))
    lambda_client = platform.client("lambda", endpoint_url=endpoint, config=signed)
    sns = platform.client("sns", endpoint_url=endpoint, config=signed)
    topic: list[str] = []

    def enrich(event_id: str) -> dict[str, Any]:
        answer = lambda_client.invoke(
            FunctionName="gro-publisher-enrich", Payload=json.dumps({"id": event_id}).encode()
        )
        body: dict[str, Any] = json.loads(answer["Payload"].read())
        if answer.get("FunctionError"):
            raise RuntimeError(f"enrich failed: {body.get('errorType')}")
        return body

    def publish_consumed(event_id: str) -> None:
        if not topic:  # a foundation deployed by someone else: its export says where
            cloudformation = boto3.session.Session(
                aws_access_key_id="testing",
                aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
                region_name=region,
            ).client(
                "cloudformation",
                endpoint_url=endpoint,
                config=Config(user_agent_appid=LOCALCLOUD),
            )
            pages = cloudformation.get_paginator("list_exports").paginate()
            name = "gro-foundation-EventsConsumedTopicArn"
            topic.append(
                next(e["Value"] for page in pages for e in page["Exports"] if e["Name"] == name)
            )
        sns.publish(TopicArn=topic[0], Message=json.dumps({"id": event_id}))

    simulator = PlatformSimulator(
        client_id=config["client_id"],
        client_secret=config["client_secret"],
        consumers=int(config["consumers"]),
        enrich=enrich,
        publish_consumed=publish_consumed,
        faults=switch,
        consumer_workers=CONSUMER_WORKERS,
    )
    simulator.start()
    print(simulator.url, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if "faults" in command:
            switch.set(parse(command["faults"]))
        if "topic" in command:
            topic[:] = [command["topic"]]
        print("ok", flush=True)
    simulator.stop()


if __name__ == "__main__":
    main()
