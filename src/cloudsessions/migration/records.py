"""Previous backends that keep a record per session, read through the SDKs our stores use.

A `RecordSource` is written as three answers: which record a cookie value names (`locate`:
None for a value of the wrong shape, which then costs no round trip), where the records are
(`table`: one of the tables below, which reads, deletes, pages and counts them), and what a
record holds (`session`: the session to copy, or why there is none). The lookup, the delete
and the resumable scan are then written once, here.

The tables are thin: one DynamoDB table, MongoDB collection or Firestore collection, on
the caller's client (left open) or on one made at first use (never in a constructor, and
made again in a forked child). Each pages in its own key order, so a scan resumes after
the last record of a batch and visits no record twice.
"""

from __future__ import annotations

import abc
import os
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from .source import Found, OldSession, Source, token, untoken

Page = tuple[list[tuple[str, Any]], str]  # (record id, record) pairs, and the resume token

# The cookie values the old engines hand out (Django's session keys, Flask-Session's
# token_urlsafe ids, UUIDs): anything else names no record and is never sent to a server.
PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,256}")


def plain_key(key: str, min_length: int = 1) -> str | None:
    return key if PLAIN_KEY.fullmatch(key) and len(key) >= min_length else None


def user_of(data: dict[str, Any], key: str | None) -> str | None:
    value = data.get(key) if key else None
    return None if value is None else str(value)


class RecordSource(Source):
    """A previous backend with one record per session (see the module docstring)."""

    name: ClassVar[str]
    table: Any  # a DynamoDBTable, MongoCollection or FirestoreCollection (or read() & co.)

    def __init__(
        self,
        *,
        user_id_key: str | None,
        keep_old: bool = False,
        cookie_name: str | None = None,
    ) -> None:
        super().__init__(keep_old=keep_old, cookie_name=cookie_name)
        self.user_id_key = user_id_key

    @abc.abstractmethod
    def locate(self, key: str) -> str | None:
        """The id of the record the cookie value `key` names; None if no record can."""

    @abc.abstractmethod
    def session(self, record: Any) -> OldSession | str:
        """The live session a record holds, or why there is nothing to copy ("expired")."""

    def read(self, ref: str) -> Any | None:
        """The record `ref`, or None: one round trip."""
        return self.table.get(ref)

    def delete(self, ref: str) -> None:
        """Delete the record `ref` (idempotent)."""
        self.table.delete(ref)

    def pages(self, resume: str | None, batch_size: int) -> Iterator[Page]:
        """The records, about `batch_size` at a time, in an order a token resumes."""
        return self.table.pages(resume, batch_size)  # type: ignore[no-any-return]

    def count(self) -> int | None:
        return self.table.count()  # type: ignore[no-any-return]

    def key_of(self, ref: str) -> str | None:
        """The cookie value that names record `ref` (None: not a session of this source)."""
        return ref

    def fetch(self, key: str) -> OldSession | None:
        ref = self.locate(key)
        record = None if ref is None else self.read(ref)
        if record is None:
            return None
        found = self.session(record)
        return found if isinstance(found, OldSession) else None

    def discard(self, key: str) -> None:
        ref = self.locate(key)
        if ref is not None:
            self.delete(ref)

    def scan(self, resume: str | None, batch_size: int) -> Iterator[tuple[list[Found], str]]:
        for rows, after in self.pages(resume, batch_size):
            batch = []
            for ref, record in rows:
                key = self.key_of(ref)
                if key is None:
                    continue
                found = self.session(record)
                if isinstance(found, OldSession):
                    batch.append(Found(key, found))
                else:
                    batch.append(Found(key, None, found))
            yield batch, after

    def close(self) -> None:
        table = getattr(self, "table", None)
        client = table.client if table is not None else getattr(self, "client", None)
        if isinstance(client, Client):
            client.close()


class Client:
    """An SDK client: the caller's (never closed here), or one made at first use."""

    def __init__(self, given: Any, make: Callable[[], Any]) -> None:
        self._given, self._make = given, make
        self._made: Any = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._given is not None:
            return self._given
        with self._lock:
            if self._made is None or self._pid != os.getpid():  # not a parent's, after a fork
                self._made, self._pid = self._make(), os.getpid()
            return self._made

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, None
        if made is not None and self._pid == os.getpid():
            made.close()


# ------------------------------------------------------------------------ DynamoDB


class DynamoDBTable:
    """One table with a string partition key; items come back as Python values (boto3's
    TypeDeserializer: numbers as Decimal, binary as Binary).

    `given`: a boto3 DynamoDB client, or a resource (as Flask-Session takes): its client
    then takes and returns Python values (the resource's serializers are on it). Else a
    client is made at first use for `region` and `endpoint`.
    """

    def __init__(
        self, given: Any, table: str, key: str, region: str | None, endpoint: str | None
    ) -> None:
        self.plain = given is not None and hasattr(given, "Table")
        if self.plain:
            given = given.meta.client

        def make() -> Any:
            import boto3

            return boto3.session.Session().client(
                "dynamodb", region_name=region, endpoint_url=endpoint
            )

        self.client = Client(given, make)
        self.table, self.key = table, key

    def _key(self, ref: str) -> dict[str, Any]:
        return {self.key: ref if self.plain else {"S": ref}}

    def _items(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.plain:
            return items
        from boto3.dynamodb.types import TypeDeserializer

        plain = TypeDeserializer().deserialize
        return [{name: plain(value) for name, value in item.items()} for item in items]

    def get(self, ref: str) -> dict[str, Any] | None:
        item = self.client.get().get_item(
            TableName=self.table, Key=self._key(ref), ConsistentRead=True
        )
        return self._items([item["Item"]])[0] if "Item" in item else None

    def delete(self, ref: str) -> None:
        self.client.get().delete_item(TableName=self.table, Key=self._key(ref))

    def pages(self, resume: str | None, batch_size: int) -> Iterator[Page]:
        """A Scan, a page of `batch_size` items at a time; the token is the last key seen
        (an ExclusiveStartKey: DynamoDB resumes after any key, even a deleted one)."""
        after = untoken(resume) if resume else None
        while True:
            request: dict[str, Any] = {"TableName": self.table, "Limit": batch_size}
            if after is not None:
                request["ExclusiveStartKey"] = self._key(after)
            page = self.client.get().scan(**request)
            items = self._items(page.get("Items", []))
            rows = [(item[self.key], item) for item in items if isinstance(item.get(self.key), str)]
            last = page.get("LastEvaluatedKey")
            if not items and last is None:
                return
            after = self._items([last])[0][self.key] if last else items[-1][self.key]
            yield rows, token(after)
            if last is None:
                return

    def count(self) -> int:
        """DynamoDB's item count: refreshed about every six hours, so approximate."""
        table = self.client.get().describe_table(TableName=self.table)["Table"]
        return int(table.get("ItemCount", 0))


# ------------------------------------------------------------------------- MongoDB


class MongoCollection:
    """One collection, its records found by one field (`key`, not indexed by every engine:
    then each lookup is a collection scan, as it was for the old app). `given`: a
    MongoClient, else one is made at first use for `uri`."""

    def __init__(
        self, given: Any, uri: str | None, database: str, collection: str, key: str
    ) -> None:
        def make() -> Any:
            from pymongo import MongoClient

            return MongoClient(uri, serverSelectionTimeoutMS=10_000, connectTimeoutMS=5_000)

        self.client = Client(given, make)
        self.database, self.collection, self.key = database, collection, key

    def _collection(self) -> Any:
        return self.client.get()[self.database][self.collection]

    def get(self, ref: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._collection().find_one({self.key: ref})
        return found

    def delete(self, ref: str) -> None:
        self._collection().delete_many({self.key: ref})

    def pages(self, resume: str | None, batch_size: int) -> Iterator[Page]:
        """In _id order (its index is always there), resumed after the last _id seen."""
        from bson import json_util

        after = json_util.loads(untoken(resume)) if resume else None
        while True:
            query = {} if after is None else {"_id": {"$gt": after}}
            documents = list(self._collection().find(query).sort("_id", 1).limit(batch_size))
            if not documents:
                return
            after = documents[-1]["_id"]
            rows = [(d[self.key], d) for d in documents if isinstance(d.get(self.key), str)]
            yield rows, token(json_util.dumps(after))

    def count(self) -> int:
        """The collection's document count from its metadata (no scan)."""
        return int(self._collection().estimated_document_count())

    def expire_after(self, index: str) -> float | None:
        """The expireAfterSeconds of the TTL index named `index`, if there is one."""
        found = self._collection().index_information().get(index, {}).get("expireAfterSeconds")
        return None if found is None else float(found)


# ------------------------------------------------------------------------ Firestore


# Firestore document ids: no "/", not "." or "..", not __reserved__ (PLAIN_KEY has no "/").
_RESERVED_ID = re.compile(r"__.*__|\.\.?")


class FirestoreCollection:
    """One collection; a document id is the record id. `given`: a firestore.Client, else
    one is made at first use for `project` (on the emulator at `emulator_host`, if any;
    else Application Default Credentials)."""

    def __init__(
        self, given: Any, project: str | None, emulator_host: str | None, collection: str
    ) -> None:
        def make() -> Any:
            from google.cloud import firestore

            if not emulator_host:
                return firestore.Client(project=project)
            from google.auth.credentials import AnonymousCredentials

            anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
            client = firestore.Client(project=project, credentials=anonymous)
            client._emulator_host = emulator_host  # as the SDK does for FIRESTORE_EMULATOR_HOST
            return client

        self.client = Client(given, make)
        self.path = collection

    def _collection(self) -> Any:
        return self.client.get().collection(self.path)

    @staticmethod
    def valid(ref: str) -> bool:
        return not _RESERVED_ID.fullmatch(ref)

    def get(self, ref: str) -> dict[str, Any] | None:
        snapshot = self._collection().document(ref).get()
        found: dict[str, Any] | None = snapshot.to_dict() if snapshot.exists else None
        return found

    def delete(self, ref: str) -> None:
        self._collection().document(ref).delete()

    def pages(self, resume: str | None, batch_size: int) -> Iterator[Page]:
        """In document id order, resumed after the last id seen."""
        collection = self._collection()
        after = untoken(resume) if resume else None
        while True:
            query = collection.order_by("__name__").limit(batch_size)
            if after is not None:
                query = query.start_after({"__name__": collection.document(after)})
            snapshots = list(query.stream())
            if not snapshots:
                return
            after = snapshots[-1].id
            yield [(s.id, s.to_dict()) for s in snapshots], token(after)

    def count(self) -> int:
        """One aggregation query (Firestore bills a read per 1,000 documents counted)."""
        return int(self._collection().count().get()[0][0].value)
