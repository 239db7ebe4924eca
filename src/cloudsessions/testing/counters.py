"""The contract of Store.increment: the atomic counter behind exact view counts."""

from __future__ import annotations

import time

import anyio
import pytest

from cloudsessions import SessionGone, SessionRecord, new_session_id

from ..store import Store
from .harness import (
    HOUR,
    Fixtures,
    RoundTrips,
    at_once,
    event_loops,
    run_async,
)


def later() -> float:
    return time.time() + HOUR


class CounterContract(Fixtures):
    """Store.increment: the atomic counter behind exact view counts."""

    def test_increment_is_one_conditional_write_and_counts_from_zero(
        self,
        store: Store,
        trips: RoundTrips,
        session_id: str,
    ) -> None:
        store.create(session_id, SessionRecord({"greeting": "Hallo Welt"}, later()))
        trips.reset()
        assert store.increment(session_id, "views", expires_at=later()) == 1
        assert trips.counts == (0, 1)
        assert store.increment(session_id, "views", 5, expires_at=later()) == 6
        record = store.load(session_id)
        assert record is not None
        assert record.data == {"greeting": "Hallo Welt", "views": 6}
        assert record.counters == {"views"}

    def test_concurrent_increments_never_lose_a_count(self, store: Store, session_id: str) -> None:
        store.create(session_id, SessionRecord({}, later()))
        workers, each = 8, 5

        def bump(_: int) -> None:
            for _ in range(each):
                store.increment(session_id, "views", expires_at=later())

        at_once(workers, bump)
        record = store.load(session_id)
        assert record is not None and record.data == {"views": workers * each}

    @pytest.mark.parametrize("loop", event_loops())
    def test_concurrent_async_increments_never_lose_a_count(
        self, store: Store, session_id: str, loop: str
    ) -> None:

        async def work() -> list[int]:
            await store.acreate(session_id, SessionRecord({}, later()))
            results: list[int] = []

            async def bump() -> None:
                results.append(await store.aincrement(session_id, "views", expires_at=later()))

            async with anyio.create_task_group() as tasks:
                for _ in range(20):
                    tasks.start_soon(bump)
            await store.aclose()
            return results

        assert sorted(run_async(loop, work)) == list(range(1, 21))
        record = store.load(session_id)
        assert record is not None and record.data == {"views": 20}

    def test_increment_of_a_missing_or_expired_record_is_gone_and_creates_nothing(
        self,
        store: Store,
    ) -> None:
        missing, old = new_session_id(), new_session_id()
        store.create(old, SessionRecord({"views": 1}, time.time() - 5))
        for session_id in (missing, old):
            with pytest.raises(SessionGone):
                store.increment(session_id, "views", expires_at=later())
            assert store.load(session_id) is None
        with pytest.raises(SessionGone):
            store.increment("not-a-session-id", "views", expires_at=later())

    def test_a_plain_integer_becomes_a_counter_from_its_value(
        self, store: Store, session_id: str
    ) -> None:
        store.create(session_id, SessionRecord({"views": 41, "other": [1]}, later()))
        loaded = store.load(session_id)
        assert loaded is not None and loaded.counters == frozenset()
        assert store.increment(session_id, "views", expires_at=later(), base=41) == 42
        # base only seeds a field that is not a counter yet: here it is ignored.
        assert store.increment(session_id, "views", expires_at=later(), base=41) == 43
        record = store.load(session_id)
        assert record is not None and record.data == {"views": 43, "other": [1]}

    def test_concurrent_conversions_of_a_plain_integer_all_count(
        self, store: Store, session_id: str
    ) -> None:
        store.create(session_id, SessionRecord({"views": 10}, later()))
        workers = 8
        at_once(
            workers, lambda _: store.increment(session_id, "views", expires_at=later(), base=10)
        )
        record = store.load(session_id)
        assert record is not None and record.data == {"views": 10 + workers}

    def test_saves_leave_counters_alone_unless_they_write_that_key(
        self,
        store: Store,
        session_id: str,
    ) -> None:
        store.create(session_id, SessionRecord({}, later()))
        store.increment(session_id, "views", 3, expires_at=later())
        store.save(session_id, SessionRecord({"views": 3, "cart": "x"}, later()), ["cart"])
        record = store.load(session_id)
        assert record is not None
        assert record.data == {"views": 3, "cart": "x"} and record.counters == {"views"}
        store.save(session_id, SessionRecord({"views": "reset", "cart": "x"}, later()), ["views"])
        record = store.load(session_id)
        assert record is not None
        assert record.data == {"views": "reset", "cart": "x"} and record.counters == frozenset()
        store.save(session_id, SessionRecord({"cart": "x"}, later()), ["views"])
        record = store.load(session_id)
        assert record is not None and record.data == {"cart": "x"}

    def test_increment_sets_the_expiry(self, store: Store, session_id: str) -> None:
        store.create(session_id, SessionRecord({}, later()))
        store.increment(session_id, "views", expires_at=time.time() - 1)
        assert store.load(session_id) is None
