"""The contract of "where you're signed in": metadata kept with a signed-in record, listed
through the user index, and revoked by handle."""

from __future__ import annotations

import time

from cloudsessions import Metadata, SessionRecord, new_session_id, record_id

from ..store import Store
from .harness import HOUR, Fixtures, Instrumented, RoundTrips, event_loops, live, run_async


def signed_in(
    user: str, meta: Metadata | None, data: dict[str, object] | None = None
) -> SessionRecord:
    return SessionRecord(data or {"_user": user}, time.time() + HOUR, user, meta=meta)


PHONE = Metadata(1000.0, 1000.0, "203.0.113.0", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4)")
LAPTOP = Metadata(2000.0, 2500.0, "2001:db8:1::", "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0")


class SignedInContract(Fixtures):
    """Metadata, listing and revocation, with their round trips."""

    def test_metadata_is_listed_with_each_session_of_its_user(
        self, instrumented: Instrumented, store: Store, trips: RoundTrips
    ) -> None:
        phone, laptop, bob = new_session_id(), new_session_id(), new_session_id()
        store.create(phone, signed_in("alice", PHONE))
        store.create(laptop, signed_in("alice", LAPTOP))
        store.create(bob, signed_in("bob", LAPTOP))
        store.create(new_session_id(), live({}))  # anonymous: no user, no metadata

        trips.reset()
        found = store.for_user("alice", current=laptop)
        checks = 2 if instrumented.index_apart else 0
        assert trips.counts == (instrumented.listing_reads + checks, 0)
        assert [(s.record_id, s.meta, s.current) for s in found] == [
            (record_id(laptop), LAPTOP, True),  # the current session first
            (record_id(phone), PHONE, False),
        ]
        assert found[0].handle == record_id(laptop)
        assert all(s.user_id == "alice" for s in found)

    def test_most_recently_seen_first_and_expired_left_out(self, store: Store) -> None:
        older, newer, gone = new_session_id(), new_session_id(), new_session_id()
        store.create(older, signed_in("carol", Metadata(10.0, 20.0)))
        store.create(newer, signed_in("carol", Metadata(10.0, 30.0)))
        store.create(gone, SessionRecord({}, time.time() - 1, "carol", meta=Metadata(1.0, 99.0)))
        found = store.for_user("carol")
        assert [s.record_id for s in found] == [record_id(newer), record_id(older)]
        assert not any(s.current for s in found)

    def test_a_save_replaces_the_metadata_and_a_save_without_keeps_it(
        self, store: Store, session_id: str
    ) -> None:
        store.create(session_id, signed_in("dave", PHONE))
        seen = Metadata(PHONE.created_at, 5000.0, "198.51.100.0", PHONE.user_agent)
        store.save(session_id, signed_in("dave", seen, {"_user": "dave", "n": 1}), ["n"])
        assert [s.meta for s in store.for_user("dave")] == [seen]
        # A write that carries no metadata (the retirement of a rotated id) leaves it.
        store.save(session_id, signed_in("dave", None, {"_user": "dave", "n": 2}), ["n"])
        assert [s.meta for s in store.for_user("dave")] == [seen]
        record = store.load(session_id)
        assert record is not None and record.meta == seen and record.data["n"] == 2

    def test_a_record_without_metadata_lists_empty_metadata(
        self, store: Store, session_id: str
    ) -> None:
        store.create(session_id, signed_in("erin", None))
        [info] = store.for_user("erin")
        assert info.meta == Metadata() and info.created_at is None and info.ip is None

    def test_revoke_deletes_only_a_session_of_that_user(
        self, instrumented: Instrumented, store: Store, trips: RoundTrips
    ) -> None:
        mine, other, theirs = new_session_id(), new_session_id(), new_session_id()
        store.create(mine, signed_in("frank", PHONE))
        store.create(other, signed_in("frank", LAPTOP))
        store.create(theirs, signed_in("grace", LAPTOP))

        trips.reset()
        assert store.revoke("frank", record_id(other)) is True
        assert trips.counts == instrumented.revoke_trips
        assert store.load(other) is None
        # Another user's handle, a revoked one, or junk: nothing happens.
        assert store.revoke("frank", record_id(theirs)) is False
        assert store.revoke("frank", record_id(other)) is False
        assert store.revoke("frank", "not a handle") is False
        assert store.load(theirs) is not None and store.load(mine) is not None
        assert [s.record_id for s in store.for_user("frank")] == [record_id(mine)]

    def test_revoke_others_keeps_only_the_current_session(self, store: Store) -> None:
        sessions = [new_session_id() for _ in range(4)]
        for n, session_id in enumerate(sessions):
            store.create(session_id, signed_in("heidi", Metadata(float(n), float(n))))
        assert store.delete_for_user("heidi", keep=sessions[2]) == 3
        assert [s.record_id for s in store.for_user("heidi", current=sessions[2])] == [
            record_id(sessions[2])
        ]
        assert [store.load(s) is None for s in sessions] == [True, True, False, True]

    def test_async_twins(self, store: Store) -> None:
        a, b = new_session_id(), new_session_id()
        store.create(a, signed_in("ivan", PHONE))
        store.create(b, signed_in("ivan", LAPTOP))
        for backend in event_loops():

            async def work() -> tuple[list[str], bool]:
                listed = await store.afor_user("ivan", current=a)
                return [s.record_id for s in listed if s.current], await store.arevoke(
                    "ivan", record_id(b)
                )

            current, revoked = run_async(backend, work)
            assert current == [record_id(a)]
            assert revoked is (backend == event_loops()[0])
        assert store.load(b) is None
