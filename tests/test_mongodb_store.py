"""What the MongoDB store does beyond the shared contract.

Runs against SecantusDB, or the real MongoDB named by MONGODB_URI (see tests/backends/
mongodb.py). The outage tests always start a dedicated SecantusDB they can stop and pause.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import bson
import pytest
from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from cloudsessions import (
    ConfigurationError,
    SessionRecord,
    SessionTooLarge,
    StoreUnavailable,
    new_session_id,
    open_store,
    record_id,
)
from cloudsessions.metadata import encode as encode_meta
from cloudsessions.record import EncodedRecord, Metadata
from cloudsessions.stores.mongodb import CLIENT_DEFAULTS, MongoDBStore
from cloudsessions.stores.mongodb.admin import ENDED_DOCUMENTS_STAY
from cloudsessions.stores.mongodb.requests import document, utc
from cloudsessions.testing.signed_in import LAPTOP, PHONE
from tests import stores
from tests.backends import mongodb as backend
from tests.services._process import HOST, free_port
from tests.services.secantus import dedicated_secantus
from tests.stores import live

# How long the server's TTL monitor may take: SecantusDB here sweeps every second,
# mongod every 60 s.
TTL_DEADLINE = 130.0 if backend.real_uri() else 10.0

APP_CLIENT: Any = None  # set by the bring-your-own-client tests, imported by dotted path
APP_DATABASE: Any = None


inst = stores.instrumented_fixture("mongodb")


@pytest.fixture
def server(tmp_path: Path) -> str:
    """mongodb://HOST:PORT of the server under test (credentials and options kept)."""
    stores.store_url("mongodb", tmp_path)  # starts it once per test process
    return backend.server_uri(stores.services())


@pytest.fixture
def raw_client(server: str) -> Iterator[MongoClient[dict[str, Any]]]:
    client: MongoClient[dict[str, Any]] = MongoClient(server, tz_aware=True)
    with client:
        yield client


def raw_collection(client: MongoClient[dict[str, Any]], url: str) -> Collection[dict[str, Any]]:
    parts = urlsplit(url)
    return client[parts.path.strip("/")][dict(parse_qsl(parts.query))["collection"]]


def indexes(coll: Collection[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {ix["name"]: dict(ix) for ix in coll.list_indexes()}


def wait_until(condition: Any, deadline: float, what: str) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"{what} did not happen within {deadline} s")
        time.sleep(0.1)


# --------------------------------------------------------------------- URLs and options


def test_url_names_database_collection_and_keeps_pymongo_options() -> None:
    store = open_store(
        "mongodb://user:secret@db1:27017,db2:27018/app?replicaSet=rs0&collection=web"
        "&readPreferenceTags=dc:ny&readPreferenceTags=&max_record_bytes=1000"
    )
    assert isinstance(store, MongoDBStore)
    assert (store.database_name, store.collection_name) == ("app", "web")
    assert store.max_record_bytes == 1000
    # Our options are gone from what PyMongo parses; its own (repeated ones too) stay as given.
    assert store.uri == (
        "mongodb://user:secret@db1:27017,db2:27018/app?replicaSet=rs0"
        "&readPreferenceTags=dc:ny&readPreferenceTags="
    )
    assert "secret" not in store.describe()
    assert store.describe() == "mongodb collection app.web at mongodb://db1:27017,db2:27018"


def test_bounded_timeouts_and_majority_writes_by_default() -> None:
    store = open_store("mongodb://127.0.0.1:1/x")
    assert isinstance(store, MongoDBStore)
    for name, value in CLIENT_DEFAULTS.items():
        assert store._client_options[name] == value
    assert store._client_options["serverSelectionTimeoutMS"] <= 5000
    assert store._client_options["socketTimeoutMS"] <= 10000
    assert (store.database_name, store.collection_name) == ("x", "cloudsessions")


def test_settings_in_the_url_or_options_win_over_the_defaults() -> None:
    store = open_store(
        "mongodb://h/x?w=1&sockettimeoutms=250", serverSelectionTimeoutMS=700, appname="shop"
    )
    assert isinstance(store, MongoDBStore)
    opts = store._client_options
    # From the URL: left to PyMongo's URI parser, not overridden by a default.
    assert "w" not in opts and "socketTimeoutMS" not in opts
    assert opts["serverSelectionTimeoutMS"] == 700 and opts["appname"] == "shop"
    assert opts["connectTimeoutMS"] == CLIENT_DEFAULTS["connectTimeoutMS"]
    client = MongoClient(store.uri, **opts)  # connect is lazy: no server needed
    with client:
        assert client.write_concern.document == {"w": 1}
        assert client.options.pool_options.socket_timeout == 0.25


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("mongodb://h/x?colection=s", {}, "colection"),
        ("mongodb://h/x", {"serverSelectionTimeout": 5}, "serverSelectionTimeout"),
        ("mongodb://h/x?w=0", {}, "acknowledged"),
        ("mongodb://h/x", {"w": 0}, "acknowledged"),
        ("mongodb:///x?collection=s", {}, "names no host"),
        ("mongodb://h/x", {"client": "app.db.client"}, "give one"),
        ("mongodb://h/bad.name", {}, "database name"),
        ("mongodb://h/x?collection=a$b", {}, "collection name"),
        ("mongodb://h/x?collection=system.views", {}, "collection name"),
        ("mongodb://h/x?socketTimeoutMS=soon", {}, "socketTimeoutMS"),
        ("mongodb:///x", {"client": 42}, "must be a name, a dotted path or a pymongo"),
        ("mongodb://h/x?max_record_bytes=-1", {}, "max_record_bytes"),
    ],
)
def test_configuration_errors_name_the_setting(
    url: str, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_store(url, **options)


def test_opening_a_store_touches_no_network() -> None:
    # An SRV URL needs a DNS lookup and port 1 refuses connections: neither is tried
    # before the first session call (the SRV lookup is not tried here at all: no DNS).
    started = time.monotonic()
    srv = open_store("mongodb+srv://sessions.example.invalid/app?collection=s")
    down = open_store("mongodb://127.0.0.1:1/app", serverSelectionTimeoutMS=300)
    assert time.monotonic() - started < 0.5
    assert srv.describe() == "mongodb collection app.s at mongodb+srv://sessions.example.invalid"
    with pytest.raises(StoreUnavailable) as raised:
        down.load(new_session_id())
    assert isinstance(raised.value.__cause__, PyMongoError)
    down.close()


# -------------------------------------------------------------------------- layout


def test_document_layout(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    key, anon = new_session_id(), new_session_id()
    expires = time.time() + 100
    store.create(key, SessionRecord({"a.b": 1, "$x": [1.5]}, expires, "42"))
    store.create(anon, SessionRecord({}, expires))
    doc = coll.find_one({"_id": record_id(key)})
    assert doc is not None
    assert doc["d"] == {"ka%2Eb": "1", "k%24x": "[1.5]"}
    assert doc["user_id"] == "42"
    assert abs(doc["expires_at"].timestamp() - expires) < 0.002
    assert "user_id" not in coll.find_one({"_id": record_id(anon)})  # type: ignore[operator]
    assert coll.find_one({"_id": key}) is None  # the session id itself is never stored

    # save changes single keys in place; logging out removes user_id
    store.save(key, SessionRecord({"$x": [1.5], "new": "v"}, expires), ["a.b", "new"])
    doc = coll.find_one({"_id": record_id(key)})
    assert doc is not None
    assert doc["d"] == {"k%24x": "[1.5]", "knew": '"v"'}
    assert "user_id" not in doc


def test_metadata_is_one_more_field_kept_by_saves_without_it(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    key, anon = new_session_id(), new_session_id()
    expires = time.time() + 100
    store.create(key, SessionRecord({"a": 1}, expires, "42", meta=PHONE))
    store.create(anon, SessionRecord({}, expires))
    doc = coll.find_one({"_id": record_id(key)})
    assert doc is not None and doc["meta"] == encode_meta(PHONE)
    assert "meta" not in coll.find_one({"_id": record_id(anon)})  # type: ignore[operator]
    store.save(key, SessionRecord({"a": 2}, expires, "42", meta=LAPTOP), ["a"])
    store.save(key, SessionRecord({"a": 3}, expires, "42"), ["a"])  # no metadata: kept
    doc = coll.find_one({"_id": record_id(key)})
    assert doc is not None and doc["meta"] == encode_meta(LAPTOP) and doc["d"] == {"ka": "3"}


def test_a_document_written_before_metadata_loads_and_lists_without_it(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    key = new_session_id()
    expires = time.time() + 100
    coll.insert_one(
        {"_id": record_id(key), "d": {"ka": "1"}, "expires_at": utc(expires), "user_id": "old"}
    )
    record = store.load(key)
    assert record is not None and record.meta is None and record.data == {"a": 1}
    [info] = store.for_user("old")
    assert info.meta == Metadata()
    store.save(key, SessionRecord({"a": 2}, expires, "old", meta=PHONE), ["a"])
    assert [s.meta for s in store.for_user("old")] == [PHONE]


def test_revoke_is_one_delete_naming_the_user(inst: stores.Instrumented) -> None:
    store, trips = inst.store, inst.trips
    mine, theirs = new_session_id(), new_session_id()
    store.create(mine, live({}, user_id="u1"))
    store.create(theirs, live({}, user_id="u2"))
    trips.reset()
    assert store.revoke("u1", record_id(theirs)) is False
    assert store.revoke("u1", record_id(mine)) is True
    assert trips.reads == [] and trips.writes == ["delete", "delete"]
    assert store.load(mine) is None and store.load(theirs) is not None


def test_user_operations_are_one_command_each(inst: stores.Instrumented) -> None:
    store, trips = inst.store, inst.trips
    keys = [new_session_id() for _ in range(3)]
    for key in keys:
        store.create(key, live({}, user_id="u1"))
    trips.reset()
    assert store.delete_for_user("u1", keep=keys[0]) == 2
    assert trips.reads == ["find"] and trips.writes == ["delete"]
    trips.reset()
    assert [s.record_id for s in store.for_user("u1")] == [record_id(keys[0])]
    assert trips.reads == ["find"]


def test_purge_deletes_in_batches_of_ids(inst: stores.Instrumented) -> None:
    store, trips = inst.store, inst.trips
    for _ in range(5):
        store.create(new_session_id(), SessionRecord({}, time.time() - 5))
    trips.reset()
    assert store.purge_expired(batch_size=2) == 5
    # three batches found and deleted, then one find that finds nothing
    assert trips.reads == ["find"] * 4 and trips.writes == ["delete"] * 3


def test_increment_is_one_find_and_modify_and_keeps_a_native_integer(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, trips, coll = inst.store, inst.trips, raw_collection(raw_client, inst.url)
    key = new_session_id()
    store.create(key, live({"views": 10, "other": "x"}))
    trips.reset()
    expires = time.time() + 50
    assert store.increment(key, "views", 1, expires_at=expires, base=10) == 11
    assert trips.reads == [] and trips.writes == ["findAndModify"]
    assert store.increment(key, "new", expires_at=expires) == 1
    doc = coll.find_one({"_id": record_id(key)})
    assert doc is not None
    assert doc["d"] == {"kviews": 11, "kother": '"x"', "knew": 1}
    assert abs(doc["expires_at"].timestamp() - expires) < 0.002


async def test_async_calls_on_python_3_11_run_the_sync_client_in_threads(
    inst: stores.Instrumented,
) -> None:
    """Python 3.11's asyncio.wait_for can leave PyMongo's async pool lock held for good
    when a waiting call is cancelled (see MongoDBStore.native_async): there, no async client
    is made, and the async calls run the process's sync client in worker threads."""
    store = inst.store
    assert isinstance(store, MongoDBStore)
    key = new_session_id()
    await store.acreate(key, live({"a": 1}))
    assert (await store.aload(key)).data == {"a": 1}  # type: ignore[union-attr]
    assert bool(store._async._slots) is (sys.version_info >= (3, 12)), "an async client"
    await store.aclose()


async def test_async_calls_use_one_native_client_per_loop(inst: stores.Instrumented) -> None:
    """The native client the async calls use on Python 3.12+: one per event loop, closed
    with it. The test asks for it itself, so it runs on Python 3.11 too."""
    store = inst.store
    assert isinstance(store, MongoDBStore)
    key, signed = new_session_id(), new_session_id()
    await store.acreate(key, live({"a": 1}))
    coll = await store._async.get()
    client = coll.database.client
    assert type(client).__name__ == "AsyncMongoClient"
    assert (await store.aload(key)).data == {"a": 1}  # type: ignore[union-attr]
    assert await store._async.get() is coll  # reused, not one per call
    # The async twins carry the metadata as the sync ones do.
    await store.acreate(signed, SessionRecord({"b": 1}, time.time() + 100, "u", meta=PHONE))
    await store.asave(signed, SessionRecord({"b": 2}, time.time() + 100, "u"), ["b"])
    assert (await store.aload(signed)).meta == PHONE  # type: ignore[union-attr]

    def other_loop() -> Any:
        async def load() -> Any:
            await store.aload(key)
            return await store._async.get()

        return asyncio.run(load())

    other = await asyncio.to_thread(other_loop)
    assert other is not coll
    # asyncio.run closed that loop, and its client went with it.
    assert other.database.client._closed and not client._closed
    await store.aclose()
    assert client._closed
    assert (await store.aload(key)).data == {"a": 1}  # type: ignore[union-attr]


# -------------------------------------------------------------------------- size


@pytest.mark.parametrize(
    "record",
    [
        EncodedRecord({}, 0.0),
        EncodedRecord({"ka": '"x"', "kb": "[1,2]"}, time.time(), "42"),
        EncodedRecord({"k%C3%A4": '"ключ 😀"'}, time.time(), "ユーザー"),
        EncodedRecord({"ka": "1"}, time.time(), None, {"kn": 1, "kbig": 2**40, "kneg": -(2**31)}),
        EncodedRecord({"ka": "1"}, time.time(), "42", meta=encode_meta(LAPTOP)),
    ],
)
def test_record_size_is_the_bson_size_of_the_document(record: EncodedRecord) -> None:
    store = open_store("mongodb://h/x")
    doc = document(record_id(new_session_id()), record)
    assert store.record_size(record) == len(bson.encode(doc))


def test_a_session_of_exactly_16_mib_is_stored_and_one_byte_more_is_refused(
    inst: stores.Instrumented,
) -> None:
    store, trips = inst.store, inst.trips
    limit = 16 * 1024 * 1024
    assert store.max_record_bytes == limit
    key = new_session_id()
    store.create(key, live({"small": 1}, user_id="7"))
    empty = store.record_size(EncodedRecord({"kblob": '""'}, 0.0, "7"))
    fits = {"blob": "x" * (limit - empty)}
    trips.reset()
    with pytest.raises(SessionTooLarge):
        store.save(key, live({"small": 1, "blob": fits["blob"] + "x"}, "7"), ["blob"])
    assert trips.counts == (0, 0)
    assert store.load(key).data == {"small": 1}  # type: ignore[union-attr]
    big = new_session_id()
    store.create(big, live(fits, user_id="7"))  # exactly 16 MiB of BSON: the server takes it
    assert store.load(big).data == fits  # type: ignore[union-attr]


# -------------------------------------------------------------------- provisioning


def test_provision_creates_indexes_once_and_check_reports_them(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    first = store.provision()
    assert any("created index expires_at_ttl" in line for line in first)
    assert any("created index user_id" in line for line in first)
    found = indexes(coll)
    assert found["expires_at_ttl"]["key"] == {"expires_at": 1}
    assert int(found["expires_at_ttl"]["expireAfterSeconds"]) == 60
    assert found["user_id"]["key"] == {"user_id": 1} and found["user_id"]["sparse"] is True
    assert store.provision() == []

    results = {(r.name, r.detail.split(" ")[0]): r for r in store.check()}
    assert all(r.ok for r in results.values()), results
    server = next(r for r in store.check() if r.name == "server")
    assert server.detail.startswith("MongoDB ") and server.detail.split()[1][0].isdigit()
    assert ("index", "expires_at_ttl") in results and ("index", "user_id") in results
    assert results[("write concern", "{'w':")].detail == "{'w': 'majority'}"


def test_check_of_a_store_never_provisioned_says_to_run_init(inst: stores.Instrumented) -> None:
    results = inst.store.check()
    assert results[0].name == "server" and results[0].ok
    assert [(r.name, r.ok) for r in results[1:]] == [("collection", False)]
    assert "cloudsessions init" in results[1].detail


def test_a_conflicting_ttl_index_is_reported_and_changed_only_with_fix(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    coll.create_index("expires_at", name="expires_at_ttl", expireAfterSeconds=3600)
    with pytest.raises(ConfigurationError, match="expireAfterSeconds=3600") as raised:
        store.provision()
    assert "--fix" in str(raised.value)
    assert int(indexes(coll)["expires_at_ttl"]["expireAfterSeconds"]) == 3600  # untouched
    assert "user_id" in indexes(coll)  # what had no conflict was still made
    assert not all(r.ok for r in store.check())

    assert isinstance(store, MongoDBStore)
    done = store.provision(fix=True)
    assert done == [
        "changed index expires_at_ttl on {expires_at: 1} (expireAfterSeconds=3600)"
        " to expires_at_ttl on expires_at (expireAfterSeconds=60)"
    ]
    assert int(indexes(coll)["expires_at_ttl"]["expireAfterSeconds"]) == 60
    assert store.provision() == []
    assert all(r.ok for r in store.check())


def test_a_ttl_index_of_an_earlier_release_is_kept_and_changed_with_fix(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    """expireAfterSeconds=0 (releases before the retried-retirement fix) still works: the
    store accepts it as it is, and --fix gives it the minute a retried save needs."""
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    coll.create_index("expires_at", name="expires_at_ttl", expireAfterSeconds=0)
    assert store.provision() == [
        f"created index user_id on user_id (sparse=True) in {coll.full_name}"
    ]
    assert all(r.ok for r in store.check())
    assert int(indexes(coll)["expires_at_ttl"]["expireAfterSeconds"]) == 0
    assert isinstance(store, MongoDBStore)
    assert store.provision(fix=True) == [
        "changed index expires_at_ttl on {expires_at: 1} (expireAfterSeconds=0)"
        " to expires_at_ttl on expires_at (expireAfterSeconds=60)"
    ]
    assert int(indexes(coll)["expires_at_ttl"]["expireAfterSeconds"]) == 60


def test_a_conflicting_user_index_is_rebuilt_with_fix_and_same_key_indexes_are_kept(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    assert isinstance(store, MongoDBStore)
    coll.create_index("user_id", name="user_id")  # not sparse
    coll.create_index("expires_at", name="by_expiry", expireAfterSeconds=60)  # ours, renamed
    key = new_session_id()
    store.create(key, live({"a": 1}, user_id="u"))
    with pytest.raises(ConfigurationError, match="user_id"):
        store.provision()
    assert store.provision(fix=True) == [
        "replaced index user_id on {user_id: 1} (no options) by user_id on user_id (sparse=True)"
    ]
    assert set(indexes(coll)) == {"_id_", "user_id", "by_expiry"}
    assert indexes(coll)["user_id"]["sparse"] is True
    assert store.load(key).data == {"a": 1}  # type: ignore[union-attr]
    assert store.provision() == []


def test_the_ttl_index_removes_expired_sessions(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    store.provision()
    old, fresh = new_session_id(), new_session_id()
    # The TTL index removes a document a minute after its expiry (ENDED_DOCUMENTS_STAY).
    store.create(old, SessionRecord({}, time.time() - ENDED_DOCUMENTS_STAY - 1))
    store.create(fresh, live({}))
    wait_until(lambda: coll.find_one({"_id": record_id(old)}) is None, TTL_DEADLINE, "TTL removal")
    assert store.load(fresh) is not None


def test_drop_removes_the_collection(
    inst: stores.Instrumented, raw_client: MongoClient[dict[str, Any]]
) -> None:
    store, coll = inst.store, raw_collection(raw_client, inst.url)
    store.provision()
    store.create(new_session_id(), live({}))
    store.drop()
    assert coll.name not in coll.database.list_collection_names()


# ------------------------------------------------------------- the application's client


def test_an_application_client_by_object_or_dotted_path(server: str) -> None:
    global APP_CLIENT, APP_DATABASE
    database, collection = backend._server["database"], backend.new_collection()
    APP_CLIENT = MongoClient(server)  # no tz_aware: the store asks its collection for it
    APP_DATABASE = APP_CLIENT[database]
    given: list[dict[str, Any]] = [
        {"client": APP_CLIENT, "database": database},
        {"client": f"{__name__}.APP_CLIENT", "database": database},
        {"database": APP_DATABASE},
        {"database": f"{__name__}.APP_DATABASE"},
    ]
    try:
        for options in given:
            store = open_store(f"mongodb:///?collection={collection}", **options)
            key = new_session_id()
            store.create(key, live({"via": repr(options)}, user_id="u"))
            record = store.load(key)
            assert record is not None and record.data == {"via": repr(options)}
            assert record.expires_at > time.time()
            assert asyncio.run(store.aload(key)) == record  # async goes through threads
            assert "mongodb collection" in store.describe()
            store.close()
            # The application's client is still the application's: not closed by us.
            assert APP_DATABASE[collection].count_documents({"_id": record_id(key)}) == 1
        assert APP_DATABASE[collection].count_documents({}) == len(given)
    finally:
        APP_DATABASE.drop_collection(collection)
        APP_CLIENT.close()


def test_a_dotted_path_that_does_not_import_is_a_configuration_error() -> None:
    store = open_store("mongodb:///x", client="tests.no_such_module.client")
    with pytest.raises(ConfigurationError, match="cannot import"):
        store.load(new_session_id())
    store = open_store("mongodb:///x", client=f"{__name__}.TTL_DEADLINE")
    with pytest.raises(ConfigurationError, match="must be a pymongo MongoClient"):
        store.load(new_session_id())


# ------------------------------------------------------------------ outage, recovery


BOUND_MS = 1000  # the store's bound on each operation in these tests
# timeoutMS bounds each whole operation (server selection and retries included); the
# slack is for a loaded machine.
GIVE_UP_WITHIN = BOUND_MS / 1000 + 1.0


def outage_store(port: int) -> MongoDBStore:
    store = open_store(
        f"mongodb://{HOST}:{port}/outage?collection=sessions",
        timeoutMS=BOUND_MS,
    )
    assert isinstance(store, MongoDBStore)
    return store


def assert_aload_unavailable_promptly(store: MongoDBStore, key: str) -> None:
    # Timed inside the loop: closing the loop's async client afterwards is shutdown work,
    # not part of a request.
    async def timed() -> float:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.aload(key)
        return time.monotonic() - started

    elapsed = asyncio.run(timed())
    assert elapsed < GIVE_UP_WITHIN, f"took {elapsed:.1f} s"


def assert_unavailable_promptly(call: Any, key: str) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        call()
    elapsed = time.monotonic() - started
    assert elapsed < GIVE_UP_WITHIN, f"took {elapsed:.1f} s"
    assert isinstance(raised.value.__cause__, PyMongoError)
    assert key not in str(raised.value) and record_id(key) not in str(raised.value)


def test_a_server_that_goes_down_gives_unavailable_and_the_store_recovers() -> None:
    port = free_port()
    key = new_session_id()
    with dedicated_secantus(port):
        store = outage_store(port)
        store.provision()
        store.create(key, live({"a": 1}))
        assert store.load(key).data == {"a": 1}  # type: ignore[union-attr]
    # The server is stopped: every operation fails within the bound, none hangs, and a
    # failed load is an error, never an empty session.
    assert_unavailable_promptly(lambda: store.load(key), key)
    assert_unavailable_promptly(lambda: store.create(new_session_id(), live({})), key)
    assert_unavailable_promptly(lambda: store.save(key, live({"a": 2}), ["a"]), key)
    assert_unavailable_promptly(lambda: store.delete(key), key)
    assert_aload_unavailable_promptly(store, key)
    with dedicated_secantus(port):
        # The same store object, with its same client, works again. The server kept its
        # data in memory, so the restarted one is empty and is provisioned again.
        assert store.provision() != []
        assert store.load(key) is None
        store.create(key, live({"a": 3}))
        assert store.load(key).data == {"a": 3}  # type: ignore[union-attr]
        assert asyncio.run(store.aload(key)).data == {"a": 3}  # type: ignore[union-attr]
        store.close()


def test_a_server_that_stops_answering_does_not_hang_requests() -> None:
    port = free_port()
    key = new_session_id()
    with dedicated_secantus(port) as proc:
        store = outage_store(port)
        store.create(key, live({"a": 1}))
        assert store.load(key) is not None  # a pooled connection is open
        os.kill(proc.pid, signal.SIGSTOP)  # accepts TCP (the kernel does), answers nothing
        try:
            wait_until(lambda: _state(proc.pid) == "T", 10.0, "the server's stop")
            assert_unavailable_promptly(lambda: store.load(key), key)
            assert_unavailable_promptly(lambda: store.save(key, live({"a": 2}), ["a"]), key)
            assert_aload_unavailable_promptly(store, key)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait_until(lambda: _loads(store, key), 10.0, "recovery after the server resumed")
        record = store.load(key)
        assert record is not None and record.data["a"] in (1, 2)  # the save may have landed
        store.close()


def _state(pid: int) -> str:
    # /proc/PID/stat: "pid (comm) state ..."; T = stopped by a signal.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def _loads(store: MongoDBStore, key: str) -> bool:
    try:
        return store.load(key) is not None
    except StoreUnavailable:
        return False
