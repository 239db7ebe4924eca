"""What the contract suite needs of a store under test, and small helpers it shares."""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import pytest

from ..record import SessionRecord
from ..session_ids import new_session_id
from ..store import Store

T = TypeVar("T")
HOUR = 3600.0


@dataclass
class RoundTrips:
    """Calls the store made to its backend, as seen by the SDK, split into reads and writes."""

    reads: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)

    def reset(self) -> None:
        self.reads.clear()
        self.writes.clear()

    @property
    def counts(self) -> tuple[int, int]:
        return len(self.reads), len(self.writes)


@dataclass
class Instrumented:
    """A fresh, empty store under test, and the round trips its SDK makes (you count them).

    `purges_by_ttl`: the store's own TTL removes expired records, so purge_expired() has
    nothing to do and returns 0. `index_apart`: the store keeps its per-user index apart
    from the sessions (a Redis Cluster, where they live in other slots): a write of a
    signed-in session costs one more command (the index, first), and for_user() reads each
    session its index names, one read each. `cached`: cache tiers sit in front of the store
    (cloudsessions.cache) and `trips` counts the store's: a read may be served without one.

    `listing_reads`: the reads of for_user() besides index_apart's checks (1: the index
    query; 2 where the index holds keys only and the records are then read in one batch).
    `revoke_trips`: the (reads, writes) of revoke(): (1, 1) for the contract's default (one
    index query, one delete), (0, 1) for a store that deletes on a condition.
    """

    store: Store
    trips: RoundTrips
    url: str = ""
    purges_by_ttl: bool = False
    index_apart: bool = False
    cached: bool = False
    listing_reads: int = 1
    revoke_trips: tuple[int, int] = (1, 1)


def live(data: dict[str, Any], user_id: str | None = None) -> SessionRecord:
    return SessionRecord(data, time.time() + HOUR, user_id)


def expired(data: dict[str, Any], user_id: str | None = None) -> SessionRecord:
    return SessionRecord(data, time.time() - 10, user_id)


def event_loops() -> list[str]:
    """The anyio backends installed here: asyncio (native async clients), trio (threads)."""
    return ["asyncio"] + (["trio"] if importlib.util.find_spec("trio") else [])


def run_async(backend: str, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` to completion on a new event loop of `backend`."""

    async def main() -> T:
        return await work()

    return anyio.run(main, backend=backend)


def at_once(count: int, work: Callable[[int], T]) -> list[T]:
    """Call work(0) ... work(count - 1) in `count` threads released together by a barrier.

    Returns the results in index order; the first error of any thread is raised here, never
    lost in its thread.
    """
    barrier = threading.Barrier(count, timeout=30)
    results: dict[int, T] = {}
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [results[n] for n in range(count)]


class Fixtures:
    """What the contract's tests take, all from the one fixture a store provides."""

    @pytest.fixture
    def store(self, instrumented: Instrumented) -> Store:
        return instrumented.store

    @pytest.fixture
    def trips(self, instrumented: Instrumented) -> RoundTrips:
        return instrumented.trips

    @pytest.fixture
    def session_id(self) -> str:
        return new_session_id()
