"""The Store contract of DESIGN.md, asserted once and run against every store.

Round trips are counted at the SDK level by each store's instrumentation (tests/backends).
"""

from __future__ import annotations

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
    new_key,
    record_id,
)
from tests import stores
from tests.concurrency import at_once
from tests.stores import Instrumented, expired, live


def purges_by_ttl(inst: Instrumented, name: str) -> bool:
    return bool(getattr(stores.backend(name), "PURGE_BY_TTL", False))


# ------------------------------------------------------------------- round trips


def test_load_of_unknown_key_is_one_read_and_creates_nothing(instrumented: Instrumented) -> None:
    store, trips = instrumented.store, instrumented.trips
    key = new_key()
    trips.reset()
    assert store.load(key) is None
    assert trips.counts == (1, 0)
    # Had the load created a record, this insert-if-absent would fail.
    store.create(key, live({"a": 1}))
    record = store.load(key)
    assert record is not None and record.data == {"a": 1}


def test_each_operation_costs_exactly_its_round_trip_budget(instrumented: Instrumented) -> None:
    store, trips = instrumented.store, instrumented.trips
    key = new_key()

    trips.reset()
    store.create(key, live({"a": 1, "b": "x"}))
    assert trips.counts == (0, 1), "create: one conditional write, no pre-check read"

    trips.reset()
    record = store.load(key)
    assert record is not None and record.data == {"a": 1, "b": "x"}
    assert trips.counts == (1, 0), "load: one read"

    trips.reset()
    record.data["a"] = 2
    store.save(key, record, ["a"])
    assert trips.counts == (0, 1), "save: one conditional write"

    trips.reset()
    store.delete(key)
    assert trips.counts == (0, 1), "delete: one write"

    trips.reset()
    store.delete(key)
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
    instrumented: Instrumented, cookie: str
) -> None:
    store, trips = instrumented.store, instrumented.trips
    trips.reset()
    assert store.load(cookie) is None
    store.delete(cookie)
    with pytest.raises(SessionGone):
        store.save(cookie, live({"a": 1}), ["a"])
    assert trips.counts == (0, 0)


@given(cookie=st.one_of(st.text(max_size=80), st.binary(max_size=40).map(repr)))
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_text_that_is_not_a_session_id_never_reaches_the_store(
    instrumented: Instrumented, cookie: str
) -> None:
    from cloudsessions import is_valid_key

    instrumented.trips.reset()
    result = instrumented.store.load(cookie)
    if not is_valid_key(cookie):
        assert result is None
        assert instrumented.trips.counts == (0, 0)


# ---------------------------------------------------------------------- semantics


def test_create_refuses_an_existing_id_and_keeps_the_record(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, live({"owner": "first"}))
    with pytest.raises(SessionExists):
        store.create(key, live({"owner": "second"}))
    record = store.load(key)
    assert record is not None and record.data == {"owner": "first"}


def test_save_after_delete_raises_gone_and_never_resurrects(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, live({"user": "alice"}))
    record = store.load(key)
    assert record is not None
    store.delete(key)  # logout in another request
    record.data["cart"] = [1, 2]
    with pytest.raises(SessionGone):
        store.save(key, record, ["cart"])
    assert store.load(key) is None


def test_save_of_a_never_created_id_raises_gone(instrumented: Instrumented) -> None:
    key = new_key()
    with pytest.raises(SessionGone):
        instrumented.store.save(key, live({"a": 1}), ["a"])
    assert instrumented.store.load(key) is None


def test_expiry_is_enforced_on_read(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, expired({"a": 1}))
    assert store.load(key) is None


def test_save_of_an_expired_record_raises_gone(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, expired({"a": 1}))
    with pytest.raises(SessionGone):
        store.save(key, live({"a": 2}), ["a"])
    assert store.load(key) is None


def test_save_can_shorten_expiry_into_the_past(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, live({"a": 1}))
    store.save(key, expired({"a": 1}), [])
    assert store.load(key) is None


def test_save_writes_only_changed_keys_so_concurrent_saves_merge(
    instrumented: Instrumented,
) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, live({"shared": 0, "gone": True}))
    first, second = store.load(key), store.load(key)
    assert first is not None and second is not None
    first.data["a"] = "from first"
    del first.data["gone"]
    second.data["b"] = "from second"
    store.save(key, first, ["a", "gone"])
    store.save(key, second, ["b"])
    record = store.load(key)
    assert record is not None
    assert record.data == {"shared": 0, "a": "from first", "b": "from second"}


def test_concurrent_writers_on_threads_all_survive(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, live({}))
    writers = 8
    # Every writer holds a copy loaded before any of them saves.
    copies = [store.load(key) for _ in range(writers)]

    def write(n: int) -> None:
        record = copies[n]
        assert record is not None
        record.data[f"w{n}"] = n
        store.save(key, record, [f"w{n}"])

    at_once(writers, write)
    record = store.load(key)
    assert record is not None
    assert record.data == {f"w{n}": n for n in range(writers)}


def test_user_id_and_expiry_round_trip(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    expires_at = time.time() + 1234.5
    store.create(key, SessionRecord({"a": 1}, expires_at, "42"))
    record = store.load(key)
    assert record is not None
    assert record.user_id == "42"
    assert record.expires_at == pytest.approx(expires_at, abs=1.0)


# --------------------------------------------------------------------- users


def test_for_user_and_delete_for_user(instrumented: Instrumented) -> None:
    store, trips = instrumented.store, instrumented.trips
    alice = [new_key() for _ in range(3)]
    bob = new_key()
    for key in alice:
        store.create(key, live({"n": key}, user_id="alice"))
    store.create(bob, live({}, user_id="bob"))
    store.create(new_key(), expired({}, user_id="alice"))
    store.create(new_key(), live({}))

    trips.reset()
    found = store.for_user("alice")
    assert trips.counts == (1, 0), "for_user: one indexed query"
    assert sorted(s.record_id for s in found) == sorted(record_id(k) for k in alice)
    assert all(s.user_id == "alice" for s in found)

    removed = store.delete_for_user("alice", keep=alice[0])
    assert removed >= 2
    assert [s.record_id for s in store.for_user("alice")] == [record_id(alice[0])]
    assert store.load(alice[1]) is None and store.load(alice[2]) is None
    assert store.load(alice[0]) is not None
    assert store.load(bob) is not None


def test_user_id_follows_save(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, live({}))
    store.save(key, live({"_auth_user_id": "7"}, user_id="7"), ["_auth_user_id"])
    assert [s.record_id for s in store.for_user("7")] == [record_id(key)]
    store.save(key, live({}, user_id=None), ["_auth_user_id"])  # logout without new id
    assert store.for_user("7") == []


# ----------------------------------------------------------------------- purge


def test_purge_expired_removes_only_expired_records_in_batches(
    instrumented: Instrumented, store_name: str
) -> None:
    store = instrumented.store
    old = [new_key() for _ in range(7)]
    fresh = [new_key() for _ in range(3)]
    for key in old:
        store.create(key, expired({"k": key}))
    for key in fresh:
        store.create(key, live({"k": key}))
    seen: list[int] = []
    removed = store.purge_expired(batch_size=3, progress=seen.append)
    if purges_by_ttl(instrumented, store_name):
        assert removed == 0 and seen == []
    else:
        assert removed == 7
        assert seen == [3, 6, 7]
        assert store.purge_expired(batch_size=3) == 0
    for key in fresh:
        record = store.load(key)
        assert record is not None and record.data == {"k": key}


# ----------------------------------------------------------------------- values

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
    "": "empty key",
    "__name__": "dunder",
    "%41": "percent",
    "k": "the field prefix",
    "line\nbreak": "newline",
    "lone surrogate": "\ud800 is valid in a Python str, not in UTF-8",
    "nested keys": {"a.b": 1, "$x": 2, "": 3, "[0]": 4},
}


def test_edge_values_round_trip_through_create_and_save(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, live(EDGE_VALUES))
    record = store.load(key)
    assert record is not None
    assert record.data == EDGE_VALUES
    assert repr(record.data) == repr(EDGE_VALUES)  # -0.0 and int-vs-float kept exactly

    changed = {k: [v, {"again": v}] for k, v in EDGE_VALUES.items()}
    store.save(key, live(changed), list(changed))
    record = store.load(key)
    assert record is not None and repr(record.data) == repr(changed)

    store.save(key, live({}), list(changed))  # remove every key
    record = store.load(key)
    assert record is not None and record.data == {}


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


@given(data=st.dictionaries(st.text(max_size=12), json_values, max_size=6))
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_json_session_round_trips(instrumented: Instrumented, data: dict[str, Any]) -> None:
    store = instrumented.store
    key = new_key()
    store.create(key, live(data))
    record = store.load(key)
    assert record is not None
    assert repr(record.data) == repr(data)
    store.delete(key)


# ---------------------------------------------------------------------- limits


def test_oversized_session_is_refused_before_any_call(instrumented: Instrumented) -> None:
    store, trips = instrumented.store, instrumented.trips
    key = new_key()
    store.create(key, live({"small": 1}))
    too_big = {"blob": "x" * store.max_record_bytes}

    trips.reset()
    with pytest.raises(SessionTooLarge) as raised:
        store.create(new_key(), live(too_big))
    with pytest.raises(SessionTooLarge):
        store.save(key, live({"small": 1, **too_big}), ["blob"])
    assert trips.counts == (0, 0)
    assert raised.value.limit == store.max_record_bytes
    record = store.load(key)
    assert record is not None and record.data == {"small": 1}


def test_a_session_just_under_the_limit_is_stored(instrumented: Instrumented) -> None:
    store = instrumented.store
    key = new_key()
    # Half the limit leaves room for each store's own per-item overhead.
    data = {"blob": "y" * (store.max_record_bytes // 2)}
    store.create(key, live(data))
    record = store.load(key)
    assert record is not None and record.data == data


# ----------------------------------------------------------------------- async


async def test_async_twins_keep_the_same_contract(instrumented: Instrumented) -> None:
    store, trips = instrumented.store, instrumented.trips
    key = new_key()
    trips.reset()
    assert await store.aload(key) is None
    await store.acreate(key, live({"a": 1}))
    with pytest.raises(SessionExists):
        await store.acreate(key, live({"a": 2}))
    record = await store.aload(key)
    assert record is not None and record.data == {"a": 1}
    record.data["b"] = 2
    await store.asave(key, record, ["b"])
    assert (await store.aload(key)).data == {"a": 1, "b": 2}  # type: ignore[union-attr]
    await store.adelete(key)
    with pytest.raises(SessionGone):
        await store.asave(key, record, ["b"])
    assert await store.aload(key) is None
    assert trips.counts == (4, 5)
    assert await store.aload("not a key") is None


# ----------------------------------------------------------------- operations


def test_provision_is_idempotent_and_check_passes(instrumented: Instrumented) -> None:
    store = instrumented.store
    store.provision()
    assert store.provision() == []
    results = store.check()
    assert results and all(r.ok for r in results), results
