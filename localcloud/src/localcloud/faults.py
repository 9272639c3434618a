"""Fault injection on the local cloud: what an operator (or a test) can break on purpose, to
see the pipeline recover. Faults live in the local cloud's glue (the platform simulator, the
Lambda runtime, the pollers), never in a service's code path.

- `platform=down`: every POST /events answers 503; `platform=up`: it behaves again;
- `platform=flaky:P`: a share P of POST /events answer 500 or 429, at random; an event's third
  attempt in a row is spared, so the retries outlast the faults;
- `platform=accept-then-fail:P`: a share P of new events are stored by the platform and then
  answered 504, so the retry meets a 409;
- `crash=SERVICE:P`: a share P of SERVICE's queue invocations handle the first half of their
  batch, then fail (the whole batch comes back, as after any failed invocation); a message's
  third delivery is spared, so the retries outlast the crashes;
- `kill=splitter:N`: the next split step dies after sending N records, as a Lambda timeout
  would (once); `kill=splitter:N:always`: every one does (the file ends in quarantine);
- `duplicate=s3-events`: every "Object Created" notice is delivered twice;
- `duplicate=consumed`: every consumed notice is published twice.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

SERVICES = ("splitter", "transformer", "publisher", "reaper")
PlatformMode = Literal["up", "down", "flaky", "accept-then-fail"]


class FaultSpecError(ValueError):
    """A fault spec that does not parse; the message says which and what is expected."""


@dataclass(frozen=True)
class Faults:
    """Every fault in force (the default: none)."""

    platform: PlatformMode = "up"
    platform_rate: float = 0.0
    crash: dict[str, float] = field(default_factory=dict)
    kill_splitter_after: int | None = None
    kill_always: bool = False
    duplicate_s3_events: bool = False
    duplicate_consumed: bool = False

    def specs(self) -> list[str]:
        """The faults as the specs that set them."""
        out = []
        if self.platform in ("down", "up") and self.platform != "up":
            out.append("platform=down")
        elif self.platform in ("flaky", "accept-then-fail"):
            out.append(f"platform={self.platform}:{self.platform_rate:g}")
        out += [f"crash={service}:{p:g}" for service, p in sorted(self.crash.items())]
        if self.kill_splitter_after is not None:
            always = ":always" if self.kill_always else ""
            out.append(f"kill=splitter:{self.kill_splitter_after}{always}")
        if self.duplicate_s3_events:
            out.append("duplicate=s3-events")
        if self.duplicate_consumed:
            out.append("duplicate=consumed")
        return out


def _share(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"{spec}: {text!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise FaultSpecError(f"{spec}: {value:g} is not between 0 and 1")
    return value


def parse(specs: list[str], base: Faults | None = None) -> Faults:
    """`base` with each spec applied in turn; raises FaultSpecError naming a bad one."""
    faults = base or Faults()
    for spec in specs:
        kind, eq, value = spec.partition("=")
        if not eq:
            raise FaultSpecError(f"{spec}: expected KIND=VALUE (see `ingest fault --help`)")
        if kind == "platform":
            mode, _, rate = value.partition(":")
            if mode in ("up", "down") and not rate:
                faults = replace(faults, platform=mode, platform_rate=0.0)  # type: ignore[arg-type]
            elif mode in ("flaky", "accept-then-fail") and rate:
                faults = replace(faults, platform=mode, platform_rate=_share(rate, spec))  # type: ignore[arg-type]
            else:
                raise FaultSpecError(
                    f"{spec}: expected platform=down, platform=up, platform=flaky:P or "
                    "platform=accept-then-fail:P"
                )
        elif kind == "crash":
            service, _, rate = value.partition(":")
            if service not in SERVICES or not rate:
                raise FaultSpecError(
                    f"{spec}: expected crash=SERVICE:P, SERVICE one of {', '.join(SERVICES)}"
                )
            faults = replace(faults, crash={**faults.crash, service: _share(rate, spec)})
        elif kind == "kill":
            service, _, rest = value.partition(":")
            count, _, always = rest.partition(":")
            if service != "splitter" or not count.isdigit() or always not in ("", "always"):
                raise FaultSpecError(f"{spec}: expected kill=splitter:N or kill=splitter:N:always")
            faults = replace(faults, kill_splitter_after=int(count), kill_always=always == "always")
        elif kind == "duplicate" and value == "s3-events":
            faults = replace(faults, duplicate_s3_events=True)
        elif kind == "duplicate" and value == "consumed":
            faults = replace(faults, duplicate_consumed=True)
        else:
            raise FaultSpecError(
                f"{spec}: unknown fault; one of platform=..., crash=..., kill=..., "
                "duplicate=s3-events, duplicate=consumed"
            )
    return faults


class FaultSwitch:
    """The faults in force on one local cloud, changed while it runs (thread-safe)."""

    def __init__(self, faults: Faults | None = None, *, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults = faults or Faults()
        self._random = random.Random(seed)  # noqa: S311 - fault injection, not cryptography
        self._listeners: list[Callable[[list[str]], None]] = []

    def get(self) -> Faults:
        with self._lock:
            return self._faults

    def set(self, faults: Faults) -> None:
        """Put `faults` in force; each listener has been told (its specs) when this returns."""
        with self._lock:
            self._faults = faults
            listeners = list(self._listeners)
        for listener in listeners:
            listener(faults.specs())

    def subscribe(self, listener: Callable[[list[str]], None]) -> None:
        """Tell `listener` every change (a process of its own that injects faults: the platform
        simulator's, localcloud.platform_process)."""
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Callable[[list[str]], None]) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def chance(self, share: float) -> bool:
        """True with probability `share`."""
        with self._lock:
            return self._random.random() < share

    def choice(self, options: tuple[int, ...]) -> int:
        with self._lock:
            return self._random.choice(options)

    def take_kill(self) -> int | None:
        """The record count after which this split step dies, if one should; a one-shot kill
        is used up by the step that takes it."""
        with self._lock:
            after = self._faults.kill_splitter_after
            if after is not None and not self._faults.kill_always:
                self._faults = replace(self._faults, kill_splitter_after=None)
            return after
