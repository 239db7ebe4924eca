"""The session lifecycle's diff: what a write compares against after a load (SessionState).

A load keeps each value's stored JSON text; a scalar that is still the very object the load
gave is not encoded again. These pin the cases where that shortcut could hide a change.
"""

from __future__ import annotations

from pathlib import Path

from cloudsessions import new_session_id, open_store
from cloudsessions.policy import Cookie, Policy
from cloudsessions.session import SessionState
from cloudsessions.testing import RoundTrips, live
from tests import stores

POLICY = Policy(lifetime=3600.0, refresh_after=None)


def test_a_value_set_back_after_an_increment_in_the_same_request_is_saved(
    tmp_path: Path,
) -> None:
    store = open_store(stores.store_url("sqlite", tmp_path))
    sid = new_session_id()
    store.create(sid, live({"views": 3, "name": "ada"}))
    data, state = SessionState.open(store, POLICY, sid)
    loaded_three = data["views"]
    assert state.run(state.increment(data, "views", 1)) == 4
    data["views"] = loaded_three  # the very object the load gave, now stale in the store
    assert state.run(state.commit(data)) in (Cookie.KEEP, Cookie.SET)
    record = store.load(sid)
    assert record is not None and record.data == {"views": 3, "name": "ada"}
    store.close()


def test_unchanged_and_equal_values_write_nothing_and_changes_write_only_their_key(
    tmp_path: Path,
) -> None:
    trips = RoundTrips()
    store = stores.backend("sqlite").instrument(stores.store_url("sqlite", tmp_path), trips)
    sid = new_session_id()
    store.create(sid, live({"a": "x", "n": 1.5, "cart": [1], "flag": True, "none": None}))
    data, state = SessionState.open(store, POLICY, sid)
    data["a"] = "".join(["x"])  # an equal value, another object
    data["cart"] = [1]
    trips.reset()
    assert state.run(state.commit(data)) is Cookie.KEEP and trips.counts == (0, 0)

    data, state = SessionState.open(store, POLICY, sid)
    data["n"] = 2.5
    trips.reset()
    state.run(state.commit(data))
    assert trips.counts == (0, 1) and '$."kn"' in trips.writes[0] and '"ka"' not in trips.writes[0]
    record = store.load(sid)
    assert record is not None and record.data["n"] == 2.5 and record.data["a"] == "x"
    store.close()
