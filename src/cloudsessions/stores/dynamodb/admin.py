"""What the DynamoDB store does outside requests: provision, drop, check, purge.

`cloudsessions init` (provision) creates the table, or completes an existing one (the
user index, TTL) after checking that its key matches the options; `check` reports the
same without changing anything. None of this runs on a request.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ...errors import ConfigurationError, StoreUnavailable
from ...store import CheckResult, Progress
from .requests import code

if TYPE_CHECKING:
    from .store import DynamoDBStore

SESSION_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:BatchWriteItem",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive",
)
ADMIN_ACTIONS = (
    "dynamodb:CreateTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
)
# A hint in messages, formatted with the store.
INIT_HINT = "run `cloudsessions init --store '{store.url}'`"
_WAIT = {"Delay": 2, "MaxAttempts": 150}  # boto3's table waiters: up to 5 minutes


def provision(store: DynamoDBStore) -> list[str]:
    o, client = store.options, store.client
    done: list[str] = []
    table = _describe_table(store)
    if table is None:
        attributes = [
            {"AttributeName": o.partition_key, "AttributeType": "S"},
            {"AttributeName": o.user_attribute, "AttributeType": "S"},
        ]
        schema = [{"AttributeName": o.partition_key, "KeyType": "HASH"}]
        if o.sort_key:
            attributes.append({"AttributeName": o.sort_key, "AttributeType": "S"})
            schema.append({"AttributeName": o.sort_key, "KeyType": "RANGE"})
        with store._errors("create the table"):
            client.create_table(
                TableName=store.table,
                AttributeDefinitions=attributes,
                KeySchema=schema,
                BillingMode=o.billing_mode,
                GlobalSecondaryIndexes=[_index_spec(store)],
                **_throughput(store),
            )
            client.get_waiter("table_exists").wait(TableName=store.table, WaiterConfig=_WAIT)
        done.append(f"created {store.describe()} ({o.billing_mode}) with index {o.user_index}")
        table = _describe_table(store) or {}
    problem = _key_schema_problem(store, table)
    if problem:
        raise ConfigurationError(f"{store.describe()}: {problem}")
    if _index(store, table) is None:
        with store._errors("add the user index"):
            client.update_table(
                TableName=store.table,
                AttributeDefinitions=[{"AttributeName": o.user_attribute, "AttributeType": "S"}],
                GlobalSecondaryIndexUpdates=[{"Create": _index_spec(store)}],
            )
        _wait_for_index(store)
        done.append(f"created index {o.user_index} on {o.user_attribute}")
    status, attribute = _time_to_live(store)
    if status in ("ENABLED", "ENABLING") and attribute != o.ttl_attribute:
        raise ConfigurationError(
            f"{store.describe()}: TTL is on for attribute {attribute!r}, not"
            f" {o.ttl_attribute!r}: set ttl_attribute={attribute} or change the table"
        )
    if status == "DISABLED":
        with store._errors("enable time to live"):
            client.update_time_to_live(
                TableName=store.table,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": o.ttl_attribute},
            )
        done.append(f"enabled TTL on attribute {o.ttl_attribute}")
    return done


def drop(store: DynamoDBStore) -> None:
    with store._errors("delete the table"):
        try:
            store.client.delete_table(TableName=store.table)
        except ClientError as exc:
            if code(exc) == "ResourceNotFoundException":
                return
            raise
        store.client.get_waiter("table_not_exists").wait(TableName=store.table, WaiterConfig=_WAIT)


def check(store: DynamoDBStore) -> list[CheckResult]:
    o = store.options
    hint = INIT_HINT.format(store=store)
    table = _describe_table(store)
    if table is None:
        return [CheckResult("table", False, f"{store.describe()} not found: {hint}")]
    status = table.get("TableStatus", "?")
    billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    items = f"about {table.get('ItemCount', 0)} items"
    results = [
        CheckResult("table", status == "ACTIVE", f"{store.table}: {status}, {billing}, {items}")
    ]
    problem = _key_schema_problem(store, table)
    key = f"partition key {o.partition_key} (S)"
    if o.sort_key:
        key += f", sort key {o.sort_key} = {o.sort_key_value!r}"
    results.append(CheckResult("key schema", not problem, problem or key))
    index = _index(store, table)
    if index is None:
        results.append(CheckResult("user index", False, f"{o.user_index} missing: {hint}"))
    else:
        projection = index.get("Projection", {})
        projected = projection.get("ProjectionType") == "ALL" or (
            o.ttl_attribute in projection.get("NonKeyAttributes", [])
        )
        index_key = [k["AttributeName"] for k in index.get("KeySchema", [])][:1]
        ok = index_key == [o.user_attribute] and projected
        detail = f"{o.user_index} on {o.user_attribute}: {index.get('IndexStatus', '?')}" + (
            "" if projected else f"; it must project {o.ttl_attribute}"
        )
        results.append(
            CheckResult("user index", ok and index.get("IndexStatus") == "ACTIVE", detail)
        )
    ttl_status, ttl_attribute = _time_to_live(store)
    ttl_ok = ttl_status in ("ENABLED", "ENABLING") and ttl_attribute == o.ttl_attribute
    results.append(
        CheckResult(
            "time to live",
            ttl_ok,
            f"{ttl_status} on {ttl_attribute}"
            if ttl_ok
            else f"{ttl_status} (on {ttl_attribute or 'no attribute'}): expired sessions stay"
            f" until `cloudsessions purge` scans them; {hint} to enable TTL"
            f" on {o.ttl_attribute}",
        )
    )
    actions = (
        f"sessions: {', '.join(SESSION_ACTIONS)}; init/destroy also: {', '.join(ADMIN_ACTIONS)}"
    )
    results.append(CheckResult("IAM actions", True, actions))
    return results


def ttl_enabled(store: DynamoDBStore) -> bool:
    status, attribute = _time_to_live(store)
    return status in ("ENABLED", "ENABLING") and attribute == store.options.ttl_attribute


def purge_expired(
    store: DynamoDBStore, now: float, batch_size: int, progress: Progress | None
) -> int:
    if ttl_enabled(store):
        return 0  # DynamoDB's TTL removes them; reads ignore them until it does.
    batch_size = max(batch_size, 1)
    removed = 0
    pending: list[str] = []

    def flush(rids: list[str]) -> None:
        nonlocal removed
        store.delete_records(rids)
        removed += len(rids)
        if progress is not None:
            progress(removed)

    with store._errors("scan for expired sessions"):
        scan = store._requests.expired_scan(now)
        for page in store.client.get_paginator("scan").paginate(**scan):
            pending += [store._requests.record_id(item) for item in page.get("Items", [])]
            while len(pending) >= batch_size:
                flush(pending[:batch_size])
                del pending[:batch_size]
    if pending:
        flush(pending)
    return removed


def _describe_table(store: DynamoDBStore) -> dict[str, Any] | None:
    with store._errors("describe the table"):
        try:
            table: dict[str, Any] = store.client.describe_table(TableName=store.table)["Table"]
        except ClientError as exc:
            if code(exc) == "ResourceNotFoundException":
                return None
            raise
    return table


def _time_to_live(store: DynamoDBStore) -> tuple[str | None, str | None]:
    with store._errors("describe the table's time to live"):
        described = store.client.describe_time_to_live(TableName=store.table)
    ttl = described.get("TimeToLiveDescription", {})
    return ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")


def _throughput(store: DynamoDBStore) -> dict[str, Any]:
    o = store.options
    if o.billing_mode != "PROVISIONED":
        return {}
    return {
        "ProvisionedThroughput": {
            "ReadCapacityUnits": o.read_capacity,
            "WriteCapacityUnits": o.write_capacity,
        }
    }


def _index_spec(store: DynamoDBStore) -> dict[str, Any]:
    o = store.options
    return {
        "IndexName": o.user_index,
        "KeySchema": [{"AttributeName": o.user_attribute, "KeyType": "HASH"}],
        # Keys are always projected; the expiry lets for_user skip expired sessions.
        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": [o.ttl_attribute]},
        **_throughput(store),
    }


def _wait_for_index(store: DynamoDBStore, timeout: float = 1800.0) -> None:
    # Building an index on a full table takes minutes; botocore has no waiter for it.
    deadline = time.monotonic() + timeout
    pause = 0.25
    while True:
        index = _index(store, _describe_table(store) or {})
        if index is not None and index.get("IndexStatus", "ACTIVE") == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise StoreUnavailable(
                f"{store.describe()}: index {store.options.user_index} not ACTIVE"
                f" after {timeout:.0f} s"
            )
        time.sleep(pause)
        pause = min(pause * 2, 10.0)


def _index(store: DynamoDBStore, table: Mapping[str, Any]) -> dict[str, Any] | None:
    for index in table.get("GlobalSecondaryIndexes", []):
        if index.get("IndexName") == store.options.user_index:
            found: dict[str, Any] = index
            return found
    return None


def _key_schema_problem(store: DynamoDBStore, table: Mapping[str, Any]) -> str:
    o = store.options
    schema = {k["KeyType"]: k["AttributeName"] for k in table.get("KeySchema", [])}
    types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
    wanted = {"HASH": o.partition_key}
    if o.sort_key:
        wanted["RANGE"] = o.sort_key
    if schema != wanted:
        found = ", ".join(f"{t} {n}" for t, n in schema.items())
        return (
            f"the table's key is ({found}) but the store is configured for"
            f" partition_key={o.partition_key}"
            + (f", sort_key={o.sort_key}" if o.sort_key else " and no sort key")
        )
    bad = [n for n in wanted.values() if types.get(n) != "S"]
    if bad:
        return f"key attribute(s) {', '.join(bad)} must be of type S (string)"
    return ""
