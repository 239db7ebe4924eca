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


def table_url(table: str, endpoint_url: str) -> str:
    return f"dynamodb://{table}?region={REGION}&endpoint={endpoint_url}"


def url(folder: Path, services: contextlib.ExitStack) -> str:
    store_url = table_url(unique_name("sessions"), endpoint(services))
    store = open_store(store_url)
    try:
        store.provision()
    finally:
        store.close()
    return store_url


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
