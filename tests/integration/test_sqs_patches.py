"""SQS on the local cloud keeps moto's semantics where `moto_server` makes it cheaper at depth:
receives hand out visible messages only, each once until its visibility ends; a delete finds
its message by any handle it had, twice is fine, an unknown handle is refused."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from localcloud.moto_server import MotoServer


def _queue(cloud: MotoServer, name: str) -> str:
    url: str = cloud.client("sqs").create_queue(
        QueueName=name, Attributes={"VisibilityTimeout": "30"}
    )["QueueUrl"]
    return url


def _send(cloud: MotoServer, url: str, count: int) -> None:
    sqs = cloud.client("sqs")
    for start in range(0, count, 10):
        entries = [
            {"Id": str(n), "MessageBody": f"m{n}"} for n in range(start, min(count, start + 10))
        ]
        assert not sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed")


def _depth(cloud: MotoServer, url: str) -> tuple[int, int]:
    attributes = cloud.client("sqs").get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    )


def test_receives_at_depth_hand_out_each_message_once_and_deletes_empty_the_queue(
    cloud: MotoServer,
) -> None:
    # given
    sqs = cloud.client("sqs")
    url = _queue(cloud, "depth")
    _send(cloud, url, 500)
    # when: received ten at a time until none is left visible, each batch deleted
    seen: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        seen += [m["Body"] for m in got]
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(got)]
        assert not sqs.delete_message_batch(QueueUrl=url, Entries=entries).get("Failed")
    # then
    assert sorted(seen) == sorted(f"m{n}" for n in range(500))
    assert _depth(cloud, url) == (0, 0)


def test_a_message_in_flight_is_not_received_again_until_its_visibility_ends(
    cloud: MotoServer,
) -> None:
    # given
    sqs = cloud.client("sqs")
    url = _queue(cloud, "in-flight")
    _send(cloud, url, 3)
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    # when / then: nothing visible while all three are in flight
    assert sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []
    assert _depth(cloud, url) == (0, 3)
    # when: one is made visible again
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    time.sleep(0.01)
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    # then
    assert [m["Body"] for m in again] == [first[0]["Body"]]
    assert again[0]["ReceiptHandle"] != first[0]["ReceiptHandle"]


def test_a_delete_finds_its_message_by_an_older_handle_and_twice_is_fine(
    cloud: MotoServer,
) -> None:
    # given: a message received twice, so it has had two handles
    sqs = cloud.client("sqs")
    url = _queue(cloud, "handles")
    _send(cloud, url, 1)
    old = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=old, VisibilityTimeout=0)
    time.sleep(0.01)
    new = sqs.receive_message(QueueUrl=url)["Messages"][0]["ReceiptHandle"]
    assert new != old
    # when
    sqs.delete_message(QueueUrl=url, ReceiptHandle=old)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=new)  # already gone: no error
    # then
    assert _depth(cloud, url) == (0, 0)


def test_a_handle_of_another_queue_or_none_at_all_is_refused(cloud: MotoServer) -> None:
    # given
    sqs = cloud.client("sqs")
    here, there = _queue(cloud, "here"), _queue(cloud, "there")
    _send(cloud, here, 1)
    _send(cloud, there, 1)
    theirs = sqs.receive_message(QueueUrl=there)["Messages"][0]["ReceiptHandle"]
    # when / then
    for handle in (theirs, "not-a-handle"):
        with pytest.raises(ClientError) as refused:
            sqs.delete_message(QueueUrl=here, ReceiptHandle=handle)
        assert refused.value.response["Error"]["Code"] == "ReceiptHandleIsInvalid"
    assert _depth(cloud, there) == (0, 1)
