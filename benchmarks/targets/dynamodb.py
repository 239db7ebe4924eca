"""DynamoDB: the same four API calls through a plain boto3 client, on DynamoDB Local."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import boto3
from tests.services.dynamodb_local import dynamodb_local

from benchmarks.harness import Target
from cloudsessions import open_store
from cloudsessions.record import Changes, EncodedRecord

REGION = "us-east-1"
TABLE = "bench_sessions"


@contextlib.contextmanager
def target(services: contextlib.ExitStack) -> Iterator[Target]:
    # boto3 needs credentials; DynamoDB Local takes any key of letters and digits.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    endpoint = services.enter_context(dynamodb_local())
    store = open_store(f"dynamodb://{TABLE}?region={REGION}&endpoint={endpoint}")
    store.provision()
    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)

    def key(rid: str) -> dict[str, object]:
        return {"id": {"S": rid}}

    def raw_load(rid: str) -> object:
        return client.get_item(TableName=TABLE, Key=key(rid), ConsistentRead=True)["Item"]

    def raw_create(rid: str, record: EncodedRecord) -> object:
        item = {
            "id": {"S": rid},
            "data": {"M": {f: {"S": v} for f, v in record.fields.items()}},
            "ttl": {"N": f"{record.expires_at:.3f}"},
            "key_order": {"M": {f: {"N": str(i)} for i, f in enumerate(record.fields)}},
        }
        if record.user_id is not None:
            item["user_id"] = {"S": record.user_id}
        return client.put_item(
            TableName=TABLE,
            Item=item,
            ConditionExpression="attribute_not_exists(#p)",
            ExpressionAttributeNames={"#p": "id"},
        )

    def raw_save(
        rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> object:
        # The store's UpdateItem for one changed key: the user id set again (which writes
        # nothing to the keys-only index), or removed for an anonymous session.
        ((field, value),) = changes.set_fields.items()
        update = "SET #t = :t, #d.#f0 = :v0, #o.#f0 = if_not_exists(#o.#f0, :o0) REMOVE #u"
        values = {}
        if user_id is not None:
            update = "SET #t = :t, #u = :u, #d.#f0 = :v0, #o.#f0 = if_not_exists(#o.#f0, :o0)"
            values = {":u": {"S": user_id}}
        return client.update_item(
            TableName=TABLE,
            Key=key(rid),
            UpdateExpression=update,
            ConditionExpression="attribute_exists(#p) AND #t > :now",
            ExpressionAttributeNames={
                "#p": "id",
                "#t": "ttl",
                "#u": "user_id",
                "#d": "data",
                "#o": "key_order",
                "#f0": field,
            },
            ExpressionAttributeValues={
                ":t": {"N": f"{expires_at:.3f}"},
                ":now": {"N": f"{now:.3f}"},
                ":v0": {"S": value},
                ":o0": {"N": str(int(now * 1_000_000))},
                **values,
            },
        )

    def raw_delete(rid: str) -> object:
        return client.delete_item(TableName=TABLE, Key=key(rid))

    try:
        yield Target(store, raw_load, raw_create, raw_save, raw_delete)
    finally:
        client.close()
        store.close()
