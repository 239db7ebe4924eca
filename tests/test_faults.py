"""Stores that misbehave on the wire, seen through each front door (issue 16).

Every networked store is opened through a FaultProxy (tests/services/proxy.py) that speaks
its protocol: it delays responses, black-holes or resets connections, cuts a response
mid-way after the server did the work, and answers for the server with the store's own
throttling and transient errors in its wire format (DynamoDB's ThrottlingException,
Firestore's RESOURCE_EXHAUSTED, MongoDB's NotWritablePrimary, Redis's -LOADING). The
store's request deadline is DEADLINE (0.5 s; MongoDB's 1 s: faults_support.DEADLINES).

One store object, one proxy and one app per front door serve all of a store's tests, as
one process serves requests through every fault: each test starts from restore() and a
new browser. What each test holds, on every store and front door:
- a store slower than the deadline answers 503 (Retry-After, no cookie) within the
  deadline + 10%; one faster than it serves the request with the right data;
- a write whose response is cut leaves the old session or the new one, never a mix, never
  none; a read whose response is cut is read again (the page, with the session);
- a burst of two throttling errors is absorbed (the attempts counted at the proxy: exactly
  two more than without them); a storm longer than the deadline is a 503 within the bound;
- after every fault (black hole, resets, storm, slow store), restore() is enough: the
  same store object serves again, and the browser still has its session (no fault turns
  into a silent logout).
SQLite has no socket: its fault is another connection holding the write lock, for less
than the deadline (the request waits and succeeds) or for longer (503 within the bound).

Run with -s to see what each fault cost (the table printed after each store's tests).
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudsessions import SessionRecord
from tests.backends.mongodb import real_uri as real_mongodb
from tests.faults_support import READS, WRITES, Rig, bound, deadline_of, rig, timed
from tests.front_doors import Answer, AsgiDoor, Door, open_door, stored
from tests.stores import STORE_NAMES

NETWORKED = [n for n in STORE_NAMES if n != "sqlite"]
DOORS = ["django", "flask", "asgi"]
SYNC_AND_ASYNC = ["flask", "asgi"]  # a sync door and an async one (native async clients)
RECOVERY = 3.0  # seconds: see recovered()
# redis-py drops a connection that answered -LOADING (to it, a ConnectionError) and opens
# another; every other store's client keeps its connections through a throttling error.
RECONNECTS_AFTER_THROTTLING = {"redis", "redis_cluster"}
# Where a response is cut, on which doors: before its first byte, 20 bytes in (inside an
# HTTP response's head, a gRPC frame's or a MongoDB message's header), or halfway. Django's
# door uses the store as Flask's does (the sync client): it gets the one cut in the head.
CUTS = [
    pytest.param(where, door, id=f"{name}-{door}")
    for where, name, doors in [
        (0, "cut-at-0", SYNC_AND_ASYNC),
        (20, "cut-at-20", DOORS),
        (0.5, "cut-halfway", SYNC_AND_ASYNC),
    ]
    for door in doors
]


class Bench:
    """A store behind its proxy and an app of each front door on it, for all the tests of
    one store: `door(name)` is a new browser on that door's app."""

    def __init__(self, made: Rig, stack: contextlib.ExitStack) -> None:
        self.rig, self.stack = made, stack
        self.apps: dict[str, Door] = {}
        self.measured: list[tuple[str, str, str, float]] = []  # door, fault, outcome, s

    def door(self, name: str) -> Door:
        if name not in self.apps:
            self.apps[name] = self.stack.enter_context(
                open_door(name, self.rig.store, outages="503")
            )
        app = self.apps[name]
        if isinstance(app, AsgiDoor):  # its event loop (and async client) stays; no cookies
            app.client.cookies.clear()
            return app
        return app.another()

    def note(self, door: str, fault: str, answer: Answer, took: float) -> None:
        self.measured.append((door, fault, str(answer.status), took))


@pytest.fixture(scope="module", params=NETWORKED)
def bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    with contextlib.ExitStack() as stack:
        made = stack.enter_context(rig(request.param, tmp_path_factory.mktemp("faults")))
        made_bench = Bench(made, stack)
        yield made_bench
        _print_table(made.name, made_bench.measured)


@pytest.fixture
def faulty(bench: Bench) -> Iterator[Bench]:
    """The store's bench with every fault off and the proxy's counts at zero."""
    proxy = bench.rig.faults
    proxy.restore()
    proxy.clear_stats()
    yield bench
    proxy.restore()


def _print_table(store: str, rows: list[tuple[str, str, str, float]]) -> None:
    deadline = deadline_of(store)
    print(f"\n{store}: what each fault cost (deadline {deadline} s, bound {bound(deadline):.3f} s)")
    for door, fault, status, took in rows:
        print(f"  {fault:<34} {door:<7} {status}  {took * 1000:6.0f} ms")


def begin(door: Door, **values: Any) -> str:
    """A session holding `values`, and its id; the door's store client is made and its
    pooled connections are open.

    The first store call of a store object (or, for an async door, of its event loop)
    builds the SDK client inside the request deadline: botocore reads its service model,
    0.2 to 1 s here, so a cold door's first request can exceed the deadline. That request
    failed before anything was stored (no cookie); the next one starts over.
    """
    for _ in range(3):
        answer = door.write(**values)
        if answer.status != 503:
            break
    assert answer.status == 200, answer
    assert door.sid is not None
    return door.sid


def cut(rig_: Rig, where: int | float, names: frozenset[str]) -> None:
    """Cut the response to the next request named in `names` at `where` (bytes, or a
    fraction of it)."""
    if isinstance(where, float):
        rig_.faults.cut_next_response(fraction=where, request=names)
    else:
        rig_.faults.cut_next_response(where, request=names)


def assert_503(rig_: Rig, answer: Answer, took: float, *, moved_to: str | None = None) -> None:
    """A 503 within the deadline + 10%, which leaves the browser's cookie alone; or, when
    the session moved to a new id in that request (its old id retired), sets that one."""
    assert answer.status == 503, answer
    assert answer.headers.get("retry-after"), answer.headers
    if moved_to is not None:
        assert len(answer.cookies) == 1 and f"={moved_to};" in answer.cookies[0], answer.cookies
    else:
        assert not answer.cookies, "a failed request sets no cookie (nor deletes one)"
    limit = bound(rig_.deadline)
    assert took <= limit, f"{took:.3f} s: past the deadline + 10% ({limit:.3f} s)"


def recovered(bench: Bench, door_name: str, door: Door, sid: str, data: dict[str, Any]) -> None:
    """After restore(): the browser's requests are served again, with its session, within
    RECOVERY seconds (a client that saw its connections refused may wait out its own
    reconnect backoff first: gRPC's, up to 2 s); how long it took goes in the table."""
    started = time.monotonic()
    while (answer := door.get("/read")).status == 503:
        assert time.monotonic() - started < RECOVERY, f"not served again in {RECOVERY} s"
        time.sleep(0.02)
    took = time.monotonic() - started
    bench.measured.append((door_name, "  ...served again after", str(answer.status), took))
    assert answer.status == 200, answer
    assert answer.json == {"data": data, "sid": sid}, "the browser lost its session"


def assert_signed_in(door: Door, sid: str, *data: dict[str, Any]) -> dict[str, Any]:
    """The browser's next normal request still has its session, holding one of `data`."""
    answer = door.get("/read")
    assert answer.status == 200, answer
    assert answer.json["sid"] == sid, "the browser lost its session: a silent logout"
    assert answer.json["data"] in data, answer.json
    assert door.sid == sid
    return dict(answer.json["data"])


# ------------------------------------------------------------------------- latency


@pytest.mark.parametrize("door_name", DOORS)
def test_latency_below_the_deadline_serves_the_request(faulty: Bench, door_name: str) -> None:
    latency = faulty.rig.deadline / 10
    door = faulty.door(door_name)
    sid = begin(door, a=1)
    faulty.rig.faults.latency(latency)
    answer, took = timed(lambda: door.write(a=2))
    faulty.note(door_name, f"latency {latency * 1000:.0f} ms", answer, took)
    assert answer.status == 200, answer
    assert took >= 2 * latency, "a load and a write, each through the latency"
    assert stored(faulty.rig.direct, sid) == {"a": 2}
    assert assert_signed_in(door, sid, {"a": 2}) == {"a": 2}


@pytest.mark.parametrize("door_name", DOORS)
def test_latency_above_the_deadline_is_503_within_it(faulty: Bench, door_name: str) -> None:
    door = faulty.door(door_name)
    sid = begin(door, a=1)
    faulty.rig.faults.latency(2 * faulty.rig.deadline)
    answer, took = timed(lambda: door.write(a=2))
    faulty.note(door_name, f"latency {2 * faulty.rig.deadline * 1000:.0f} ms", answer, took)
    assert_503(faulty.rig, answer, took)
    # The late answers are delivered at once: none may be taken for a later request's.
    faulty.rig.faults.restore()
    assert_signed_in(door, sid, {"a": 1})
    assert door.write(a=3).status == 200
    assert stored(faulty.rig.direct, sid) == {"a": 3}


# ------------------------------------------------------------------- cut responses


@pytest.mark.parametrize(("where", "door_name"), CUTS)
def test_a_write_cut_mid_response_leaves_the_old_or_the_new_session(
    faulty: Bench, door_name: str, where: int | float
) -> None:
    door = faulty.door(door_name)
    sid = begin(door, a=1, b=1)
    cut(faulty.rig, where, WRITES[faulty.rig.name])
    answer, took = timed(lambda: door.write(a=2, b=2))
    faulty.note(door_name, f"write cut at {where}", answer, took)
    assert faulty.rig.faults.stats.cuts == 1, f"no write cut: {answer}, {faulty.rig.faults.stats}"
    if answer.status == 503:
        assert_503(faulty.rig, answer, took)
    else:
        assert answer.status == 200, answer
    now = stored(faulty.rig.direct, sid)
    assert now in ({"a": 1, "b": 1}, {"a": 2, "b": 2}), f"a mix, or nothing: {now}"
    if answer.status == 200:
        assert now == {"a": 2, "b": 2}, "answered 200 for a write that is not stored"
    assert assert_signed_in(door, sid, {"a": 1, "b": 1}, {"a": 2, "b": 2}) == now


@pytest.mark.parametrize(("where", "door_name"), CUTS)
def test_a_read_cut_mid_response_is_read_again(
    faulty: Bench, door_name: str, where: int | float
) -> None:
    """A read is safe to repeat: one cut anywhere in its answer (in the HTTP head, between
    a gRPC stream's headers and its message, ...) is retried and the page is served, with
    the session; never "no session", and not a 503 either."""
    door = faulty.door(door_name)
    sid = begin(door, a=1)
    cut(faulty.rig, where, READS[faulty.rig.name])
    answer, took = timed(lambda: door.get("/read"))
    faulty.note(door_name, f"read cut at {where}", answer, took)
    assert faulty.rig.faults.stats.cuts == 1, f"no load cut: {answer}, {faulty.rig.faults.stats}"
    assert answer.status == 200, f"{answer} after {took:.3f} s"
    assert answer.json == {"data": {"a": 1}, "sid": sid}, "read as no session"
    assert assert_signed_in(door, sid, {"a": 1}) == {"a": 1}
    assert stored(faulty.rig.direct, sid) == {"a": 1}


@pytest.mark.parametrize("door_name", SYNC_AND_ASYNC)
def test_an_increment_cut_mid_response_counts_once(faulty: Bench, door_name: str) -> None:
    """A counter's write is not idempotent: retried after a cut response, it must not add
    again (a retry that cannot tell whether the first one landed must not be made)."""
    if faulty.rig.name == "mongodb" and not real_mongodb():
        pytest.xfail(
            "SecantusDB runs a retried retryable write again (a real MongoDB answers the retry"
            " from its record of the session's txnNumber): set MONGODB_URI to test this"
        )
    door = faulty.door(door_name)
    for _ in range(3):  # a cold door builds its client inside the deadline: see begin()
        first = door.get("/count")
        if first.status != 503:
            break
    assert first.json == {"views": 1}, first
    sid = door.sid
    cut(faulty.rig, 0, WRITES[faulty.rig.name])
    answer, took = timed(lambda: door.get("/count"))
    faulty.note(door_name, "increment cut at 0", answer, took)
    assert faulty.rig.faults.stats.cuts == 1
    views = (stored(faulty.rig.direct, sid) or {}).get("views")
    assert views in (1, 2), f"counted {views} views for 2 requests"
    if answer.status == 503:
        assert_503(faulty.rig, answer, took)
    else:
        assert answer.status == 200, answer
        assert answer.json == {"views": views}


LOGIN_CUTS = [  # (door, which of its login's writes): Django's cycle_key() writes twice itself
    pytest.param(door, nth, id=f"{nth}-{door}")
    for door, writes in (("django", 3), ("flask", 2), ("asgi", 2))
    for nth in range(1, writes + 1)
]


@pytest.mark.parametrize(("door_name", "nth"), LOGIN_CUTS)
def test_a_login_whose_write_is_cut_keeps_the_browser_s_session(
    faulty: Bench, door_name: str, nth: int
) -> None:
    """A login writes the record under the new id, then retires the old id (expired at
    once); Django's cycle_key() does both before the view sets the user, which its save then
    writes. The answer to the `nth` write is cut after the store applied it, and the SDK
    sends it again: the retry must not take the first attempt's own retirement for a logout
    elsewhere. The browser ends signed in under the new id with its data, or (503) keeps its
    pre-login session, under its old id or, once that is retired, under the new one that
    the 503 carries: never neither."""
    door = faulty.door(door_name)
    old = begin(door, cart=1)
    writes = itertools.count(1)
    names = WRITES[faulty.rig.name]
    faulty.rig.faults.cut_next_response(request=lambda r: r.name in names and next(writes) == nth)
    answer, took = timed(lambda: door.get("/login", user="ada"))
    faulty.note(door_name, f"login, write {nth} cut at 0", answer, took)
    assert faulty.rig.faults.stats.cuts == 1, f"no write cut: {answer}, {faulty.rig.faults.stats}"
    if answer.status == 503:
        assert_503(faulty.rig, answer, took, moved_to=None if door.sid == old else door.sid)
        if door.sid == old:
            assert assert_signed_in(door, old, {"cart": 1}) == {"cart": 1}
        else:  # moved: the session lives on under the new id; the old one is retired, or
            # (its retirement unconfirmed at the deadline) holds the session as it was. The
            # save of the user may have gone through before its answer was lost: signed in.
            assert stored(faulty.rig.direct, old) in (None, {"cart": 1})
            signed_in = {"cart": 1, door.user_key: "ada"}
            assert_signed_in(door, door.sid or "", {"cart": 1}, signed_in)
        return
    assert answer.status == 200, answer
    new = door.sid
    assert new is not None and new != old, "a login moves the session to a new id"
    assert answer.json == {"sid": new}
    # The pre-login id is retired; when the deadline ran out before its retirement was
    # confirmed, it holds the session as it was before the login, never the sign-in.
    assert stored(faulty.rig.direct, old) in (None, {"cart": 1}), "the sign-in under the old id"
    data = assert_signed_in(door, new, {"cart": 1, door.user_key: "ada"})
    assert stored(faulty.rig.direct, new) == data


@pytest.mark.parametrize("door_name", DOORS)
def test_a_login_that_fails_after_moving_the_session_sends_the_new_id(
    faulty: Bench, door_name: str
) -> None:
    """The view rotates the id and increments a counter, which writes at once: the session
    is created under the new id and the old id retired (writes 1 and 2), then counted (3).
    The save of the user (write 4) meets a throttling storm: a 503 that carries the new id,
    since the old one names a retired record; the browser keeps its session, counted."""
    door = faulty.door(door_name)
    old = begin(door, cart=1)
    writes = itertools.count(1)
    names = WRITES[faulty.rig.name]
    faulty.rig.faults.inject(
        "throttling", 10**6, request=lambda r: r.name in names and next(writes) >= 4
    )
    answer, took = timed(lambda: door.get("/login-count", user="ada"))
    faulty.note(door_name, "login, its save throttled after the rotation", answer, took)
    new = door.sid
    assert new not in (None, old)
    assert_503(faulty.rig, answer, took, moved_to=new)
    faulty.rig.faults.restore()
    assert stored(faulty.rig.direct, old) is None, "the old id is retired"
    recovered(faulty, door_name, door, new or "", {"cart": 1, "views": 1})


# ------------------------------------------------------------------- throttling


@pytest.mark.parametrize("door_name", SYNC_AND_ASYNC)
@pytest.mark.parametrize("on", ["read", "write"])
def test_a_throttling_burst_is_absorbed(faulty: Bench, door_name: str, on: str) -> None:
    """Two throttling errors in a row, on the load or on the write: the request succeeds
    within the deadline, after exactly two more attempts than without them."""
    proxy = faulty.rig.faults
    door = faulty.door(door_name)
    sid = begin(door, a=1)
    before = proxy.stats.attempts
    assert door.write(a=2).status == 200
    plain = proxy.stats.attempts - before
    proxy.inject("throttling", 2, request=(READS if on == "read" else WRITES)[faulty.rig.name])
    before, connections = proxy.stats.attempts, proxy.stats.connections
    answer, took = timed(lambda: door.write(a=3))
    faulty.note(door_name, f"2 throttling errors on the {on}", answer, took)
    assert proxy.stats.injected["throttling"] == 2
    if faulty.rig.name not in RECONNECTS_AFTER_THROTTLING:
        # MongoDB: a driver's monitor takes the step-down's newer hello on the connection
        # it waits on (tests/services/wire_mongo.py), and keeps it.
        assert proxy.stats.connections == connections, "a throttling error costs no connection"
    assert answer.status == 200, f"{answer} after {took:.3f} s"
    assert proxy.stats.attempts - before == plain + 2, "attempts: plain + 2 retries"
    assert stored(faulty.rig.direct, sid) == {"a": 3}
    assert_signed_in(door, sid, {"a": 3})


@pytest.mark.parametrize("door_name", DOORS)
def test_a_throttling_storm_is_503_within_the_deadline(faulty: Bench, door_name: str) -> None:
    door = faulty.door(door_name)
    sid = begin(door, a=1)
    faulty.rig.faults.inject("throttling", 10**6)
    answer, took = timed(lambda: door.write(a=2))
    faulty.note(door_name, "throttling storm", answer, took)
    assert_503(faulty.rig, answer, took)
    assert faulty.rig.faults.stats.injected["throttling"] >= 1
    faulty.rig.faults.restore()
    assert_signed_in(door, sid, {"a": 1})


@pytest.mark.parametrize("door_name", SYNC_AND_ASYNC)
def test_an_unavailable_error_is_retried(faulty: Bench, door_name: str) -> None:
    """The store's "unavailable" error once on a write, five requests in a row: each is
    retried within the deadline. (DynamoDB: HTTP 503; Firestore: UNAVAILABLE; MongoDB:
    ShutdownInProgress; Redis: LOADING, a cluster: CLUSTERDOWN.)"""
    door = faulty.door(door_name)
    sid = begin(door, a=0)
    for value in range(1, 6):
        faulty.rig.faults.inject("unavailable", 1, request=WRITES[faulty.rig.name])
        answer, took = timed(lambda: door.write(a=value))  # noqa: B023
        faulty.note(door_name, "1 unavailable error on the write", answer, took)
        assert faulty.rig.faults.stats.injected["unavailable"] == value
        assert answer.status == 200, f"request {value}: {answer} after {took:.3f} s"
    assert assert_signed_in(door, sid, {"a": 5}) == {"a": 5}


# --------------------------------------------------------- black hole and resets


@pytest.mark.parametrize("door_name", DOORS)
def test_a_black_hole_is_503_within_the_deadline_then_serves_again(
    faulty: Bench, door_name: str
) -> None:
    door = faulty.door(door_name)
    sid = begin(door, a=1)
    faulty.rig.faults.blackhole()
    answer, took = timed(lambda: door.write(a=2))
    faulty.note(door_name, "black hole", answer, took)
    assert_503(faulty.rig, answer, took)
    faulty.rig.faults.restore()  # what was held goes through now
    recovered(faulty, door_name, door, sid, {"a": 1})
    assert door.write(a=3).status == 200
    assert stored(faulty.rig.direct, sid) == {"a": 3}


@pytest.mark.parametrize("door_name", DOORS)
def test_connections_reset_between_requests_are_replaced(faulty: Bench, door_name: str) -> None:
    """Every pooled connection is reset while idle: the next request opens new ones."""
    door = faulty.door(door_name)
    sid = begin(door, a=1)
    faulty.rig.faults.reset()
    answer, took = timed(lambda: door.write(a=2))
    faulty.note(door_name, "idle connections reset", answer, took)
    assert answer.status == 200, answer
    assert took <= bound(faulty.rig.deadline), f"{took:.3f} s"
    assert assert_signed_in(door, sid, {"a": 2}) == {"a": 2}


@pytest.mark.parametrize("door_name", DOORS)
def test_a_store_that_resets_every_connection_is_503_within_the_deadline(
    faulty: Bench, door_name: str
) -> None:
    door = faulty.door(door_name)
    sid = begin(door, a=1)
    faulty.rig.faults.reset(until_restore=True)
    answer, took = timed(lambda: door.write(a=2))
    faulty.note(door_name, "every connection reset", answer, took)
    assert_503(faulty.rig, answer, took)
    faulty.rig.faults.restore()
    recovered(faulty, door_name, door, sid, {"a": 1})


# ------------------------------------------------------------- the harness itself


def test_every_call_goes_through_the_proxy(faulty: Bench) -> None:
    """The store's calls reach the server through the proxy (a cluster's or a replica
    set's clients are handed the proxies' addresses), and the proxy counts them."""
    key = "f" * 40
    faulty.rig.store.create(key, SessionRecord({"x": 1}, time.time() + 60))
    record = faulty.rig.store.load(key)
    assert record is not None and record.data == {"x": 1}
    stats = faulty.rig.faults.stats
    assert set(stats.requests) & WRITES[faulty.rig.name], stats
    assert set(stats.requests) & READS[faulty.rig.name], stats
    faulty.rig.store.delete(key)


# -------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_rig(tmp_path: Path) -> Iterator[Rig]:
    # SQLite needs no server: its tests run whichever stores the run selects.
    with rig("sqlite", tmp_path) as made:
        yield made


@pytest.mark.parametrize("door_name", DOORS)
def test_sqlite_locked_briefly_waits_and_serves(sqlite_rig: Rig, door_name: str) -> None:
    assert sqlite_rig.lock is not None
    with open_door(door_name, sqlite_rig.store, outages="503") as door:
        sid = begin(door, a=1)
        releaser = sqlite_rig.lock.hold_for(sqlite_rig.deadline / 5)
        answer, took = timed(lambda: door.write(a=2))
        releaser.join()
        assert answer.status == 200, answer
        assert took >= sqlite_rig.deadline / 5 - 0.01, "the write waited for the lock"
        assert assert_signed_in(door, sid, {"a": 2}) == {"a": 2}


@pytest.mark.parametrize("door_name", DOORS)
def test_sqlite_locked_past_the_deadline_is_503_within_it(sqlite_rig: Rig, door_name: str) -> None:
    assert sqlite_rig.lock is not None
    with open_door(door_name, sqlite_rig.store, outages="503") as door:
        sid = begin(door, a=1)
        sqlite_rig.lock.hold()
        try:
            answer, took = timed(lambda: door.write(a=2))
        finally:
            sqlite_rig.lock.release()
        print(f"\nsqlite {door_name}: locked past the deadline: {answer.status} in {took:.3f} s")
        assert_503(sqlite_rig, answer, took)
        assert assert_signed_in(door, sid, {"a": 1}) == {"a": 1}
        assert door.write(a=3).status == 200
