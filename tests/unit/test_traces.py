"""`ingest trace`'s query layer over crafted X-Ray documents: ids, timings and outcomes only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.messages import FileRef, file_id
from ingest_cli import traces

T0 = 1_700_000_000.0
FILE = file_id(FileRef(bucket="landing", key="incoming/DWP_D_20240101.xml"))
OTHER_FILE = file_id(FileRef(bucket="landing", key="incoming/DWP_D_20240102.xml"))
EVENT = "evt-0001"
OTHER = "evt-0002"
_ids = iter(range(1, 10_000))


def _id() -> str:
    return f"{next(_ids):016x}"


def function(name: str, trace: str, start: float, end: float, **extra: Any) -> dict[str, Any]:
    """A function segment as the Lambda service (or the local runtime) emits it."""
    return {
        "id": _id(),
        "name": name,
        "origin": "AWS::Lambda::Function",
        "trace_id": trace,
        "start_time": T0 + start,
        "end_time": T0 + end,
        "subsegments": [],
        **extra,
    }


def sub(name: str, start: float, end: float, **annotations: Any) -> dict[str, Any]:
    return {
        "id": _id(),
        "name": name,
        "start_time": T0 + start,
        "end_time": T0 + end,
        "annotations": annotations,
    }


def nest(parent: dict[str, Any], *children: dict[str, Any]) -> dict[str, Any]:
    parent.setdefault("subsegments", []).extend(children)
    return parent


def record(service: str, op: str, start: float, end: float, event: str, ordinal: int, **more: Any):
    return sub(
        "record",
        start,
        end,
        service=service,
        service_version="1.0.0",
        operation=op,
        event_id=event,
        file_id=FILE,
        ordinal=ordinal,
        **more,
    )


def happy_path() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """split (records 1-10) -> transform -> publish (platform POST) -> enrich -> consumed."""
    split_fn = function("gro-splitter-split", "1-a", 0.0, 2.0)
    split = sub(
        "## split",
        0.1,
        1.9,
        service="splitter",
        service_version="2.1.0",
        operation="split",
        file_id=FILE,
        from_ordinal=1,
        to_ordinal=10,
        outcome="done",
    )
    nest(split_fn, split)
    transform_fn = function("gro-transformer-transform", "1-a", 2.5, 3.0, parent_id=split["id"])
    transform = record("transformer", "transform", 2.6, 2.9, EVENT, 3, outcome="ok")
    other = record("transformer", "transform", 2.6, 2.7, OTHER, 4, outcome="ok")
    nest(transform_fn, nest(sub("## transform", 2.55, 2.95), transform, other))
    publish_fn = function("gro-publisher-publish", "1-a", 4.0, 5.0, parent_id=transform["id"])
    post = sub("platform_post", 4.2, 4.8, operation="platform_post", event_id=EVENT)
    post_http = {**sub("POST", 4.25, 4.75), "http": {"response": {"status": 201}}}
    nest(post, post_http)
    publish = nest(record("publisher", "publish", 4.1, 4.9, EVENT, 3, outcome="published"), post)
    nest(publish_fn, publish)
    enrich_fn = function("gro-publisher-enrich", "1-b", 6.0, 6.2)
    nest(
        enrich_fn,
        sub(
            "## enrich",
            6.05,
            6.15,
            service="publisher",
            service_version="1.0.0",
            operation="enrich",
            event_id=EVENT,
            outcome="served",
        ),
    )
    docs = [split_fn, transform_fn, publish_fn, enrich_fn]
    return docs, {"split": split, "transform": transform, "publish": publish}


def test_a_record_s_steps_are_in_time_order_with_service_version_and_outcome() -> None:
    docs, _ = happy_path()

    trace = traces.record_steps(docs, EVENT)

    assert (trace.file_id, trace.ordinal) == (FILE, 3)
    rows = [(s.kind, s.service, s.operation, s.outcome) for s in trace.steps]
    assert rows == [
        ("function", "splitter", "invocation", "ok"),
        ("step", "splitter", "split", "done"),
        ("wait", "transformer", "wait", "ok"),
        ("function", "transformer", "invocation", "ok"),
        ("step", "transformer", "transform", "ok"),
        ("wait", "publisher", "wait", "ok"),
        ("function", "publisher", "invocation", "ok"),
        ("step", "publisher", "publish", "published"),
        ("step", "publisher", "platform_post", "ok"),
        ("wait", "publisher", "wait", "ok"),
        ("function", "publisher", "invocation", "ok"),
        ("step", "publisher", "enrich", "served"),
    ]
    starts = [s.start for s in trace.steps]
    assert starts == sorted(starts)
    split = trace.steps[1]
    assert (split.service_version, split.duration_ms) == ("2.1.0", pytest.approx(1800.0))
    # a child step inherits its service and version; the platform's status is on its step
    post = trace.steps[8]
    assert (post.service_version, post.http_status, post.depth) == ("1.0.0", 201, 2)
    assert all(s.attempt == 1 for s in trace.steps if s.kind != "step" or s.function)


def test_queue_waits_run_from_the_sender_s_end_to_the_consumer_s_start() -> None:
    docs, _ = happy_path()

    waits = [s for s in traces.record_steps(docs, EVENT).steps if s.kind == "wait"]

    # transform's invocation: its parent is the split step, which ended at 1.9 (started 2.5)
    assert waits[0].function == "gro-transformer-transform"
    assert waits[0].duration_ms == pytest.approx(600.0)
    assert waits[0].start == pytest.approx(T0 + 1.9)
    # publish: its parent is the transform record (ended 2.9, started 4.0)
    assert waits[1].duration_ms == pytest.approx(1100.0)
    # enrich: a direct call with no parent: from the record's latest step before (publish, 4.9)
    assert waits[2].function == "gro-publisher-enrich"
    assert waits[2].duration_ms == pytest.approx(1100.0)


def test_a_sender_still_running_when_the_consumer_starts_is_a_wait_of_zero() -> None:
    docs, parts = happy_path()
    parts["split"]["end_time"] = T0 + 2.7  # the split step went on sending other records

    waits = [s for s in traces.record_steps(docs, EVENT).steps if s.kind == "wait"]

    assert waits[0].duration_ms == 0.0


def test_json_steps_carry_the_fields_the_issue_names() -> None:
    docs, _ = happy_path()

    out = [s.to_json() for s in traces.record_steps(docs, EVENT).steps]

    assert json.loads(json.dumps(out)) == out
    for step in out:
        assert {"service", "operation", "start", "duration_ms", "outcome"} <= step.keys()
    assert out[0]["start"] == "2023-11-14T22:13:20.000Z"
    assert out[1]["duration_ms"] == pytest.approx(1800.0)


def test_documents_may_come_as_text_and_as_independent_subsegments() -> None:
    """moto returns what the SDK streamed: a subsegment on its own, with its parent's id."""
    fn = function("gro-transformer-transform", "1-c", 0.0, 1.0)
    wrapper = sub("## transform", 0.05, 0.95)
    fn["subsegments"] = []
    streamed_wrapper = {**wrapper, "type": "subsegment", "trace_id": "1-c", "parent_id": fn["id"]}
    rec = record("transformer", "transform", 0.1, 0.5, EVENT, 3, outcome="retry")
    streamed_record = {**rec, "type": "subsegment", "trace_id": "1-c", "parent_id": wrapper["id"]}
    docs = [json.dumps(streamed_record), json.dumps(fn), json.dumps(streamed_wrapper)]

    steps = traces.record_steps(docs, EVENT).steps

    assert [(s.kind, s.function, s.outcome) for s in steps] == [
        ("function", "gro-transformer-transform", "ok"),
        ("step", "gro-transformer-transform", "retry"),
    ]


def test_a_record_dead_lettered_then_redriven_shows_both_attempts() -> None:
    docs, parts = happy_path()
    publish_fn = docs[2]
    publish_fn["subsegments"][0]["annotations"]["outcome"] = "dead_lettered"
    publish_fn["fault"] = False
    # the redrive, an hour later, in the same trace (the message keeps its AWSTraceHeader)
    second = function(
        "gro-publisher-publish", "1-a", 3600.0, 3601.0, parent_id=parts["transform"]["id"]
    )
    nest(second, record("publisher", "publish", 3600.1, 3600.9, EVENT, 3, outcome="published"))
    docs.append(second)

    trace = traces.record_steps(docs, EVENT)

    publishes = [(s.attempt, s.outcome) for s in trace.steps if s.operation == "publish"]
    assert publishes == [(1, "dead_lettered"), (2, "published")]
    assert trace.attempts()["gro-publisher-publish"] == 2
    # attempt 2 waited since attempt 1 ended (5.0), not since the transform
    redrive_wait = [
        s
        for s in trace.steps
        if s.kind == "wait" and s.attempt == 2 and "publish" in str(s.function)
    ]
    assert redrive_wait[0].duration_ms == pytest.approx((3600.0 - 5.0) * 1000)
    assert redrive_wait[0].start == pytest.approx(T0 + 5.0)


def test_a_faulted_invocation_is_an_error_and_its_record_says_retry() -> None:
    fn = function("gro-publisher-publish", "1-d", 0.0, 3.0, fault=True)
    nest(fn, record("publisher", "publish", 0.1, 2.9, EVENT, 3, outcome="retry"))

    steps = traces.record_steps([fn], EVENT).steps

    assert [(s.kind, s.outcome) for s in steps] == [("function", "error"), ("step", "retry")]


def test_an_unknown_event_has_no_steps() -> None:
    docs, _ = happy_path()

    assert traces.record_steps(docs, "evt-unknown").steps == []


def test_on_aws_the_lambda_service_segment_between_sender_and_function_is_skipped() -> None:
    docs, parts = happy_path()
    transform_fn = docs[1]
    # AWS: SQS -> AWS::Lambda (service) -> AWS::Lambda::Function
    service_segment = {
        "id": _id(),
        "name": "gro-transformer-transform",
        "origin": "AWS::Lambda",
        "trace_id": "1-a",
        "start_time": T0 + 2.45,
        "end_time": T0 + 3.05,
        "parent_id": parts["split"]["id"],
    }
    transform_fn["parent_id"] = service_segment["id"]
    docs.append(service_segment)

    waits = [s for s in traces.record_steps(docs, EVENT).steps if s.kind == "wait"]

    assert waits[0].duration_ms == pytest.approx(600.0)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]

    assert traces.percentile(values, 50) == 50.0
    assert traces.percentile(values, 95) == 95.0
    assert traces.percentile([7.0], 95) == 7.0
    assert traces.percentile([], 50) == 0.0
    assert traces.percentile([3.0, 1.0, 2.0], 50) == 2.0


def file_documents() -> list[dict[str, Any]]:
    fn = function("gro-transformer-transform", "1-f", 0.0, 10.0)
    wrapper = sub("## transform", 0.0, 10.0)
    for n in range(1, 21):  # record n takes n * 10 ms; 19 and 20 are rejected / dead-lettered
        outcome = {19: "rejected", 20: "dead_lettered"}.get(n, "ok")
        nest(wrapper, record("transformer", "transform", n * 0.1, n * 0.1 + n / 100, f"e{n:02}", n))
        wrapper["subsegments"][-1]["annotations"]["outcome"] = outcome
    nest(fn, wrapper)
    split_fn = function("gro-splitter-split", "1-f", -1.0, 0.0)
    split = sub(
        "## split",
        -0.9,
        -0.1,
        service="splitter",
        operation="split",
        file_id=FILE,
        from_ordinal=1,
        to_ordinal=20,
    )
    nest(split_fn, split)
    elsewhere = function("gro-transformer-transform", "1-g", 0.0, 1.0)
    nest(elsewhere, record("transformer", "transform", 0.1, 0.2, "x1", 1))
    elsewhere["subsegments"][0]["annotations"]["file_id"] = OTHER_FILE
    return [fn, split_fn, elsewhere]


def test_a_file_summary_per_stage_with_its_slowest_and_failed_records() -> None:
    [summary] = traces.file_summaries(file_documents(), "incoming/DWP_D_20240101.xml")

    assert summary["file_id"] == FILE
    assert summary["records"] == 20
    split, transform = summary["stages"]
    assert (split["operation"], split["count"], split["failures"]) == ("split", 1, 0)
    assert transform["service"] == "transformer"
    assert transform["count"] == 20
    assert transform["p50_ms"] == pytest.approx(100.0)
    assert transform["p95_ms"] == pytest.approx(190.0)
    assert transform["max_ms"] == pytest.approx(200.0)
    assert transform["failures"] == 2
    assert transform["outcomes"] == {"dead_lettered": 1, "ok": 18, "rejected": 1}
    assert transform["service_versions"] == ["1.0.0"]
    assert [r["event_id"] for r in summary["slowest"]] == ["e20", "e19", "e18", "e17", "e16"]
    assert summary["slowest"][0]["elapsed_ms"] == pytest.approx(200.0)
    failed = {f["event_id"]: f for f in summary["failed"]}
    assert failed.keys() == {"e19", "e20"}
    assert failed["e20"]["last_failure"]["outcome"] == "dead_lettered"
    assert failed["e20"]["final_outcome"] == "dead_lettered"


def test_a_file_is_found_by_its_key_its_name_or_its_id() -> None:
    docs = file_documents()

    for key in ("DWP_D_20240101.xml", "incoming/DWP_D_20240101.xml", FILE):
        assert [s["file_id"] for s in traces.file_summaries(docs, key)] == [FILE]
    assert traces.file_summaries(docs, "DWP_D_20991231.xml") == []


def test_filter_expressions_quote_only_safe_values() -> None:
    assert traces.event_filter("abc") == 'annotation.event_id = "abc"'
    assert traces.file_filter(FILE) == f'annotation.file_id = "{FILE}"'
    assert traces.file_filter("in/DWP_D_20240101.xml") == (
        'annotation.file_id BEGINSWITH "DWP_D_20240101_xml-"'
    )
    assert traces.safe_value("0f3a-12:b")
    assert not traces.safe_value('x" OR annotation.y = "1')


def test_the_window_is_cut_into_pieces_x_ray_answers() -> None:
    day = 24 * 3600.0

    assert traces.windows(3600.0, T0) == [(T0 - 3600.0, T0)]
    assert traces.windows(2.5 * day, T0, margin_s=60.0) == [
        (T0 + 60.0 - day, T0 + 60.0),
        (T0 + 60.0 - 2 * day, T0 + 60.0 - day),
        (T0 - 2.5 * day, T0 + 60.0 - 2 * day),
    ]


class FakeXRay:
    """GetTraceSummaries and BatchGetTraces over stored documents, as paginators see them."""

    def __init__(self, traces_by_id: dict[str, list[dict[str, Any]]]) -> None:
        self.traces = traces_by_id
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def get_paginator(self, name: str) -> Any:
        fake = self

        class Paginator:
            def paginate(self, **kwargs: Any) -> list[dict[str, Any]]:
                fake.calls.append((name, kwargs))
                if name == "get_trace_summaries":
                    return [{"TraceSummaries": [{"Id": t} for t in fake.traces]}]
                return [
                    {
                        "Traces": [
                            {
                                "Id": t,
                                "Segments": [
                                    {"Id": d["id"], "Document": json.dumps(d)}
                                    for d in fake.traces[t]
                                ],
                            }
                            for t in kwargs["TraceIds"]
                        ]
                    }
                ]

        return Paginator()


def test_fetch_filters_on_aws_and_reads_the_whole_window_locally() -> None:
    docs, _ = happy_path()
    xray = FakeXRay({f"1-{n}": [d] for n, d in enumerate(docs)})

    remote = traces.fetch(
        xray, since_s=3600, filter_expression='annotation.event_id = "e"', local=False
    )
    local_calls = len(xray.calls)
    local = traces.fetch(xray, since_s=3600, filter_expression="ignored", local=True)

    assert len(remote) == len(local) == 4
    summaries = [kw for name, kw in xray.calls if name == "get_trace_summaries"]
    assert summaries[0]["FilterExpression"] == 'annotation.event_id = "e"'
    assert "FilterExpression" not in summaries[1]
    batches = [
        kw["TraceIds"] for name, kw in xray.calls[:local_calls] if name == "batch_get_traces"
    ]
    assert [len(b) for b in batches] == [4]  # at most 5 ids a call


def test_a_batch_s_other_records_wait_from_their_own_step_not_the_first_record_s() -> None:
    docs, parts = happy_path()
    # the transformer's invocation continued the trace of OTHER's message, sent at 2.0...
    first_sender = sub("## other split", 0.5, 2.0, operation="split", file_id=FILE)
    nest(docs[0], first_sender)
    docs[1]["parent_id"] = first_sender["id"]

    waits = [s for s in traces.record_steps(docs, EVENT).steps if s.kind == "wait"]

    # ...but this record's own sender is the split step that covered it (ended 1.9)
    assert waits[0].duration_ms == pytest.approx(600.0)
    assert waits[0].extra["after"] == parts["split"]["id"]


def test_subsegments_the_sdk_hung_on_an_earlier_invocation_are_put_back() -> None:
    """The SDK keeps its facade while the Root stays the same: invocation 2's subsegments name
    invocation 1's segment as parent."""
    first = function("gro-publisher-publish", "1-h", 0.0, 1.0)
    nest(first, record("publisher", "publish", 0.1, 0.9, OTHER, 4, outcome="published"))
    second = function("gro-publisher-publish", "1-h", 2.0, 3.0)
    stray = record("publisher", "publish", 2.1, 2.9, EVENT, 3, outcome="published")
    stray.update(type="subsegment", trace_id="1-h", parent_id=first["id"])

    steps = traces.record_steps([first, second, stray], EVENT).steps

    assert [(s.kind, s.id) for s in steps] == [("function", second["id"]), ("step", stray["id"])]
    assert steps[1].attempt == 1


def test_calls_to_aws_give_no_http_status_and_platform_statuses_can_fail() -> None:
    fn = function("gro-publisher-publish", "1-i", 0.0, 1.0)
    rec = record("publisher", "publish", 0.1, 0.9, EVENT, 3, outcome="retry")
    aws_call = {
        **sub("dynamodb", 0.2, 0.3),
        "namespace": "aws",
        "http": {"response": {"status": 200}},
    }
    post = {
        **sub("platform POST /events", 0.4, 0.5, operation="platform_post", outcome="503"),
        "namespace": "remote",
        "http": {"request": {"method": "POST"}, "response": {"status": 503}},
        "fault": True,
    }
    nest(fn, nest(rec, aws_call, post))

    steps = traces.record_steps([fn], EVENT).steps

    assert [(s.operation, s.http_status, s.outcome) for s in steps if s.kind == "step"] == [
        ("publish", None, "retry"),  # its one HTTP call is a step of its own; DynamoDB's is AWS
        ("platform_post", 503, "503"),
    ]
    assert [traces.is_failure(o) for o in ("503", "429", "409", "201", "retry", "served")] == [
        True,
        True,
        False,
        False,
        True,
        False,
    ]


def test_a_file_summary_counts_the_steps_that_name_only_the_event() -> None:
    docs, _ = happy_path()

    [summary] = traces.file_summaries(docs, FILE)

    stages = {(s["service"], s["operation"]): s["count"] for s in summary["stages"]}
    assert stages == {
        ("splitter", "split"): 1,
        ("transformer", "transform"): 2,
        ("publisher", "publish"): 1,
        ("publisher", "platform_post"): 1,
        ("publisher", "enrich"): 1,
    }
    assert summary["slowest"][0] == {"event_id": EVENT, "elapsed_ms": pytest.approx(3550.0)}


def test_calls_side_by_side_each_wait_from_the_record_s_last_step_not_from_each_other() -> None:
    docs, _ = happy_path()
    beside = function("gro-publisher-enrich", "1-b", 6.1, 6.3)  # the second consumer's call
    nest(beside, sub("## enrich", 6.12, 6.28, operation="enrich", event_id=EVENT, outcome="served"))
    docs.append(beside)

    trace = traces.record_steps(docs, EVENT)

    waits = [s for s in trace.steps if s.kind == "wait" and s.function == "gro-publisher-enrich"]
    assert [(w.attempt, w.duration_ms) for w in waits] == [
        (1, pytest.approx(1100.0)),
        (2, pytest.approx(1200.0)),
    ]
    assert trace.attempts() == {
        "gro-splitter-split": 1,
        "gro-transformer-transform": 1,
        "gro-publisher-publish": 1,
        "gro-publisher-enrich": 2,
    }


def test_a_failed_record_says_how_that_stage_finally_ended() -> None:
    docs, parts = happy_path()
    parts["publish"]["annotations"]["outcome"] = "dead_lettered"
    again = function("gro-publisher-publish", "1-a", 50.0, 51.0)
    nest(again, record("publisher", "publish", 50.1, 50.9, EVENT, 3, outcome="published"))
    docs.append(again)

    [summary] = traces.file_summaries(docs, FILE)

    [failed] = summary["failed"]
    assert failed["last_failure"]["outcome"] == "dead_lettered"
    assert failed["final_outcome"] == "published"


def test_the_event_ids_of_a_file_are_read_from_every_nested_subsegment() -> None:
    from ingest_cli.traces import event_ids_of_file

    document = {
        "id": "a1",
        "trace_id": "1-0-0",
        "name": "f",
        "start_time": 1.0,
        "end_time": 2.0,
        "subsegments": [
            {
                "id": "b1",
                "name": "record",
                "start_time": 1.1,
                "end_time": 1.2,
                "annotations": {"file_id": "F", "event_id": "gro1-x"},
                "subsegments": [
                    {
                        "id": "c1",
                        "name": "record",
                        "start_time": 1.15,
                        "end_time": 1.16,
                        "annotations": {"file_id": "G", "event_id": "gro1-y"},
                    }
                ],
            }
        ],
    }
    assert event_ids_of_file([document], "F") == {"gro1-x"}
    assert event_ids_of_file([document], "G") == {"gro1-y"}
