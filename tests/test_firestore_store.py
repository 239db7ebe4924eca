"""Firestore-specific behaviour, against Google's emulator: URL and options, the document
layout, the expiry guard of save, the exact size rule, bring-your-own clients, async
clients closed with their event loop, provisioning on the emulator, configuration errors,
outages, and the two ways an increment is written."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.cloud import firestore

from cloudsessions import (
    Metadata,
    SessionRecord,
    StoreURL,
    new_session_id,
    open_store,
    record_id,
)
from cloudsessions.errors import (
    ConfigurationError,
    SessionExists,
    SessionGone,
    SessionTooLarge,
    StoreUnavailable,
)
from cloudsessions.metadata import encode as encode_meta
from cloudsessions.store import EncodedRecord
from cloudsessions.stores.firestore import MAX_DOCUMENT_BYTES, FirestoreStore, documents
from cloudsessions.testing.signed_in import PHONE, signed_in
from tests import stores
from tests.backends import firestore as backend
from tests.services._process import HOST, cache_dir, free_port, run_server
from tests.services.firestore_emulator import _says_ok
from tests.stores import HOUR, RoundTrips, expired, live, unique_name


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> str:
    # The suites' shared emulator (started if this module runs first).
    url = stores.store_url("firestore", tmp_path_factory.mktemp("firestore"))
    return StoreURL.parse(url).query["emulator_host"]


fs = stores.instrumented_fixture("firestore")


@pytest.fixture
def raw(host: str, monkeypatch: pytest.MonkeyPatch) -> firestore.Client:
    """A plain SDK client on the emulator, the way an application makes one."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    return firestore.Client(project=backend.PROJECT)


def collection_of(store: Any, raw: firestore.Client) -> firestore.CollectionReference:
    assert isinstance(store, FirestoreStore)
    return raw.collection(*store.path)


# ------------------------------------------------------------------ URL and options


def test_url_names_project_collection_and_options() -> None:
    store = open_store("firestore://my-proj/web/site/sessions?database=sessions-db&timeout=2")
    assert isinstance(store, FirestoreStore)
    assert store.project == "my-proj" and store.database == "sessions-db"
    assert store.path == ("web", "site", "sessions") and store.options.timeout == 2.0
    assert store.options.retry_deadline == 5.0 and store.max_record_bytes == MAX_DOCUMENT_BYTES
    assert "web/site/sessions" in store.describe() and "my-proj" in store.describe()
    default = open_store("firestore://my-proj")
    assert isinstance(default, FirestoreStore)
    assert default.path == ("cloudsessions",) and default.database == "(default)"


@pytest.mark.parametrize(
    ("url", "options", "fragment"),
    [
        ("firestore://p/a/b", {}, "must name a collection"),
        ("firestore://p/__x__", {}, "must name a collection"),
        ("firestore://p/a//b/c", {}, "must name a collection"),
        ("firestore://p/c?colection=x", {}, "unknown option(s) for the firestore store"),
        ("firestore://p/c?timeout=soon", {}, "'timeout' of the firestore store must be"),
        ("firestore://p/c", {"client": object()}, "must be a google.cloud.firestore.Client"),
        ("firestore://p/c", {"collection": "x"}, "must be a google.cloud.firestore.Collection"),
    ],
)
def test_bad_urls_and_options_name_what_to_fix(
    url: str, options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigurationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        open_store(url, **options)


def test_opening_a_store_touches_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens there and no credentials exist: fine until the first call.
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    store = open_store(f"firestore://p/c?emulator_host={HOST}:1")
    assert isinstance(store, FirestoreStore) and store._sync.peek() is None


def test_missing_credentials_say_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
    store = open_store("firestore://p/c")
    with pytest.raises(ConfigurationError) as raised:
        store.load(new_session_id())
    message = str(raised.value)
    for hint in ("GOOGLE_APPLICATION_CREDENTIALS", "gcloud auth application-default login"):
        assert hint in message
    assert "FIRESTORE_EMULATOR_HOST" in message


def test_missing_project_says_what_to_set(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    store = open_store(f"firestore:///c?emulator_host={host}")
    with pytest.raises(ConfigurationError, match="firestore://PROJECT/COLLECTION"):
        store.load(new_session_id())


def test_emulator_host_comes_from_the_environment_too(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", backend.PROJECT)
    store = open_store(f"firestore:///{unique_name()}")
    key = new_session_id()
    store.create(key, live({"a": 1}))
    assert store.load(key).data == {"a": 1}  # type: ignore[union-attr]
    store.drop()
    store.close()


# ----------------------------------------------------------------- signed-in sessions


def test_metadata_is_one_field_and_documents_without_it_have_none(
    fs: stores.Instrumented, raw: firestore.Client
) -> None:
    store, trips = fs.store, fs.trips
    signed, anonymous = new_session_id(), new_session_id()
    store.create(signed, signed_in("7", PHONE))
    store.create(anonymous, live({}))
    ref = collection_of(store, raw).document(record_id(signed))
    doc = ref.get().to_dict()
    assert doc is not None and doc["meta"] == encode_meta(PHONE)
    anonymous_doc = collection_of(store, raw).document(record_id(anonymous)).get().to_dict()
    assert anonymous_doc is not None and "meta" not in anonymous_doc
    # The listing is still one query: it selects the metadata with the expiry.
    trips.reset()
    assert [s.meta for s in store.for_user("7")] == [PHONE]
    assert trips.reads == ["RunQuery"] and trips.writes == []

    # A document written before metadata existed: none, on a load and in a listing.
    ref.update({"meta": firestore.DELETE_FIELD})
    record = store.load(signed)
    assert record is not None and record.meta is None and record.user_id == "7"
    assert [s.meta for s in store.for_user("7")] == [Metadata()]


class _BeforeFirstCommit(list[str]):
    """RoundTrips.writes that runs `action` just before the first Commit is sent (the
    interceptor records a call before making it)."""

    def __init__(self, action: Any) -> None:
        super().__init__()
        self.action = action

    def append(self, name: str) -> None:
        if name == "Commit" and self.action is not None:
            action, self.action = self.action, None
            action()
        super().append(name)


def test_revoke_reads_the_owner_then_deletes_if_unchanged(
    fs: stores.Instrumented, raw: firestore.Client
) -> None:
    store, trips = fs.store, fs.trips
    mine, theirs = new_session_id(), new_session_id()
    store.create(mine, signed_in("7", PHONE))
    store.create(theirs, signed_in("8", PHONE))
    trips.reset()
    assert store.revoke("7", record_id(theirs)) is False
    assert trips.reads == ["BatchGetDocuments"] and trips.writes == []
    assert store.load(theirs) is not None

    # Saved between the read and the delete: the delete's precondition fails, the owner is
    # read again, and the delete goes through.
    ref = collection_of(store, raw).document(record_id(mine))
    trips.reset()
    trips.writes = _BeforeFirstCommit(lambda: ref.update({"d.kn": "1"}))
    assert store.revoke("7", record_id(mine)) is True
    assert trips.counts == (2, 2) and not ref.get().exists

    # Given to another user between the read and the delete: read again, not deleted.
    store.create(mine, signed_in("7", PHONE))
    trips.reset()
    trips.writes = _BeforeFirstCommit(lambda: ref.update({"user_id": "8"}))
    assert store.revoke("7", record_id(mine)) is False
    assert trips.counts == (2, 1) and ref.get().exists

    # Deleted between the read and the delete (a logout): read again, gone.
    ref.update({"user_id": "7"})
    trips.reset()
    trips.writes = _BeforeFirstCommit(ref.delete)
    assert store.revoke("7", record_id(mine)) is False
    assert trips.counts == (2, 1)


def test_document_layout(fs: stores.Instrumented, raw: firestore.Client) -> None:
    store = fs.store
    key = new_session_id()
    expires_at = time.time() + HOUR
    store.create(key, SessionRecord({"b": [1], "a.b": "x"}, expires_at, "42"))
    doc = collection_of(store, raw).document(record_id(key)).get().to_dict()
    assert doc is not None
    assert doc["d"] == {"kb": "[1]", "ka%2Eb": '"x"'}
    assert doc["keys"] == ["kb", "ka%2Eb"]
    assert doc["user_id"] == "42"
    stamp = doc["expires_at"]
    assert isinstance(stamp, datetime) and stamp.tzinfo is not None
    assert stamp.timestamp() == pytest.approx(expires_at, abs=1e-6)
    assert doc["expires_us"] == (stamp - datetime(1970, 1, 1, tzinfo=UTC)) // stamp.resolution

    later = time.time() + 2 * HOUR
    store.save(key, SessionRecord({"c": None, "b": [1]}, later, None), ["c", "a.b"])
    doc = collection_of(store, raw).document(record_id(key)).get().to_dict()
    assert doc is not None
    assert doc["d"] == {"kb": "[1]", "kc": "null"}
    assert doc["keys"] == ["kb", "kc"] and doc["user_id"] is None
    assert doc["expires_us"] == (doc["expires_at"] - datetime(1970, 1, 1, tzinfo=UTC)) // (
        doc["expires_at"].resolution
    )


def test_key_order_survives_concurrent_saves(fs: stores.Instrumented) -> None:
    store = fs.store
    key = new_session_id()
    store.create(key, live({"z": 1, "a": 2}))
    first, second = store.load(key), store.load(key)
    assert first is not None and second is not None
    first.data["m"] = 3
    del first.data["z"]
    second.data["b"] = 4
    store.save(key, first, ["m", "z"])
    store.save(key, second, ["b"])
    record = store.load(key)
    assert record is not None and list(record.data) == ["a", "m", "b"]


# -------------------------------------------------------------------- the expiry guard


def test_save_of_an_expired_session_deletes_it_and_costs_two_writes(
    fs: stores.Instrumented, raw: firestore.Client
) -> None:
    store, trips = fs.store, fs.trips
    key = new_session_id()
    store.create(key, expired({"a": 1}))
    trips.reset()
    with pytest.raises(SessionGone):
        store.save(key, live({"a": 2}), ["a"])
    assert trips.writes == ["Commit", "Commit"] and trips.reads == []
    assert not collection_of(store, raw).document(record_id(key)).get().exists


def test_a_save_that_reaches_an_expired_document_leaves_it_expired(
    fs: stores.Instrumented, raw: firestore.Client
) -> None:
    # The guard alone, as when the clean-up delete after it fails: the commit that
    # store.save sends, applied to an expired document, must not bring it back.
    store = fs.store
    assert isinstance(store, FirestoreStore)
    key = new_session_id()
    rid = record_id(key)
    store.create(key, expired({"a": 1}))
    ref = collection_of(store, raw).document(rid)
    changes = store._prepare_save(key, live({"a": 2}), ["a"])[1]
    writes = documents.save(changes, time.time() + HOUR, None, time.time())
    assert not writes.was_live(writes.batch(raw, ref).commit())
    doc = ref.get().to_dict()
    assert doc is not None and doc["d"] == {"ka": "2"}  # the write happened...
    assert doc["expires_at"] > datetime.now(UTC)  # ...with a future expiry...
    assert store.load(key) is None  # ...and still reads as expired
    assert store._for_user("anyone") == []


def test_a_live_save_keeps_the_guard_equal_to_the_expiry(
    fs: stores.Instrumented, raw: firestore.Client
) -> None:
    store = fs.store
    key = new_session_id()
    store.create(key, live({"a": 1}))
    for seconds in (HOUR, 10.0, 5 * HOUR, 0.5):
        store.save(key, SessionRecord({"a": seconds}, time.time() + seconds), ["a"])
        record = store.load(key)
        assert record is not None and record.data == {"a": seconds}
    doc = collection_of(store, raw).document(record_id(key)).get().to_dict()
    assert doc is not None
    micros = (doc["expires_at"] - datetime(1970, 1, 1, tzinfo=UTC)) // doc["expires_at"].resolution
    assert doc["expires_us"] == micros


# ------------------------------------------------------------ one write per save


def _commits(store: Any) -> list[int]:
    """The writes of each Commit the store sent since the last call (Firestore bills each
    write of a commit), then starts counting afresh."""
    commits: list[int] = store.commits
    sent = list(commits)
    commits.clear()
    return sent


def _server(fs: stores.Instrumented) -> FirestoreStore:
    """Another server on the same collection: a store object of its own (its own memory
    of versions), counted like the fixture's."""
    store = fs.store
    assert isinstance(store, FirestoreStore)
    url = f"firestore://{backend.PROJECT}/{'/'.join(store.path)}"
    return backend.instrument(f"{url}?emulator_host={store._emulator()}", RoundTrips())


def _guard_matches(store: Any, raw: firestore.Client, key: str) -> bool:
    doc = collection_of(store, raw).document(record_id(key)).get().to_dict()
    assert doc is not None
    return bool(doc["expires_us"] == documents.us_of(doc["expires_at"]))


async def test_a_save_of_a_session_loaded_here_is_one_write(
    fs: stores.Instrumented, raw: firestore.Client
) -> None:
    store = fs.store
    key = new_session_id()
    store.create(key, live({"a": 1, "b": 2}))
    record = store.load(key)
    assert record is not None
    _commits(store)
    record.data.update(a=10, c=3)
    store.save(key, record, ["a", "c"])
    # Right after a save (or a create), this process knows the new version too.
    del record.data["b"]
    record.data["d"] = 4
    store.save(key, record, ["b", "d"])
    record.data["e"] = 5
    await store.asave(key, record, ["e"])
    assert store.increment(key, "n", expires_at=time.time() + HOUR) == 1
    assert await store.aincrement(key, "n", expires_at=time.time() + HOUR) == 2
    assert _commits(store) == [1, 1, 1, 1, 1]
    loaded = store.load(key)
    assert loaded is not None and loaded.data == {"a": 10, "c": 3, "d": 4, "e": 5, "n": 2}
    assert list(loaded.data) == ["a", "c", "d", "e", "n"]  # the session's own order
    assert _guard_matches(store, raw, key)
    # A save right after a create, without a load, is one write too.
    other = new_session_id()
    await store.acreate(other, live({"x": 1}))
    await store.asave(other, live({"x": 2}), ["x"])
    assert _commits(store) == [1, 1]
    assert (await store.aload(other)).data == {"x": 2}  # type: ignore[union-attr]


def test_a_save_without_a_known_version_is_the_two_write_commit(
    fs: stores.Instrumented, raw: firestore.Client
) -> None:
    store, other = fs.store, _server(fs)
    key = new_session_id()
    store.create(key, live({"a": 1}))
    # Another server that never read this session: the guarded commit, as before.
    other.save(key, live({"a": 2}), ["a"])
    assert _commits(other) == [2]
    # Its own load makes the next save one write.
    record = other.load(key)
    assert record is not None and record.data == {"a": 2}
    other.save(key, live({"a": 3}), ["a"])
    assert _commits(other) == [1]
    assert _guard_matches(store, raw, key)
    other.close()


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_two_servers_saving_one_session_both_keep_their_change(
    fs: stores.Instrumented, raw: firestore.Client, asynchronous: bool
) -> None:
    store, other = fs.store, _server(fs)
    key = new_session_id()
    store.create(key, live({"a": 1}))
    mine, theirs = store.load(key), other.load(key)
    assert mine is not None and theirs is not None
    _commits(store)
    mine.data["m"] = 1
    theirs.data["t"] = 2
    del theirs.data["a"]
    if asynchronous:
        await other.asave(key, theirs, ["t", "a"])
        await store.asave(key, mine, ["m"])
    else:
        other.save(key, theirs, ["t", "a"])
        store.save(key, mine, ["m"])
    # The first is one write; the second finds the document changed since its load: the
    # conditional write is refused (nothing written) and the guarded commit merges.
    assert _commits(other) == [1]
    assert _commits(store) == [1, 2]
    loaded = store.load(key)
    assert loaded is not None and loaded.data == {"t": 2, "m": 1}
    assert list(loaded.data) == ["t", "m"]
    assert _guard_matches(store, raw, key)
    other.close()


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_a_session_deleted_or_expired_after_its_load_is_never_saved_back(
    fs: stores.Instrumented, raw: firestore.Client, asynchronous: bool
) -> None:
    store = fs.store
    deleted, ended, lapsed = new_session_id(), new_session_id(), new_session_id()
    for key in (deleted, ended):
        store.create(key, live({"a": 1}))
    store.create(lapsed, SessionRecord({"a": 1}, time.time() + 0.5))
    records = {key: store.load(key) for key in (deleted, ended, lapsed)}
    assert all(records.values())
    collection = collection_of(store, raw)
    collection.document(record_id(deleted)).delete()  # a logout on another server
    # Expired by another server (a rotation retires the old id so): a guarded commit.
    changes = store._prepare_save(ended, live({}), [])[1]
    past = time.time() - 1
    documents.save(changes, past, None, time.time()).batch(
        raw, collection.document(record_id(ended))
    ).commit()
    time.sleep(0.6)  # `lapsed` expires on its own
    for key, record in records.items():
        assert record is not None
        record.data["a"] = 2
        with pytest.raises(SessionGone):
            if asynchronous:
                await store.asave(key, record, ["a"])
            else:
                store.save(key, record, ["a"])
        assert store.load(key) is None
        assert not collection.document(record_id(key)).get().exists
        # Nor an increment.
        with pytest.raises(SessionGone):
            store.increment(key, "n", expires_at=time.time() + HOUR)
        assert not collection.document(record_id(key)).get().exists


async def test_concurrent_increments_from_two_servers_lose_no_count(
    fs: stores.Instrumented,
) -> None:
    store, other = fs.store, _server(fs)
    key = new_session_id()
    store.create(key, live({}))
    assert store.load(key) is not None and other.load(key) is not None

    def bump(server: Any, times: int) -> None:
        for _ in range(times):
            server.increment(key, "n", expires_at=time.time() + HOUR)

    threads = [threading.Thread(target=bump, args=(s, 15)) for s in (store, other)]
    for thread in threads:
        thread.start()
    await asyncio.gather(
        *(other.aincrement(key, "n", expires_at=time.time() + HOUR) for _ in range(5))
    )
    for thread in threads:
        thread.join()
    record = store.load(key)
    assert record is not None and record.data == {"n": 35}
    other.close()


def test_documents_of_either_write_are_read_and_saved_by_both(
    fs: stores.Instrumented, raw: firestore.Client
) -> None:
    # A deploy runs servers of both kinds at once: the old one sends the guarded commit
    # only (documents.save), the new one a single write where it can. Same layout.
    store = fs.store
    key = new_session_id()
    ref = collection_of(store, raw).document(record_id(key))
    store.create(key, live({"a": 1}))
    record = store.load(key)
    assert record is not None
    # The old server saves it (its commit is the guarded one, whatever it loaded)...
    old = store._prepare_save(key, live({"b": 2}), ["b"])[1]
    guard = documents.save(old, time.time() + HOUR, None, time.time())
    assert guard.was_live(guard.batch(raw, ref).commit())
    # ...then the new one, from its older load: refused, then merged by the guarded commit.
    record.data["c"] = 3
    store.save(key, record, ["c"])
    assert _commits(store)[-1:] == [2]
    # The new one's single write, then the old one's guarded commit on top of it.
    record = store.load(key)
    assert record is not None and record.data == {"a": 1, "b": 2, "c": 3}
    record.data["d"] = 4
    store.save(key, record, ["d"])
    assert _commits(store)[-1:] == [1]
    old = store._prepare_save(key, live({"e": 5}), ["e"])[1]
    guard = documents.save(old, time.time() + HOUR, None, time.time())
    assert guard.was_live(guard.batch(raw, ref).commit())
    record = store.load(key)
    assert record is not None and record.data == {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
    assert list(record.data) == ["a", "b", "c", "d", "e"]
    assert _guard_matches(store, raw, key)


def test_the_memory_of_versions_is_bounded_and_keeps_the_newest() -> None:
    versions = documents.Versions(capacity=2)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 2, tzinfo=UTC)
    versions.put("a", documents.Version(t1, 2, ("kx",)))
    versions.put("a", documents.Version(t0, 1, ()))  # a load answered after a later write
    assert versions.get("a") == documents.Version(t1, 2, ("kx",))
    versions.put("b", documents.Version(t0, 1, ()))
    versions.put("c", documents.Version(t0, 1, ()))
    assert versions.get("a") is None and len(versions) == 2  # the oldest went
    versions.forget("b")
    versions.put("c", None)
    assert len(versions) == 0


# ---------------------------------------------------------------------- size rule


def _record_of_size(store: FirestoreStore, size: int) -> EncodedRecord:
    meta = encode_meta(PHONE)  # the metadata counts too
    record = EncodedRecord({"kblob": '""'}, time.time() + HOUR, "7", meta=meta)
    filler = size - store.record_size(record)
    return EncodedRecord({"kblob": '"' + "x" * filler + '"'}, record.expires_at, "7", meta=meta)


def test_size_rule_is_firestores_own(fs: stores.Instrumented, raw: firestore.Client) -> None:
    store = fs.store
    assert isinstance(store, FirestoreStore)
    at_limit = _record_of_size(store, MAX_DOCUMENT_BYTES)
    over = _record_of_size(store, MAX_DOCUMENT_BYTES + 1)
    assert store.record_size(at_limit) == MAX_DOCUMENT_BYTES
    # Firestore takes the largest document the rule allows...
    rid = record_id(new_session_id())
    store._create(rid, at_limit)
    loaded = store._load(rid)
    assert loaded is not None and loaded.fields == at_limit.fields and loaded.meta == at_limit.meta
    # ...and refuses one byte more: the rule is exact, not just cautious.
    with pytest.raises(Exception, match="maximum entity size"):
        collection_of(store, raw).document(record_id(new_session_id())).create(
            documents.document(over)
        )


def test_a_small_limit_can_be_set(host: str) -> None:
    store = open_store(f"firestore://{backend.PROJECT}/c?max_record_bytes=1000")
    assert store.max_record_bytes == 1000
    with pytest.raises(SessionTooLarge):
        store.create(new_session_id(), live({"blob": "x" * 1000}))


# ---------------------------------------------------------------- bring your own client


def test_an_existing_collection_reference_is_used_as_is(raw: firestore.Client) -> None:
    collection = raw.collection(unique_name("byo"))
    store = open_store("firestore://", collection=collection)
    key = new_session_id()
    store.create(key, live({"a": 1}, user_id="u"))
    assert collection.document(record_id(key)).get().exists
    assert [s.record_id for s in store.for_user("u")] == [record_id(key)]
    store.drop()
    assert list(collection.limit(1).stream()) == []
    store.close()
    assert collection.document("x").get().exists is False  # the app's client still works


def test_an_existing_client_with_a_collection_from_the_url(raw: firestore.Client) -> None:
    name = unique_name("byo")
    store = open_store(f"firestore://{backend.PROJECT}/{name}", client=raw)
    key = new_session_id()
    store.create(key, live({"a": 1}))
    assert raw.collection(name).document(record_id(key)).get().exists

    async def twins() -> None:
        record = await store.aload(key)
        assert record is not None and record.data == {"a": 1}
        with pytest.raises(SessionExists):
            await store.acreate(key, live({}))

    asyncio.run(twins())
    store.drop()
    with pytest.raises(ConfigurationError, match="project"):
        open_store(f"firestore://other-project/{name}", client=raw)
    with pytest.raises(ConfigurationError, match="'collection' option"):
        open_store(f"firestore://{backend.PROJECT}/x", collection=raw.collection(name))


# ------------------------------------------------------------------------- clients


def test_one_client_per_process_made_once_under_concurrency(tmp_path: Path, host: str) -> None:
    inst = stores.open_instrumented("firestore", tmp_path)
    made: list[bool] = []
    store = inst.store
    assert isinstance(store, FirestoreStore)
    original = store._new_client

    def counting(asynchronous: bool) -> Any:
        made.append(asynchronous)
        time.sleep(0.05)  # widen the race a lazy init without a lock would lose
        return original(asynchronous)

    store._new_client = counting  # type: ignore[method-assign]
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        store.load(new_session_id())

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert made == [False]
    assert inst.trips.counts == (8, 0)
    store.close()


def _channel_closed(client: Any) -> bool:
    state = client._firestore_api.transport.grpc_channel.get_state()
    return bool(state == grpc.ChannelConnectivity.SHUTDOWN)


def test_each_event_loop_has_its_own_async_client_closed_with_it(fs: stores.Instrumented) -> None:
    store = fs.store
    assert isinstance(store, FirestoreStore)
    key = new_session_id()
    store.create(key, live({"a": 1}))

    async def twice() -> Any:
        assert await store.aload(key) is not None and await store.aload(key) is not None
        return await store._async.get()

    # grpc.aio channels belong to one loop: a client shared across loops would fail here.
    first, second = asyncio.run(twice()), asyncio.run(twice())
    assert first is not second and fs.trips.reads.count("BatchGetDocuments") == 4
    assert _channel_closed(first) and _channel_closed(second), "closed at loop shutdown"

    async def closed_by_aclose() -> bool:
        client = await twice()
        await store.aclose()
        return _channel_closed(client) and await store._async.get() is not client

    assert asyncio.run(closed_by_aclose())
    loop = asyncio.new_event_loop()  # still open when close() comes, from sync code
    client = loop.run_until_complete(twice())
    store.close()
    assert _channel_closed(client)
    loop.close()


# ------------------------------------------------------------------- operations


def test_provision_check_and_drop_on_the_emulator(
    fs: stores.Instrumented, caplog: pytest.LogCaptureFixture
) -> None:
    store = fs.store
    assert store.provision() == []
    assert "emulator has no TTL" in caplog.text
    for n in range(7):
        store.create(new_session_id(), live({"n": n}) if n < 4 else expired({"n": n}))
    results = {r.name: r for r in store.check()}
    assert all(r.ok for r in results.values()), results
    assert results["sessions"].detail == "7 stored, 3 expired"
    assert "emulator" in results["ttl policy"].detail
    seen: list[int] = []
    assert isinstance(store, FirestoreStore)
    store.drop(progress=seen.append)
    assert seen == [7]
    assert {r.name: r.detail for r in store.check()}["sessions"] == "0 stored, 0 expired"


def test_check_reports_an_unreachable_store(host: str) -> None:
    store = open_store(f"firestore://p/c?emulator_host={HOST}:{free_port()}&retry_deadline=0.5")
    (result,) = store.check()
    assert result.name == "collection" and not result.ok
    assert "could not check the collection" in result.detail


def test_purge_deletes_page_by_page(fs: stores.Instrumented) -> None:
    store, trips = fs.store, fs.trips
    for _ in range(5):
        store.create(new_session_id(), expired({}))
    trips.reset()
    assert store.purge_expired(batch_size=2) == 5
    # A query and a batch delete per page; the short last page ends it.
    assert trips.reads == ["RunQuery"] * 3 and trips.writes == ["Commit"] * 3


def test_purge_keeps_a_session_written_between_its_query_and_its_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Firestore's purge reads a page, then commits its deletes: a save may land between.

    The window is one round trip, so here the save is made to land in it: right after the
    query returns the page. The page's commit, conditioned on each document's update time,
    is refused; its documents then go one by one, and the refreshed ones stay.
    """
    from google.cloud.firestore_v1.query import Query

    store = open_store(stores.store_url("firestore", tmp_path))
    try:
        now = time.time()
        for _ in range(30):
            store.create(new_session_id(), SessionRecord({}, now - 60))
        edge = [new_session_id() for _ in range(5)]
        for key in edge:
            store.create(key, SessionRecord({"v": 0}, now + 30, "u"))
        stream = Query.stream

        def stream_then_save(self: Query, *args: object, **kwargs: object) -> Iterator[object]:
            page = list(stream(self, *args, **kwargs))
            if page and edge[0] not in refreshed:
                for key in edge:
                    store.save(key, SessionRecord({"v": 1}, time.time() + HOUR, "u"), ["v"])
                    refreshed.append(key)
            return iter(page)

        refreshed: list[str] = []
        monkeypatch.setattr(Query, "stream", stream_then_save)
        removed = store._purge_expired(now + 60, 100, None)
        monkeypatch.undo()

        assert refreshed == edge
        assert removed == 30
        for key in edge:
            loaded = store.load(key)
            assert loaded is not None and loaded.data == {"v": 1}
    finally:
        store.drop()
        store.close()


# ---------------------------------------------------------------------- outages


def _silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and then never says a word."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_a_store_that_does_not_answer_gives_unavailable_within_the_bound() -> None:
    with contextlib.contextmanager(_silent_server)() as port:
        store = open_store(
            f"firestore://p/c?emulator_host={HOST}:{port}&timeout=0.5&retry_deadline=1"
        )
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            store.load(new_session_id())
        elapsed = time.monotonic() - started
        store.close()
    assert elapsed < 1 + 0.5 + 1.0
    assert raised.value.__cause__ is not None
    assert "could not load a session" in str(raised.value)


@contextlib.contextmanager
def _emulator_on(port: int) -> Iterator[str]:
    # The shared launcher picks its own port; this test needs the same one twice.
    host = f"{HOST}:{port}"
    env = dict(os.environ)
    env["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
    env.setdefault("CLOUDSDK_CONFIG", str(cache_dir() / "gcloud-config"))
    gcloud = shutil.which("gcloud") or "/usr/bin/gcloud"
    argv = [gcloud, "emulators", "firestore", "start", f"--host-port={host}"]
    ready = lambda: _says_ok(f"http://{host}/")  # noqa: E731
    with run_server("firestore-emulator-outage", argv, port, env=env, ready=ready):
        backend.warm_up(host)
        yield host


async def test_outage_then_recovery_on_a_dedicated_emulator() -> None:
    port = free_port()
    timeout, deadline = 1.0, 2.0
    store = open_store(
        f"firestore://{backend.PROJECT}/outage?emulator_host={HOST}:{port}"
        f"&timeout={timeout}&retry_deadline={deadline}"
    )
    key = new_session_id()
    with _emulator_on(port):
        store.create(key, live({"a": 1}))
        assert (await store.aload(key)) is not None

    for call in (lambda: store.load(key), lambda: store.save(key, live({"a": 2}), ["a"])):
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            call()
        assert time.monotonic() - started < deadline + timeout + 1.0
        assert raised.value.__cause__ is not None
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.aload(key)
    assert time.monotonic() - started < deadline + timeout + 1.0

    with _emulator_on(port):
        # The emulator keeps nothing across restarts: the same objects simply work again.
        assert store.load(key) is None
        store.create(key, live({"b": 2}))
        record = await store.aload(key)
        assert record is not None and record.data == {"b": 2}
    store.close()


def test_instrumentation_counts_each_attempt_on_the_wire(host: str) -> None:
    # Retries are real RPCs: against a port with nothing behind it, several are counted.
    trips = RoundTrips()
    url = f"firestore://p/c?emulator_host={HOST}:{free_port()}&retry_deadline=1"
    store = backend.instrument(url, trips)
    with pytest.raises(StoreUnavailable):
        store.load(new_session_id())
    assert len(trips.reads) > 1 and trips.writes == []


# ---------------------------------------------------------------------- counters


async def test_an_increment_is_a_transform_or_a_read_then_a_conditional_write(
    fs: stores.Instrumented,
) -> None:
    store, trips = fs.store, fs.trips
    key = new_session_id()
    store.create(key, live({"views": "not a number", "a": 1}))
    trips.reset()
    # Firestore's increment transform starts JSON text (or nothing) from 0: base 0.
    assert store.increment(key, "views", expires_at=time.time() + HOUR) == 1
    assert await store.aincrement(key, "views", expires_at=time.time() + HOUR) == 2
    assert trips.counts == (0, 2)
    # A plain integer becomes a counter from its value (base): read, then write if unchanged.
    store.save(key, live({"views": 10, "a": 1}), ["views"])
    trips.reset()
    assert store.increment(key, "views", expires_at=time.time() + HOUR, base=10) == 11
    assert trips.reads == ["BatchGetDocuments"] and trips.writes == ["Commit"]
    store.save(key, live({"views": 20, "a": 1}), ["views"])
    trips.reset()
    assert await store.aincrement(key, "views", expires_at=time.time() + HOUR, base=20) == 21
    assert trips.reads == ["BatchGetDocuments"] and trips.writes == ["Commit"]
    assert store.load(key).data == {"views": 21, "a": 1}  # type: ignore[union-attr]


async def test_the_read_then_write_increment_of_an_expired_or_deleted_session_is_gone(
    fs: stores.Instrumented,
) -> None:
    store = fs.store
    old, gone = new_session_id(), new_session_id()
    store.create(old, expired({"n": 2}))
    for key in (old, gone):
        with pytest.raises(SessionGone):
            store.increment(key, "n", expires_at=time.time() + HOUR, base=2)
        with pytest.raises(SessionGone):
            await store.aincrement(key, "n", expires_at=time.time() + HOUR, base=2)
        assert store.load(key) is None
