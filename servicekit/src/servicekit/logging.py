"""Logs that cannot leak: the logging path refuses personal data, whatever a call site passes.

Every service builds its Powertools Logger with `service_logger("splitter")`: the same Logger,
writing through `GuardedFormatter`. The contracts say which types and fields are personal
(`contracts.personal`); before a line is written, the formatter looks at everything in it (the
`extra` keys, the keys appended with `append_keys`, the message and its `%` arguments) and
refuses:

- an instance of a personal-bearing contract (`GroDeathRecord`, `DeathNotification`,
  `RecordToTransform`, `EventToPublish`, `StoredEvent`, `EnrichResponse`, `PersonName` ...),
  at any depth, in a dict, a list, a dataclass, a named tuple;
- the value of a key named as a personal field (`surname`, `dateOfDeath`, `postcode`,
  `fragment`, ... in either spelling, any case), at any depth;
- text that is a record in another form: the XML of a record (`<DeathRegistration`), JSON or a
  repr with a personal field as a key (`"surname":`), the repr of a personal-bearing contract
  (`GroDeathRecord(`). That catches a queue message's body logged whole, and an f-string that
  formats a record.

A refused value is replaced by `REFUSED` (the key stays: a field's name is not personal data),
counted in the line's `refused` key, added to `GuardedFormatter.refused_total`, and reported to
`on_refused` (for the services: the `LogValuesRefused` metric, an EMF line of its own, since
the line can come outside an invocation's `@metrics.log_metrics`). A line that refuses nothing
is written exactly as Powertools writes it.

Exceptions (`logger.exception`, `exc_info=`): the type and the frames are kept. The message is
written only for an exception type of our own code (the service's package, `servicekit`,
`contracts`), whose messages name fields, ordinals and lines, never values; every other
exception's message (lxml quotes tag names, msgspec and `int()` quote values, a builtin
exception cannot be told from a library's) is replaced by `REFUSED_MESSAGE`, and counted, in
the traceback text, in `stack_trace.value`, through the whole `__cause__`/`__context__` chain,
and in `__notes__`.

What this cannot see: personal data in a plain string that does not look like a record (an
f-string that puts one name in a message). Our call sites log ids, ordinals, counts and
reasons; reasons never quote the file (`splitter.extract`, `transformer.rules`). Logs the
Lambda runtime writes itself (an unhandled exception's `errorMessage`) and other libraries'
loggers do not pass through this formatter. The service logger's own records reach no other
handler on Lambda: Powertools filters them off the root logger's handlers (`SuppressFilter`).
The guard works on a copy of the record, so a handler added by hand would see the original.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import logging
import re
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import IO, Any, Final

import msgspec
from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from contracts.personal import personal_names, personal_types
from contracts.schema import RELEASED
from servicekit.tracing import METRICS_NAMESPACE

REFUSED: Final = "[refused: personal]"
REFUSED_MESSAGE: Final = "[refused: not our code's message]"
METRIC: Final = "LogValuesRefused"
REFUSED_KEY: Final = "refused"

# what the guard knows of: every released contract, and every Struct inside one
CONTRACTS: Final = tuple(kind for _version, kind in RELEASED.values())
_MAX_DEPTH = 24
_EXCEPTION_KEYS = frozenset({"exception", "exception_name", "stack_trace", "exception_notes"})
_CAUSE = "\n\nThe above exception was the direct cause of the following exception:\n\n"
_CONTEXT = "\n\nDuring handling of the above exception, another exception occurred:\n\n"


def _norm(name: str) -> str:
    return name.replace("_", "").replace("-", "").lower()


@functools.cache
def _personal_keys() -> frozenset[str]:
    return frozenset(_norm(n) for n in personal_names(CONTRACTS))


@functools.cache
def _record_text() -> re.Pattern[str]:
    """Text that is a record in another form: its XML, JSON or a repr keyed by a personal
    field, the repr of a personal-bearing contract."""
    names = "|".join(sorted(map(re.escape, personal_names(CONTRACTS)), key=len, reverse=True))
    types = "|".join(sorted(re.escape(t.__name__) for t in personal_types(CONTRACTS)))
    return re.compile(
        r"<(?:[\w.-]+:)?DeathRegistration(?:Group)?[\s/>]"
        rf"""|["']({names})["']\s*:"""
        rf"|\b({types})\("
    )


class Guard:
    """What the formatter refuses, as a pure function of a value: `clean(value)` returns the
    value with every personal part replaced, and how many parts were replaced."""

    def __init__(self, own_packages: Iterable[str] = ("contracts", "servicekit")) -> None:
        self.own_packages = frozenset(own_packages)
        self._types = personal_types(CONTRACTS)
        self._keys = _personal_keys()
        self._text = _record_text()

    def is_ours(self, exc: BaseException) -> bool:
        """Whether an exception's type is our own code's (its message names no values)."""
        return type(exc).__module__.partition(".")[0] in self.own_packages

    def personal_key(self, key: object) -> bool:
        return isinstance(key, str) and _norm(key) in self._keys

    def text(self, value: str) -> tuple[str, int]:
        return (REFUSED, 1) if self._text.search(value) else (value, 0)

    def clean(self, value: Any, key: object = None, depth: int = 0) -> tuple[Any, int]:
        """`value` with every personal part replaced by `REFUSED`, and how many were."""
        if self.personal_key(key) and not _empty(value):
            return REFUSED, 1
        if value is None or isinstance(value, bool | int | float):
            return value, 0
        if depth > _MAX_DEPTH:
            return REFUSED, 1
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return self.text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, msgspec.Struct):
            if type(value) in self._types:
                return REFUSED, 1
            try:
                built = msgspec.to_builtins(value)
            except (TypeError, ValueError):
                return self.text(str(value))
            return self.clean(built, key, depth + 1)
        if isinstance(value, BaseException):
            return self.exception_line(value)
        if isinstance(value, Mapping):
            return self.clean_items(value.items(), depth)
        if isinstance(value, list | tuple | set | frozenset):
            items = [self.clean(item, None, depth + 1) for item in value]
            return [v for v, _ in items], sum(n for _, n in items)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            return self.clean_items(fields, depth)
        return self.text(str(value))

    def clean_items(
        self, items: Iterable[tuple[Any, Any]], depth: int = 0
    ) -> tuple[dict[Any, Any], int]:
        """A mapping's items, cleaned, as a dict (keys other than JSON's scalars as text)."""
        out: dict[Any, Any] = {}
        refused = 0
        for k, v in items:
            key = k if k is None or isinstance(k, str | int | float | bool) else str(k)
            out[key], n = self.clean(v, k, depth + 1)
            refused += n
        return out, refused

    def message(self, exc: BaseException) -> tuple[str, int]:
        """An exception's message as a log may hold it."""
        if not self.is_ours(exc):
            return REFUSED_MESSAGE, 1
        return self.text(str(exc))

    def exception_line(self, exc: BaseException) -> tuple[str, int]:
        message, refused = self.message(exc)
        return f"{type(exc).__name__}: {message}", refused

    def notes(self, exc: BaseException) -> tuple[list[str] | None, int]:
        notes = getattr(exc, "__notes__", None)
        if not notes:
            return None, 0
        if not self.is_ours(exc):
            return [REFUSED_MESSAGE], 1
        cleaned = [self.text(str(note)) for note in notes]
        return [n for n, _ in cleaned], sum(c for _, c in cleaned)

    def traceback_text(self, exc: BaseException) -> tuple[str, int]:
        """The traceback Python would print, every message in the chain judged as above."""
        chain: list[BaseException] = []
        current: BaseException | None = exc
        while current is not None and all(current is not seen for seen in chain):
            chain.append(current)
            cause = current.__cause__
            current = (
                cause
                if cause is not None
                else (None if current.__suppress_context__ else current.__context__)
            )
        parts: list[str] = []
        refused = 0
        for i, item in enumerate(reversed(chain)):
            if i:
                caused = item.__cause__ is chain[len(chain) - i]
                parts.append(_CAUSE if caused else _CONTEXT)
            if item.__traceback__ is not None:
                parts.append("Traceback (most recent call last):\n")
                parts.extend(traceback.format_tb(item.__traceback__))
            kind = type(item)
            module = kind.__module__
            name = kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"
            message, n = self.message(item)
            parts.append(f"{name}: {message}")
            refused += n
        return "".join(parts), refused


def _empty(value: Any) -> bool:
    """None, or a string or container with nothing in it: nothing to refuse."""
    if value is None:
        return True
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        return len(value) == 0
    return False


class GuardedFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON formatter, refusing personal data (see the module's docstring)."""

    def __init__(
        self,
        *,
        own_packages: Iterable[str] = ("contracts", "servicekit"),
        on_refused: Callable[[int], None] | None = None,
        **options: Any,
    ) -> None:
        self.guard = Guard(own_packages)
        self.on_refused = on_refused
        self.refused_total = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        super().__init__(**options)

    # -- the one way in: format ------------------------------------------------------------

    def format(self, record: logging.LogRecord) -> str:
        self._local.refused = 0
        self._local.exception = None
        try:
            line = super().format(self._cleaned(record))
        except Exception:  # never let logging's error path print the record's arguments
            self._count(1)
            line = self.serialize_plain(record)
        refused = self._local.refused
        if refused:
            with self._lock:
                self.refused_total += refused
            if self.on_refused is not None:
                with contextlib.suppress(Exception):  # a metric must never cost the line
                    self.on_refused(refused)
        return line

    def serialize_plain(self, record: logging.LogRecord) -> str:
        """The line for a record that could not be written safely: its level and where."""
        return self.json_serializer(
            {
                "level": record.levelname,
                "location": f"{record.funcName}:{record.lineno}",
                "message": REFUSED,
                "service": self.log_format.get("service"),
                REFUSED_KEY: self._local.refused,
            }
        )

    def _cleaned(self, record: logging.LogRecord) -> logging.LogRecord:
        """A copy of the record whose message and arguments hold nothing personal (other
        handlers of the same logger still see the original)."""
        record = copy.copy(record)
        if isinstance(record.args, Mapping):
            record.args = self._cleaned_value(record.args)
        elif record.args:
            record.args = tuple(self._cleaned_value(arg) for arg in record.args)
        if not isinstance(record.msg, str | Mapping):  # a dict is cleaned with the whole line
            record.msg = self._cleaned_value(record.msg)
        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        self._local.exception = exc if isinstance(exc, BaseException) else None
        return record

    def _cleaned_value(self, value: Any) -> Any:
        """The value itself when nothing in it is refused (so `%d` still gets an int), else
        the cleaned value."""
        cleaned, refused = self.guard.clean(value)
        self._count(refused)
        return cleaned if refused else value

    def _count(self, refused: int) -> int:
        """Add to the line's count of refused values (this thread's line); return the count."""
        total: int = getattr(self._local, "refused", 0) + refused
        self._local.refused = total
        return total

    # -- exceptions ------------------------------------------------------------------------

    def formatException(self, ei: Any) -> str:
        exc = ei[1] if isinstance(ei, tuple) else None
        if not isinstance(exc, BaseException):
            return ""
        text, n = self.guard.traceback_text(exc)
        self._count(n)
        return text

    # -- everything else, as the line is about to be written --------------------------------

    def serialize(self, log: Any) -> str:
        exc = getattr(self._local, "exception", None)
        # with an exception, these keys are Powertools' own, built by formatException above
        ours = _EXCEPTION_KEYS & log.keys() if exc is not None else frozenset()
        cleaned: dict[str, Any] = {}
        refused = 0
        for key, value in log.items():
            if key in ours:
                cleaned[key] = value
            else:
                cleaned[key], n = self.guard.clean(value, key)
                refused += n
        if exc is not None:
            if isinstance(cleaned.get("stack_trace"), dict):
                stack = dict(cleaned["stack_trace"])
                stack["value"], _ = self.guard.message(exc)  # counted with the traceback
                cleaned["stack_trace"] = stack
            if cleaned.get("exception_notes"):
                cleaned["exception_notes"], n = self.guard.notes(exc)
                refused += n
        total = self._count(refused)
        if total:
            cleaned[REFUSED_KEY] = total
        return super().serialize({k: v for k, v in cleaned.items() if v is not None})


def _emit_metric(service: str) -> Callable[[int], None]:
    """`LogValuesRefused` for `service`, as an EMF line of its own."""

    def emit(count: int) -> None:
        with single_metric(
            name=METRIC,
            unit=MetricUnit.Count,
            value=count,
            namespace=METRICS_NAMESPACE,
            default_dimensions={"service": service},
        ):
            pass

    return emit


def service_logger(
    service: str,
    *,
    stream: IO[str] | None = None,
    on_refused: Callable[[int], None] | None = None,
) -> Logger:
    """The Powertools Logger of `service`, writing through `GuardedFormatter`.

    Refusals are counted as the `LogValuesRefused` metric of the service (or reported to
    `on_refused`). Exception messages are written for exception types of the package named
    `service`, of `servicekit` and of `contracts`.
    """
    formatter = GuardedFormatter(
        own_packages=(service, "contracts", "servicekit"),
        on_refused=on_refused if on_refused is not None else _emit_metric(service),
    )
    logger = Logger(service=service, stream=stream, logger_formatter=formatter)
    if not isinstance(logger.registered_formatter, GuardedFormatter):
        # a Logger of this name was configured before, without the guard: put it in place
        formatter.append_keys(service=service)
        logger.registered_handler.setFormatter(formatter)
    return logger
