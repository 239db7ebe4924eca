"""The MongoDB store: its clients, its errors and the contract's operations.

Every operation is one command: load a find with a projection, create an insert (the
unique ``_id`` refuses an existing id), save an update whose filter also requires the
record to be unexpired (never an upsert, so a logged-out session stays logged out), delete
one delete, increment one findAndModify with an update pipeline (see requests); listing a
user's sessions one find on the user index, revoking one of them one delete whose filter
names its user.

Clients are made lazily: one MongoClient per process, and one AsyncMongoClient per running
event loop for the async API (PyMongo's native async driver, no worker threads). An
application's client is sync, so with one the async API runs in worker threads.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC
from typing import Any

import pymongo
from bson.codec_options import CodecOptions
from pymongo import AsyncMongoClient, MongoClient, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.errors import DuplicateKeyError, OperationFailure, PyMongoError, WriteError

from ... import deadline
from ...errors import ConfigurationError, SessionExists, SessionTooLarge, StoreUnavailable
from ...record import Changes, CheckResult, EncodedRecord, SessionInfo
from ...store import ErrorKind, PerLoop, PerProcess, Progress, Store, StoreURL, parse_options
from . import admin, requests
from .options import (
    OWN_OPTIONS,
    MongoDBOptions,
    checked_pymongo_options,
    client_kwargs,
    hosts,
    location,
    resolve,
)
from .requests import Document

DEFAULT_DATABASE = "cloudsessions"

# Server error codes: not allowed to do this (credentials or roles are wrong).
_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed
# The document (with keys merged in by other requests) grew over the BSON limit.
_TOO_LARGE_CODES = {10334, 17419}
# PyMongo's async client is used where cancelling it is safe (see native_async).
NATIVE_ASYNC_SAFE = sys.version_info >= (3, 12)


def _code_in(codes: set[int]) -> Callable[[BaseException], bool]:
    return lambda exc: isinstance(exc, OperationFailure) and exc.code in codes


class MongoDBStore(Store):
    kind = "mongodb"
    default_max_record_bytes = 16 * 1024 * 1024  # MongoDB's BSON document limit
    error_kinds = (
        ErrorKind(
            OperationFailure,
            ConfigurationError,
            "check the user and password of the store URL and that the user has the"
            " readWrite role on the database",
            when=_code_in(_AUTH_CODES),
        ),
        # Keys merged in by other requests took the stored document over the limit.
        ErrorKind(WriteError, SessionTooLarge, when=_code_in(_TOO_LARGE_CODES)),
        ErrorKind(PyMongoConfigurationError, ConfigurationError),
        ErrorKind(PyMongoError, StoreUnavailable),
    )

    def __init__(
        self,
        uri: str | None,
        database: str | None,
        options: MongoDBOptions,
        pymongo_options: Mapping[str, Any] | None = None,
    ) -> None:
        """A store on `uri` (a connection string), or on the application's client (None).

        database: the database's name (default: the client's default, else "cloudsessions").
        pymongo_options: keyword arguments for the clients we create for `uri`, over
            CLIENT_DEFAULTS.
        """
        super().__init__(max_record_bytes=options.max_record_bytes, deadline=options.deadline)
        self.uri = uri
        self.database_name = database
        self.collection_name = options.collection
        self.options = options
        self._client_options = client_kwargs(uri, pymongo_options or {}) if uri else {}
        # The client's timeoutMS in seconds (None: none), known for sure once it is open.
        given_ms = self._client_options.get("timeoutMS")
        self._operation_timeout: float | None = given_ms / 1000 if given_ms else None
        # A client we made is ours to close; an application's client stays open.
        self._sync = PerProcess(self._open, _close_client if uri else None)
        self._async = PerLoop(self._aopen)

    @classmethod
    def from_url(cls, url: StoreURL, options: Mapping[str, Any]) -> MongoDBStore:
        ours = parse_options(
            MongoDBOptions, cls.kind, {k: v for k, v in options.items() if k in OWN_OPTIONS}
        )
        theirs = {k: v for k, v in options.items() if k not in OWN_OPTIONS}
        return cls(*location(url, ours), ours, checked_pymongo_options(url, theirs))

    def describe(self) -> str:
        # The database's name is known once the collection is open, if not before.
        where = f"{self.database_name or '?'}.{self.collection_name}"
        if self.uri:
            return f"mongodb collection {where} at {hosts(self.uri)}"
        source = self.options.client if self.options.client is not None else self.options.database
        named = source if isinstance(source, str) else "the application's client"
        return f"mongodb collection {where} via {named}"

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """SDK errors raised as ours, and, in a request, PyMongo's own bound on the whole
        operation (server selection and its retries included: CSOT) cut to what is left
        of the request deadline (cloudsessions.deadline)."""
        remaining = deadline.left(what)
        with super()._errors(what):
            if remaining is None:
                yield
            else:
                # pymongo.timeout() replaces the client's timeoutMS: never loosen it.
                usual = self._operation_timeout
                with pymongo.timeout(remaining if usual is None else min(remaining, usual)):
                    yield

    # -------------------------------------------------------------------- clients

    def _collection(self) -> Collection[Document]:
        return self._sync.get()

    def _open(self) -> Collection[Document]:
        if self.uri is None and self.options.client is None:
            db = resolve(self.options.database, Database, "database")
        else:
            client: MongoClient[Document] = (
                MongoClient(self.uri, **self._client_options)
                if self.uri is not None
                else resolve(self.options.client, MongoClient, "client")
            )
            db = (
                client.get_database(self.database_name)
                if self.database_name
                else client.get_default_database(DEFAULT_DATABASE)
            )
        self.database_name = db.name
        self._operation_timeout = db.client.options.timeout
        coll = db.get_collection(self.collection_name, codec_options=_utc(db.codec_options))
        if not coll.write_concern.acknowledged:
            raise ConfigurationError(
                f"{self.describe()}: the client uses unacknowledged writes (w=0); the store"
                " needs acknowledged ones to tell a taken id or a gone session"
            )
        return coll

    async def _aopen(self, stack: contextlib.AsyncExitStack) -> AsyncCollection[Document]:
        assert self.uri is not None  # an application's client goes through threads
        client: AsyncMongoClient[Document] = AsyncMongoClient(self.uri, **self._client_options)
        stack.push_async_callback(client.close)
        db = client.get_database(self.database_name or DEFAULT_DATABASE)
        self._operation_timeout = client.options.timeout
        return db.get_collection(self.collection_name, codec_options=_utc(db.codec_options))

    def close(self) -> None:
        """Close the clients we made, every event loop's too (never an application's)."""
        self._sync.close()
        self._async.close()

    # ------------------------------------------------------------------- contract

    def _load(self, rid: str) -> EncodedRecord | None:
        with self._errors("load a session"):
            doc = self._collection().find_one({"_id": rid}, requests.LOAD_PROJECTION)
        return requests.decoded(doc)

    def _create(self, rid: str, record: EncodedRecord) -> None:
        with self._errors("create a session"), _taken_is_exists():
            self._collection().insert_one(requests.document(rid, record))

    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        command = requests.save_command(rid, changes, expires_at, user_id, now)
        with self._errors("save a session"):
            result = self._collection().update_one(*command)
        requests.check_saved(result.matched_count)

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        command = requests.increment_command(rid, field, delta, base, expires_at, now)
        with self._errors("increment a session counter"):
            doc = self._collection().find_one_and_update(
                *command, return_document=ReturnDocument.AFTER
            )
        return requests.counter(doc, field)

    def _delete(self, rid: str) -> None:
        with self._errors("delete a session"):
            self._collection().delete_one({"_id": rid})

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        expired = requests.expired(now)
        removed = 0
        with self._errors("purge expired sessions"):
            coll = self._collection()
            while ids := [d["_id"] for d in coll.find(expired, {"_id": 1}, limit=batch_size)]:
                # Expiry is checked again: the TTL monitor may have got there first.
                removed += coll.delete_many({"_id": {"$in": ids}, **expired}).deleted_count
                if progress is not None:
                    progress(removed)
        return removed

    def _for_user(self, user_id: str) -> list[SessionInfo]:
        with self._errors("list the sessions of a user"):
            found = self._collection().find(requests.of_user(user_id), requests.INFO_PROJECTION)
            return requests.session_infos(found, user_id)

    def _revoke(self, user_id: str, rid: str) -> bool:
        # One delete whose filter names the owner: another user's handle matches nothing.
        with self._errors("revoke a session"):
            result = self._collection().delete_one(requests.owned(user_id, rid))
        return result.deleted_count == 1

    def _delete_for_user(
        self, user_id: str, keep_rid: str | None, progress: Progress | None = None
    ) -> list[str]:
        # Listed first, then deleted by id: the caller learns which records went (a cache
        # in front invalidates those); a session signed in meanwhile is not revoked.
        with self._errors("delete the sessions of a user"):
            collection = self._collection()
            rids = [
                doc["_id"]
                for doc in collection.find(requests.of_user(user_id, keep_rid), {"_id": 1})
            ]
            # A thousand ids a command: a user with very many sessions (a bot, an API
            # client) would otherwise take one command past MongoDB's 16 MB limit.
            for start in range(0, len(rids), 1000):
                chunk = rids[start : start + 1000]
                collection.delete_many({"_id": {"$in": chunk}, "user_id": user_id})
                if progress is not None:
                    progress(start + len(chunk))  # of the listed, which is what is returned
        return rids

    def record_size(self, record: EncodedRecord) -> int:
        return requests.bson_size(record)

    # ------------------------------------------------ contract, native async twins

    def native_async(self) -> bool:
        # An application's client is sync: its store's async calls run it in threads. So
        # do all of them on Python 3.11, whose asyncio.wait_for (fixed in 3.12, not
        # backported: CPython gh-86296) can leave PyMongo's pool lock held for good when a
        # waiting call is cancelled as its own timeout ends it (the request deadline, a
        # client gone): every later call on that client then waits forever. Measured with
        # benchmarks/soak.py, Django on SecantusDB, 10% resets: 60 of 203 requests unanswered
        # after 30 s on 3.11, none on 3.13.
        return self.uri is not None and NATIVE_ASYNC_SAFE

    async def aclose(self) -> None:
        await self._async.aclose()

    async def _aload(self, rid: str) -> EncodedRecord | None:
        with self._errors("load a session"):
            coll = await self._async.get()
            doc = await coll.find_one({"_id": rid}, requests.LOAD_PROJECTION)
        return requests.decoded(doc)

    async def _acreate(self, rid: str, record: EncodedRecord) -> None:
        with self._errors("create a session"), _taken_is_exists():
            await (await self._async.get()).insert_one(requests.document(rid, record))

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        command = requests.save_command(rid, changes, expires_at, user_id, now)
        with self._errors("save a session"):
            result = await (await self._async.get()).update_one(*command)
        requests.check_saved(result.matched_count)

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        command = requests.increment_command(rid, field, delta, base, expires_at, now)
        with self._errors("increment a session counter"):
            coll = await self._async.get()
            doc = await coll.find_one_and_update(*command, return_document=ReturnDocument.AFTER)
        return requests.counter(doc, field)

    async def _adelete(self, rid: str) -> None:
        with self._errors("delete a session"):
            await (await self._async.get()).delete_one({"_id": rid})

    # ----------------------------------------------------------------- operations

    def provision(self, *, fix: bool = False) -> list[str]:
        """Create the collection's TTL and user indexes; idempotent (see admin.provision)."""
        with self._errors("create the indexes"):
            coll = self._collection()
            return admin.provision(coll, self.describe(), fix=fix)

    def drop(self, *, progress: Progress | None = None) -> None:
        with self._errors("drop the collection"):
            self._collection().drop()

    def drop_target(self) -> tuple[bool, str]:
        """What drop() deletes, or why there is nothing to (see cloudsessions.admin)."""
        with self._errors("find the collection"):
            coll = self._collection()
            return admin.drop_target(coll, self.describe())

    def count_records(self, *, expired_only: bool) -> int | None:
        """The expired sessions purge will delete (drop, one command, reports none)."""
        if not expired_only:
            return None
        with self._errors("count the expired sessions"):
            return admin.count_expired(self._collection())

    def check(self) -> list[CheckResult]:
        coll = self._collection()
        return admin.check(coll, self.describe(), self._errors)


def _utc(codec_options: CodecOptions[Any]) -> CodecOptions[Any]:
    # Dates come back as aware UTC datetimes whatever the client's own setting.
    return codec_options.with_options(tz_aware=True, tzinfo=UTC)


def _close_client(coll: Collection[Document]) -> None:
    coll.database.client.close()


@contextlib.contextmanager
def _taken_is_exists() -> Iterator[None]:
    # Only an insert can break the unique _id: create() found the id taken.
    try:
        yield
    except DuplicateKeyError:
        raise SessionExists("a session with this id exists") from None
