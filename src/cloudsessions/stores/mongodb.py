"""The MongoDB store: one document per session, in one collection.

A document is ``{_id: <hashed session id>, d: {<field>: <JSON text>}, expires_at: <Date>,
user_id: <str>}`` (user_id absent for anonymous sessions). Keeping the values in the
subdocument ``d`` lets save() change single keys with ``$set``/``$unset`` of ``d.<field>``
in one update, so two requests that change different keys of one session both keep their
change; field names are already encoded to [A-Za-z0-9_%-] (see codec), so no '.' or '$'
reaches a field path.

Every contract operation is one command: load a find with a projection, create an insert
(the unique ``_id`` refuses an existing id), save an update whose filter also requires the
record to be unexpired (never an upsert, so a logged-out session stays logged out), delete
one delete, increment one findAndModify with an update pipeline. Counters are the one kind
of value kept natively (an integer in ``d``) rather than as JSON text.

A TTL index on ``expires_at`` (expireAfterSeconds=0) lets the server remove expired
sessions; expiry is still enforced on read because the TTL monitor runs only once a
minute. A sparse index on ``user_id`` serves for_user and delete_for_user.

Clients are made lazily: one MongoClient per process, and one AsyncMongoClient per running
event loop for the async API (PyMongo's native async driver, no worker threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pymongo import AsyncMongoClient, MongoClient, ReturnDocument, common
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import ConfigurationError as PyMongoConfigurationError
from pymongo.errors import (
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    WriteError,
)
from pymongo.read_preferences import Primary
from pymongo.results import UpdateResult

from ..errors import (
    CloudSessionsError,
    ConfigurationError,
    SessionExists,
    SessionGone,
    SessionTooLarge,
    StoreUnavailable,
)
from ..options import Options
from ..record import Changes, CheckResult, SessionInfo, StoredRecord
from ..store import Progress, Store
from ..urls import StoreURL

Document = dict[str, Any]
# The async collection of one event loop, and what closes its client with the loop.
_AsyncEntry = tuple[AsyncCollection[Document], AsyncGenerator[None, None]]

DEFAULT_DATABASE = "cloudsessions"
DEFAULT_COLLECTION = "cloudsessions"

# Our own options; every other option of a store URL or of the options dict is PyMongo's
# (replicaSet, w, readPreference, serverSelectionTimeoutMS, tls, ...) and goes to the client.
OWN_OPTIONS = {"collection", "database", "client", "max_record_bytes"}

# Applied to clients we create unless the URL or the options set them: bounded waits, so a
# store that is down or stops answering gives StoreUnavailable in seconds instead of
# PyMongo's 30 s server selection and unbounded socket reads; majority writes, so a session
# written on one web server survives a primary failover.
CLIENT_DEFAULTS: dict[str, Any] = {
    # The whole operation, server selection and the driver's retries included.
    "timeoutMS": 5000,
    "serverSelectionTimeoutMS": 3000,
    "connectTimeoutMS": 3000,
    "socketTimeoutMS": 5000,
    "w": "majority",
    "retryWrites": True,
    "retryReads": True,
    "appname": "cloudsessions",
}

# Server error codes: not allowed to do this (credentials or roles are wrong).
_AUTH_CODES = {13, 18}  # Unauthorized, AuthenticationFailed
# The document (with keys merged in by other requests) grew over the BSON limit.
_TOO_LARGE_CODES = {10334, 17419}

_DB_NAME = re.compile(r'[^/\\. "$*<>:|?\x00]{1,63}')
_COLLECTION_NAME = re.compile(r"[^$\x00]{1,120}")

_LOAD_PROJECTION = {"_id": 0, "d": 1, "expires_at": 1, "user_id": 1}
_INFO_PROJECTION = {"_id": 1, "expires_at": 1}

# BSON sizes (bsonspec.org): a document is int32 length + elements + NUL; an element is a
# type byte + its name as a NUL-terminated cstring + the value; a string value is int32
# length + UTF-8 bytes + NUL; a Date is 8 bytes.
_BSON_DOC = 4 + 1
_BSON_STRING = 4 + 1
_ID_ELEMENT = 1 + len("_id") + 1 + _BSON_STRING  # + len(record id)
_DATA_ELEMENT = 1 + len("d") + 1 + _BSON_DOC
_FIELD_ELEMENT = 1 + 1 + _BSON_STRING  # + name + value
_COUNTER_ELEMENT = 1 + 1  # + name + 4 (int32) or 8 (int64) bytes
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_EXPIRES_ELEMENT = 1 + len("expires_at") + 1 + 8
_USER_ELEMENT = 1 + len("user_id") + 1 + _BSON_STRING  # + len(user id)
_RECORD_ID_LENGTH = 64  # hex SHA-256, see keys.record_id

_UTC = UTC


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, _UTC)


@dataclass(frozen=True, slots=True)
class _Index:
    name: str
    field: str
    options: Mapping[str, Any]

    def matches(self, found: Mapping[str, Any]) -> bool:
        return _key_of(found) == [(self.field, 1)] and _options_of(found) == dict(self.options)

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name} on {self.field} ({opts})"


def _key_of(index: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(name, int(order)) for name, order in dict(index["key"]).items()]


def _options_of(index: Mapping[str, Any]) -> dict[str, Any]:
    opts = {k: v for k, v in index.items() if k not in {"v", "key", "name", "ns"}}
    if "expireAfterSeconds" in opts:  # may come back as int32, int64 or double
        opts["expireAfterSeconds"] = int(opts["expireAfterSeconds"])
    return opts


def _show_index(index: Mapping[str, Any]) -> str:
    opts = ", ".join(f"{k}={v}" for k, v in _options_of(index).items()) or "no options"
    keys = ", ".join(f"{k}: {v}" for k, v in _key_of(index))
    return f"{index['name']} on {{{keys}}} ({opts})"


INDEXES = (
    _Index("expires_at_ttl", "expires_at", {"expireAfterSeconds": 0}),
    # Sparse: anonymous sessions (no user_id field) take no room in it.
    _Index("user_id", "user_id", {"sparse": True}),
)


class MongoDBStore(Store):
    kind = "mongodb"
    default_max_record_bytes = 16 * 1024 * 1024  # MongoDB's BSON document limit

    def __init__(
        self,
        uri: str | None = None,
        *,
        client: MongoClient[Document] | str | None = None,
        database: Database[Document] | str | None = None,
        database_path: str | None = None,
        collection: str = DEFAULT_COLLECTION,
        client_options: Mapping[str, Any] | None = None,
        max_record_bytes: int | None = None,
    ) -> None:
        """A store on `uri` (a MongoDB connection string), or on an application's client.

        client: a MongoClient, or the dotted path of one ("project.db.client").
        database: a database name (default: the URI's, else the client's default, else
            "cloudsessions"), or a Database object.
        database_path: the dotted path of a Database object ("project.db.sessions_db").
        client_options: keyword arguments for the MongoClient/AsyncMongoClient we create,
            over CLIENT_DEFAULTS (ignored with an application's client).
        """
        super().__init__(max_record_bytes=max_record_bytes)
        db_name = database if isinstance(database, str) else None
        db_object = None if database is None or isinstance(database, str) else database
        sources = [s for s in (uri, client, db_object, database_path) if s is not None]
        if len(sources) != 1:
            raise ConfigurationError(
                "the mongodb store needs exactly one of: a mongodb:// URL naming the hosts,"
                " the 'client' option (a MongoClient or its dotted path), or the 'database'"
                " option as a Database object or its dotted path"
            )
        if db_name is not None and not _DB_NAME.fullmatch(db_name):
            raise ConfigurationError(f"MongoDB database name {db_name!r} is not valid")
        if not _COLLECTION_NAME.fullmatch(collection) or collection.startswith("system."):
            raise ConfigurationError(f"MongoDB collection name {collection!r} is not valid")
        self.uri = uri
        self.collection_name = collection
        self.database_name = db_name or (_uri_database(uri) if uri else None)
        self._client_source = client
        self._database_source = db_object if db_object is not None else database_path
        self._client_options = _client_kwargs(uri, client_options or {}) if uri else {}
        given = [*_query(uri), *self._client_options.items()] if uri else []
        if any(k.lower() == "w" and str(v) == "0" for k, v in given):
            raise ConfigurationError(
                "the mongodb store needs acknowledged writes: w=0 cannot tell whether a"
                " create found an existing session or a save found none"
            )
        self._lock = threading.Lock()
        self._pid = 0
        self._collection_: Collection[Document] | None = None
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncEntry] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def from_url(cls, url: StoreURL, options: dict[str, Any]) -> MongoDBStore:
        ours = Options(
            cls.kind, {k: v for k, v in options.items() if k in OWN_OPTIONS}, OWN_OPTIONS
        )
        passed = {k: v for k, v in options.items() if k not in OWN_OPTIONS}
        for name, value in passed.items():
            try:
                common.validate(name, value)
            except (PyMongoConfigurationError, ValueError, TypeError) as exc:
                raise ConfigurationError(
                    f"option {name!r} of the mongodb store: {exc} (cloudsessions' own options:"
                    f" {', '.join(sorted(OWN_OPTIONS))}; any other is PyMongo's)"
                ) from None
        # Options in the URL stay in the URI PyMongo parses (it handles repeated ones such
        # as readPreferenceTags); only those given separately are keyword arguments.
        client_options = {k: v for k, v in passed.items() if url.query.get(k) != v}
        client, database = ours.get("client"), ours.get("database")
        db_is_name = database is None or (isinstance(database, str) and "." not in database)
        brought = client is not None or not db_is_name
        if url.netloc and brought:
            raise ConfigurationError(
                f"{_redact(url.raw)} names hosts and the 'client'/'database' option names an"
                " application's client: give one, as mongodb:///DB?collection=NAME with the"
                " option, or the full URL without it"
            )
        if not url.netloc and not brought:
            raise ConfigurationError(
                f"store URL {_redact(url.raw)} names no host: use"
                " mongodb://HOST:PORT/DB?collection=NAME (or mongodb+srv://), or give the"
                " 'client' or 'database' option"
            )
        # A database name cannot hold a '.': a string with one is the dotted path of a
        # Database object, as django-mongo-sessions' MONGO_CLIENT setting could be.
        database_path = database if isinstance(database, str) and "." in database else None
        if database_path is not None or database is None:
            database = url.path.strip("/") or None
        for name, value in (("client", client), ("database", database)):
            if value is not None and not isinstance(value, str | MongoClient | Database):
                raise ConfigurationError(
                    f"option {name!r} of the mongodb store must be a name, a dotted path or a"
                    f" pymongo {'MongoClient' if name == 'client' else 'Database'},"
                    f" got {type(value).__name__}"
                )
        return cls(
            _strip_options(url.raw, OWN_OPTIONS) if url.netloc else None,
            client=client,
            database=database,
            database_path=database_path,
            collection=ours.text("collection", DEFAULT_COLLECTION),
            client_options=client_options,
            max_record_bytes=ours.integer("max_record_bytes", 0) or None,
        )

    def describe(self) -> str:
        where = f"{self.database_name or '?'}.{self.collection_name}"
        if self.uri:
            return f"mongodb collection {where} at {_hosts(self.uri)}"
        source = self._client_source if self._client_source is not None else self._database_source
        coll = self._collection_
        if coll is not None:
            where = coll.full_name
        named = source if isinstance(source, str) else "the application's client"
        return f"mongodb collection {where} via {named}"

    # -------------------------------------------------------------------- clients

    def _collection(self) -> Collection[Document]:
        coll = self._collection_
        # A client must not cross into a forked child: it makes its own.
        if coll is not None and self._pid == os.getpid():
            return coll
        with self._lock:
            if self._collection_ is None or self._pid != os.getpid():
                self._collection_ = self._open_collection()
                self._pid = os.getpid()
            return self._collection_

    def _open_collection(self) -> Collection[Document]:
        if self.uri is not None:
            client: MongoClient[Document] = MongoClient(self.uri, **self._client_options)
            db = client.get_database(self.database_name or DEFAULT_DATABASE)
        elif self._database_source is not None:
            db = _resolve(self._database_source, Database, "database")
        else:
            client = _resolve(self._client_source, MongoClient, "client")
            default = client.get_default_database(None) if self.database_name is None else None
            db = client.get_database(
                self.database_name or (default.name if default else None) or DEFAULT_DATABASE
            )
        self.database_name = db.name
        coll = db.get_collection(
            self.collection_name,
            # Dates come back as aware UTC datetimes whatever the client's own setting.
            codec_options=db.codec_options.with_options(tz_aware=True, tzinfo=_UTC),
        )
        if not coll.write_concern.acknowledged:
            raise ConfigurationError(
                f"{self.describe()}: the client uses unacknowledged writes (w=0); the store"
                " needs acknowledged ones to tell a taken id or a gone session"
            )
        return coll

    async def _acollection(self) -> AsyncCollection[Document]:
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is not None:
            return entry[0]
        with self._lock:  # against threads running other loops; nothing awaits inside
            entry = self._async.get(loop)
            new = entry is None
            if entry is None:
                assert self.uri is not None  # an application's client goes through threads
                client: AsyncMongoClient[Document] = AsyncMongoClient(
                    self.uri, **self._client_options
                )
                db: AsyncDatabase[Document] = client.get_database(
                    self.database_name or DEFAULT_DATABASE
                )
                coll = db.get_collection(
                    self.collection_name,
                    codec_options=db.codec_options.with_options(tz_aware=True, tzinfo=_UTC),
                )
                entry = self._async[loop] = (coll, _closed_with_loop(self._async, loop, client))
        if new:
            await entry[1].asend(None)
        return entry[0]

    def close(self) -> None:
        with self._lock:
            coll, self._collection_ = self._collection_, None
            entries = list(self._async.items())
            self._async.clear()
        if coll is not None and self.uri is not None and self._pid == os.getpid():
            coll.database.client.close()
        for loop, (_, closer) in entries:
            if loop.is_running():  # in another thread, or around this very call
                with contextlib.suppress(RuntimeError):  # that loop closed meanwhile
                    asyncio.run_coroutine_threadsafe(closer.aclose(), loop)
            elif not loop.is_closed() and not _loop_running_here():
                loop.run_until_complete(closer.aclose())

    async def aclose(self) -> None:
        """Close the async client of the running loop (e.g. at ASGI lifespan shutdown)."""
        with self._lock:
            entry = self._async.get(asyncio.get_running_loop())
        if entry is not None:
            await entry[1].aclose()

    def _failure(self, action: str, exc: PyMongoError) -> CloudSessionsError:
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        if isinstance(exc, OperationFailure) and exc.code in _AUTH_CODES:
            return ConfigurationError(
                f"MongoDB refused to {action} in {self.describe()} ({reason}): check the"
                " user and password of the store URL and that the user has the readWrite"
                " role on the database"
            )
        if isinstance(exc, WriteError) and exc.code in _TOO_LARGE_CODES:
            # Keys merged in by other requests took the stored document over the limit.
            return SessionTooLarge(self.max_record_bytes + 1, self.max_record_bytes, self.kind)
        if isinstance(exc, PyMongoConfigurationError):
            return ConfigurationError(f"{self.describe()}: {reason}")
        return StoreUnavailable(f"MongoDB could not {action} ({self.describe()}): {reason}")

    # ------------------------------------------------------------------- contract

    def _load(self, rid: str) -> StoredRecord | None:
        try:
            doc = self._collection().find_one({"_id": rid}, _LOAD_PROJECTION)
        except PyMongoError as exc:
            raise self._failure("load a session", exc) from exc
        return None if doc is None else _stored(doc)

    def _create(self, rid: str, record: StoredRecord) -> None:
        try:
            self._collection().insert_one(_document(rid, record))
        except DuplicateKeyError:
            raise SessionExists("a session with this id exists") from None
        except PyMongoError as exc:
            raise self._failure("create a session", exc) from exc

    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        filter_, update = _save_command(rid, changes, expires_at, user_id, now)
        try:
            result = self._collection().update_one(filter_, update)
        except PyMongoError as exc:
            raise self._failure("save a session", exc) from exc
        _check_saved(result)

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        filter_, pipeline, projection = _increment_command(rid, field, delta, base, expires_at, now)
        try:
            doc = self._collection().find_one_and_update(
                filter_, pipeline, projection, return_document=ReturnDocument.AFTER
            )
        except PyMongoError as exc:
            raise self._failure("increment a session counter", exc) from exc
        return _counter(doc, field)

    def _delete(self, rid: str) -> None:
        try:
            self._collection().delete_one({"_id": rid})
        except PyMongoError as exc:
            raise self._failure("delete a session", exc) from exc

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        expired = {"expires_at": {"$lte": _utc(now)}}
        removed = 0
        try:
            coll = self._collection()
            while True:
                ids = [d["_id"] for d in coll.find(expired, {"_id": 1}, limit=batch_size)]
                if not ids:
                    return removed
                # Expiry is checked again: the TTL monitor may have got there first.
                result = coll.delete_many({"_id": {"$in": ids}, **expired})
                removed += result.deleted_count
                if progress is not None:
                    progress(removed)
        except PyMongoError as exc:
            raise self._failure("purge expired sessions", exc) from exc

    def _for_user(self, user_id: str) -> list[SessionInfo]:
        try:
            docs = list(self._collection().find({"user_id": user_id}, _INFO_PROJECTION))
        except PyMongoError as exc:
            raise self._failure("list the sessions of a user", exc) from exc
        return [SessionInfo(d["_id"], d["expires_at"].timestamp(), user_id) for d in docs]

    def _delete_for_user(self, user_id: str, keep_rid: str | None) -> int:
        filter_: Document = {"user_id": user_id}
        if keep_rid is not None:
            filter_["_id"] = {"$ne": keep_rid}
        try:
            return self._collection().delete_many(filter_).deleted_count
        except PyMongoError as exc:
            raise self._failure("delete the sessions of a user", exc) from exc

    def record_size(self, record: StoredRecord) -> int:
        """The BSON size of the document: what MongoDB holds to its 16 MiB limit."""
        fields = sum(_FIELD_ELEMENT + len(f) + len(v.encode()) for f, v in record.fields.items())
        for name, value in record.counters.items():
            fields += _COUNTER_ELEMENT + len(name) + (4 if _INT32_MIN <= value <= _INT32_MAX else 8)
        size = _BSON_DOC + _ID_ELEMENT + _RECORD_ID_LENGTH + _DATA_ELEMENT + fields
        size += _EXPIRES_ELEMENT
        if record.user_id is not None:
            size += _USER_ELEMENT + len(record.user_id.encode())
        return size

    # -------------------------------------------------------------------- async

    async def _aload(self, rid: str) -> StoredRecord | None:
        if self.uri is None:
            return await asyncio.to_thread(self._load, rid)
        try:
            coll = await self._acollection()
            doc = await coll.find_one({"_id": rid}, _LOAD_PROJECTION)
        except PyMongoError as exc:
            raise self._failure("load a session", exc) from exc
        return None if doc is None else _stored(doc)

    async def _acreate(self, rid: str, record: StoredRecord) -> None:
        if self.uri is None:
            return await asyncio.to_thread(self._create, rid, record)
        try:
            coll = await self._acollection()
            await coll.insert_one(_document(rid, record))
        except DuplicateKeyError:
            raise SessionExists("a session with this id exists") from None
        except PyMongoError as exc:
            raise self._failure("create a session", exc) from exc

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        if self.uri is None:
            return await asyncio.to_thread(self._save, rid, changes, expires_at, user_id, now)
        filter_, update = _save_command(rid, changes, expires_at, user_id, now)
        try:
            coll = await self._acollection()
            result = await coll.update_one(filter_, update)
        except PyMongoError as exc:
            raise self._failure("save a session", exc) from exc
        _check_saved(result)

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        if self.uri is None:
            return await asyncio.to_thread(
                self._increment, rid, field, delta, base, expires_at, now
            )
        filter_, pipeline, projection = _increment_command(rid, field, delta, base, expires_at, now)
        try:
            coll = await self._acollection()
            doc = await coll.find_one_and_update(
                filter_, pipeline, projection, return_document=ReturnDocument.AFTER
            )
        except PyMongoError as exc:
            raise self._failure("increment a session counter", exc) from exc
        return _counter(doc, field)

    async def _adelete(self, rid: str) -> None:
        if self.uri is None:
            return await asyncio.to_thread(self._delete, rid)
        try:
            coll = await self._acollection()
            await coll.delete_one({"_id": rid})
        except PyMongoError as exc:
            raise self._failure("delete a session", exc) from exc

    # ----------------------------------------------------------------- operations

    def provision(self, *, fix: bool = False) -> list[str]:
        """Create the collection's TTL and user indexes; idempotent.

        An index of the same name or key with other options (say, another
        expireAfterSeconds) is reported as a ConfigurationError and left alone, unless
        `fix` is true: then it is changed in place (collMod) or dropped and rebuilt.
        Nothing else is ever dropped.
        """
        coll = self._collection()
        done: list[str] = []
        conflicts: list[str] = []
        try:
            existing = list(coll.list_indexes())
            if not existing:
                done.append(f"created collection {coll.full_name}")
            for want in INDEXES:
                found = _find_index(existing, want)
                if found is None:
                    coll.create_index(want.field, name=want.name, **want.options)
                    done.append(f"created index {want.describe()} in {coll.full_name}")
                elif want.matches(found):
                    continue
                elif fix:
                    done.append(self._fix_index(coll, want, found))
                else:
                    conflicts.append(f"index {_show_index(found)} differs from {want.describe()}")
        except PyMongoError as exc:
            raise self._failure("create the indexes", exc) from exc
        if conflicts:
            made = f" (done: {'; '.join(done)})" if done else ""
            raise ConfigurationError(
                f"{self.describe()}: {'; '.join(conflicts)}{made}. Nothing was changed;"
                " `cloudsessions init --fix` (provision(fix=True)) rebuilds it"
            )
        return done

    def _fix_index(self, coll: Collection[Document], want: _Index, found: Mapping[str, Any]) -> str:
        was = _show_index(found)
        ttl_only = (
            found["name"] == want.name
            and _key_of(found) == [(want.field, 1)]
            and "expireAfterSeconds" in found
            and {k: v for k, v in _options_of(found).items() if k != "expireAfterSeconds"}
            == {k: v for k, v in want.options.items() if k != "expireAfterSeconds"}
        )
        if ttl_only:
            # A TTL change needs no rebuild.
            coll.database.command(
                "collMod",
                coll.name,
                index={"name": want.name, "expireAfterSeconds": want.options["expireAfterSeconds"]},
            )
            return f"changed index {was} to {want.describe()}"
        coll.drop_index(found["name"])
        coll.create_index(want.field, name=want.name, **want.options)
        return f"replaced index {was} by {want.describe()}"

    def drop(self) -> None:
        try:
            self._collection().drop()
        except PyMongoError as exc:
            raise self._failure("drop the collection", exc) from exc

    def check(self) -> list[CheckResult]:
        coll = self._collection()
        db = coll.database
        try:
            version = db.command("buildInfo").get("version", "?")
        except PyMongoError as exc:
            return [CheckResult("server", False, str(self._failure("answer", exc)))]
        results = [CheckResult("server", True, f"MongoDB {version}, {self.describe()}")]
        try:
            exists = bool(db.list_collection_names(filter={"name": coll.name}))
            existing = list(coll.list_indexes()) if exists else []
            if exists:
                count = coll.estimated_document_count()
                expired = coll.count_documents({"expires_at": {"$lte": _utc(time.time())}})
        except PyMongoError as exc:
            return [*results, CheckResult("collection", False, str(self._failure("read", exc)))]
        if not exists:
            hint = "missing: run `cloudsessions init --store URL`"
            return [*results, CheckResult("collection", False, f"{coll.full_name} {hint}")]
        results.append(CheckResult("collection", True, coll.full_name))
        for want in INDEXES:
            found = _find_index(existing, want)
            if found is None:
                detail, ok = f"{want.name} missing: run `cloudsessions init`", False
            elif want.matches(found):
                detail, ok = _show_index(found), True
            else:
                detail = f"{_show_index(found)}, expected {want.describe()}: run init --fix"
                ok = False
            results.append(CheckResult("index", ok, detail))
        concern = coll.write_concern.document or {"w": "server default"}
        results.append(CheckResult("write concern", coll.write_concern.acknowledged, str(concern)))
        mode = coll.read_preference
        primary = isinstance(mode, Primary)
        stale = "" if primary else ": a secondary may miss a session written a moment ago"
        results.append(CheckResult("read preference", primary, mode.mongos_mode + stale))
        results.append(CheckResult("sessions", True, f"about {count} stored, {expired} expired"))
        return results


# ------------------------------------------------------------------------ documents


def _document(rid: str, record: StoredRecord) -> Document:
    data = {**record.fields, **record.counters} if record.counters else record.fields
    doc: Document = {"_id": rid, "d": data, "expires_at": _utc(record.expires_at)}
    if record.user_id is not None:
        doc["user_id"] = record.user_id
    return doc


def _stored(doc: Document) -> StoredRecord | None:
    data, expires_at = doc.get("d"), doc.get("expires_at")
    if not isinstance(data, dict) or not isinstance(expires_at, datetime):
        return None  # not a document this store wrote: treated as an unknown id
    # Values are JSON text, except counters: native integers that $add can work on.
    counters = {f: v for f, v in data.items() if not isinstance(v, str)}
    if counters:
        if not all(type(v) is int for v in counters.values()):
            return None
        data = {f: v for f, v in data.items() if isinstance(v, str)}
    return StoredRecord(data, expires_at.timestamp(), doc.get("user_id"), counters)


def _save_command(
    rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
) -> tuple[Document, Document]:
    set_: Document = {f"d.{f}": v for f, v in changes.set_fields.items()}
    set_["expires_at"] = _utc(expires_at)
    unset: Document = {f"d.{f}": "" for f in changes.removed_fields}
    if user_id is None:
        unset["user_id"] = ""
    else:
        set_["user_id"] = user_id
    update: Document = {"$set": set_}
    if unset:
        update["$unset"] = unset
    return {"_id": rid, "expires_at": {"$gt": _utc(now)}}, update


def _increment_command(
    rid: str, field: str, delta: int, base: int, expires_at: float, now: float
) -> tuple[Document, list[Document], Document]:
    # An update pipeline, so the one write can read the field: a counter (a native
    # integer) is added to; anything else (absent, or JSON text written by a save) is
    # replaced by base + delta.
    path = f"d.{field}"
    current = f"${path}"
    is_counter = {"$in": [{"$type": current}, ["int", "long"]]}
    value = {"$add": [{"$cond": [is_counter, current, base]}, delta]}
    return (
        {"_id": rid, "expires_at": {"$gt": _utc(now)}},
        [{"$set": {path: value, "expires_at": _utc(expires_at)}}],
        {"_id": 0, path: 1},
    )


def _counter(doc: Document | None, field: str) -> int:
    if doc is None:
        raise SessionGone("the session was deleted or has expired")
    return int(doc["d"][field])


def _check_saved(result: UpdateResult) -> None:
    if result.matched_count == 0:
        raise SessionGone("the session was deleted or has expired")


def _find_index(existing: Sequence[Mapping[str, Any]], want: _Index) -> Mapping[str, Any] | None:
    """The index that is, or stands in the way of, `want`: same name, else same key."""
    for index in existing:
        if index["name"] == want.name:
            return index
    for index in existing:
        if _key_of(index) == [(want.field, 1)]:
            return index
    return None


# ----------------------------------------------------------------------- configuration


def _client_kwargs(uri: str, given: Mapping[str, Any]) -> dict[str, Any]:
    # URI option names are case-insensitive; a default never overrides what the URL says.
    named = {k.lower() for k, _ in _query(uri)} | {k.lower() for k in given}
    kwargs = {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() not in named}
    kwargs.update(given)
    kwargs["tz_aware"] = True
    return kwargs


def _query(uri: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(uri).query.replace(";", "&"), keep_blank_values=True)


def _strip_options(raw: str, names: set[str]) -> str:
    """The URL without our options, every other byte as given (PyMongo parses the rest)."""
    base, sep, query = raw.partition("?")
    if not sep:
        return raw
    kept = [p for p in re.split("[&;]", query) if p and p.split("=", 1)[0] not in names]
    return f"{base}?{'&'.join(kept)}" if kept else base


def _uri_database(uri: str) -> str | None:
    name = urlsplit(uri).path.strip("/")
    return name or None


def _hosts(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def _resolve(source: Any, expected: type[Any], option: str) -> Any:
    value = _import_path(source, option) if isinstance(source, str) else source
    if not isinstance(value, expected):
        raise ConfigurationError(
            f"option {option!r} of the mongodb store must be a pymongo {expected.__name__}"
            f" (or its dotted path), got {type(value).__name__}"
        )
    return value


def _import_path(path: str, option: str) -> Any:
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                value = getattr(value, attr)
        except AttributeError:
            break
        return value
    raise ConfigurationError(f"option {option!r} of the mongodb store: cannot import {path!r}")


async def _closed_with_loop(
    clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AsyncEntry],
    loop: asyncio.AbstractEventLoop,
    client: AsyncMongoClient[Document],
) -> AsyncGenerator[None, None]:
    """Closes `client` when its loop shuts down (or on aclose()).

    An AsyncMongoClient is bound to the loop it was made on and cannot be closed from
    another one once that loop is gone, and it keeps its loop alive. Loops run by
    asyncio.run, asyncio.Runner, asgiref or uvicorn finalize their async generators before
    closing: that is when this generator's `finally` runs.
    """
    try:
        yield
    finally:
        clients.pop(loop, None)
        await client.close()


def _loop_running_here() -> bool:
    # run_until_complete on another loop raises while this thread is inside a running loop.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
