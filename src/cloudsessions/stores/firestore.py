"""The Firestore store: one document per session in one collection.

Layout of a document (its id is the hashed session id):

    d           map of encoded field name -> JSON text (one entry per session key)
    keys        array of the encoded field names in the session's order (maps come back
                sorted; ArrayUnion/ArrayRemove keep this right under concurrent saves)
    expires_at  Timestamp of the expiry: a TTL policy on it deletes expired sessions
    expires_us  the same instant in integer microseconds: the expiry guard (see below)
    user_id     string or null, queried by for_user()

Writes change single entries of ``d`` (update masks like ``d.`k%41```), so two requests
that change different keys of one session both keep their change.

Saving without resurrecting an expired session, in one write. Firestore's preconditions
can only say "exists" or "last updated at", never "expires_at > now", and the contract
allows neither a read before a save nor a transaction (a read plus a commit). So a save is
one Commit of two writes to the document, applied atomically and in order:

    1. expires_us += R - t - 1        (precondition: the document exists)
    2. set the changed keys (and their order), expires_at = R, user_id;
       expires_us = min(expires_us, R)

with R the new expiry and t the time of the save, in microseconds. If the session was live
(expires_us > t), step 1 lifts expires_us to at least R and step 2 brings it to exactly R:
expires_us == expires_at again. If it had expired (expires_us <= t), expires_us ends below
R, and a document whose expires_us is below its expires_at reads as expired. The commit
returns the value of expires_us, so the store knows at once: it deletes that document (a
second call, on this path only) and raises SessionGone. The details are in
docs/stores/firestore.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter
from google.cloud.firestore_v1.field_path import FieldPath
from google.cloud.firestore_v1.services.firestore import FirestoreAsyncClient, FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import (
    FirestoreGrpcAsyncIOTransport,
    FirestoreGrpcTransport,
)

from ..errors import ConfigurationError, SessionExists, SessionGone, StoreUnavailable
from ..options import Options
from ..record import Changes, CheckResult, SessionInfo, StoredRecord
from ..store import Progress, Store
from ..urls import StoreURL

logger = logging.getLogger("cloudsessions")

DATA, KEYS, EXPIRES_AT, EXPIRES_US, USER_ID = "d", "keys", "expires_at", "expires_us", "user_id"
DEFAULT_COLLECTION = "cloudsessions"
DEFAULT_DATABASE = "(default)"
EMULATOR_ENV = "FIRESTORE_EMULATOR_HOST"
# Firestore's own limits: 1 MiB per document; at most 500 writes per batch commit.
MAX_DOCUMENT_BYTES = 1_048_576
MAX_BATCH = 500

TRANSIENT: tuple[type[Exception], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.Aborted,
    gexc.InternalServerError,
)
# The SDK's keepalive and message sizes, plus a short reconnect backoff: gRPC's default
# grows to 120 s while a server is down, which would delay recovery by as much.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Firestore timestamps end with the year 9999.
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND

_CREDENTIALS_HELP = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, run"
    " `gcloud auth application-default login`, or run on Google Cloud with a service account;"
    " for the emulator set FIRESTORE_EMULATOR_HOST (or the emulator_host option)"
)


def _us(seconds: float) -> int:
    return min(max(round(seconds * 1_000_000), _MIN_US), _MAX_US)


def _timestamp(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _us_of(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


def _data_path(field: str) -> str:
    # Encoded names hold % and -, which Firestore field paths accept only back-quoted.
    return FieldPath(DATA, field).to_api_repr()


def _collection_path(path: str) -> tuple[str, ...]:
    segments = tuple(path.strip("/").split("/")) if path.strip("/") else (DEFAULT_COLLECTION,)
    if len(segments) % 2 == 0 or any(
        not s or s in (".", "..") or (s.startswith("__") and s.endswith("__")) for s in segments
    ):
        raise ConfigurationError(
            f"firestore collection path {path!r} must name a collection: 'sessions' or"
            " 'parent/doc/sessions'; ids may not be empty, '.', '..' or __reserved__"
        )
    return segments


class FirestoreStore(Store):
    kind = "firestore"
    default_max_record_bytes = MAX_DOCUMENT_BYTES

    def __init__(
        self,
        collection: str | firestore.CollectionReference = DEFAULT_COLLECTION,
        *,
        project: str | None = None,
        database: str | None = None,
        client: firestore.Client | None = None,
        credentials: Credentials | None = None,
        emulator_host: str | None = None,
        timeout: float = 5.0,
        retry_deadline: float = 5.0,
        max_record_bytes: int | None = None,
    ) -> None:
        super().__init__(max_record_bytes=max_record_bytes)
        self._given_collection: firestore.CollectionReference | None = None
        if isinstance(collection, firestore.CollectionReference):
            self._given_collection = collection
            client = collection._client
            path: tuple[str, ...] = tuple(collection._path)
        else:
            path = _collection_path(collection)
        if client is not None:
            if project and project != client.project:
                raise ConfigurationError(
                    f"the firestore store names project {project!r} but the client given"
                    f" in its options is for project {client.project!r}"
                )
            project, database = client.project, client._database
        self.path = path
        self.project = project or None
        self.database = database or DEFAULT_DATABASE
        self.timeout = timeout
        self.retry_deadline = retry_deadline
        self._given_client = client
        self._credentials = credentials
        self._emulator_host = emulator_host
        self._lock = threading.Lock()
        self._handle: tuple[firestore.Client, firestore.CollectionReference] | None = None
        self._pid = 0
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop,
            tuple[firestore.AsyncClient, firestore.AsyncCollectionReference],
        ] = weakref.WeakKeyDictionary()
        predicate = gretry.if_exception_type(*TRANSIENT)
        backoff: dict[str, Any] = {
            "initial": 0.1,
            "maximum": 1.0,
            "multiplier": 2.0,
            "timeout": retry_deadline,
        }
        self._retry = gretry.Retry(predicate=predicate, **backoff) if retry_deadline else None
        self._aretry = gretry.AsyncRetry(predicate=predicate, **backoff) if retry_deadline else None

    @classmethod
    def from_url(cls, url: StoreURL, options: dict[str, Any]) -> FirestoreStore:
        opts = Options(
            cls.kind,
            options,
            {
                "database",
                "emulator_host",
                "timeout",
                "retry_deadline",
                "max_record_bytes",
                "client",
                "collection",
                "credentials",
            },
        )
        collection = opts.get("collection")
        if collection is not None and not isinstance(collection, firestore.CollectionReference):
            raise ConfigurationError(
                "option 'collection' of the firestore store must be a"
                f" google.cloud.firestore.CollectionReference, got {type(collection).__name__}"
            )
        client = opts.get("client")
        if client is not None and not isinstance(client, firestore.Client):
            raise ConfigurationError(
                "option 'client' of the firestore store must be a google.cloud.firestore.Client,"
                f" got {type(client).__name__}"
            )
        if collection is not None and (url.netloc or url.path.strip("/")):
            raise ConfigurationError(
                "the firestore store takes its project and collection from the 'collection'"
                " option: write the URL as firestore:// (without project or collection)"
            )
        return cls(
            collection if collection is not None else url.path,
            project=url.netloc or None,
            database=opts.text("database", "") or None,
            client=client,
            credentials=opts.get("credentials"),
            emulator_host=opts.text("emulator_host", "") or None,
            timeout=opts.number("timeout", 5.0),
            retry_deadline=opts.number("retry_deadline", 5.0),
            max_record_bytes=opts.integer("max_record_bytes", 0) or None,
        )

    def describe(self) -> str:
        project = self.project or "from the environment"
        return (
            f"firestore collection {'/'.join(self.path)} (project {project},"
            f" database {self.database})"
        )

    # ----------------------------------------------------------------------- clients

    def _emulator(self) -> str | None:
        if self._given_client is not None:
            host: str | None = self._given_client._emulator_host
            return host
        return self._emulator_host or os.environ.get(EMULATOR_ENV) or None

    def _settings(self) -> tuple[str, Credentials, str | None]:
        """Project, credentials and emulator host; read at first use, never at import."""
        emulator = self._emulator()
        project = self.project
        credentials = self._credentials
        if self._given_client is not None:
            credentials = self._given_client._credentials
        elif emulator is not None:
            credentials = credentials or AnonymousCredentials()  # type: ignore[no-untyped-call]
        elif credentials is None:
            import google.auth

            try:
                credentials, found = google.auth.default(scopes=firestore.Client.SCOPE)
            except auth_exceptions.DefaultCredentialsError as exc:
                raise ConfigurationError(
                    f"no Google Cloud credentials for the {self.describe()}: {_CREDENTIALS_HELP}"
                ) from exc
            project = project or found
            # Found once: every later client (one per event loop) reuses them, so no
            # credential lookup runs on an event loop's thread.
            self._credentials = credentials
        project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or None
        if not project:
            raise ConfigurationError(
                "the firestore store needs a Google Cloud project: put it in the URL"
                " (firestore://PROJECT/COLLECTION) or set GOOGLE_CLOUD_PROJECT"
            )
        self.project = project
        assert credentials is not None
        return project, credentials, emulator

    def _new_client(self, asynchronous: bool) -> Any:
        project, credentials, emulator = self._settings()
        client_class = firestore.AsyncClient if asynchronous else firestore.Client
        client = client_class(project=project, credentials=credentials, database=self.database)
        if emulator is not None:
            # What the SDK does for FIRESTORE_EMULATOR_HOST, for a host given as an option.
            client._emulator_host = emulator
        transport: Any = FirestoreGrpcAsyncIOTransport if asynchronous else FirestoreGrpcTransport
        channel = self._channel(client._target, credentials, emulator, asynchronous)
        # Our own channel: the SDK would build one without the reconnect options above.
        api_class = FirestoreAsyncClient if asynchronous else FirestoreClient
        client._firestore_api_internal = api_class(
            transport=transport(host=client._target, channel=channel)
        )
        return client

    def _channel(
        self, target: str, credentials: Credentials, emulator: str | None, asynchronous: bool
    ) -> Any:
        """The gRPC channel of a new client (a grpc.aio channel for an async one)."""
        if emulator is not None:
            insecure = grpc.aio.insecure_channel if asynchronous else grpc.insecure_channel
            return insecure(emulator, options=CHANNEL_OPTIONS)
        transport = FirestoreGrpcAsyncIOTransport if asynchronous else FirestoreGrpcTransport
        return transport.create_channel(target, credentials=credentials, options=CHANNEL_OPTIONS)

    def _open(self) -> tuple[firestore.Client, firestore.CollectionReference]:
        if self._given_collection is not None:
            return self._given_collection._client, self._given_collection
        client = self._given_client or self._new_client(asynchronous=False)
        return client, client.collection(*self.path)

    def _sync(self) -> tuple[firestore.Client, firestore.CollectionReference]:
        # One client per process: a gRPC channel must not cross into a forked child.
        handle = self._handle
        if handle is None or self._pid != os.getpid():
            with self._lock:
                if self._handle is None or self._pid != os.getpid():
                    self._handle, self._pid = self._open(), os.getpid()
                handle = self._handle
        return handle

    def _asyncref(self) -> tuple[firestore.AsyncClient, firestore.AsyncCollectionReference]:
        # Async clients belong to the event loop they first ran on: one per running loop.
        loop = asyncio.get_running_loop()
        handle = self._async.get(loop)
        if handle is None:
            with self._lock:
                handle = self._async.get(loop)
                if handle is None:
                    client = self._new_client(asynchronous=True)
                    handle = self._async[loop] = (client, client.collection(*self.path))
        return handle

    def close(self) -> None:
        with self._lock:
            handle, self._handle = self._handle, None
            self._async.clear()
        if handle is not None and self._given_client is None and self._given_collection is None:
            handle[0].close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------------ errors

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except (gexc.RetryError, *TRANSIENT) as exc:  # type: ignore[misc]
            raise StoreUnavailable(
                f"{self.describe()}: {what} failed after retrying for up to"
                f" {self.retry_deadline:g} s: {exc}"
            ) from exc
        except (gexc.PermissionDenied, gexc.Unauthenticated, auth_exceptions.RefreshError) as exc:
            raise ConfigurationError(
                f"{self.describe()}: {what} was refused: {exc}. The credentials need the"
                f" Cloud Datastore User role (roles/datastore.user); {_CREDENTIALS_HELP}"
            ) from exc
        except gexc.FailedPrecondition as exc:
            raise ConfigurationError(f"{self.describe()}: {what} failed: {exc}") from exc
        except gexc.NotFound as exc:
            # A missing database says "The database X does not exist for project Y".
            if what in ("save", "increment") and "does not exist" not in str(exc):
                raise SessionGone("the session was deleted or has expired") from None
            raise ConfigurationError(
                f"{self.describe()}: {what} failed: {exc}; check the project and database"
                " in the store URL"
            ) from exc

    @contextmanager
    def _creating(self) -> Iterator[None]:
        try:
            with self._errors("create"):
                yield
        except gexc.AlreadyExists:
            raise SessionExists("a session with this id exists") from None

    # ------------------------------------------------------------------- documents

    @staticmethod
    def _document(record: StoredRecord) -> dict[str, Any]:
        expires = _us(record.expires_at)
        return {
            DATA: record.fields,
            KEYS: list(record.fields),
            EXPIRES_AT: _timestamp(expires),
            EXPIRES_US: expires,
            USER_ID: record.user_id,
        }

    @staticmethod
    def _record(snapshot: Any) -> StoredRecord | None:
        if not snapshot.exists:
            return None
        doc = snapshot.to_dict() or {}
        fields, expires_at, guard = doc.get(DATA), doc.get(EXPIRES_AT), doc.get(EXPIRES_US)
        if not (
            isinstance(fields, dict) and isinstance(expires_at, datetime) and isinstance(guard, int)
        ):
            logger.warning("a firestore document that is not a cloudsessions session was ignored")
            return None
        expires = _us_of(expires_at)
        if guard < expires:
            return None  # a save reached it after it had expired: see the module docstring
        # Firestore returns map entries sorted; `keys` keeps the session's own order.
        ordered = {f: fields[f] for f in doc.get(KEYS) or () if f in fields}
        if len(ordered) < len(fields):
            ordered.update(fields)
        # JSON text is a string; a counter (Store.increment) is a native integer.
        counters = {f: v for f, v in ordered.items() if type(v) is int}
        for field in counters:
            del ordered[field]
        return StoredRecord(ordered, expires / 1_000_000, doc.get(USER_ID), counters)

    @staticmethod
    def _guarded(
        batch: Any,
        ref: Any,
        first: dict[str, Any],
        second: dict[str, Any],
        expires_at: float,
        now: float,
    ) -> int:
        """Add the two writes of a save (see the module docstring) to `batch`."""
        expires = _us(expires_at)
        # Lifts a live guard (> now) to >= expires; leaves an expired one below it.
        first[EXPIRES_US] = firestore.Increment(expires - math.floor(now * 1e6) - 1)
        batch.update(ref, first)
        second[EXPIRES_AT] = _timestamp(expires)
        # The SDK sends transforms sorted by path: expires_us's result comes first here.
        second[EXPIRES_US] = firestore.Minimum(expires)
        batch.update(ref, second)
        return expires

    @classmethod
    def _save_batch(
        cls,
        batch: Any,
        ref: Any,
        changes: Changes,
        expires_at: float,
        user_id: str | None,
        now: float,
    ) -> int:
        first: dict[str, Any] = {}
        if changes.removed_fields:
            first[KEYS] = firestore.ArrayRemove(changes.removed_fields)
        second: dict[str, Any] = {_data_path(f): v for f, v in changes.set_fields.items()}
        for field in changes.removed_fields:
            second[_data_path(field)] = firestore.DELETE_FIELD
        second[USER_ID] = user_id
        if changes.set_fields:
            # Appends only the new keys, in order, whatever other saves did meanwhile.
            second[KEYS] = firestore.ArrayUnion(list(changes.set_fields))
        return cls._guarded(batch, ref, first, second, expires_at, now)

    @classmethod
    def _increment_batch(
        cls, batch: Any, ref: Any, field: str, delta: int, expires_at: float, now: float
    ) -> int:
        # Firestore's increment of a value that is not a number (the JSON text a save
        # wrote) or of a missing one starts from 0: exactly Store.increment with base 0.
        first = {_data_path(field): firestore.Increment(delta)}
        second: dict[str, Any] = {KEYS: firestore.ArrayUnion([field])}
        return cls._guarded(batch, ref, first, second, expires_at, now)

    @staticmethod
    def _was_live(results: Sequence[Any], expires: int) -> bool:
        guard: int = results[-1].transform_results[0].integer_value
        return guard == expires

    def record_size(self, record: StoredRecord) -> int:
        """Firestore's storage size of the document (its 1 MiB limit counts this).

        Document name: each collection and document id's UTF-8 bytes + 1, plus 16; each
        field: name bytes + 1 plus the value (string: bytes + 1; map: its fields; integer
        and timestamp: 8; null: 1); plus 32 bytes per document. Record ids are 64 bytes.
        """
        name = sum(len(s.encode()) + 1 for s in self.path) + 65 + 16
        names = sum(len(f.encode()) + 1 for f in record.fields)
        values = sum(len(v.encode()) + 1 for v in record.fields.values())
        user = len(record.user_id.encode()) + 1 if record.user_id is not None else 1
        # d (names and values), keys (names again), expires_at, expires_us, user_id.
        fields = (2 + names + values) + (5 + names) + (11 + 8) + (11 + 8) + (8 + user)
        return name + fields + 32

    # ---------------------------------------------------------------------- contract

    def _load(self, rid: str) -> StoredRecord | None:
        ref = self._sync()[1].document(rid)
        with self._errors("load"):
            snapshot = ref.get(retry=self._retry, timeout=self.timeout)
        return self._record(snapshot)

    def _create(self, rid: str, record: StoredRecord) -> None:
        ref = self._sync()[1].document(rid)
        with self._creating():
            ref.create(self._document(record), retry=self._retry, timeout=self.timeout)

    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        client, collection = self._sync()
        ref, batch = collection.document(rid), client.batch()
        expires = self._save_batch(batch, ref, changes, expires_at, user_id, now)
        with self._errors("save"):
            results = batch.commit(retry=self._retry, timeout=self.timeout)
        if not self._was_live(results, expires):
            self._expired(rid)

    def _delete(self, rid: str) -> None:
        ref = self._sync()[1].document(rid)
        with self._errors("delete"):
            ref.delete(retry=self._retry, timeout=self.timeout)

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        if base:
            return self._increment_from(base, rid, field, delta, expires_at, now)
        client, collection = self._sync()
        ref, batch = collection.document(rid), client.batch()
        expires = self._increment_batch(batch, ref, field, delta, expires_at, now)
        with self._errors("increment"):
            results = batch.commit(retry=self._retry, timeout=self.timeout)
        if not self._was_live(results, expires):
            self._expired(rid)
        value: int = results[0].transform_results[0].integer_value
        return value

    def _increment_from(
        self, base: int, rid: str, field: str, delta: int, expires_at: float, now: float
    ) -> int:
        """A plain integer becomes a counter from its value: read it, then write on the
        condition that the document is unchanged since (Firestore's transforms cannot
        start from a value of ours when the field is not a number). Retried on conflict."""
        client, collection = self._sync()
        ref, expires = collection.document(rid), _us(expires_at)
        deadline = time.monotonic() + max(self.retry_deadline, self.timeout)
        while time.monotonic() < deadline:
            with self._errors("increment"):
                snapshot = ref.get(retry=self._retry, timeout=self.timeout)
                record = self._record(snapshot)
                if record is None or record.expires_at <= now:
                    raise SessionGone("the session was deleted or has expired")
                value = record.counters.get(field, base) + delta
                updates = {
                    _data_path(field): value,
                    KEYS: firestore.ArrayUnion([field]),
                    EXPIRES_AT: _timestamp(expires),
                    EXPIRES_US: expires,
                }
                unchanged = client.write_option(last_update_time=snapshot.update_time)
                try:
                    ref.update(updates, option=unchanged, retry=self._retry, timeout=self.timeout)
                except gexc.FailedPrecondition:
                    time.sleep(random.uniform(0, 0.05))  # noqa: S311 - jitter, not secrets
                    continue  # another write came first: read again
            return value
        raise StoreUnavailable(f"{self.describe()}: increment kept conflicting with other writes")

    def _expired(self, rid: str) -> NoReturn:
        try:
            self._delete(rid)
        except StoreUnavailable:
            # Readers already see it as expired; the TTL policy removes it later.
            logger.warning("an expired firestore session could not be deleted", exc_info=True)
        raise SessionGone("the session has expired")

    async def _aexpired(self, rid: str) -> NoReturn:
        try:
            await self._adelete(rid)
        except StoreUnavailable:
            logger.warning("an expired firestore session could not be deleted", exc_info=True)
        raise SessionGone("the session has expired")

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        if base:  # rare: the first increment of a plain integer
            return await asyncio.to_thread(
                self._increment_from, base, rid, field, delta, expires_at, now
            )
        client, collection = self._asyncref()
        ref, batch = collection.document(rid), client.batch()
        expires = self._increment_batch(batch, ref, field, delta, expires_at, now)
        with self._errors("increment"):
            results = await batch.commit(retry=self._aretry, timeout=self.timeout)
        if not self._was_live(results, expires):
            await self._aexpired(rid)
        value: int = results[0].transform_results[0].integer_value
        return value

    async def _aload(self, rid: str) -> StoredRecord | None:
        ref = self._asyncref()[1].document(rid)
        with self._errors("load"):
            snapshot = await ref.get(retry=self._aretry, timeout=self.timeout)
        return self._record(snapshot)

    async def _acreate(self, rid: str, record: StoredRecord) -> None:
        ref = self._asyncref()[1].document(rid)
        with self._creating():
            await ref.create(self._document(record), retry=self._aretry, timeout=self.timeout)

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        client, collection = self._asyncref()
        ref, batch = collection.document(rid), client.batch()
        expires = self._save_batch(batch, ref, changes, expires_at, user_id, now)
        with self._errors("save"):
            results = await batch.commit(retry=self._aretry, timeout=self.timeout)
        if not self._was_live(results, expires):
            await self._aexpired(rid)

    async def _adelete(self, rid: str) -> None:
        ref = self._asyncref()[1].document(rid)
        with self._errors("delete"):
            await ref.delete(retry=self._aretry, timeout=self.timeout)

    # ------------------------------------------------------------- queries, batches

    def _delete_matching(
        self, query: Any, batch_size: int, progress: Progress | None, what: str
    ) -> int:
        """Delete what `query` finds, one page at a time, so memory stays flat."""
        limit = max(1, min(batch_size, MAX_BATCH))
        page = query.select(["__name__"]).limit(limit)
        removed = 0
        while True:
            with self._errors(what):
                refs = [s.reference for s in page.stream(retry=self._retry, timeout=self.timeout)]
            if not refs:
                return removed
            self._delete_refs(refs, what)
            removed += len(refs)
            if progress is not None:
                progress(removed)
            if len(refs) < limit:
                return removed

    def _delete_refs(self, refs: Sequence[Any], what: str) -> None:
        client = self._sync()[0]
        for start in range(0, len(refs), MAX_BATCH):
            batch = client.batch()
            for ref in refs[start : start + MAX_BATCH]:
                batch.delete(ref)
            with self._errors(what):
                batch.commit(retry=self._retry, timeout=self.timeout)

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        query = (
            self._sync()[1]
            .where(filter=FieldFilter(EXPIRES_AT, "<=", _timestamp(_us(now))))
            .order_by(EXPIRES_AT)
        )
        return self._delete_matching(query, batch_size, progress, "purge")

    def _user_documents(self, user_id: str) -> list[Any]:
        query = (
            self._sync()[1]
            .where(filter=FieldFilter(USER_ID, "==", user_id))
            .select([EXPIRES_AT, EXPIRES_US])
        )
        with self._errors("for_user"):
            return list(query.stream(retry=self._retry, timeout=self.timeout))

    def _for_user(self, user_id: str) -> list[SessionInfo]:
        sessions = []
        for snapshot in self._user_documents(user_id):
            expires_at, guard = snapshot.get(EXPIRES_AT), snapshot.get(EXPIRES_US)
            expires = _us_of(expires_at)
            if guard >= expires:
                sessions.append(SessionInfo(snapshot.id, expires / 1_000_000, user_id))
        return sessions

    def _delete_for_user(self, user_id: str, keep_rid: str | None) -> int:
        refs = [s.reference for s in self._user_documents(user_id) if s.id != keep_rid]
        self._delete_refs(refs, "delete_for_user")
        return len(refs)

    # -------------------------------------------------------------------- operations

    def _field_name(self, field: str) -> str:
        return (
            f"projects/{self.project}/databases/{self.database}"
            f"/collectionGroups/{self.path[-1]}/fields/{field}"
        )

    def _admin(self) -> Any:
        from google.cloud.firestore_admin_v1 import FirestoreAdminClient

        _, credentials, _ = self._settings()
        return FirestoreAdminClient(credentials=credentials)

    def provision(self, *, fix: bool = False) -> list[str]:
        """Ask Firestore for the TTL policy on expires_at and an index exemption for d.

        Collections need no creating. The emulator has no Admin API (and no TTL): there
        the store logs that and returns nothing, as purge_expired does the sweeping.
        """
        self._sync()  # settles project and credentials (ConfigurationError if missing)
        if self._emulator() is not None:
            logger.warning(
                "the Firestore emulator has no TTL policies or index settings: nothing to"
                " provision; run `cloudsessions purge` to remove expired sessions"
            )
            return []
        from google.cloud.firestore_admin_v1.types import Field

        done: list[str] = []
        admin = self._admin()
        with self._errors("provision"):
            ttl = admin.get_field(name=self._field_name(EXPIRES_AT), timeout=self.timeout)
            if ttl.ttl_config.state == Field.TtlConfig.State.STATE_UNSPECIFIED:
                admin.update_field(
                    field=Field(name=ttl.name, ttl_config=Field.TtlConfig()),
                    update_mask={"paths": ["ttl_config"]},
                    timeout=self.timeout,
                )
                done.append(
                    f"requested a TTL policy on {EXPIRES_AT} of collection group"
                    f" {self.path[-1]}: Firestore deletes expired sessions once it is ACTIVE"
                )
            for field in (DATA, EXPIRES_US):
                config = admin.get_field(name=self._field_name(field), timeout=self.timeout)
                if config.index_config.uses_ancestor_config:
                    admin.update_field(
                        field=Field(name=config.name, index_config=Field.IndexConfig()),
                        update_mask={"paths": ["index_config"]},
                        timeout=self.timeout,
                    )
                    done.append(
                        f"requested a single-field index exemption for {field} (never queried)"
                    )
        return done

    def drop(self, *, progress: Progress | None = None) -> None:
        """Delete every document of the collection, a batch at a time."""
        self._delete_matching(self._sync()[1], MAX_BATCH, progress, "drop")

    def check(self) -> list[CheckResult]:
        try:
            collection = self._sync()[1]
            expired_query = collection.where(
                filter=FieldFilter(EXPIRES_AT, "<=", datetime.now(UTC))
            )
            with self._errors("check"):
                count, expired = (self._count(q) for q in (collection, expired_query))
        except (ConfigurationError, StoreUnavailable) as exc:
            return [CheckResult("collection", False, str(exc))]
        results = [
            CheckResult("collection", True, self.describe()),
            CheckResult("sessions", True, f"{count} stored, {expired} expired"),
        ]
        if self._emulator() is not None:
            note = "not on the Firestore emulator"
            return [
                *results,
                CheckResult("ttl policy", True, f"{note}: `cloudsessions purge` sweeps"),
                CheckResult("indexes", True, f"{note}: it indexes every field"),
            ]
        return results + self._check_fields()

    def _count(self, query: Any) -> int:
        # An aggregation query: Firestore counts without sending the documents.
        return int(query.count().get(retry=self._retry, timeout=self.timeout)[0][0].value)

    def _check_fields(self) -> list[CheckResult]:
        from google.cloud.firestore_admin_v1.types import Field

        admin = self._admin()
        try:
            with self._errors("check"):
                fields = {
                    f: admin.get_field(name=self._field_name(f), timeout=self.timeout)
                    for f in (EXPIRES_AT, USER_ID, DATA, EXPIRES_US)
                }
        except (ConfigurationError, StoreUnavailable) as exc:
            return [CheckResult("field settings", False, f"cannot read them: {exc}")]
        state = fields[EXPIRES_AT].ttl_config.state
        ttl_ok = state in (Field.TtlConfig.State.ACTIVE, Field.TtlConfig.State.CREATING)
        results = [
            CheckResult(
                "ttl policy",
                ttl_ok,
                f"{EXPIRES_AT}: {state.name}" + ("" if ttl_ok else ": run init"),
            )
        ]
        for field in (EXPIRES_AT, USER_ID):
            config = fields[field].index_config
            ok = config.uses_ancestor_config or bool(config.indexes)
            detail = "automatic single-field index" if ok else "exempted from indexing"
            results.append(CheckResult(f"index {field}", ok, detail))
        for field in (DATA, EXPIRES_US):
            config = fields[field].index_config
            ok = not config.uses_ancestor_config and not config.indexes
            detail = "exempted from indexing" if ok else "indexed (costs writes): run init"
            results.append(CheckResult(f"exemption {field}", ok, detail))
        return results
