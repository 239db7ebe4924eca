"""The Firestore store: its clients and errors, and the session operations.

This is the request path: every operation is one RPC (the writes are in documents.py),
but revoke, a read and a conditional delete (see _revoke). A save or an increment is one
write when this process knows the document's version (see documents.Versions), else the
two-write commit. Provisioning, checks, purge and the per-user queries are in admin.py;
the options in options.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.cloud import firestore
from google.cloud.firestore_v1.services.firestore import FirestoreAsyncClient, FirestoreClient
from google.cloud.firestore_v1.services.firestore.transports import (
    FirestoreGrpcAsyncIOTransport,
    FirestoreGrpcTransport,
)

from ...errors import ConfigurationError, SessionExists, SessionGone, StoreUnavailable
from ...store import (
    Changes,
    EncodedRecord,
    ErrorKind,
    PerLoop,
    PerProcess,
    Store,
    StoreURL,
    logger,
    parse_options,
)
from . import admin, documents
from .options import TRANSIENT, FirestoreOptions, call_options, whole_stream, within_deadline

DEFAULT_DATABASE = "(default)"
EMULATOR_ENV = "FIRESTORE_EMULATOR_HOST"

# The SDK's keepalive and message sizes, plus a short reconnect backoff: gRPC's default
# grows to 120 s while a server is down, which would delay recovery by as much.
CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2_000),
]

CREDENTIALS_HELP = (
    "set GOOGLE_APPLICATION_CREDENTIALS to a service account key file, run"
    " `gcloud auth application-default login`, or run on Google Cloud with a service account;"
    " for the emulator set FIRESTORE_EMULATOR_HOST (or the emulator_host option)"
)


class FirestoreStore(Store):
    kind = "firestore"
    default_max_record_bytes = documents.MAX_DOCUMENT_BYTES
    error_kinds = (
        # Only create() inserts: the id is taken.
        ErrorKind(gexc.AlreadyExists, SessionExists),
        ErrorKind(
            (gexc.RetryError, *TRANSIENT),
            StoreUnavailable,
            "gave up after retrying for up to {store.options.retry_deadline:g} s or the request"
            " deadline ({store.deadline:g} s of store time), whichever came first",
        ),
        ErrorKind(
            (gexc.PermissionDenied, gexc.Unauthenticated, auth_exceptions.RefreshError),
            ConfigurationError,
            "the credentials need the Cloud Datastore User role (roles/datastore.user); "
            + CREDENTIALS_HELP,
        ),
        ErrorKind(gexc.FailedPrecondition, ConfigurationError),
        # "The database X does not exist for project Y" (a missing document: _updating).
        ErrorKind(gexc.NotFound, ConfigurationError, "check the project and database in the URL"),
    )

    def __init__(self, project: str | None, collection: str, options: FirestoreOptions) -> None:
        """`collection` is the URL's path ("" for the default); options.collection wins."""
        super().__init__(max_record_bytes=options.max_record_bytes, deadline=options.deadline)
        self.options = options
        given = options.collection
        client = given._client if given is not None else options.client
        self.path = (
            tuple(given._path) if given is not None else documents.collection_path(collection)
        )
        database = options.database
        if client is not None:
            if project and project != client.project:
                raise ConfigurationError(
                    f"the firestore store names project {project!r} but the client given"
                    f" in its options is for project {client.project!r}"
                )
            project, database = client.project, client._database
        self.project = project or None
        self.database = database or DEFAULT_DATABASE
        self._given_client = client
        self._credentials = options.credentials
        # A gRPC channel must not cross into a forked child, nor an async one into
        # another event loop.
        self._sync = PerProcess(lambda: client or self._new_client(False), self._disconnect)
        self._async = PerLoop(self._open_async)
        # What this process last saw of each document, for one-write saves.
        self._versions = PerProcess(documents.Versions)
        self._rpc_options = call_options(options, gretry.Retry)
        self._arpc_options = call_options(options, gretry.AsyncRetry)

    @classmethod
    def from_url(cls, url: StoreURL, options: Mapping[str, Any]) -> FirestoreStore:
        parsed = parse_options(FirestoreOptions, cls.kind, options)
        if parsed.collection is not None and (url.netloc or url.path.strip("/")):
            raise ConfigurationError(
                "the firestore store takes its project and collection from the 'collection'"
                " option: write the URL as firestore:// (without project or collection)"
            )
        return cls(url.netloc or None, url.path, parsed)

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
        return self.options.emulator_host or os.environ.get(EMULATOR_ENV) or None

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
                    f"no Google Cloud credentials for the {self.describe()}: {CREDENTIALS_HELP}"
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

    def _disconnect(self, client: firestore.Client) -> None:
        if client is not self._given_client:  # an application's client stays open
            client._firestore_api.transport.close()

    async def _open_async(self, stack: contextlib.AsyncExitStack) -> firestore.AsyncClient:
        # Always ours, even beside an application's client: it cannot cross event loops.
        client: firestore.AsyncClient = self._new_client(asynchronous=True)
        stack.push_async_callback(client._firestore_api.transport.close)
        return client

    def close(self) -> None:
        self._sync.close()
        self._async.close()

    async def aclose(self) -> None:
        await self._async.aclose()

    @property
    def _rpc(self) -> dict[str, Any]:
        """What each SDK call is given: its timeout and retry, within the request deadline."""
        return within_deadline(self._rpc_options)

    @property
    def _arpc(self) -> dict[str, Any]:
        return within_deadline(self._arpc_options)

    def _read(self, ref: Any, *fields: Any) -> Any:
        """The snapshot of the document at `ref` (of `fields`, if given), the whole read
        retried (options.whole_stream)."""
        retry, once = whole_stream(self._rpc)

        def get() -> Any:
            return documents.answered(ref.get(*fields, **once))

        return retry(get)() if retry else get()

    async def _aread(self, ref: Any, *fields: Any) -> Any:
        retry, once = whole_stream(self._arpc)

        async def get() -> Any:
            return documents.answered(await ref.get(*fields, **once))

        return await (retry(get)() if retry else get())

    def native_async(self) -> bool:
        return True  # the SDK's AsyncClient, one per event loop

    @contextlib.contextmanager
    def _updating(self, what: str) -> Iterator[None]:
        """The errors of a write to a session's document, whose precondition is that the
        document exists: NotFound says the session is gone (or the database is)."""
        with self._errors(what):
            try:
                yield
            except gexc.NotFound as exc:
                if "does not exist" in str(exc):  # "The database X does not exist for ..."
                    raise
                raise SessionGone("the session was deleted or has expired") from None

    # ---------------------------------------------------------------------- contract

    def record_size(self, record: EncodedRecord) -> int:
        return documents.size(self.path, record)

    def _load(self, rid: str) -> EncodedRecord | None:
        ref = self._sync.get().document(*self.path, rid)
        with self._errors("load a session"):
            found, version = documents.loaded(self._read(ref))
        self._versions.get().put(rid, version)
        return found

    def _create(self, rid: str, record: EncodedRecord) -> None:
        ref = self._sync.get().document(*self.path, rid)
        with self._errors("create a session"):
            result = ref.create(documents.document(record), **self._rpc)
        self._versions.get().put(rid, _created(result, record))

    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        base = self._versions.get().get(rid)
        direct = documents.direct_save(base, changes, expires_at, user_id, now)
        if direct is not None and self._direct(rid, direct, "save a session") is not None:
            return
        self._commit(rid, documents.save(changes, expires_at, user_id, now), "save a session")

    def _delete(self, rid: str) -> None:
        self._versions.get().forget(rid)
        ref = self._sync.get().document(*self.path, rid)
        with self._errors("delete a session"):
            ref.delete(**self._rpc)

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        if base:
            return self._increment_from(rid, field, delta, base, expires_at, now)
        what = "increment a session counter"
        known = self._versions.get().get(rid)
        direct = documents.direct_increment(known, field, delta, expires_at, now)
        if direct is not None and (results := self._direct(rid, direct, what)) is not None:
            return documents.counter(results)
        writes = documents.increment(field, delta, expires_at, now)
        return documents.counter(self._commit(rid, writes, what))

    def _direct(self, rid: str, write: documents.Direct, what: str) -> Sequence[Any] | None:
        """The one write on the version this process knows; None if the document changed
        since (nothing was written: the caller sends the two-write commit)."""
        client = self._sync.get()
        versions = self._versions.get()
        versions.forget(rid)  # until this write's outcome is known
        batch = write.batch(client, client.document(*self.path, rid))
        with self._updating(what):
            try:
                results: Sequence[Any] = batch.commit(**self._rpc)
            except gexc.FailedPrecondition:
                # Changed or deleted since that version. (A database that refuses every
                # write says so again to the commit the caller sends next.)
                return None
        versions.put(rid, write.version(results))
        return results

    def _commit(self, rid: str, writes: documents.Guarded, what: str) -> Sequence[Any]:
        self._versions.get().forget(rid)  # the keys it leaves are not known here
        client = self._sync.get()
        batch = writes.batch(client, client.document(*self.path, rid))
        with self._updating(what):
            results: Sequence[Any] = batch.commit(**self._rpc)
        if not writes.was_live(results):
            with _gone_once_deleted():
                self._delete(rid)
        return results

    def _increment_from(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        """A plain integer becomes a counter from its value: read it, then write if the
        document is unchanged since; read again when another write came first."""
        client = self._sync.get()
        ref = client.document(*self.path, rid)
        for pause in self._conflict_pauses():
            with self._updating("increment a session counter"):
                snapshot = self._read(ref)
                value, write = documents.increment_from(
                    snapshot, field, delta, base, expires_at, now
                )
                with contextlib.suppress(gexc.FailedPrecondition):
                    results = write.batch(client, ref).commit(**self._rpc)
                    self._versions.get().put(rid, write.version(results))
                    return value
            time.sleep(pause)
        raise self._conflicting("increment")

    def _revoke(self, user_id: str, rid: str) -> bool:
        """Read the owner, then delete only if the document is unchanged since that read.

        Firestore cannot delete on a field's value, so this is a read and a delete whose
        precondition is the read's update time: as exact as a transaction (a document
        given to another user, or saved, in between is read again) without its
        BeginTransaction, and one document read where the contract's default (a listing)
        reads every session of the user.
        """
        ref = self._sync.get().document(*self.path, rid)
        for pause in self._conflict_pauses():
            with self._errors("revoke a session"):
                snapshot = self._read(ref, [documents.USER_ID])
                owner = (snapshot.to_dict() or {}).get(documents.USER_ID)
                if not snapshot.exists or owner != user_id:
                    return False  # gone already, or another user's
                unchanged = firestore.Client.write_option(last_update_time=snapshot.update_time)
                self._versions.get().forget(rid)
                # Changed or deleted since the read (the emulator says FailedPrecondition
                # for both; NotFound is taken alike): read it again.
                with contextlib.suppress(gexc.FailedPrecondition, gexc.NotFound):
                    ref.delete(option=unchanged, **self._rpc)
                    return True
            time.sleep(pause)
        raise self._conflicting("revoke")

    def _conflict_pauses(self) -> Iterator[float]:
        until = time.monotonic() + max(self.options.retry_deadline, self.options.timeout)
        while time.monotonic() < until:
            yield random.uniform(0, 0.05)  # noqa: S311 - jitter, not secrets

    def _conflicting(self, what: str) -> StoreUnavailable:
        return StoreUnavailable(f"{self.describe()}: {what} kept conflicting with other writes")

    # Native async twins (see native_async), on this event loop's client.

    async def _aload(self, rid: str) -> EncodedRecord | None:
        ref = (await self._async.get()).document(*self.path, rid)
        with self._errors("load a session"):
            found, version = documents.loaded(await self._aread(ref))
        self._versions.get().put(rid, version)
        return found

    async def _acreate(self, rid: str, record: EncodedRecord) -> None:
        ref = (await self._async.get()).document(*self.path, rid)
        with self._errors("create a session"):
            result = await ref.create(documents.document(record), **self._arpc)
        self._versions.get().put(rid, _created(result, record))

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        base = self._versions.get().get(rid)
        direct = documents.direct_save(base, changes, expires_at, user_id, now)
        if direct is not None and await self._adirect(rid, direct, "save a session") is not None:
            return
        writes = documents.save(changes, expires_at, user_id, now)
        await self._acommit(rid, writes, "save a session")

    async def _adelete(self, rid: str) -> None:
        self._versions.get().forget(rid)
        ref = (await self._async.get()).document(*self.path, rid)
        with self._errors("delete a session"):
            await ref.delete(**self._arpc)

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        if base:
            return await self._aincrement_from(rid, field, delta, base, expires_at, now)
        what = "increment a session counter"
        known = self._versions.get().get(rid)
        direct = documents.direct_increment(known, field, delta, expires_at, now)
        if direct is not None and (results := await self._adirect(rid, direct, what)) is not None:
            return documents.counter(results)
        writes = documents.increment(field, delta, expires_at, now)
        return documents.counter(await self._acommit(rid, writes, what))

    async def _adirect(self, rid: str, write: documents.Direct, what: str) -> Sequence[Any] | None:
        client = await self._async.get()
        versions = self._versions.get()
        versions.forget(rid)
        batch = write.batch(client, client.document(*self.path, rid))
        with self._updating(what):
            try:
                results: Sequence[Any] = await batch.commit(**self._arpc)
            except gexc.FailedPrecondition:
                return None
        versions.put(rid, write.version(results))
        return results

    async def _acommit(self, rid: str, writes: documents.Guarded, what: str) -> Sequence[Any]:
        self._versions.get().forget(rid)
        client = await self._async.get()
        batch = writes.batch(client, client.document(*self.path, rid))
        with self._updating(what):
            results: Sequence[Any] = await batch.commit(**self._arpc)
        if not writes.was_live(results):
            with _gone_once_deleted():
                await self._adelete(rid)
        return results

    async def _aincrement_from(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        client = await self._async.get()
        ref = client.document(*self.path, rid)
        for pause in self._conflict_pauses():
            with self._updating("increment a session counter"):
                snapshot = await self._aread(ref)
                value, write = documents.increment_from(
                    snapshot, field, delta, base, expires_at, now
                )
                with contextlib.suppress(gexc.FailedPrecondition):
                    results = await write.batch(client, ref).commit(**self._arpc)
                    self._versions.get().put(rid, write.version(results))
                    return value
            await asyncio.sleep(pause)
        raise self._conflicting("increment")

    # What no request runs, in admin.py.
    provision = admin.provision
    drop = admin.drop
    drop_target = admin.drop_target
    count_records = admin.count_records
    check = admin.check
    _purge_expired = admin.purge_expired
    _for_user = admin.for_user
    _delete_for_user = admin.delete_for_user


def _created(result: Any, record: EncodedRecord) -> documents.Version:
    """The version a create wrote (documents.document): live, keys in the record's order."""
    expires = documents.us(record.expires_at)
    return documents.Version(result.update_time, expires, tuple(record.fields))


@contextlib.contextmanager
def _gone_once_deleted() -> Iterator[None]:
    """Around the delete of a document a save found expired: then SessionGone, always."""
    try:
        yield
    except StoreUnavailable:
        # Readers already see it as expired; the TTL policy removes it later.
        logger.warning("an expired firestore session could not be deleted", exc_info=True)
    raise SessionGone("the session has expired")
