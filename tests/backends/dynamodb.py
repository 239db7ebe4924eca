"""DynamoDB: Amazon's DynamoDB Local (in memory), a fresh table per test.

Round trips are the API calls botocore makes, counted by a before-call event hook on every
client the store creates (the boto3 one and each event loop's aiobotocore one).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from cloudsessions import open_store
from cloudsessions.store import Store
from tests.services.dynamodb_local import dynamodb_local
from tests.stores import RoundTrips, unique_name

# DynamoDB Local reports TTL ENABLED as soon as UpdateTimeToLive returns, so purge_expired
# is a no-op on the tables the suites use (tests/test_dynamodb_store.py covers the scan).
PURGE_BY_TTL = True

# for_user(): a Query of the keys-only user index, then one BatchGetItem of the records.
LISTING_READS = 2
# revoke(): one DeleteItem conditional on the user id.
REVOKE_TRIPS = (0, 1)

REGION = "us-east-1"
READS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem"})
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})

_endpoint: str | None = None


def fake_credentials() -> None:
    """boto3 insists on credentials; DynamoDB Local takes any key of letters and digits."""
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "cloudsessionstest")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "cloudsessionstest")


def endpoint(services: contextlib.ExitStack) -> str:
    """The shared DynamoDB Local of this pytest process, started on first use."""
    global _endpoint
    if _endpoint is None:
        fake_credentials()
        _endpoint = services.enter_context(dynamodb_local())
        services.callback(_forget)
    return _endpoint


def _forget() -> None:
    global _endpoint
    _endpoint = None
    _spares.clear()
    _as_provisioned.clear()
    _clients.clear()


def table_url(table: str, endpoint_url: str) -> str:
    return f"dynamodb://{table}?region={REGION}&endpoint={endpoint_url}"


def url(folder: Path, services: contextlib.ExitStack) -> str:
    here = endpoint(services)
    if _spares:
        return table_url(_spares.pop(), here)
    table = unique_name("sessions")
    store_url = table_url(table, here)
    store = open_store(store_url)
    try:
        store.provision()
    finally:
        store.close()
    if "layout" not in _as_provisioned:
        _as_provisioned["layout"] = _layout(_client(here), table)
    return store_url


# Tables that a test has finished with, emptied, for the next test's url(): DynamoDB
# Local takes about a second to create a table and delete it again, which is most of what
# a front-door test on DynamoDB costs. Only a table that is still exactly as provisioned
# is taken back.
_spares: list[str] = []
_as_provisioned: dict[str, Any] = {}


def _layout(client: Any, table: str) -> Any:
    """What provision() decides about a table: its keys, indexes and TTL setting."""
    found = client.describe_table(TableName=table)["Table"]
    indexes = [
        (i["IndexName"], i["KeySchema"], i["Projection"])
        for i in found.get("GlobalSecondaryIndexes", [])
    ]
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    return (
        found["TableStatus"],
        found["KeySchema"],
        sorted(found["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
        sorted(indexes, key=lambda i: i[0]),
        found.get("LocalSecondaryIndexes"),
        found.get("StreamSpecification"),
        found["BillingModeSummary"]["BillingMode"] if "BillingModeSummary" in found else None,
        ttl.get("TimeToLiveStatus"),
        ttl.get("AttributeName"),
    )


def recycle(store_url: str) -> bool:
    """Empty the table of `store_url` for another test, if it is still as provisioned;
    False (drop it instead) if it is not, or if anything fails."""
    table = store_url.removeprefix("dynamodb://").split("?", 1)[0]
    if _endpoint is None or _endpoint not in store_url:
        return False
    client = _client(_endpoint)
    try:
        layout = _layout(client, table)
        if layout != _as_provisioned.get("layout"):
            return False
        keys = [k["AttributeName"] for k in layout[1]]
        paginator = client.get_paginator("scan")
        pages = paginator.paginate(
            TableName=table,
            ConsistentRead=True,
            ProjectionExpression=", ".join(f"#k{n}" for n in range(len(keys))),
            ExpressionAttributeNames={f"#k{n}": k for n, k in enumerate(keys)},
        )
        for page in pages:
            items = page["Items"]
            for start in range(0, len(items), 25):
                requests = [{"DeleteRequest": {"Key": i}} for i in items[start : start + 25]]
                while requests:
                    answer = client.batch_write_item(RequestItems={table: requests})
                    requests = answer.get("UnprocessedItems", {}).get(table, [])
        if client.scan(TableName=table, Select="COUNT", ConsistentRead=True)["Count"]:
            return False
    except Exception:  # any doubt: the table is dropped as before
        return False
    _spares.append(table)
    return True


_clients: dict[str, Any] = {}


def _client(endpoint_url: str) -> Any:
    if endpoint_url not in _clients:
        import boto3

        _clients[endpoint_url] = boto3.client(
            "dynamodb", region_name=REGION, endpoint_url=endpoint_url
        )
    return _clients[endpoint_url]


def counter(trips: RoundTrips) -> Any:
    def count(event_name: str, **kwargs: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        if operation in READS:
            trips.reads.append(operation)
        elif operation in WRITES:
            trips.writes.append(operation)

    return count


def instrument(url: str, trips: RoundTrips) -> Store:
    return open_store(url, event_hooks={"before-call.dynamodb": counter(trips)})
