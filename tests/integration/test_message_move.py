"""SQS's message-move API (DLQ redrive) on the local cloud, through boto3 over HTTP, as on AWS.

moto lacks the API; `localcloud.message_move` adds it. These tests hold it to AWS's semantics.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from localcloud.moto_server import MotoServer


def _arn(sqs: Any, url: str) -> str:
    return str(
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
    )


def _queues(sqs: Any, *sources: str, dlq: str = "work-dlq") -> tuple[str, str, list[str]]:
    """A DLQ and queues whose RedrivePolicy names it: (dlq url, dlq arn, source urls)."""
    dlq_url = sqs.create_queue(QueueName=dlq)["QueueUrl"]
    dlq_arn = _arn(sqs, dlq_url)
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 3})
    urls = [
        sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
        for name in sources
    ]
    return dlq_url, dlq_arn, urls


def _fill(sqs: Any, url: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        sent = sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps({"n": i}),
            MessageAttributes={
                "failure-reason": {"DataType": "String", "StringValue": f"reason {i % 2}"},
                "attempts": {"DataType": "Number", "StringValue": "5"},
            },
        )
        ids.append(sent["MessageId"])
    return ids


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            return got
        got.extend(batch)


def _depth(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _wait_for(sqs: Any, source_arn: str, timeout: float = 10.0) -> dict[str, Any]:
    """The most recent task once it has ended."""
    deadline = time.monotonic() + timeout
    while True:
        task: dict[str, Any] = sqs.list_message_move_tasks(SourceArn=source_arn)["Results"][0]
        if task["Status"] in ("COMPLETED", "FAILED", "CANCELLED") or time.monotonic() > deadline:
            return task
        time.sleep(0.05)


def test_a_move_sends_every_message_anew_and_completes(cloud: MotoServer) -> None:
    sqs = cloud.client("sqs")
    dlq_url, dlq_arn, (work_url,) = _queues(sqs, "work")
    sent_ids = _fill(sqs, dlq_url, 12)
    before = {m["MessageId"]: m for m in _drain(sqs, dlq_url)}
    for m in before.values():  # received once on the DLQ: the moved copies must not say so
        sqs.change_message_visibility(
            QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
        )

    handle = sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=_arn(sqs, work_url))[
        "TaskHandle"
    ]
    task = _wait_for(sqs, dlq_arn)

    assert handle
    assert task["Status"] == "COMPLETED"
    assert task["ApproximateNumberOfMessagesMoved"] == 12
    assert task["ApproximateNumberOfMessagesToMove"] == 12
    assert task["SourceArn"] == dlq_arn
    assert task["DestinationArn"] == _arn(sqs, work_url)
    assert "TaskHandle" not in task  # AWS gives the handle of RUNNING tasks only
    assert abs(task["StartedTimestamp"] / 1000 - time.time()) < 60
    assert _depth(sqs, dlq_url) == 0
    moved = _drain(sqs, work_url)
    assert len(moved) == 12
    assert not {m["MessageId"] for m in moved} & set(sent_ids)  # new messages
    assert {m["Attributes"]["ApproximateReceiveCount"] for m in moved} == {"1"}
    originals = {m["Body"]: m for m in before.values()}
    for m in moved:
        assert m["Body"] in originals
        assert m["MessageAttributes"] == originals[m["Body"]]["MessageAttributes"]
        assert m["MD5OfMessageAttributes"] == originals[m["Body"]]["MD5OfMessageAttributes"]


def test_one_active_task_per_source_and_the_list_is_most_recent_first(cloud: MotoServer) -> None:
    sqs = cloud.client("sqs")
    dlq_url, dlq_arn, (work_url,) = _queues(sqs, "work")
    _fill(sqs, dlq_url, 6)
    destination = _arn(sqs, work_url)
    first = sqs.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=destination, MaxNumberOfMessagesPerSecond=2
    )["TaskHandle"]

    with pytest.raises(ClientError) as refused:
        sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=destination)
    running = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]
    sqs.cancel_message_move_task(TaskHandle=first)
    _wait_for(sqs, dlq_arn)
    sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=destination)
    _wait_for(sqs, dlq_arn)
    listed = sqs.list_message_move_tasks(SourceArn=dlq_arn, MaxResults=10)["Results"]

    assert refused.value.response["Error"]["QueryErrorCode"] == "UnsupportedOperation"
    assert isinstance(refused.value, sqs.exceptions.UnsupportedOperation)
    assert [t["Status"] for t in running] == ["RUNNING"]
    assert running[0]["TaskHandle"] == first
    assert running[0]["MaxNumberOfMessagesPerSecond"] == 2
    assert [t["Status"] for t in listed] == ["COMPLETED", "CANCELLED"]
    assert listed[0]["StartedTimestamp"] >= listed[1]["StartedTimestamp"]
    assert len(sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]) == 1  # default 1


def test_cancel_stops_the_move_and_says_how_many_moved(cloud: MotoServer) -> None:
    sqs = cloud.client("sqs")
    dlq_url, dlq_arn, (work_url,) = _queues(sqs, "work")
    _fill(sqs, dlq_url, 20)
    handle = sqs.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=_arn(sqs, work_url), MaxNumberOfMessagesPerSecond=10
    )["TaskHandle"]
    time.sleep(0.35)

    answer = sqs.cancel_message_move_task(TaskHandle=handle)
    cancelling = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"][0]["Status"]
    task = _wait_for(sqs, dlq_arn)
    with pytest.raises(ClientError) as again:
        sqs.cancel_message_move_task(TaskHandle=handle)

    assert answer["ApproximateNumberOfMessagesMoved"] < 20
    assert cancelling in ("CANCELLING", "CANCELLED")
    assert task["Status"] == "CANCELLED"
    moved = task["ApproximateNumberOfMessagesMoved"]
    assert moved < 20
    assert (_depth(sqs, work_url), _depth(sqs, dlq_url)) == (moved, 20 - moved)  # none lost
    assert again.value.response["Error"]["QueryErrorCode"] == "UnsupportedOperation"


def test_the_rate_is_roughly_honoured(cloud: MotoServer) -> None:
    sqs = cloud.client("sqs")
    dlq_url, dlq_arn, (work_url,) = _queues(sqs, "work")
    _fill(sqs, dlq_url, 20)
    destination = _arn(sqs, work_url)

    started = time.monotonic()
    sqs.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=destination, MaxNumberOfMessagesPerSecond=10
    )
    paced = _wait_for(sqs, dlq_arn)
    paced_seconds = time.monotonic() - started
    _fill(sqs, dlq_url, 20)
    started = time.monotonic()
    sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=destination)
    free = _wait_for(sqs, dlq_arn)
    free_seconds = time.monotonic() - started

    assert (paced["Status"], free["Status"]) == ("COMPLETED", "COMPLETED")
    assert paced_seconds >= 1.5  # 20 at 10/s: the last one is due after 1.9 s
    assert free_seconds < paced_seconds / 3
    assert _depth(sqs, work_url) == 40


def test_without_a_destination_messages_go_to_the_queue_whose_policy_names_the_dlq(
    cloud: MotoServer,
) -> None:
    sqs = cloud.client("sqs")
    dlq_url, dlq_arn, (work_url,) = _queues(sqs, "work")
    sqs.create_queue(QueueName="bystander")
    _fill(sqs, dlq_url, 3)

    sqs.start_message_move_task(SourceArn=dlq_arn)
    task = _wait_for(sqs, dlq_arn)

    assert task["Status"] == "COMPLETED"
    assert "DestinationArn" not in task  # AWS: only when the start named one
    assert _depth(sqs, work_url) == 3
    assert _depth(sqs, dlq_url) == 0


def test_without_a_destination_a_dlq_of_several_queues_fails_the_task(cloud: MotoServer) -> None:
    sqs = cloud.client("sqs")
    dlq_url, dlq_arn, _ = _queues(sqs, "work-a", "work-b")
    _fill(sqs, dlq_url, 2)

    sqs.start_message_move_task(SourceArn=dlq_arn)
    task = _wait_for(sqs, dlq_arn)

    assert task["Status"] == "FAILED"
    assert task["FailureReason"].startswith("CouldNotDetermineMessageSource")
    assert _depth(sqs, dlq_url) == 2  # nothing moved, nothing lost


def test_only_a_dlq_can_be_a_source_and_unknown_queues_and_handles_are_not_found(
    cloud: MotoServer,
) -> None:
    sqs = cloud.client("sqs")
    _, dlq_arn, (work_url,) = _queues(sqs, "work")
    missing = dlq_arn.rsplit(":", 1)[0] + ":nope"

    with pytest.raises(ClientError) as not_a_dlq:
        sqs.start_message_move_task(SourceArn=_arn(sqs, work_url))
    with pytest.raises(ClientError) as no_source:
        sqs.start_message_move_task(SourceArn=missing)
    with pytest.raises(ClientError) as no_destination:
        sqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=missing)
    with pytest.raises(ClientError) as bad_rate:
        sqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=501)
    with pytest.raises(ClientError) as no_task:
        sqs.cancel_message_move_task(TaskHandle="not-a-handle")

    def code(raised: pytest.ExceptionInfo[ClientError]) -> str:
        return str(raised.value.response["Error"]["QueryErrorCode"])

    assert code(not_a_dlq) == "InvalidParameterValue"
    assert code(no_source) == code(no_destination) == code(no_task) == "ResourceNotFoundException"
    assert code(bad_rate) == "InvalidParameterValue"
    assert sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"] == []
