"""What the DynamoDB store does outside requests: provision, drop, check, purge.

`cloudsessions init` (provision) creates the table, or completes an existing one (the
user index, TTL) after checking that its key matches the options; `check` reports the
same without changing anything, and probes each IAM action sessions need with a request
that cannot change anything (see _probes). None of this runs on a request.

The user index projects keys only. Tables made by earlier versions have one that also
projects the expiry: it works (a listing reads the records themselves), but every save of
a signed-in session, which refreshes the expiry, then writes the index too. `check` warns
of it and `init --fix` replaces it (see _replace_index).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ...errors import ConfigurationError, StoreUnavailable
from ...store import CheckResult, Progress
from .requests import code, message

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
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive",
)
ADMIN_ACTIONS = (
    "dynamodb:CreateTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
)
# AWS answers these when it cannot tell who signed the request (a wrong access key or
# secret, expired temporary credentials): before any IAM policy is consulted.
KEY_ERRORS = (
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignatureException",
    "MissingAuthenticationTokenException",
    "ExpiredTokenException",
)
# Never a record id (those are SHA-256 hex digests): what the IAM probes name.
PROBE_ID = "cloudsessions-check:no-such-session"
# A hint in messages, formatted with the store.
INIT_HINT = "run `cloudsessions init --store '{store.url}'`"
_WAIT = {"Delay": 2, "MaxAttempts": 150}  # boto3's table waiters: up to 5 minutes


def provision(store: DynamoDBStore, *, fix: bool = False) -> list[str]:
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
    index = _index(store, table)
    if index is None:
        _create_index(store)
        done.append(f"created index {o.user_index} on {o.user_attribute}")
    elif not _on_user(store, index):
        if not fix:
            raise ConfigurationError(
                f"{store.describe()}: index {o.user_index} is on {_index_key(index)}, not on"
                f" {o.user_attribute}. Nothing was changed; `cloudsessions init --fix`"
                " (provision(fix=True)) rebuilds it"
            )
        done.append(_replace_index(store, index))
    elif _projected(index) and fix:
        # Without fix it is left: it works, and check() warns of what it costs.
        done.append(_replace_index(store, index))
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
    """DeleteTable, and wait until it is gone; a table that does not exist is left so."""
    with store._errors("delete the table"):
        try:
            store.client.delete_table(TableName=store.table)
        except ClientError as exc:
            if code(exc) == "ResourceNotFoundException":
                return
            raise
        store.client.get_waiter("table_not_exists").wait(TableName=store.table, WaiterConfig=_WAIT)


def drop_target(store: DynamoDBStore) -> tuple[bool, str]:
    """What drop() deletes, or why there is nothing to (see cloudsessions.admin)."""
    table = _describe_table(store)
    if table is None:
        return False, (
            f"{store.describe()} does not exist: check the table name, region= and endpoint="
        )
    # ItemCount is DynamoDB's own figure, refreshed about every six hours.
    return True, f"{store.describe()} with about {table.get('ItemCount', 0)} item(s)"


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
        results.append(_check_index(store, index))
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
    results.append(_check_actions(store, has_index=index is not None))
    return results


def _check_index(store: DynamoDBStore, index: Mapping[str, Any]) -> CheckResult:
    """Fails if the index cannot serve (another key, not ACTIVE); warns if it projects
    more than keys."""
    o = store.options
    status = index.get("IndexStatus", "?")
    key = _index_key(index)
    detail = f"{o.user_index} on {', '.join(key)}: {status}"
    if not _on_user(store, index):
        fix = f"it must be on {o.user_attribute}: run `cloudsessions init --fix`"
        return CheckResult("user index", False, f"{detail}; {fix}")
    if status != "ACTIVE":
        return CheckResult("user index", False, detail)
    projected = _projected(index)
    if projected:
        return CheckResult(
            "user index",
            False,
            f"{detail}, projecting {projected}: every signed-in save also writes the"
            " index; run `cloudsessions init --fix` (keys only)",
            warning=True,
        )
    return CheckResult("user index", True, f"{detail}, keys only")


def _probes(store: DynamoDBStore) -> dict[str, tuple[str, Callable[[], object]]]:
    """action -> (how it is probed, the request), for the data-plane actions sessions use.

    IAM decides before DynamoDB reads the item: a denied action answers
    AccessDeniedException, an allowed one runs. Each request names an item that cannot
    exist (PROBE_ID), and each write is conditional on it existing, so it fails with
    ConditionalCheckFailedException and writes nothing; deleting an absent item in a batch
    deletes nothing.
    """
    o, client, table = store.options, store.client, store.table
    key = store._requests.key(PROBE_ID)
    absent = {
        "ConditionExpression": "attribute_exists(#p)",
        "ExpressionAttributeNames": {"#p": o.partition_key},
    }
    return {
        "dynamodb:GetItem": (
            "a key that cannot exist",
            lambda: client.get_item(TableName=table, Key=key),
        ),
        "dynamodb:PutItem": (
            "conditional on a key that cannot exist: writes nothing",
            lambda: client.put_item(TableName=table, Item=key, **absent),
        ),
        "dynamodb:UpdateItem": (
            "conditional on a key that cannot exist: writes nothing",
            lambda: client.update_item(
                TableName=table,
                Key=key,
                UpdateExpression="SET #t = :t",
                ConditionExpression="attribute_exists(#p)",
                ExpressionAttributeNames={"#p": o.partition_key, "#t": o.ttl_attribute},
                ExpressionAttributeValues={":t": {"N": "0"}},
            ),
        ),
        "dynamodb:DeleteItem": (
            "conditional on a key that cannot exist: deletes nothing",
            lambda: client.delete_item(TableName=table, Key=key, **absent),
        ),
        "dynamodb:Query": (
            f"index {o.user_index}, a user id of no session",
            lambda: client.query(
                TableName=table,
                IndexName=o.user_index,
                KeyConditionExpression="#u = :u",
                ExpressionAttributeNames={"#u": o.user_attribute},
                ExpressionAttributeValues={":u": {"S": PROBE_ID}},
                Limit=1,
            ),
        ),
        "dynamodb:Scan": (
            "a count of one item",
            lambda: client.scan(TableName=table, Limit=1, Select="COUNT"),
        ),
        "dynamodb:BatchWriteItem": (
            "a delete of a key that cannot exist: deletes nothing",
            lambda: client.batch_write_item(
                RequestItems={table: [{"DeleteRequest": {"Key": key}}]}
            ),
        ),
        "dynamodb:BatchGetItem": (
            "a key that cannot exist",
            lambda: client.batch_get_item(RequestItems={table: {"Keys": [key]}}),
        ),
    }


def _check_actions(store: DynamoDBStore, *, has_index: bool) -> CheckResult:
    """One line per action: allowed, DENIED, or why it was not verified."""
    lines = []
    with store._errors("probe the IAM actions"):  # a bad key, no network: raised and mapped
        for action, (how, request) in _probes(store).items():
            if action == "dynamodb:Query" and not has_index:
                lines.append(("not verifiable", action, "no user index to query yet: run init"))
                continue
            status, reason = _probe(request)
            lines.append((status, action, reason or how))
    # check() has just made these two calls: allowed, or it would have stopped there.
    lines += [
        ("allowed", action, "check read the table's settings")
        for action in ("dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive")
    ]
    lines += [
        ("not verifiable", action, "only by changing the table; init/destroy need it")
        for action in ADMIN_ACTIONS
    ]
    denied = [action for status, action, _ in lines if status == "DENIED"]
    unsure = [action for status, action, _ in lines if status == "not verified"]
    if denied:
        summary = (
            f"{len(denied)} denied: add them to the credentials' IAM policy, on the table"
            " and its indexes"
        )
    elif unsure:
        summary = f"{len(unsure)} not verified (below)"
    else:
        summary = "every action sessions need is allowed"
        if store.options.endpoint:
            summary += f" by {store.options.endpoint} (an emulator may allow anything)"
    width = max(len(status) for status, _, _ in lines)
    detail = "\n".join(
        [summary, *(f"{status.ljust(width)}  {action} ({why})" for status, action, why in lines)]
    )
    return CheckResult("IAM actions", not denied and not unsure, detail, warning=not denied)


def _probe(request: Callable[[], object]) -> tuple[str, str]:
    """(status, why if not allowed) of one probe request."""
    try:
        request()
    except ClientError as exc:
        if code(exc) == "ConditionalCheckFailedException":
            return "allowed", ""
        if code(exc) == "AccessDeniedException":
            return "DENIED", message(exc)
        if code(exc) in KEY_ERRORS:
            raise  # the credentials themselves: check cannot go on
        # A missing index, throttling, a server error: the answer says nothing of IAM.
        return "not verified", f"{code(exc)}: {message(exc)}"
    return "allowed", ""


def ttl_enabled(store: DynamoDBStore) -> bool:
    status, attribute = _time_to_live(store)
    return status in ("ENABLED", "ENABLING") and attribute == store.options.ttl_attribute


def purge_note(store: DynamoDBStore) -> str | None:
    """Why purge leaves expired sessions, if it does (see cloudsessions.admin)."""
    if not ttl_enabled(store):
        return None
    return (
        f"time to live is on (attribute {store.options.ttl_attribute}): DynamoDB deletes"
        " expired sessions itself, usually within a few days of their expiry, and reads"
        " ignore them until then, so purge does not scan the table for them"
    )


def purge_expired(
    store: DynamoDBStore, now: float, batch_size: int, progress: Progress | None
) -> int:
    """Scan for expired sessions, then delete each only if it is still expired.

    A delete carries the scan's own filter as its condition: a session that a request
    refreshed between the scan and the delete (a save that began before the expiry, or a
    server whose clock is behind this one's) fails the condition and stays. BatchWriteItem
    takes no conditions, so the deletes are single DeleteItem calls (billed alike), a few
    in parallel on the client's pool; a batch of `batch_size` ends with a progress call.
    """
    if ttl_enabled(store):
        return 0  # DynamoDB's TTL removes them; reads ignore them until it does.
    from concurrent.futures import ThreadPoolExecutor

    batch_size = max(batch_size, 1)
    what = "purge expired sessions"
    scan = store._requests.expired_scan(now)
    condition = {
        "TableName": store.table,
        "ConditionExpression": scan["FilterExpression"],
        # The scan's names but its projection's (#p): DynamoDB refuses unused names.
        "ExpressionAttributeNames": {
            k: v for k, v in scan["ExpressionAttributeNames"].items() if k != "#p"
        },
        "ExpressionAttributeValues": scan["ExpressionAttributeValues"],
    }
    client = store.client
    removed = 0

    def delete(rid: str) -> int:
        with store._errors(what):
            try:
                client.delete_item(Key=store._requests.key(rid), **condition)
            except ClientError as exc:
                if code(exc) == "ConditionalCheckFailedException":
                    return 0  # refreshed since the scan, or deleted already
                raise
        return 1

    def flush(rids: list[str]) -> None:
        nonlocal removed
        removed += sum(pool.map(delete, rids))
        if progress is not None:
            progress(removed)

    pending: list[str] = []
    # A few deletes in flight, within the client's connection pool.
    workers = max(1, min(16, store.options.max_pool_connections, batch_size))
    with ThreadPoolExecutor(workers, thread_name_prefix="cloudsessions-purge") as pool:
        with store._errors("scan for expired sessions"):
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
        # Keys only: DynamoDB writes an index entry only when what it holds changes, so a
        # save that refreshes the expiry or the metadata of a signed-in session writes the
        # table alone; a listing reads the records the index names (BatchGetItem).
        "Projection": {"ProjectionType": "KEYS_ONLY"},
        **_throughput(store),
    }


def _create_index(store: DynamoDBStore) -> None:
    o = store.options
    with store._errors("add the user index"):
        store.client.update_table(
            TableName=store.table,
            AttributeDefinitions=[{"AttributeName": o.user_attribute, "AttributeType": "S"}],
            GlobalSecondaryIndexUpdates=[{"Create": _index_spec(store)}],
        )
    _wait_for_index(store)


def _replace_index(store: DynamoDBStore, index: Mapping[str, Any]) -> str:
    """Delete the index and create it again, keys only, under the same name.

    DynamoDB cannot change an index's key or projection, only delete it and create
    another. The name stays: running servers (and older versions) query the index by that
    name, so another name would break every one of them until its restart. Until the new
    index is ACTIVE, for_user and delete_for_user fail (ConfigurationError naming the
    index); sessions themselves, and revoke, never use it.
    """
    o = store.options
    was = f"{', '.join(_index_key(index))}, projecting {_projected(index) or 'keys only'}"
    with store._errors("delete the old user index"):
        store.client.update_table(
            TableName=store.table,
            GlobalSecondaryIndexUpdates=[{"Delete": {"IndexName": o.user_index}}],
        )
    _wait_for_index(store, gone=True)
    _create_index(store)
    return (
        f"replaced index {o.user_index} (on {was}) by one on {o.user_attribute} of keys"
        " only: a save of a signed-in session no longer writes it"
    )


def _wait_for_index(store: DynamoDBStore, *, gone: bool = False, timeout: float = 1800.0) -> None:
    """Until the user index is ACTIVE (or, with `gone`, deleted and the table ACTIVE again)."""
    # Building an index on a full table takes minutes; botocore has no waiter for it.
    deadline = time.monotonic() + timeout
    pause = 0.25
    while True:
        table = _describe_table(store) or {}
        index = _index(store, table)
        if gone:
            if index is None and table.get("TableStatus", "ACTIVE") == "ACTIVE":
                return
        elif index is not None and index.get("IndexStatus", "ACTIVE") == "ACTIVE":
            return
        if time.monotonic() > deadline:
            state = "still there" if gone else "not ACTIVE"
            raise StoreUnavailable(
                f"{store.describe()}: index {store.options.user_index} {state}"
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


def _index_key(index: Mapping[str, Any]) -> list[str]:
    """The attribute names of the index's key (a partition key, and any sort key)."""
    return [k["AttributeName"] for k in index.get("KeySchema", [])]


def _on_user(store: DynamoDBStore, index: Mapping[str, Any]) -> bool:
    """Whether the index can serve a query by user id: its partition key is the user's."""
    return _index_key(index)[:1] == [store.options.user_attribute]


def _projected(index: Mapping[str, Any]) -> str:
    """What the index projects besides keys ("" for keys only), as check shows it."""
    projection = index.get("Projection", {})
    kind = projection.get("ProjectionType", "KEYS_ONLY")
    if kind == "KEYS_ONLY":
        return ""
    if kind == "ALL":
        return "all attributes"
    return ", ".join(projection.get("NonKeyAttributes", []))


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
