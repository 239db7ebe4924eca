"""Store.increment: the atomic counter behind the tutorial's exact view counts, on every store."""

from __future__ import annotations

import asyncio
import time

import pytest

from cloudsessions import SessionGone, SessionRecord, new_key
from tests.concurrency import at_once
from tests.stores import Instrumented

HOUR = 3600.0


def later() -> float:
    return time.time() + HOUR


def test_increment_is_one_conditional_write_and_counts_from_zero(
    instrumented: Instrumented,
) -> None:
    store, trips = instrumented.store, instrumented.trips
    key = new_key()
    store.create(key, SessionRecord({"greeting": "Hallo Welt"}, later()))
    trips.reset()
    assert store.increment(key, "views", expires_at=later()) == 1
    assert trips.counts == (0, 1)
    assert store.increment(key, "views", 5, expires_at=later()) == 6
    record = store.load(key)
    assert record is not None
    assert record.data == {"greeting": "Hallo Welt", "views": 6}
    assert record.counters == {"views"}


def test_concurrent_increments_never_lose_a_count(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, SessionRecord({}, later()))
    workers, each = 8, 5

    def bump(_: int) -> None:
        for _ in range(each):
            store.increment(key, "views", expires_at=later())

    at_once(workers, bump)
    record = store.load(key)
    assert record is not None and record.data == {"views": workers * each}


async def test_concurrent_async_increments_never_lose_a_count(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    await store.acreate(key, SessionRecord({}, later()))
    results = await asyncio.gather(
        *(store.aincrement(key, "views", expires_at=later()) for _ in range(20))
    )
    assert sorted(results) == list(range(1, 21))
    record = await store.aload(key)
    assert record is not None and record.data == {"views": 20}


def test_increment_of_a_missing_or_expired_record_is_gone_and_creates_nothing(
    instrumented: Instrumented,
) -> None:
    store = instrumented.store
    missing, old = new_key(), new_key()
    store.create(old, SessionRecord({"views": 1}, time.time() - 5))
    for key in (missing, old):
        with pytest.raises(SessionGone):
            store.increment(key, "views", expires_at=later())
        assert store.load(key) is None
    with pytest.raises(SessionGone):
        store.increment("not-a-session-id", "views", expires_at=later())


def test_a_plain_integer_becomes_a_counter_from_its_value(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, SessionRecord({"views": 41, "other": [1]}, later()))
    loaded = store.load(key)
    assert loaded is not None and loaded.counters == frozenset()
    assert store.increment(key, "views", expires_at=later(), base=41) == 42
    # base only seeds a field that is not a counter yet: here it is ignored.
    assert store.increment(key, "views", expires_at=later(), base=41) == 43
    record = store.load(key)
    assert record is not None and record.data == {"views": 43, "other": [1]}


def test_concurrent_conversions_of_a_plain_integer_all_count(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, SessionRecord({"views": 10}, later()))
    workers = 8
    at_once(workers, lambda _: store.increment(key, "views", expires_at=later(), base=10))
    record = store.load(key)
    assert record is not None and record.data == {"views": 10 + workers}


def test_saves_leave_counters_alone_unless_they_write_that_key(
    instrumented: Instrumented,
) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, SessionRecord({}, later()))
    store.increment(key, "views", 3, expires_at=later())
    store.save(key, SessionRecord({"views": 3, "cart": "x"}, later()), ["cart"])
    record = store.load(key)
    assert record is not None
    assert record.data == {"views": 3, "cart": "x"} and record.counters == {"views"}
    store.save(key, SessionRecord({"views": "reset", "cart": "x"}, later()), ["views"])
    record = store.load(key)
    assert record is not None
    assert record.data == {"views": "reset", "cart": "x"} and record.counters == frozenset()
    store.save(key, SessionRecord({"cart": "x"}, later()), ["views"])
    record = store.load(key)
    assert record is not None and record.data == {"cart": "x"}


def test_increment_sets_the_expiry(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, SessionRecord({}, later()))
    store.increment(key, "views", expires_at=time.time() - 1)
    assert store.load(key) is None
