"""`ingest trace`'s query layer: the life of one record, or one file, from X-Ray documents.

Pure, except `fetch` (which is given an X-Ray client). The documents are X-Ray's: segments and
subsegments as `BatchGetTraces` returns them (on AWS, subsegments embedded in their segment's
`subsegments`; from moto, also independent subsegments, `"type": "subsegment"` with their
`parent_id`, as the SDK streamed them). Both are flattened into spans linked by parent id.

What it relies on (`servicekit.tracing` writes it; the local runtime and, on AWS, the Lambda
service write the function segments):

- a function segment per invocation: a segment whose `origin` is `AWS::Lambda::Function`,
  named after the function, with start/end time and `error`/`fault` flags; its `parent_id`, when
  present, is what sent the message or made the call (the trace header's Parent), possibly
  through AWS's `AWS::Lambda` service segment;
- inside it, subsegments annotated with `service`, `service_version`, `operation`, `outcome`,
  and per record `event_id`, `file_id`, `ordinal` (on the `record` subsegment; children inherit
  what they lack from their ancestors up to the function segment, and a function segment's
  service and version are those any of its subsegments carry; a `gro-<service>-...` name is
  the last resort for the service);
- the split step's subsegment: `operation` `split`, `file_id`, `from_ordinal`, `to_ordinal`;
- HTTP calls: subsegments with `http.response.status` (the SDK's calls to AWS, namespace `aws`,
  are not shown as a step's status);
- an outcome is a failure if it is one of FAILURES, or an HTTP status >= 400 other than 409;
  a span with no outcome is `error` if flagged error or fault, else `ok`.

The steps of one event id: every subsegment annotated with it (and their descendants that
have an `operation` of their own), the split steps of its file that covered its ordinal, each
function segment containing one of those (`kind` `function`; `attempt` n: the n-th invocation
of that function for this record, so a retry, a redrive or a second consumer's enrich is a new
one), and before each invocation the wait (`kind` `wait`) from the end of what sent it to its
start (see `_waits`). A record dead-lettered and redriven shows both sets of steps.

The X-Ray SDK in Lambda mode keeps its facade segment while the trace's Root stays the same, so
a warm container's next invocation of the same trace hangs its subsegments on the previous
invocation's segment: `_reattach` puts them back, by time, before anything else is read.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from contracts.messages import FileRef, file_id

FUNCTION_ORIGIN = "AWS::Lambda::Function"
# outcomes that count as a failure of a step (anything else is a way of succeeding)
FAILURES = frozenset(
    {"rejected", "dead_lettered", "retry", "error", "undecodable", "refused", "quarantined"}
)
SLOWEST = 5
WINDOW_S = 24 * 3600  # X-Ray answers GetTraceSummaries for at most 24 h per call
BATCH_GET = 5  # trace ids per BatchGetTraces call
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,200}$")


# --- spans ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """One segment or subsegment, flattened out of its document."""

    id: str
    trace_id: str
    parent_id: str | None
    name: str
    start: float
    end: float | None
    annotations: dict[str, Any]
    segment: bool  # a segment document (not a subsegment)
    origin: str | None = None
    error: bool = False
    fault: bool = False
    http_status: int | None = None
    namespace: str | None = None  # `aws` for an AWS SDK call, `remote` or `local` otherwise

    @property
    def function(self) -> bool:
        return self.segment and self.origin == FUNCTION_ORIGIN

    @property
    def duration_ms(self) -> float:
        return 0.0 if self.end is None else max(0.0, (self.end - self.start) * 1000.0)


def _span(doc: dict[str, Any], parent_id: str | None, trace_id: str | None, segment: bool) -> Span:
    status = (doc.get("http") or {}).get("response", {}).get("status")
    return Span(
        id=str(doc["id"]),
        trace_id=str(doc.get("trace_id") or trace_id or ""),
        parent_id=parent_id,
        name=str(doc.get("name", "")),
        start=float(doc["start_time"]),
        end=float(doc["end_time"]) if doc.get("end_time") is not None else None,
        annotations=dict(doc.get("annotations") or {}),
        segment=segment,
        origin=doc.get("origin"),
        error=bool(doc.get("error")),
        fault=bool(doc.get("fault")),
        http_status=int(status) if isinstance(status, int | float) else None,
        namespace=doc.get("namespace"),
    )


def flatten(documents: Iterable[dict[str, Any] | str]) -> dict[str, Span]:
    """Every span of the documents, by id (a span seen twice is kept once)."""
    spans: dict[str, Span] = {}

    def walk(doc: dict[str, Any], parent_id: str | None, trace_id: str | None, top: bool) -> None:
        if "id" not in doc or "start_time" not in doc:
            return
        segment = top and doc.get("type") != "subsegment"
        span = _span(doc, parent_id, trace_id, segment)
        spans.setdefault(span.id, span)
        for child in doc.get("subsegments") or []:
            if isinstance(child, dict):
                walk(child, span.id, span.trace_id, False)

    for document in documents:
        doc = json.loads(document) if isinstance(document, str) else document
        if isinstance(doc, dict):
            walk(doc, doc.get("parent_id"), doc.get("trace_id"), True)
    return spans


def _reattach(spans: dict[str, Span]) -> dict[str, Span]:
    """Put back into their own invocation the subsegments the SDK hung on an earlier one.

    In Lambda mode the X-Ray SDK keeps its facade segment while the trace header's Root stays
    the same (`LambdaContext._refresh_context`), so when a warm container's next invocation
    continues the same trace (a batch of messages from one producer), its subsegments name the
    previous invocation's segment as parent. A top-level subsegment that lies outside the
    function segment it names is moved to the invocation of the same function and trace that
    was running when it started.
    """
    invocations: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for span in spans.values():
        if span.function:
            invocations[(span.name, span.trace_id)].append(span)
    moved = dict(spans)
    for span in spans.values():
        named = spans.get(span.parent_id) if span.parent_id and not span.segment else None
        if named is None or not named.function or _within(span, named):
            continue
        running = [f for f in invocations[(named.name, named.trace_id)] if _within(span, f)]
        if running:
            home = max(running, key=lambda f: f.start)
            moved[span.id] = replace(span, parent_id=home.id)
    return moved


def _within(span: Span, fn: Span, tolerance_s: float = 0.002) -> bool:
    end = fn.end if fn.end is not None else float("inf")
    return fn.start - tolerance_s <= span.start <= end + tolerance_s


class Tree:
    """Spans with their parent links, what each inherits, and the function each runs in."""

    def __init__(self, spans: dict[str, Span]) -> None:
        spans = _reattach(spans)
        self.spans = spans
        self.children: dict[str, list[Span]] = defaultdict(list)
        for span in spans.values():
            if span.parent_id is not None and not span.segment:
                self.children[span.parent_id].append(span)
        # a function segment's service and version: those any of its subsegments carry
        self._context: dict[str, dict[str, Any]] = defaultdict(dict)
        for span in sorted(spans.values(), key=lambda s: (s.start, s.id)):
            fn = self.function_of(span)
            if fn is None or span.segment:
                continue
            for key in ("service", "service_version"):
                if key in span.annotations:
                    self._context[fn.id].setdefault(key, span.annotations[key])

    def parent(self, span: Span) -> Span | None:
        """The containing span (never across a segment: a segment's parent is its caller)."""
        if span.segment or span.parent_id is None:
            return None
        return self.spans.get(span.parent_id)

    def ancestors(self, span: Span) -> Iterator[Span]:
        current = self.parent(span)
        while current is not None:
            yield current
            current = self.parent(current)

    def function_of(self, span: Span) -> Span | None:
        """The function segment this span ran in (itself, for one)."""
        if span.function:
            return span
        for ancestor in self.ancestors(span):
            if ancestor.function:
                return ancestor
        return None

    def get(self, span: Span, key: str) -> Any:
        """An annotation, from the span or its nearest ancestor that has it; for service and
        version, else from its function; else None."""
        if key in span.annotations:
            return span.annotations[key]
        for ancestor in self.ancestors(span):
            if key in ancestor.annotations:
                return ancestor.annotations[key]
        fn = self.function_of(span)
        if fn is not None:
            value = self._context[fn.id].get(key)
            if value is None and key == "service":
                return _service_from_name(fn.name)
            return value
        return None

    def descendants(self, span: Span) -> Iterator[Span]:
        for child in self.children.get(span.id, []):
            yield child
            yield from self.descendants(child)

    def depth(self, span: Span) -> int:
        return sum(1 for _ in self.ancestors(span))


def _service_from_name(function_name: str) -> str | None:
    parts = function_name.split("-")  # gro-<service>-<entry point>
    return parts[1] if len(parts) >= 3 and parts[0] == "gro" else None


def outcome_of(span: Span) -> str:
    """The step's `outcome` annotation; else `error` for an error or fault flag, else `ok`."""
    value = span.annotations.get("outcome")
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)
    return "error" if (span.fault or span.error) else "ok"


def is_failure(outcome: str) -> bool:
    """Whether an outcome is a failure: one of FAILURES, or an HTTP status of 400 or more
    (but 409: the platform already has the event, which is how a repeated post succeeds)."""
    if outcome in FAILURES:
        return True
    return outcome.isdigit() and int(outcome) >= 400 and int(outcome) != 409


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


# --- one record ----------------------------------------------------------------------------------


@dataclass
class Step:
    """One line of a record's life."""

    kind: str  # function | step | wait
    service: str | None
    service_version: str | None
    operation: str
    start: float
    duration_ms: float
    outcome: str
    function: str | None = None
    attempt: int | None = None
    depth: int = 0
    trace_id: str | None = None
    id: str | None = None
    http_status: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "service": self.service,
            "service_version": self.service_version,
            "operation": self.operation,
            "start": _iso(self.start),
            "duration_ms": round(self.duration_ms, 3),
            "outcome": self.outcome,
            "kind": self.kind,
            "function": self.function,
            "attempt": self.attempt,
            "depth": self.depth,
            "trace_id": self.trace_id,
            "id": self.id,
        }
        if self.http_status is not None:
            out["http_status"] = self.http_status
        out.update(self.extra)
        return out


@dataclass
class RecordTrace:
    """The steps of one event id, in time order, and the ids that place it."""

    event_id: str
    steps: list[Step]
    file_id: str | None = None
    ordinal: int | None = None

    def attempts(self) -> dict[str, int]:
        """How many times each function handled the record."""
        counts: Counter[str] = Counter(
            s.function for s in self.steps if s.kind == "function" and s.function
        )
        return dict(counts)


def _event_spans(tree: Tree, event_id: str) -> list[Span]:
    anchors = [
        s
        for s in tree.spans.values()
        if not s.segment and s.annotations.get("event_id") == event_id
    ]
    found = {s.id: s for s in anchors}
    for anchor in anchors:
        for child in tree.descendants(anchor):
            own = child.annotations.get("event_id")
            if "operation" in child.annotations and own in (None, event_id):
                found.setdefault(child.id, child)
    return list(found.values())


def _split_spans(tree: Tree, fid: str, ordinal: int) -> list[Span]:
    out = []
    for span in tree.spans.values():
        if span.segment or span.annotations.get("operation") != "split":
            continue
        if tree.get(span, "file_id") != fid:
            continue
        low, high = (
            _number(span.annotations.get("from_ordinal")),
            _number(span.annotations.get("to_ordinal")),
        )
        if low is not None and high is not None and low <= ordinal <= high:
            out.append(span)
    return out


def _http_status(tree: Tree, span: Span, steps: set[str]) -> int | None:
    """The span's HTTP status, else the last one among its descendants outside other steps;
    calls to AWS (the SDK's `aws` namespace) are not counted."""
    if span.http_status is not None and span.namespace != "aws":
        return span.http_status
    last: Span | None = None
    stack = list(tree.children.get(span.id, []))
    while stack:
        child = stack.pop()
        if child.id in steps:
            continue
        later = last is None or (child.end or 0) > (last.end or 0)
        if child.http_status is not None and child.namespace != "aws" and later:
            last = child
        stack.extend(tree.children.get(child.id, []))
    return None if last is None else last.http_status


def record_steps(documents: Iterable[dict[str, Any] | str], event_id: str) -> RecordTrace:
    """The life of one record: its steps, its functions' invocations and the waits between."""
    tree = Tree(flatten(documents))
    spans = _event_spans(tree, event_id)
    fid = next((v for v in (tree.get(s, "file_id") for s in spans) if isinstance(v, str)), None)
    ordinals = (_number(tree.get(s, "ordinal")) for s in spans)
    ordinal = next((n for n in ordinals if n is not None), None)
    if fid is not None and ordinal is not None:
        known = {s.id for s in spans}
        spans += [s for s in _split_spans(tree, fid, ordinal) if s.id not in known]
    if not spans:
        return RecordTrace(event_id, [], fid, ordinal)

    functions: dict[str, Span] = {}
    for span in spans:
        fn = tree.function_of(span)
        if fn is not None:
            functions.setdefault(fn.id, fn)
    # attempt n of a function: its n-th invocation that handled this record
    attempt: dict[str, int] = {}
    per_function: dict[str, list[Span]] = defaultdict(list)
    for fn in sorted(functions.values(), key=lambda f: (f.start, f.id)):
        per_function[fn.name].append(fn)
        attempt[fn.id] = len(per_function[fn.name])

    step_ids = {s.id for s in spans}
    steps: list[Step] = []
    for fn in functions.values():
        steps.append(
            Step(
                kind="function",
                service=tree.get(fn, "service"),
                service_version=tree.get(fn, "service_version"),
                operation="invocation",
                start=fn.start,
                duration_ms=fn.duration_ms,
                outcome=outcome_of(fn),
                function=fn.name,
                attempt=attempt[fn.id],
                depth=0,
                trace_id=fn.trace_id,
                id=fn.id,
            )
        )
    for span in spans:
        fn = tree.function_of(span)
        depth = 1 + sum(1 for a in tree.ancestors(span) if a.id in step_ids)
        operation = span.annotations.get("operation")
        steps.append(
            Step(
                kind="step",
                service=tree.get(span, "service"),
                service_version=tree.get(span, "service_version"),
                operation=str(operation) if operation else span.name,
                start=span.start,
                duration_ms=span.duration_ms,
                outcome=outcome_of(span),
                function=None if fn is None else fn.name,
                attempt=None if fn is None else attempt.get(fn.id),
                depth=depth,
                trace_id=span.trace_id,
                id=span.id,
                http_status=_http_status(tree, span, step_ids),
            )
        )
    steps += _waits(tree, spans, functions, per_function, attempt)
    order = {"wait": 0, "function": 1, "step": 2}
    # at the same start: waits, then invocations, then steps, outer before inner; waits that
    # start together (two calls after one step) in the order of the calls they lead to
    steps.sort(
        key=lambda s: (
            s.start,
            order[s.kind],
            s.depth,
            s.duration_ms if s.kind == "wait" else -s.duration_ms,
            s.id or "",
        )
    )
    return RecordTrace(event_id, steps, fid, ordinal)


def _sender(tree: Tree, fn: Span) -> Span | None:
    """What made the invocation: the function segment's parent, through the segments AWS puts
    between them (the `AWS::Lambda` service segment); None if not among the spans."""
    sender = tree.spans.get(fn.parent_id) if fn.parent_id else None
    for _ in range(4):
        if sender is None or not sender.segment or sender.function:
            break
        sender = tree.spans.get(sender.parent_id) if sender.parent_id else None
    if sender is None or tree.function_of(sender) is fn or sender is fn:
        return None
    return sender


def _waits(
    tree: Tree,
    spans: list[Span],
    functions: dict[str, Span],
    per_function: dict[str, list[Span]],
    attempt: dict[str, int],
) -> list[Step]:
    """Between one invocation and the next: from the end of what sent it to its start.

    What sent it: for a retry or redrive, the previous attempt (once it had ended); else the
    function segment's parent when that is one of the record's steps (a batch's invocation
    continues the trace of its first message only: for the others the parent is another
    record's step); else the record's latest step elsewhere that ended before; else the latest
    invocation that did.
    """
    waits = []
    step_ids = {s.id for s in spans}
    ordered = sorted(functions.values(), key=lambda f: (f.start, f.id))
    for fn in ordered:
        sender: Span | None = None
        previous = per_function[fn.name][attempt[fn.id] - 2] if attempt[fn.id] > 1 else None
        if previous is not None and previous.end is not None and previous.end <= fn.start:
            sender = previous
        else:  # the first, or one beside another (enrich: each consumer calls it)
            sender = _sender(tree, fn)
            if sender is not None and sender.id not in step_ids:
                sender = None
        if sender is None:
            before = [
                s
                for s in spans
                if s.end is not None and s.end <= fn.start and tree.function_of(s) is not fn
            ]
            sender = max(before, key=lambda s: (s.end or 0.0, s.id), default=None)
        if sender is None:
            earlier = [
                f for f in ordered if f is not fn and f.end is not None and f.end <= fn.start
            ]
            sender = max(earlier, key=lambda f: f.end or 0.0, default=None)
        if sender is None or sender.end is None:
            continue
        gap_ms = (fn.start - sender.end) * 1000.0
        waits.append(
            Step(
                kind="wait",
                service=tree.get(fn, "service"),
                service_version=tree.get(fn, "service_version"),
                operation="wait",
                # a sender that ended after the invocation began (a long split step) sent it
                # somewhere in between: the wait is then shorter than we can tell, shown as 0
                start=min(sender.end, fn.start),
                duration_ms=max(0.0, gap_ms),
                outcome="ok",
                function=fn.name,
                attempt=attempt[fn.id],
                depth=0,
                trace_id=fn.trace_id,
                id=f"wait-{fn.id}",
                extra={"after": sender.id},
            )
        )
    return waits


# --- one file ------------------------------------------------------------------------------------


def file_tail(key: str) -> str:
    """The readable part a file id starts with, for a file key (`contracts.messages.file_id`)."""
    return file_id(FileRef(bucket="", key=key)).rsplit("-", 1)[0]


def file_matches(fid: str, key: str) -> bool:
    """Whether `fid` is the id of a version of file `key` (or is `key` itself, an id)."""
    return fid == key or fid.rsplit("-", 1)[0] == file_tail(key)


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile (a value that occurred); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


def file_summaries(
    documents: Iterable[dict[str, Any] | str], key: str, slowest: int = SLOWEST
) -> list[dict[str, Any]]:
    """Per version of file `key` (usually one): per stage, count, p50/p95/max duration_ms and
    failures; the slowest records (first step's start to last step's end) and the failed ones."""
    tree = Tree(flatten(documents))
    steps = [s for s in tree.spans.values() if not s.segment and "operation" in s.annotations]
    # steps that name only the event (enrich, consumed) belong to that record's file
    file_of_event: dict[str, str] = {}
    for span in steps:
        fid, event_id = tree.get(span, "file_id"), tree.get(span, "event_id")
        if isinstance(fid, str) and isinstance(event_id, str):
            file_of_event.setdefault(event_id, fid)
    by_file: dict[str, list[Span]] = defaultdict(list)
    for span in steps:
        fid = tree.get(span, "file_id")
        if fid is None:
            fid = file_of_event.get(str(tree.get(span, "event_id")))
        if isinstance(fid, str) and file_matches(fid, key):
            by_file[fid].append(span)
    return [_summary(tree, fid, spans, slowest) for fid, spans in sorted(by_file.items())]


def _summary(tree: Tree, fid: str, spans: list[Span], slowest: int) -> dict[str, Any]:
    stages: dict[tuple[str, str], list[Span]] = defaultdict(list)
    records: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        service = tree.get(span, "service") or "-"
        stages[(str(service), str(span.annotations["operation"]))].append(span)
        event_id = tree.get(span, "event_id")
        if isinstance(event_id, str):
            records[event_id].append(span)
    stage_rows = []
    for (service, operation), members in sorted(
        stages.items(), key=lambda item: (min(s.start for s in item[1]), item[0])
    ):
        durations = [s.duration_ms for s in members]
        outcomes = Counter(outcome_of(s) for s in members)
        stage_rows.append(
            {
                "service": service,
                "operation": operation,
                "service_versions": sorted(
                    {str(v) for v in (tree.get(s, "service_version") for s in members) if v}
                ),
                "count": len(members),
                "p50_ms": round(percentile(durations, 50), 3),
                "p95_ms": round(percentile(durations, 95), 3),
                "max_ms": round(max(durations), 3),
                "failures": sum(n for o, n in outcomes.items() if is_failure(o)),
                "outcomes": dict(sorted(outcomes.items())),
            }
        )
    elapsed: list[float] = []
    failed = []
    for event_id, members in records.items():
        ended = [s.end for s in members if s.end is not None]
        start = min(s.start for s in members)
        elapsed.append(round((max(ended, default=start) - start) * 1000.0, 3))
        failures = sorted((s for s in members if is_failure(outcome_of(s))), key=_end_key)
        if failures:
            last = failures[-1]
            # how that stage ended for the record: e.g. dead-lettered, then published on redrive
            same = [
                s
                for s in members
                if s.annotations.get("operation") == last.annotations.get("operation")
                and tree.get(s, "service") == tree.get(last, "service")
            ]
            final = max(same, key=_end_key)
            failed.append(
                {
                    "event_id": event_id,
                    "failures": len(failures),
                    "last_failure": {
                        "service": tree.get(last, "service"),
                        "operation": last.annotations.get("operation"),
                        "outcome": outcome_of(last),
                        "at": _iso(last.end if last.end is not None else last.start),
                    },
                    "final_outcome": outcome_of(final),
                }
            )
    ranked = sorted(zip(records, elapsed, strict=True), key=lambda r: (-r[1], r[0]))
    starts = [s.start for s in spans]
    ends = [s.end for s in spans if s.end is not None]
    return {
        "file_id": fid,
        "records": len(records),
        "first_start": _iso(min(starts)),
        "last_end": _iso(max(ends, default=max(starts))),
        "stages": stage_rows,
        "slowest": [{"event_id": e, "elapsed_ms": ms} for e, ms in ranked[:slowest]],
        "failed": sorted(failed, key=lambda f: f["event_id"]),
    }


def _end_key(span: Span) -> tuple[float, str]:
    return (span.end if span.end is not None else span.start, span.id)


# --- where the documents come from ---------------------------------------------------------------


def safe_value(value: str) -> bool:
    """Whether `value` can be quoted into a FilterExpression as it is."""
    return bool(_SAFE_VALUE.match(value))


def event_filter(event_id: str) -> str:
    return f'annotation.event_id = "{event_id}"'


def file_filter(key: str) -> str:
    """All versions of file `key` (a file id's readable tail, then `-` and a hash), or one id."""
    if re.search(r"-[0-9a-f]{32}$", key):
        return f'annotation.file_id = "{key}"'
    return f'annotation.file_id BEGINSWITH "{file_tail(key)}-"'


def split_filter(fid: str) -> str:
    return f'annotation.file_id = "{fid}" AND annotation.operation = "split"'


def windows(since_s: float, now: float, *, margin_s: float = 0.0) -> list[tuple[float, float]]:
    """[now - since, now + margin] cut into pieces X-Ray answers (24 h each), newest first."""
    end, start = now + margin_s, now - since_s
    out = []
    while end > start:
        out.append((max(start, end - WINDOW_S), end))
        end -= WINDOW_S
    return out


def fetch(
    xray: Any,
    *,
    since_s: float,
    filter_expression: str | None,
    local: bool,
    now: Callable[[], float] = time.time,
) -> list[dict[str, Any]]:
    """Every document of the traces found in the last `since_s` seconds.

    On AWS, the traces X-Ray's FilterExpression selects; on a local cloud (moto ignores
    annotations and refuses a filter), every trace of the window: the caller filters.
    """
    moment = now()
    trace_ids: list[str] = []
    seen: set[str] = set()
    for start, end in windows(since_s, moment, margin_s=60.0 if local else 0.0):
        query: dict[str, Any] = {
            "StartTime": datetime.fromtimestamp(start, tz=UTC),
            "EndTime": datetime.fromtimestamp(end, tz=UTC),
            # by when a trace was last updated: a redrive days later joins the record's trace
            "TimeRangeType": "Event",
        }
        if filter_expression is not None and not local:
            query["FilterExpression"] = filter_expression
        for page in xray.get_paginator("get_trace_summaries").paginate(**query):
            for summary in page.get("TraceSummaries", []):
                trace_id = summary.get("Id")
                if trace_id and trace_id not in seen:
                    seen.add(trace_id)
                    trace_ids.append(trace_id)
    documents: list[dict[str, Any]] = []
    paginator = xray.get_paginator("batch_get_traces")
    for i in range(0, len(trace_ids), BATCH_GET):
        for page in paginator.paginate(TraceIds=trace_ids[i : i + BATCH_GET]):
            for trace in page.get("Traces", []):
                for segment in trace.get("Segments", []):
                    document = json.loads(segment["Document"])
                    if isinstance(document, dict):
                        documents.append(document)
    return documents


def event_ids_of_file(documents: Iterable[dict[str, Any] | str], fid: str) -> set[str]:
    """The event ids annotated beside `file_id = fid` anywhere in the documents."""
    return {
        span.annotations["event_id"]
        for span in flatten(documents).values()
        if span.annotations.get("file_id") == fid
        and isinstance(span.annotations.get("event_id"), str)
    }
