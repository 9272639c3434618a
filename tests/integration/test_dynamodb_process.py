"""DynamoDB served by a moto server in a process of its own (localcloud.dynamodb_process): the
templates' tables are there, every client reaches the same items through either endpoint, the
functions go straight to it, and its calls are counted with the rest."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from localcloud import deploy
from localcloud.dynamodb_process import SYNC_PATH
from localcloud.lambda_runtime import FunctionSpec
from localcloud.moto_server import MotoServer


def _client(endpoint: str, caller: str | None = None) -> Any:
    """A DynamoDB client on `endpoint`; `caller` names it as a function does (its SDK app id)."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}, user_agent_appid=caller),
    )


def _tables(cloud: MotoServer) -> list[str]:
    outputs = deploy.deploy(cloud.client, "foundation")
    return [outputs["TemporaryStoreName"], outputs["LedgerName"]]


def test_dynamodb_runs_in_a_process_of_its_own(cloud: MotoServer) -> None:
    # given / then
    assert cloud.dynamodb.pid and cloud.dynamodb.pid != os.getpid()
    assert os.path.exists(f"/proc/{cloud.dynamodb.pid}")
    assert cloud.dynamodb.endpoint != cloud.endpoint


def test_the_templates_tables_are_served_by_it_with_their_keys_and_ttl(cloud: MotoServer) -> None:
    # given
    names = _tables(cloud)
    direct = _client(cloud.dynamodb.endpoint)
    forwarded = _client(cloud.endpoint)
    # then: the same table, whichever endpoint is asked
    for name in names:
        here = direct.describe_table(TableName=name)["Table"]
        there = forwarded.describe_table(TableName=name)["Table"]
        assert here["TableArn"] == there["TableArn"]
        assert here["KeySchema"] == there["KeySchema"] and here["KeySchema"]
    ttl = [direct.describe_time_to_live(TableName=name)["TimeToLiveDescription"] for name in names]
    assert any(t.get("TimeToLiveStatus") == "ENABLED" for t in ttl), ttl


def test_an_item_written_through_the_main_endpoint_is_read_from_the_dynamodb_process(
    cloud: MotoServer,
) -> None:
    # given
    name = _tables(cloud)[0]
    direct = _client(cloud.dynamodb.endpoint)
    key_schema = direct.describe_table(TableName=name)["Table"]["KeySchema"]
    attributes = {
        a["AttributeName"]: a["AttributeType"]
        for a in direct.describe_table(TableName=name)["Table"]["AttributeDefinitions"]
    }
    key = {
        k["AttributeName"]: {attributes[k["AttributeName"]]: "probe"}
        for k in key_schema
        if attributes[k["AttributeName"]] == "S"
    }
    assert len(key) == len(key_schema), "the test expects a table keyed by strings"
    # when
    _client(cloud.endpoint).put_item(TableName=name, Item={**key, "note": {"S": "forwarded"}})
    # then
    item = direct.get_item(TableName=name, Key=key, ConsistentRead=True)["Item"]
    assert item["note"] == {"S": "forwarded"}


def test_get_item_answers_every_kind_of_value_as_it_was_written(cloud: MotoServer) -> None:
    # given an item of every kind of value, binary included, and one of plain values only (the
    # server writes a plain item's answer itself: localcloud.dynamodb_answers)
    name = _tables(cloud)[0]
    direct = _client(cloud.dynamodb.endpoint)
    (key_name,) = [
        k["AttributeName"] for k in direct.describe_table(TableName=name)["Table"]["KeySchema"]
    ]
    plain = {
        "text": {"S": 'caf\u00e9 "quoted" \\ line\nbreak'},
        "number": {"N": "-12.5"},
        "flag": {"BOOL": False},
        "nothing": {"NULL": True},
        "texts": {"SS": ["a", "b"]},
        "numbers": {"NS": ["1", "2"]},
        "nested": {"M": {"list": {"L": [{"S": "x"}, {"M": {"n": {"N": "3"}}}]}}},
    }
    binary = {**plain, "blob": {"B": b"\x00\xff"}, "blobs": {"BS": [b"\x01"]}}
    for probe, item in (("plain", plain), ("binary", binary)):
        direct.put_item(TableName=name, Item={key_name: {"S": probe}, **item})

        # when it is read back, from either endpoint
        for client in (direct, _client(cloud.endpoint)):
            got = client.get_item(TableName=name, Key={key_name: {"S": probe}}, ConsistentRead=True)

            # then every value is as written
            assert got["Item"] == {key_name: {"S": probe}, **item}
    # and an absent item is no item
    assert "Item" not in direct.get_item(TableName=name, Key={key_name: {"S": "absent"}})


def test_a_table_lost_by_the_dynamodb_process_comes_back_at_the_next_sync(
    cloud: MotoServer,
) -> None:
    # given
    name = _tables(cloud)[0]
    direct = _client(cloud.dynamodb.endpoint)
    direct.delete_table(TableName=name)
    assert name not in direct.list_tables()["TableNames"]
    # when: what every local deploy's fix-ups ask
    request = urllib.request.Request(cloud.endpoint + SYNC_PATH, data=b"{}", method="POST")  # noqa: S310
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as answer:
        synced = json.loads(answer.read())
    # then
    assert synced["created"] == [name]
    assert name in direct.list_tables()["TableNames"]


def test_the_functions_dynamodb_calls_reach_it_directly_and_are_counted(
    cloud: MotoServer,
) -> None:
    # given
    mark = cloud.usage.mark()
    name = _tables(cloud)[0]
    assert cloud.runtime is not None
    spec = FunctionSpec(
        name="gro-publisher-publish",
        handler="publisher.handler.handler",
        env={},
        timeout_s=3,
        memory_mb=128,
        arn="arn:aws:lambda:us-east-1:123456789012:function:gro-publisher-publish",
        code_dir=Path("."),
    )
    env = cloud.runtime._environment(spec)
    # when: a caller named as a function calls DynamoDB directly
    function = _client(cloud.dynamodb.endpoint, "gro-publisher-publish")
    function.describe_table(TableName=name)
    function.scan(TableName=name, Limit=1)
    # then: counted by the main server's usage, under the function's name
    calls = cloud.usage.since(mark)["calls"]
    assert calls["gro-publisher-publish"]["dynamodb.Scan"]["calls"] == 1
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == cloud.dynamodb.endpoint
    assert env["AWS_ENDPOINT_URL"] == cloud.endpoint


def test_writes_are_counted_per_partition_key_with_the_most_in_one_second(
    cloud: MotoServer,
) -> None:
    # given
    name = _tables(cloud)[1]  # the ledger: keyed by pk alone
    function = _client(cloud.dynamodb.endpoint, "gro-reaper-consumed")
    # when: three writes to one key (a put, an update, a batched put), one to another
    function.put_item(TableName=name, Item={"pk": {"S": "hot"}, "n": {"N": "1"}})
    function.update_item(
        TableName=name,
        Key={"pk": {"S": "hot"}},
        UpdateExpression="SET n = :n",
        ExpressionAttributeValues={":n": {"N": "2"}},
    )
    function.batch_write_item(
        RequestItems={
            name: [
                {"PutRequest": {"Item": {"pk": {"S": "hot"}}}},
                {"PutRequest": {"Item": {"pk": {"S": "cold"}}}},
            ]
        }
    )
    function.get_item(TableName=name, Key={"pk": {"S": "hot"}})  # a read: not counted
    # then
    writes = cloud.dynamodb.key_writes()[name]
    assert writes["hot"][0] == 3 and 1 <= writes["hot"][1] <= 3
    assert writes["cold"] == [1, 1]


def test_a_table_made_through_the_api_survives_the_next_deploys_sync(cloud: MotoServer) -> None:
    # given
    direct = _client(cloud.dynamodb.endpoint)
    direct.create_table(
        TableName="made-by-hand",
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # when: a deploy, whose fix-ups sync the stacks' tables
    names = _tables(cloud)
    # then
    listed = direct.list_tables()["TableNames"]
    assert "made-by-hand" in listed
    assert set(names) <= set(listed)
