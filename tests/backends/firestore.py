"""Firestore: Google's emulator, started once per pytest process; a collection per store.

Round trips are counted on the wire: a gRPC client interceptor on the store's channels sees
every RPC (each retry attempt too) and files it under reads or writes by method name. It
also notes how many writes each Commit carries (Firestore bills each one): the store's
`commits`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from cloudsessions import SessionRecord, new_session_id, open_store
from cloudsessions.store import StoreURL
from cloudsessions.stores.firestore import CHANNEL_OPTIONS, FirestoreStore
from tests.services.firestore_emulator import firestore_emulator
from tests.stores import RoundTrips, unique_name

PROJECT = "cloudsessions-test"

# revoke(): one read of the document's owner (BatchGetDocuments), one delete conditional on
# its update time (Commit). The contract's default costs as many calls, but reads every
# session of the user (the listing), not one document.
REVOKE_TRIPS = (1, 1)

READS = {
    "BatchGetDocuments",
    "GetDocument",
    "ListDocuments",
    "RunQuery",
    "RunAggregationQuery",
    "PartitionQuery",
    "ListCollectionIds",
    "Listen",
}
WRITES = {"Commit", "BatchWrite", "CreateDocument", "UpdateDocument", "DeleteDocument", "Write"}
OTHER = {"BeginTransaction", "Rollback"}  # counted as writes: they never happen here

_host: str | None = None


def emulator_host(services: contextlib.ExitStack) -> str:
    """FIRESTORE_EMULATOR_HOST of the emulator shared by this pytest process."""
    global _host
    if _host is None:
        _host = services.enter_context(firestore_emulator())
        warm_up(_host)
    return _host


def warm_up(host: str) -> None:
    """One read and one write with a long timeout: a fresh emulator's JVM takes seconds
    over its first calls, which would trip the stores' few-second bounds under test."""
    store = open_store(f"firestore://{PROJECT}/warm-up?emulator_host={host}&timeout=60&deadline=60")
    key = new_session_id()
    store.load(key)
    store.create(key, SessionRecord({}, time.time() + 60))
    store.delete(key)
    store.close()


def url(folder: Path, services: contextlib.ExitStack) -> str:
    return f"firestore://{PROJECT}/{unique_name()}?emulator_host={emulator_host(services)}"


def _record(trips: RoundTrips, method: str, commits: list[int], request: Any) -> None:
    name = method.rsplit("/", 1)[-1]
    if name == "Commit":
        commits.append(len(request.writes))
    if name in READS:
        trips.reads.append(name)
    elif name in WRITES or name in OTHER:
        trips.writes.append(name)
    else:
        raise AssertionError(f"unclassified Firestore RPC {method}")


class _Counter(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, record: Callable[[str, Any], None]) -> None:
        self.record = record

    def _call(self, continuation: Any, details: Any, request: Any) -> Any:
        self.record(details.method, request)
        return continuation(details, request)

    intercept_unary_unary = intercept_unary_stream = _call
    intercept_stream_unary = intercept_stream_stream = _call


def _async_counters(record: Callable[[str, Any], None]) -> list[grpc.aio.ClientInterceptor]:
    class UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
        async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            record(details.method, request)
            return await continuation(details, request)

    class UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
        async def intercept_unary_stream(
            self, continuation: Any, details: Any, request: Any
        ) -> Any:
            record(details.method, request)
            return await continuation(details, request)

    return [UnaryUnary(), UnaryStream()]


class CountingFirestoreStore(FirestoreStore):
    """The store as shipped, with a counting interceptor on each channel it opens."""

    trips: RoundTrips
    commits: list[int]  # the writes of each Commit sent, in order

    def _channel(
        self, target: str, credentials: Any, emulator: str | None, asynchronous: bool
    ) -> Any:
        assert emulator is not None, "tests run against the emulator"

        def record(method: str | bytes, request: Any) -> None:
            name = method.decode() if isinstance(method, bytes) else method
            _record(self.trips, name, self.commits, request)

        if asynchronous:
            return grpc.aio.insecure_channel(
                emulator, options=CHANNEL_OPTIONS, interceptors=_async_counters(record)
            )
        channel = super()._channel(target, credentials, emulator, asynchronous)
        return grpc.intercept_channel(channel, _Counter(record))


def instrument(url: str, trips: RoundTrips) -> FirestoreStore:
    parsed = StoreURL.parse(url)
    store = CountingFirestoreStore.from_url(parsed, dict(parsed.query))
    store.trips = trips
    store.commits = []
    return store
