"""Housekeeping under live traffic: a purge never deletes a live session.

Every store whose own TTL does not remove expired sessions runs purge_expired in batches:
SQLite, DynamoDB with TTL off, Firestore without a TTL policy (the emulator has none) and
MongoDB (its TTL monitor passes once a minute). Redis expires sessions itself: its purge
does nothing and is not run here.

The stores are left as an application without TTL would have them: on DynamoDB the
suites' table has its TTL turned off; on MongoDB the collection has no TTL index, so the
test server's TTL monitor cannot take records from under the purge and the counts are
exact. (That a save never brings an expired session back is the contract's, tested there.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cloudsessions import SessionGone, SessionRecord, new_session_id, open_store
from cloudsessions.store import Store
from tests import stores
from tests.stores import HOUR

PURGING = [name for name in stores.STORE_NAMES if name not in ("redis", "redis_cluster")]

EXPIRED = 400  # expired sessions the purge must remove
BATCH = 20  # purge batch size: many batches, so traffic runs between them
REFRESHERS = 3  # threads, each refreshing its own live sessions over and over
LIVE_EACH = 8


@pytest.fixture(params=PURGING)
def purging(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A fresh store of each kind whose purge_expired does the sweeping."""
    name = str(request.param)
    store = open_store(stores.store_url(name, tmp_path))
    if name == "dynamodb":
        # The suites' tables have TTL on (DynamoDB Local reports it at once); off, purge scans.
        store.client.update_time_to_live(  # type: ignore[attr-defined]
            TableName=store.table,  # type: ignore[attr-defined]
            TimeToLiveSpecification={"Enabled": False, "AttributeName": "ttl"},
        )
        assert not store.ttl_enabled()  # type: ignore[attr-defined]
    try:
        yield store
    finally:
        store.drop()
        store.close()


def seed(store: Store, records: list[tuple[str, SessionRecord]]) -> None:
    """Create the records, a few at a time (the servers take concurrent writes)."""
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda pair: store.create(*pair), records))


def test_a_purge_during_live_traffic_removes_only_expired_sessions(purging: Store) -> None:
    store = purging
    gone = time.time() - 60
    seed(store, [(new_session_id(), SessionRecord({"old": 1}, gone)) for _ in range(EXPIRED)])
    live = [[new_session_id() for _ in range(LIVE_EACH)] for _ in range(REFRESHERS)]
    seed(store, [(k, SessionRecord({"n": 0}, time.time() + 60, "u")) for g in live for k in g])

    written: dict[str, int] = {k: 0 for group in live for k in group}
    errors: list[BaseException] = []
    saves = [0] * REFRESHERS
    stop = threading.Event()

    def refresh(n: int) -> None:
        # A request each: a changed key, and the expiry pushed an hour on.
        count = 0
        while not stop.is_set():
            for key in live[n]:
                count += 1
                try:
                    record = SessionRecord({"n": count}, time.time() + HOUR, "u")
                    store.save(key, record, ["n"])
                except Exception as exc:
                    errors.append(exc)
                    return
                written[key] = count
                saves[n] += 1

    threads = [threading.Thread(target=refresh, args=(n,)) for n in range(REFRESHERS)]
    for thread in threads:
        thread.start()
    try:
        while min(saves) < LIVE_EACH and not errors:  # traffic flows before the purge starts
            time.sleep(0.01)
        before = sum(saves)
        seen: list[int] = []

        def progress(count: int) -> None:
            seen.append(count)
            time.sleep(0.001)  # as a progress bar's output would, lets requests run between

        removed = store.purge_expired(batch_size=BATCH, progress=progress)
        during = sum(saves) - before
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert errors == []
    assert during > 0, "no refresh ran while the purge did"
    # Counts: every expired session, reported batch by batch with a growing total.
    assert removed == EXPIRED
    assert seen == sorted(set(seen)) and seen[-1] == removed
    assert len(seen) >= EXPIRED // BATCH
    # Every live session is there, with the last value its requests wrote.
    for key, value in written.items():
        loaded = store.load(key)
        assert loaded is not None, "a live session was purged"
        assert loaded.data == {"n": value}
    assert store.purge_expired(batch_size=BATCH) == 0


def test_a_session_refreshed_after_the_purge_found_it_is_never_deleted(purging: Store) -> None:
    """The purge reads expired records, then deletes them: a save may land in between.

    Here the purge's clock runs a minute ahead of the servers' (a cron host's clock, or a
    request whose save began just before the expiry: the same window, made wide), so it
    finds sessions that requests still see live. After its first batch, a request refreshes
    each of them. A session whose refresh succeeded must survive the rest of the purge; one
    the purge deleted first is gone for its request too (SessionGone), never half of each.
    """
    store = purging
    now = time.time()
    seed(store, [(new_session_id(), SessionRecord({}, now - 60)) for _ in range(200)])
    edge = [new_session_id() for _ in range(20)]
    seed(store, [(key, SessionRecord({"v": 0}, now + 30, "u")) for key in edge])

    refreshed: list[str] = []
    refused: list[str] = []

    def first_batch_done(count: int) -> None:
        if refreshed or refused:
            return
        for key in edge:
            try:
                store.save(key, SessionRecord({"v": 1}, time.time() + HOUR, "u"), ["v"])
            except SessionGone:
                refused.append(key)
            else:
                refreshed.append(key)

    removed = store._purge_expired(now + 60, BATCH, first_batch_done)

    assert refreshed, "every session went in the first batch: nothing was tested"
    for key in refreshed:
        loaded = store.load(key)
        assert loaded is not None, "a session refreshed during the purge was deleted"
        assert loaded.data == {"v": 1}
    assert all(store.load(key) is None for key in refused)
    assert removed == 200 + len(refused)
