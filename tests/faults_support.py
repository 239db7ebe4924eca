"""Stores opened through a fault proxy, for tests/test_faults.py.

`rig(name, folder)` gives a fresh store of kind `name` twice over the same data: `store`,
through a FaultProxy (tests/services/proxy.py) with a small request deadline and its round
trips counted, and `direct`, straight to the server, to read what is stored whatever the
proxy is doing. SQLite has no socket: its rig holds the database's write lock from another
connection instead (`lock`), which is how a SQLite store meets a slow or stuck peer.
"""

from __future__ import annotations

import contextlib
import gc
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from cloudsessions import open_store
from cloudsessions.store import Store
from tests import stores
from tests.services.proxy import FaultProxy
from tests.stores import RoundTrips

DEADLINE = 0.5  # seconds: the request deadline of the stores under test here
# MongoDB's: after a reset or a cut, PyMongo marks its server unknown and waits for its
# monitor to find it again, which checks at most every 0.5 s (minHeartbeatFrequencyMS, fixed
# by the drivers' specification): the retry of a cut read may wait that long. With a
# deadline of 0.5 s, whether the retry made it was chance; with 1 s it is in time, as it is
# under the default of 5 s (README: "When the store misbehaves").
DEADLINES = {"mongodb": 1.0}
# What "within deadline + 10%" allows on top for the wall clock of a whole request: the
# front door's own work and the scheduler of a busy 2-core machine. 10% of this suite's
# short deadline is 50 ms where the default's is 500 ms; what a request overshoots by is
# absolute, not relative: up to about 150 ms measured on the async Redis Cluster client,
# whose connection cleanup after a cut runs when the deadline cancels it (open: see the
# README's "When the store misbehaves"). With the default 5 s deadline that is within 10%.
JITTER = 0.15

# The protocol each store speaks, for its proxy.
PROTOCOLS = {
    "dynamodb": "http",
    "firestore": "grpc",
    "mongodb": "mongo",
    "redis": "redis",
    "redis_cluster": "redis",
}
# What each store's reads and writes are called on the wire (the proxy's request names).
READS: dict[str, frozenset[str]] = {
    "dynamodb": frozenset({"GetItem"}),
    "firestore": frozenset({"BatchGetDocuments"}),
    "mongodb": frozenset({"find"}),
    "redis": frozenset({"HGETALL", "HMGET", "EVALSHA_RO", "EVAL_RO"}),
}
WRITES: dict[str, frozenset[str]] = {
    "dynamodb": frozenset({"UpdateItem", "PutItem", "DeleteItem", "TransactWriteItems"}),
    "firestore": frozenset({"Commit"}),
    "mongodb": frozenset({"update", "insert", "findAndModify", "delete"}),
    "redis": frozenset({"EVALSHA", "EVAL"}),
}
READS["redis_cluster"], WRITES["redis_cluster"] = READS["redis"], WRITES["redis"]


def deadline_of(name: str) -> float:
    """The request deadline of the store of kind `name` in these tests."""
    return DEADLINES.get(name, DEADLINE)


def bound(deadline: float) -> float:
    """The longest a request may take when its store fails: the deadline + 10%."""
    return deadline * 1.1 + JITTER


@dataclass
class Rig:
    name: str
    store: Store  # through the proxy (or, for SQLite, beside the lock), deadline applied
    direct: Store  # the same data, no proxy, the default deadline
    trips: RoundTrips
    proxy: FaultProxy | None  # None for SQLite
    lock: SqliteLock | None  # SQLite only
    deadline: float

    @property
    def faults(self) -> FaultProxy:
        assert self.proxy is not None, f"{self.name} has no proxy"
        return self.proxy


class SqliteLock:
    """Another connection to a SQLite database that takes its write lock (BEGIN IMMEDIATE)
    and holds it, as a long write of another process does."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.held = False

    def hold(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.held = True

    def release(self) -> None:
        if self.held:
            self.conn.execute("ROLLBACK")
            self.held = False

    def hold_for(self, seconds: float) -> threading.Thread:
        """Hold the lock now, and release it `seconds` later from a thread of its own."""
        self.hold()
        releaser = threading.Timer(seconds, self.release)
        releaser.start()
        return releaser

    def close(self) -> None:
        self.release()
        self.conn.close()


def with_query(url: str, **params: Any) -> str:
    """`url` with these query parameters set (the rest of it byte for byte)."""
    base, _, query = url.partition("?")
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in params]
    pairs += [(k, str(v)) for k, v in params.items()]
    return f"{base}?{urlencode(pairs, safe=':/,')}"


def _port(address: str) -> int:
    return int(address.rstrip("/").rsplit(":", 1)[1])


def _proxied(name: str, url: str) -> tuple[FaultProxy, str]:
    """A proxy in front of the server(s) of `url`, and `url` pointed at it."""
    protocol = PROTOCOLS[name]
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if name == "dynamodb":
        proxy = FaultProxy(_port(query["endpoint"]), protocol)
        return proxy, with_query(url, endpoint=proxy.endpoint)
    if name == "firestore":
        proxy = FaultProxy(_port(query["emulator_host"]), protocol)
        return proxy, with_query(url, emulator_host=proxy.address)
    if name == "redis_cluster":
        nodes = stores.backend("redis_cluster").cluster(stores.services()).nodes
        proxy = FaultProxy([n.port for n in nodes], protocol)
        seeds = ",".join(proxy.addresses[a] for a in parts.netloc.split(","))
        return proxy, parts._replace(netloc=seeds).geturl()
    userinfo, _, hosts = parts.netloc.rpartition("@")
    assert "," not in hosts, f"one server only through the proxy: {hosts}"
    proxy = FaultProxy(_port(hosts), protocol)
    netloc = f"{userinfo}@{proxy.address}" if userinfo else proxy.address
    return proxy, parts._replace(netloc=netloc).geturl()


_shared: dict[str, tuple[str, Store]] = {}


def shared(name: str, folder: Path) -> tuple[str, Store]:
    """The URL of a provisioned store of kind `name` and a store on it without a proxy,
    made once per test process: every test makes sessions of its own, and provisioning
    (a DynamoDB table: about a second) is not what is tested here."""
    if name not in _shared:
        url = stores.store_url(name, folder)
        direct = open_store(url)
        direct.provision()
        _shared[name] = url, direct

        def drop() -> None:
            del _shared[name]
            with contextlib.suppress(Exception):
                direct.drop()
            direct.close()

        stores.services().callback(drop)
    return _shared[name]


@contextlib.contextmanager
def rig(name: str, folder: Path, *, deadline: float | None = None) -> Iterator[Rig]:
    """A store of kind `name` behind its fault (a proxy, or a lock), opened for this test,
    with the request deadline `deadline` (default: deadline_of(name))."""
    deadline = deadline_of(name) if deadline is None else deadline
    module = stores.backend(name)
    trips = RoundTrips()
    with contextlib.ExitStack() as stack:
        proxy: FaultProxy | None = None
        lock: SqliteLock | None = None
        if name == "sqlite":  # a file of its own: the lock is on the whole database
            url = stores.store_url(name, folder)
            through = url
            direct = stack.enter_context(contextlib.closing(open_store(url)))
            direct.provision()
            lock = SqliteLock(url.removeprefix("sqlite:///"))
            stack.callback(lock.close)
        else:
            url, direct = shared(name, folder)
            proxy, through = _proxied(name, url)
            stack.callback(proxy.close)
        store: Store = module.instrument(with_query(through, deadline=deadline), trips)
        stack.callback(store.close)
        yield Rig(name, store, direct, trips, proxy, lock, deadline)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """What call() returns, and how long it took (wall clock, seconds), with the cycle
    collector paused meanwhile. A full collection stops every thread for as long as the
    test process's heap takes to walk: up to 0.16 s in the fault tests run alone, 0.5 to
    0.75 s late in a whole run (measured with gc.callbacks), time the store never saw."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        started = time.monotonic()
        result = call()
        return result, time.monotonic() - started
    finally:
        if collecting:
            gc.enable()
