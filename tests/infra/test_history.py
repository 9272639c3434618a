"""An execution's history stays far below Step Functions' 25,000 events, whatever the file's
size and pace: counted by running the state machine's own definition (its states, Choices,
Retries and Wait) against a model of a file, with the reaper's own wait (`next_wait`) and the
templates' default parameters. The model's paces are stated, slow on purpose."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from cfnlint.decode.cfn_yaml import load as load_template

from deploytools.stacks import ROOT, TEMPLATES
from reaper.reap import WAIT_SHARE, next_wait

ASL: dict[str, Any] = json.loads((ROOT / "infra" / "ingest-file.asl.json").read_text())
T = {name: load_template(str(TEMPLATES[name])) for name in ("foundation", "splitter", "reaper")}
LIMIT = 25_000  # a Standard workflow's execution history

# the events each state adds to the history each time it runs (HistoryEvent types)
EVENTS = {
    "Task": (
        "TaskStateEntered",
        "TaskScheduled",
        "TaskStarted",
        "TaskSucceeded",
        "TaskStateExited",
    ),
    "Choice": ("ChoiceStateEntered", "ChoiceStateExited"),
    "Wait": ("WaitStateEntered", "WaitStateExited"),
    "Succeed": ("SucceedStateEntered", "SucceedStateExited"),
    "Fail": ("FailStateEntered",),
}
RETRIED = ("TaskFailed", "TaskScheduled", "TaskStarted")  # an attempt failed, the next one runs
STALLED = ("TaskStateEntered", "TaskScheduled", "TaskStarted", "TaskFailed", "ExecutionFailed")


def default(stack: str, name: str) -> int:
    return int(T[stack]["Parameters"][name]["Default"])


BASE_WAIT = default("splitter", "RecordWaitSeconds")
MAX_WAIT = default("reaper", "MaxCheckWaitSeconds")
BUDGET = default("splitter", "SplitTimeBudgetSeconds")
STALL = default("reaper", "StallSeconds")


@dataclass(frozen=True)
class File:
    """How a file goes: split at `split_rate` records/s in steps of the time budget, its last
    record terminal `drain_seconds` after the split, or (`stall`) records stop ending then."""

    records: int
    split_rate: float
    drain_seconds: float
    stall: bool = False
    split_retried: int = 0  # failed attempts of each Split step, retried (at most its Retry's)


@dataclass
class Run:
    events: Counter[str]
    split_steps: int = 0
    checks: int = 0
    seconds_after_last_record: float | None = None
    succeeded: bool = False


def execute(file: File) -> Run:
    """Walk the definition from StartAt as Step Functions would for this file, counting."""
    run = Run(events=Counter({"ExecutionStarted": 1}))
    state: dict[str, Any] = {}
    emitted, clock, since = 0, 0.0, None  # clock: seconds since the split ended
    name = ASL["StartAt"]
    while True:
        spec = ASL["States"][name]
        kind = spec["Type"]
        if kind == "Task":
            function = spec["Parameters"]["FunctionName"]
            stalled = clock > file.drain_seconds + STALL
            if function == "gro-reaper-finish-file" and file.stall and stalled:
                run.events.update(STALLED)  # RecordsUnaccountedError: the execution fails
                return run
            run.events.update(EVENTS[kind])
            if function == "gro-splitter-split":
                attempts = sum(r["MaxAttempts"] for r in spec.get("Retry", []))
                run.events.update(RETRIED * min(file.split_retried, attempts))
                run.split_steps += 1
                emitted = min(file.records, emitted + int(file.split_rate * BUDGET))
                state = {"done": emitted == file.records, "wait_seconds": BASE_WAIT}
            elif function == "gro-reaper-finish-file":
                run.checks += 1
                since = clock if since is None else since
                finished = not file.stall and clock >= file.drain_seconds
                if finished:
                    run.seconds_after_last_record = clock - file.drain_seconds
                wait = next_wait(BASE_WAIT, clock - since, MAX_WAIT)
                state = {"finished": finished, "wait_seconds": wait}
            else:
                raise AssertionError(f"the model does not know {function}: teach it")
            name = spec["Next"]
        elif kind == "Choice":
            run.events.update(EVENTS[kind])
            name = spec["Default"]
            for rule in spec["Choices"]:
                assert set(rule) == {"Variable", "BooleanEquals", "Next"}, rule
                if state[rule["Variable"].removeprefix("$.")] is rule["BooleanEquals"]:
                    name = rule["Next"]
                    break
        elif kind == "Wait":
            run.events.update(EVENTS[kind])
            clock += state[spec["SecondsPath"].removeprefix("$.")]
            name = spec["Next"]
        elif kind == "Succeed":
            run.events.update(EVENTS[kind])
            run.events["ExecutionSucceeded"] += 1
            run.succeeded = True
            return run
        else:
            raise AssertionError(f"the model does not expect a {kind} state on this path")


def total(run: Run) -> int:
    return sum(run.events.values())


# 1,000,000 records, at stated slow paces: the splitter emits 100 records/s (on AWS it sends
# 8 x 10-entry batches at once, thousands a second), and the platform takes 20 a second, so
# the last record is terminal 50,000 s (13.9 h) after the split, counted from its end
MILLION_SLOW = File(records=1_000_000, split_rate=100, drain_seconds=1_000_000 / 20)


def test_a_million_records_at_a_slow_pace_take_a_few_thousand_events() -> None:
    run = execute(MILLION_SLOW)

    assert run.succeeded
    assert run.split_steps == math.ceil(1_000_000 / (100 * BUDGET)) == 12
    assert total(run) < 5_000, run.events
    # and the file is finished at most MAX_WAIT after its last record
    assert run.seconds_after_last_record is not None
    assert run.seconds_after_last_record <= MAX_WAIT


def test_a_million_records_whose_last_ones_stall_fail_within_a_few_thousand_events() -> None:
    # every split step dying and retried as far as the Retry allows, and then the records stop
    # reaching terminal states, at once or after the slow drain: the longest legitimate stall
    worst = File(records=1_000_000, split_rate=100, drain_seconds=0, stall=True, split_retried=3)
    stalled = File(
        records=1_000_000,
        split_rate=100,
        drain_seconds=MILLION_SLOW.drain_seconds,
        stall=True,
        split_retried=3,
    )

    for file in (worst, stalled):
        run = execute(file)
        assert not run.succeeded
        assert run.events["ExecutionFailed"] == 1
        assert total(run) < 5_000, run.events


def test_the_longest_an_execution_can_wait_stays_well_under_the_limit() -> None:
    # no record can end later than its queues keep it: a record waits in records-to-transform,
    # then (as an event) in events-to-publish, each up to its retention; after that nothing
    # moves, and the stall ends the execution
    resources = T["foundation"]["Resources"]
    retention = {
        r["Properties"]["QueueName"]: int(r["Properties"]["MessageRetentionPeriod"])
        for r in resources.values()
        if r["Type"] == "AWS::SQS::Queue"
    }
    longest = retention["gro-records-to-transform"] + retention["gro-events-to-publish"]
    file = File(records=1_000_000, split_rate=100, drain_seconds=longest + STALL, split_retried=3)

    run = execute(file)

    assert total(run) < LIMIT // 2, run.events


def test_a_small_file_is_finished_within_the_base_wait_of_its_last_record() -> None:
    run = execute(File(records=1_000, split_rate=100, drain_seconds=30))

    assert run.succeeded
    assert run.seconds_after_last_record is not None
    assert run.seconds_after_last_record <= BASE_WAIT
    assert total(run) < 100


def test_a_check_loop_costs_nine_events_and_the_waits_reach_the_cap() -> None:
    # what the counts above stand on: a check, its Choice and its Wait (5 + 2 + 2)
    loop = {"CheckRecords", "Finished?", "WaitForRecords"}
    assert sum(len(EVENTS[ASL["States"][s]["Type"]]) for s in loop) == 9
    assert next_wait(BASE_WAIT, 0, MAX_WAIT) == BASE_WAIT
    assert next_wait(BASE_WAIT, WAIT_SHARE * MAX_WAIT, MAX_WAIT) == MAX_WAIT
    assert next_wait(BASE_WAIT, 10 * WAIT_SHARE * MAX_WAIT, MAX_WAIT) == MAX_WAIT
