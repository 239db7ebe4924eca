"""The contract of records (DESIGN.md): round trips, ids, semantics, users, purge, values."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudsessions import (
    SessionExists,
    SessionGone,
    SessionRecord,
    SessionTooLarge,
    new_session_id,
    record_id,
)

from ..store import Store
from .harness import (
    Fixtures,
    Instrumented,
    RoundTrips,
    at_once,
    event_loops,
    expired,
    live,
    run_async,
)

# ------------------------------------------------------------------- round trips


EDGE_VALUES: dict[str, Any] = {
    "float": 0.1,
    "tiny": 5e-324,
    "huge": 1.7976931348623157e308,
    "negzero": -0.0,
    "bigint": 2**70,
    "negbigint": -(2**100),
    "digits": 123456789012345678901234567890123456789012345,
    "nested lists": [[1, [2, [3, []]]], [], [[]]],
    "empty string": "",
    "empty dict": {},
    "empty list": [],
    "null": None,
    "bools": [True, False],
    "deep": {"a": {"b": {"c": [{"d": 1.5}]}}},
    "a.b": "dot",
    "$set": "dollar",
    "/path/": "slash",
    "`tick`": "backtick",
    "with space": "space",
    "ключ": "значение",
    "😀": "emoji",
    "": "empty session_id",
    "__name__": "dunder",
    "%41": "percent",
    "k": "the field prefix",
    "line\nbreak": "newline",
    "lone surrogate": "\ud800 is valid in a Python str, not in UTF-8",
    "nested keys": {"a.b": 1, "$x": 2, "": 3, "[0]": 4},
}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**130), max_value=2**130)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


class RecordContract(Fixtures):
    """The contract of records: round trips, ids, semantics, users, purge, values, limits."""

    def test_load_of_unknown_key_is_one_read_and_creates_nothing(
        self, store: Store, trips: RoundTrips, session_id: str
    ) -> None:
        trips.reset()
        assert store.load(session_id) is None
        assert trips.counts == (1, 0)
        # Had the load created a record, this insert-if-absent would fail.
        store.create(session_id, live({"a": 1}))
        record = store.load(session_id)
        assert record is not None and record.data == {"a": 1}

    def test_each_operation_costs_exactly_its_round_trip_budget(
        self, instrumented: Instrumented, store: Store, trips: RoundTrips, session_id: str
    ) -> None:
        # Behind a cache, create writes through: the load after it reads no store.
        load_reads = 0 if instrumented.cached else 1

        trips.reset()
        store.create(session_id, live({"a": 1, "b": "x"}))
        assert trips.counts == (0, 1), "create: one conditional write, no pre-check read"

        trips.reset()
        record = store.load(session_id)
        assert record is not None and record.data == {"a": 1, "b": "x"}
        assert trips.counts == (load_reads, 0), "load: one read (none behind a cache)"

        trips.reset()
        record.data["a"] = 2
        store.save(session_id, record, ["a"])
        assert trips.counts == (0, 1), "save: one conditional write"

        trips.reset()
        store.delete(session_id)
        assert trips.counts == (0, 1), "delete: one write"

        trips.reset()
        store.delete(session_id)
        assert trips.counts == (0, 1), "delete is idempotent and still one call"

    @pytest.mark.parametrize(
        "cookie",
        [
            "",
            "short",
            "a" * 31,
            "a" * 65,
            "A" * 32,
            "../../../../etc/passwd" + "a" * 20,
            "'; DROP TABLE sessions; --" + "a" * 10,
            '{"$gt": ""}' + "a" * 30,
            "a" * 31 + "\x00",
            "a" * 31 + "\n",
            "ä" * 32,
            "a" * 31 + ".",
            " " + "a" * 32,
        ],
    )
    def test_malformed_cookie_values_never_reach_the_store(
        self, store: Store, trips: RoundTrips, cookie: str
    ) -> None:
        trips.reset()
        assert store.load(cookie) is None
        store.delete(cookie)
        with pytest.raises(SessionGone):
            store.save(cookie, live({"a": 1}), ["a"])
        assert trips.counts == (0, 0)

    @given(cookie=st.one_of(st.text(max_size=80), st.binary(max_size=40).map(repr)))
    @settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
    def test_any_text_that_is_not_a_session_id_never_reaches_the_store(
        self, instrumented: Instrumented, cookie: str
    ) -> None:
        from cloudsessions import is_valid_session_id

        instrumented.trips.reset()
        result = instrumented.store.load(cookie)
        if not is_valid_session_id(cookie):
            assert result is None
            assert instrumented.trips.counts == (0, 0)

    def test_create_refuses_an_existing_id_and_keeps_the_record(
        self, store: Store, session_id: str
    ) -> None:
        store.create(session_id, live({"owner": "first"}))
        with pytest.raises(SessionExists):
            store.create(session_id, live({"owner": "second"}))
        record = store.load(session_id)
        assert record is not None and record.data == {"owner": "first"}

    def test_save_after_delete_raises_gone_and_never_resurrects(
        self, store: Store, session_id: str
    ) -> None:
        store.create(session_id, live({"user": "alice"}))
        record = store.load(session_id)
        assert record is not None
        store.delete(session_id)  # logout in another request
        record.data["cart"] = [1, 2]
        with pytest.raises(SessionGone):
            store.save(session_id, record, ["cart"])
        assert store.load(session_id) is None

    def test_save_of_a_never_created_id_raises_gone(
        self, instrumented: Instrumented, session_id: str
    ) -> None:
        with pytest.raises(SessionGone):
            instrumented.store.save(session_id, live({"a": 1}), ["a"])
        assert instrumented.store.load(session_id) is None

    def test_expiry_is_enforced_on_read(self, store: Store, session_id: str) -> None:
        store.create(session_id, expired({"a": 1}))
        assert store.load(session_id) is None

    def test_save_of_an_expired_record_raises_gone(self, store: Store, session_id: str) -> None:
        store.create(session_id, expired({"a": 1}))
        with pytest.raises(SessionGone):
            store.save(session_id, live({"a": 2}), ["a"])
        assert store.load(session_id) is None

    def test_save_can_shorten_expiry_into_the_past(self, store: Store, session_id: str) -> None:
        store.create(session_id, live({"a": 1}))
        store.save(session_id, expired({"a": 1}), [])
        assert store.load(session_id) is None

    def test_a_save_into_the_past_sent_again_goes_through_again(
        self, store: Store, session_id: str
    ) -> None:
        """A rotation retires the old id with a save of a past expiry, live just before it
        (`live_at`). Every SDK sends a write again when its answer was lost, and the store
        tests it again: the same save must find its own first write live, not a session
        ended elsewhere."""
        store.create(session_id, live({"a": 1}))
        at = time.time() - 0.5
        ended = SessionRecord({}, at, None)
        store.save(session_id, ended, [], live_at=at - 0.01)
        store.save(session_id, ended, [], live_at=at - 0.01)
        assert store.load(session_id) is None
        with pytest.raises(SessionGone):  # any other save finds it ended
            store.save(session_id, ended, [])

    def test_save_writes_only_changed_keys_so_concurrent_saves_merge(
        self,
        store: Store,
        session_id: str,
    ) -> None:
        store.create(session_id, live({"shared": 0, "gone": True}))
        first, second = store.load(session_id), store.load(session_id)
        assert first is not None and second is not None
        first.data["a"] = "from first"
        del first.data["gone"]
        second.data["b"] = "from second"
        store.save(session_id, first, ["a", "gone"])
        store.save(session_id, second, ["b"])
        record = store.load(session_id)
        assert record is not None
        assert record.data == {"shared": 0, "a": "from first", "b": "from second"}

    def test_concurrent_writers_on_threads_all_survive(self, store: Store, session_id: str) -> None:
        store.create(session_id, live({}))
        writers = 8
        # Every writer holds a copy loaded before any of them saves.
        copies = [store.load(session_id) for _ in range(writers)]

        def write(n: int) -> None:
            record = copies[n]
            assert record is not None
            record.data[f"w{n}"] = n
            store.save(session_id, record, [f"w{n}"])

        at_once(writers, write)
        record = store.load(session_id)
        assert record is not None
        assert record.data == {f"w{n}": n for n in range(writers)}

    def test_user_id_and_expiry_round_trip(self, store: Store, session_id: str) -> None:
        expires_at = time.time() + 1234.5
        store.create(session_id, SessionRecord({"a": 1}, expires_at, "42"))
        record = store.load(session_id)
        assert record is not None
        assert record.user_id == "42"
        assert record.expires_at == pytest.approx(expires_at, abs=1.0)

    def test_for_user_and_delete_for_user(
        self, instrumented: Instrumented, store: Store, trips: RoundTrips
    ) -> None:
        alice = [new_session_id() for _ in range(3)]
        bob = new_session_id()
        for session_id in alice:
            store.create(session_id, live({"n": session_id}, user_id="alice"))
        store.create(bob, live({}, user_id="bob"))
        store.create(new_session_id(), expired({}, user_id="alice"))
        store.create(new_session_id(), live({}))

        trips.reset()
        found = store.for_user("alice")
        checks = len(alice) if instrumented.index_apart else 0
        reads = instrumented.listing_reads + checks
        assert trips.counts == (reads, 0), "for_user: one indexed query (+ a batch read, checks)"
        assert sorted(s.record_id for s in found) == sorted(record_id(k) for k in alice)
        assert all(s.user_id == "alice" for s in found)

        removed = store.delete_for_user("alice", keep=alice[0])
        assert removed >= 2
        assert [s.record_id for s in store.for_user("alice")] == [record_id(alice[0])]
        assert store.load(alice[1]) is None and store.load(alice[2]) is None
        assert store.load(alice[0]) is not None
        assert store.load(bob) is not None

    def test_delete_for_user_reports_a_growing_count_after_each_batch(self, store: Store) -> None:
        # 31 sessions, one kept: more than one batch where the store deletes in batches
        # (DynamoDB's BatchWriteItem takes 25).
        sessions = _sessions_of(store, "carol", 31)
        store.create(new_session_id(), live({}, user_id="dave"))
        seen: list[int] = []
        removed = store.delete_for_user("carol", keep=sessions[0], progress=seen.append)
        assert removed == 30
        _assert_running_count(seen, removed)
        assert [s.record_id for s in store.for_user("carol")] == [record_id(sessions[0])]
        assert len(store.for_user("dave")) == 1
        assert store.delete_for_user("carol", keep=sessions[0], progress=seen.append) == 0
        assert store.delete_for_user("nobody", progress=seen.append) == 0
        assert seen[-1] == removed, "nothing deleted: no progress call"

    @pytest.mark.parametrize("loop", event_loops())
    def test_adelete_for_user_reports_its_progress(self, store: Store, loop: str) -> None:
        sessions = _sessions_of(store, "erin", 4)
        seen: list[int] = []

        async def work() -> int:
            return await store.adelete_for_user("erin", keep=sessions[0], progress=seen.append)

        removed = run_async(loop, work)
        assert removed == 3
        _assert_running_count(seen, removed)
        assert [s.record_id for s in store.for_user("erin")] == [record_id(sessions[0])]

    def test_user_id_follows_save(self, store: Store, session_id: str) -> None:
        store.create(session_id, live({}))
        store.save(session_id, live({"_auth_user_id": "7"}, user_id="7"), ["_auth_user_id"])
        assert [s.record_id for s in store.for_user("7")] == [record_id(session_id)]
        store.save(session_id, live({}, user_id=None), ["_auth_user_id"])  # logout without new id
        assert store.for_user("7") == []

    def test_purge_expired_removes_only_expired_records_in_batches(
        self, instrumented: Instrumented, store: Store
    ) -> None:
        old = [new_session_id() for _ in range(7)]
        fresh = [new_session_id() for _ in range(3)]
        for session_id in old:
            store.create(session_id, expired({"k": session_id}))
        for session_id in fresh:
            store.create(session_id, live({"k": session_id}))
        seen: list[int] = []
        removed = store.purge_expired(batch_size=3, progress=seen.append)
        if instrumented.purges_by_ttl:
            assert removed == 0 and seen == []
        else:
            assert removed == 7
            assert seen == [3, 6, 7]
            assert store.purge_expired(batch_size=3) == 0
        for session_id in fresh:
            record = store.load(session_id)
            assert record is not None and record.data == {"k": session_id}

    def test_edge_values_round_trip_through_create_and_save(
        self, store: Store, session_id: str
    ) -> None:
        store.create(session_id, live(EDGE_VALUES))
        record = store.load(session_id)
        assert record is not None
        assert record.data == EDGE_VALUES
        assert repr(record.data) == repr(EDGE_VALUES)  # -0.0 and int-vs-float kept exactly

        changed = {k: [v, {"again": v}] for k, v in EDGE_VALUES.items()}
        store.save(session_id, live(changed), list(changed))
        record = store.load(session_id)
        assert record is not None and repr(record.data) == repr(changed)

        store.save(session_id, live({}), list(changed))  # remove every session_id
        record = store.load(session_id)
        assert record is not None and record.data == {}

    @given(data=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    def test_any_json_session_round_trips(
        self, store: Store, session_id: str, data: dict[str, Any]
    ) -> None:
        store.create(session_id, live(data))
        record = store.load(session_id)
        assert record is not None
        assert repr(record.data) == repr(data)
        store.delete(session_id)

    def test_oversized_session_is_refused_before_any_call(
        self, store: Store, trips: RoundTrips, session_id: str
    ) -> None:
        store.create(session_id, live({"small": 1}))
        too_big = {"blob": "x" * store.max_record_bytes}

        trips.reset()
        with pytest.raises(SessionTooLarge) as raised:
            store.create(new_session_id(), live(too_big))
        with pytest.raises(SessionTooLarge):
            store.save(session_id, live({"small": 1, **too_big}), ["blob"])
        assert trips.counts == (0, 0)
        assert raised.value.limit == store.max_record_bytes
        record = store.load(session_id)
        assert record is not None and record.data == {"small": 1}

    def test_a_session_just_under_the_limit_is_stored(self, store: Store, session_id: str) -> None:
        # Half the limit leaves room for each store's own per-item overhead.
        data = {"blob": "y" * (store.max_record_bytes // 2)}
        store.create(session_id, live(data))
        record = store.load(session_id)
        assert record is not None and record.data == data

    @pytest.mark.parametrize("loop", event_loops())
    def test_async_twins_keep_the_same_contract(
        self,
        instrumented: Instrumented,
        store: Store,
        trips: RoundTrips,
        session_id: str,
        loop: str,
    ) -> None:
        # Behind a cache, the load after the create is served by the cache.
        reads = 3 if instrumented.cached else 4
        trips.reset()

        async def work() -> None:
            assert await store.aload(session_id) is None
            await store.acreate(session_id, live({"a": 1}))
            with pytest.raises(SessionExists):
                await store.acreate(session_id, live({"a": 2}))
            record = await store.aload(session_id)
            assert record is not None and record.data == {"a": 1}
            record.data["b"] = 2
            await store.asave(session_id, record, ["b"])
            saved = await store.aload(session_id)
            assert saved is not None and saved.data == {"a": 1, "b": 2}
            await store.adelete(session_id)
            with pytest.raises(SessionGone):
                await store.asave(session_id, record, ["b"])
            assert await store.aload(session_id) is None
            assert trips.counts == (reads, 5)
            assert await store.aload("not a session id") is None
            await store.aclose()

        run_async(loop, work)

    def test_provision_is_idempotent_and_check_passes(self, store: Store) -> None:
        store.provision()
        assert store.provision() == []
        results = store.check()
        assert results and all(r.ok or r.warning for r in results), results


def _sessions_of(store: Store, user_id: str, count: int) -> list[str]:
    """`count` live sessions of `user_id`, created one by one."""
    sessions = [new_session_id() for _ in range(count)]
    for session_id in sessions:
        store.create(session_id, live({}, user_id=user_id))
    return sessions


def _assert_running_count(seen: list[int], removed: int) -> None:
    """Progress as a store reports it: a running count that grows to the count returned."""
    assert seen, "no progress call"
    assert all(a < b for a, b in itertools.pairwise(seen)), seen
    assert seen[-1] == removed, seen
