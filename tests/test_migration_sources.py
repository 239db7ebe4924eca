"""The previous backends a migration reads (cloudsessions.migration sources), each on its real
server with sessions its own library wrote (Flask-Session 0.8 through a Flask app,
dj-dynamodb-sessions through Django), or, for engines not installed here, records in the
engine's exact layout written with the same SDK calls as the engine's source makes.

Every source answers the same questions: a live session (data, expiry, user), an expired
one (None), an unknown or malformed key (None, no error), discard, and a scan resumed from
a token in the middle that visits every record once.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import flask
import pytest
from django.contrib.sessions.backends.base import SessionBase
from django.test import override_settings
from django.utils.crypto import get_random_string

from cloudsessions import ConfigurationError, record_id
from cloudsessions.flask import TaggedValues
from cloudsessions.migration import Found, Source, migrated_id
from cloudsessions.migration.django_engines import DjangoEngineSource
from cloudsessions.migration.flask_session import (
    FlaskSessionDynamoDB,
    FlaskSessionFiles,
    FlaskSessionMongoDB,
    FlaskSessionRedis,
)
from cloudsessions.migration.registry import SCHEMES, source_from_url
from cloudsessions.migration.seeds import (
    DynamoDBEngineSource,
    DysessionSource,
    FirestoreEngineSource,
    FirestoreTutorialSource,
    MongoSessionsSource,
)
from tests import stores
from tests.front_doors import DjangoDoor, Door, FlaskDoor, flask_app

SECRET = "the old flask app's secret"
LIFETIME = 3600  # PERMANENT_SESSION_LIFETIME of the old Flask apps
REGION = "us-east-1"
REDIS_DB = 5
MALFORMED = ["", "x", "a/b", "..", "__x__", "é" * 10, "$gt", "a b", "k" * 2000, "session:x*"]
SCANNED = 300  # live sessions written for a scan; batches of BATCH
BATCH = 50
FLASK_VALUES = TaggedValues(flask.sessions.SecureCookieSessionInterface.serializer)
T = TypeVar("T")
_cleanup = contextlib.ExitStack()


@pytest.fixture(autouse=True)
def _closed_after_each_test() -> Iterator[None]:
    yield
    _cleanup.close()


def closing(thing: T) -> T:
    """`thing` (a source, an SDK client), closed when the test ends."""
    _cleanup.callback(thing.close)  # type: ignore[attr-defined]
    return thing


def services() -> contextlib.ExitStack:
    return stores.services()


def redis_url() -> str:
    return str(stores.backend("redis").server_url(services()))


def mongo_uri() -> str:
    return str(stores.backend("mongodb").server_uri(services()))


def mongo_database() -> str:
    """The test process's database (dropped at its end, with a real MONGODB_URI)."""
    mongo_uri()
    return str(stores.backend("mongodb")._server["database"])


def mongo_collection() -> str:
    return str(stores.backend("mongodb").new_collection())


def dynamodb_endpoint() -> str:
    return str(stores.backend("dynamodb").endpoint(services()))


def firestore_host() -> str:
    return str(stores.backend("firestore").emulator_host(services()))


def dynamodb_resource() -> Any:
    import boto3

    resource = boto3.session.Session().resource(
        "dynamodb", region_name=REGION, endpoint_url=dynamodb_endpoint()
    )
    closing(resource.meta.client)
    return resource


def dynamodb_table(name: str, key: str) -> Any:
    """A table as each engine's README creates it: one string hash key, on demand."""
    resource = dynamodb_resource()
    table = resource.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    table.wait_until_exists()
    return table


def scan_all(source: Source, stop_after: int) -> tuple[list[Found], list[Found], str]:
    """A scan interrupted after `stop_after` batches and resumed from its token: what each
    half found, and the token of the last batch."""
    first: list[Found] = []
    tokens = [""]
    for batch, after in source.scan(None, BATCH):
        first += batch
        tokens.append(after)
        if len(tokens) > stop_after:
            break
    rest: list[Found] = []
    for batch, after in source.scan(tokens[-1], BATCH):
        rest += batch
        tokens.append(after)
    return first, rest, tokens[-1]


def assert_scanned(
    source: Source, live: set[str], expired: set[str], corrupt: set[str], stop_after: int = 2
) -> None:
    first, rest, last = scan_all(source, stop_after)
    assert first and rest, "both halves found records"
    keys = [f.key for f in first + rest]
    assert len(keys) == len(set(keys)), "no record twice"
    assert set(keys) == live | expired | corrupt, "none missing, nothing else"
    found = {f.key: f for f in first + rest}
    assert all(found[k].session is not None for k in live)
    assert all(found[k].session is None and found[k].reason == "expired" for k in expired)
    assert all(found[k].reason.startswith("undecodable") for k in corrupt)
    assert list(source.scan(last, BATCH)) in ([], [([], last)]), "the last token ends the scan"


# =====================================================================================
# Flask-Session 0.8


@dataclass
class OldFlaskApp:
    """A Flask app on Flask-Session 0.8 with SESSION_TYPE = kind, and the source reading it."""

    kind: str
    config: dict[str, Any]
    make_source: Callable[..., Source]
    expire: Callable[[str], None]  # moves a store id's expiry into the past
    stored_expiry: Callable[[str], float | None]  # as written (None: a TTL, read as such)
    write_raw: Callable[[str, bytes], None]  # a record Flask-Session cannot decode
    swept: bool  # the server deletes expired records by itself (Redis, MongoDB's TTL)
    app: flask.Flask = field(init=False)

    def start(self, **config: Any) -> OldFlaskApp:
        from flask_session import Session

        app = flask.Flask(f"old-{self.kind}")
        app.config.update(SECRET_KEY=SECRET, PERMANENT_SESSION_LIFETIME=timedelta(seconds=LIFETIME))
        app.config.update(self.config, **config)
        Session(app)
        pending: dict[str, Any] = {}

        @app.get("/login")
        def login() -> str:
            flask.session.update(pending)
            return "ok"

        @app.get("/logout")
        def logout() -> str:
            flask.session.clear()
            return "ok"

        @app.get("/read")
        def read() -> dict[str, Any]:
            return {"data": {k: repr(v) for k, v in flask.session.items()}}

        app.extensions["pending"] = pending
        self.app = app
        return self

    @property
    def signed(self) -> bool:
        return bool(self.app.config.get("SESSION_USE_SIGNER"))

    def source(self, **options: Any) -> Source:
        return closing(self.make_source(use_signer=self.signed, secret_key=SECRET, **options))

    def login(self, browser: Any = None, **data: Any) -> tuple[Any, str]:
        """A browser that signed in on the old app (a test client), and its cookie value."""
        browser = browser or self.app.test_client()
        self.app.extensions["pending"].clear()
        self.app.extensions["pending"].update(data)
        assert browser.get("/login").status_code == 200
        cookie = browser.get_cookie("session")
        assert cookie is not None
        return browser, cookie.value

    def store_id(self, cookie: str) -> str:
        interface: Any = self.app.session_interface
        sid = interface._unsign(self.app, cookie) if self.signed else cookie
        return str(interface._get_store_id(sid))

    def cookie_of(self, sid: str) -> str:
        interface: Any = self.app.session_interface
        return str(interface._sign(self.app, sid)) if self.signed else sid

    def sees(self, cookie: str) -> dict[str, Any]:
        """What the old app itself serves a browser with this cookie."""
        browser = self.app.test_client()
        browser.set_cookie("session", cookie)
        data: dict[str, Any] = browser.get("/read").json["data"]
        return data

    def write_many(self, count: int) -> list[str]:
        """`count` sessions through Flask-Session's own write (its _upsert_session): their
        cookie values."""
        from flask_session.base import ServerSideSession

        interface: Any = self.app.session_interface
        cookies = []
        with self.app.app_context():
            for n in range(count):
                sid = interface._generate_sid(32)
                session = ServerSideSession({"_user_id": str(n), "n": n}, sid=sid, permanent=True)
                interface._upsert_session(
                    self.app.permanent_session_lifetime, session, interface._get_store_id(sid)
                )
                cookies.append(self.cookie_of(sid))
        return cookies


def _redis_app(prefix: str) -> OldFlaskApp:
    import redis

    # A database of these tests' own: no other test's key expires (and shrinks the keyspace,
    # which lets SCAN repeat keys) while a scan runs.
    client = closing(redis.Redis.from_url(f"{redis_url()}/{REDIS_DB}"))
    url = f"flask-session+redis://{urlsplit(redis_url()).netloc}/{REDIS_DB}?prefix={prefix}"
    return OldFlaskApp(
        "redis",
        {"SESSION_TYPE": "redis", "SESSION_REDIS": client, "SESSION_KEY_PREFIX": prefix},
        lambda **options: source_from_url(url, **options),
        lambda store_id: client.pexpireat(store_id, 1),  # what Redis does at expiry
        lambda store_id: None,
        lambda store_id, blob: client.set(store_id, blob, ex=LIFETIME),
        swept=True,
    )


def _mongodb_app(prefix: str) -> OldFlaskApp:
    from pymongo import MongoClient

    client: Any = closing(MongoClient(mongo_uri()))
    database, collection = mongo_database(), mongo_collection()
    sessions = client[database][collection]

    def expire(store_id: str) -> None:
        past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=5)
        sessions.update_one({"id": store_id}, {"$set": {"expiration": past}})

    def stored_expiry(store_id: str) -> float:
        return float(
            sessions.find_one({"id": store_id})["expiration"].replace(tzinfo=UTC).timestamp()
        )

    def make_source(**options: Any) -> Source:
        return FlaskSessionMongoDB(
            client, database=database, collection=collection, prefix=prefix, **options
        )

    def write_raw(store_id: str, blob: bytes) -> None:
        expires = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
        sessions.insert_one({"id": store_id, "val": blob, "expiration": expires})

    config = {
        "SESSION_TYPE": "mongodb",
        "SESSION_MONGODB": client,
        "SESSION_MONGODB_DB": database,
        "SESSION_MONGODB_COLLECT": collection,
        "SESSION_KEY_PREFIX": prefix,
    }
    return OldFlaskApp("mongodb", config, make_source, expire, stored_expiry, write_raw, True)


def _dynamodb_app(prefix: str) -> OldFlaskApp:
    resource = dynamodb_resource()
    name = stores.unique_name("FlaskSessions")
    table = resource.Table(name)
    # Flask-Session writes utcnow() + lifetime read as local time: this process is the old
    # app's server, in the time zone Django set (America/Chicago), so the copy corrects it.
    offset = time.localtime().tm_gmtoff
    url = (
        f"flask-session+dynamodb://{name}?region={REGION}&endpoint={dynamodb_endpoint()}"
        f"&prefix={prefix}&utc_offset={offset}"
    )

    def as_flask_session_writes(delta: timedelta) -> Decimal:
        return Decimal((datetime.now(UTC).replace(tzinfo=None) + delta).timestamp())

    def expire(store_id: str) -> None:
        table.update_item(
            Key={"id": store_id},
            UpdateExpression="SET expiration = :past",
            ExpressionAttributeValues={":past": as_flask_session_writes(timedelta(minutes=-5))},
        )

    def stored_expiry(store_id: str) -> float:
        return float(table.get_item(Key={"id": store_id})["Item"]["expiration"]) + offset

    def write_raw(store_id: str, blob: bytes) -> None:
        expiration = as_flask_session_writes(timedelta(hours=1))
        table.put_item(Item={"id": store_id, "val": blob, "expiration": expiration})

    config = {
        "SESSION_TYPE": "dynamodb",
        "SESSION_DYNAMODB": resource,  # Flask-Session creates the table itself
        "SESSION_DYNAMODB_TABLE": name,
        "SESSION_KEY_PREFIX": prefix,
    }
    return OldFlaskApp(
        "dynamodb",
        config,
        lambda **options: source_from_url(url, **options),
        expire,
        stored_expiry,
        write_raw,
        swept=False,  # DynamoDB Local keeps expired items, as DynamoDB with TTL off does
    )


def _filesystem_app(prefix: str, folder: Path, cachelib: bool = False) -> OldFlaskApp:
    """SESSION_TYPE "filesystem" (SESSION_FILE_DIR: cachelib's default hash, SHA-256), or
    "cachelib" with a FileSystemCache hashing names with MD5 (cachelib < 0.16's default)."""
    from cachelib import FileSystemCache

    digest = hashlib.md5 if cachelib else hashlib.sha256

    def path(store_id: str) -> Path:
        return folder / digest(store_id.encode()).hexdigest()

    def expire(store_id: str) -> None:
        content = path(store_id).read_bytes()
        path(store_id).write_bytes(struct.pack("I", int(time.time()) - 300) + content[4:])

    def stored_expiry(store_id: str) -> float:
        return float(struct.unpack("I", path(store_id).read_bytes()[:4])[0])

    def write_raw(store_id: str, blob: bytes) -> None:
        path(store_id).write_bytes(struct.pack("I", int(time.time()) + 3600) + blob)

    config: dict[str, Any] = {"SESSION_TYPE": "filesystem", "SESSION_FILE_DIR": str(folder)}
    if cachelib:
        cache = FileSystemCache(str(folder), threshold=500, hash_method=hashlib.md5)
        config = {"SESSION_TYPE": "cachelib", "SESSION_CACHELIB": cache}
    config["SESSION_KEY_PREFIX"] = prefix
    url = f"flask-session+filesystem://{folder}?prefix={prefix}"
    return OldFlaskApp(
        "cachelib" if cachelib else "filesystem",
        config,
        lambda **options: source_from_url(url, **options),
        expire,
        stored_expiry,
        write_raw,
        swept=False,
    )


FLASK_SESSION_TYPES = ["redis", "mongodb", "dynamodb", "filesystem", "cachelib"]
# Flask-Session 0.8 deprecates SESSION_FILE_DIR for SESSION_CACHELIB: still what apps run.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:.*(SESSION_FILE_DIR|FileSystemSessionInterface).* deprecated:DeprecationWarning"
    ),
    pytest.mark.filterwarnings("ignore:datetime.datetime.utcnow:DeprecationWarning"),
]


@pytest.fixture(params=FLASK_SESSION_TYPES)
def old_flask(request: pytest.FixtureRequest, tmp_path: Path) -> OldFlaskApp:
    prefix = stores.unique_name("fs") + ":"
    kind = request.param
    if kind in ("filesystem", "cachelib"):
        old = _filesystem_app(prefix, tmp_path / "flask_session", kind == "cachelib")
    else:
        old = {"redis": _redis_app, "mongodb": _mongodb_app, "dynamodb": _dynamodb_app}[kind](
            prefix
        )
    return old


def _started(old: OldFlaskApp, signed: bool) -> OldFlaskApp:
    if signed:
        with pytest.warns(DeprecationWarning, match="use_signer"):
            return old.start(SESSION_USE_SIGNER=True)
    return old.start()


@pytest.mark.parametrize("signed", [False, True], ids=["plain-ids", "signed-ids"])
def test_a_flask_session_session_is_read_as_flask_session_wrote_it(
    old_flask: OldFlaskApp, signed: bool
) -> None:
    old = _started(old_flask, signed)
    when = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    values = {"_user_id": "7", "cart": ("pear", 2), "at": when, "raw": b"\x00\xff", "n": 1.5}
    before = time.time()
    _, cookie = old.login(**values)
    source = old.source()
    found = source.fetch(cookie)
    after = time.time()
    assert found is not None
    # As Flask-Session gives them back, stored as our Flask front door stores values.
    read_back = {k: FLASK_VALUES.load(v) for k, v in found.data.items()}
    # (msgpack brings a tuple back as a list; cachelib's pickle as a tuple)
    cart = ("pear", 2) if old.kind in ("filesystem", "cachelib") else ["pear", 2]
    assert read_back == {**values, "cart": cart, "_permanent": True}
    assert found.user_id == "7"
    # When Flask-Session's cookie expires (to the second some stores keep), as stored.
    assert before + LIFETIME - 1 <= found.expires_at <= after + LIFETIME
    stored = old.stored_expiry(old.store_id(cookie))  # None: a Redis TTL, read as such
    assert stored is None or found.expires_at == stored
    if signed:
        assert source.fetch(old.store_id(cookie).split(":")[-1]) is None, "an unsigned id"
        assert source.fetch(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
        assert old.make_source(use_signer=False).fetch(cookie) is None
        with pytest.raises(ConfigurationError, match="SECRET_KEY"):
            old.make_source(use_signer=True)


def test_flask_session_expired_unknown_and_malformed_keys_find_nothing(
    old_flask: OldFlaskApp,
) -> None:
    old = _started(old_flask, signed=False)
    _, cookie = old.login(_user_id="8")
    _, other = old.login(_user_id="9")
    old.expire(old.store_id(cookie))
    source = old.source()
    assert source.fetch(cookie) is None, "expired"
    assert source.fetch(other) is not None
    assert source.fetch(other[::-1]) is None, "unknown"
    for key in MALFORMED:
        assert source.fetch(key) is None, key
        source.discard(key)  # nothing, and no error
    old.write_raw(old.store_id("garbage0000"), b"\xc1 not msgpack, JSON or a pickle")
    assert source.fetch("garbage0000") is None


def test_flask_session_discard_deletes_the_record(old_flask: OldFlaskApp) -> None:
    old = _started(old_flask, signed=True)
    _, cookie = old.login(_user_id="10", cart="fig")
    assert old.sees(cookie) == {"_user_id": "'10'", "cart": "'fig'", "_permanent": "True"}
    source = old.source()
    source.discard(cookie)
    assert source.fetch(cookie) is None
    assert old.sees(cookie) == {"_permanent": "True"}, "Flask-Session finds nothing either"
    source.discard(cookie)  # idempotent


def test_flask_session_scan_resumes_without_repeats_or_gaps(old_flask: OldFlaskApp) -> None:
    old = _started(old_flask, signed=True)
    source = old.source()
    if old.kind in ("filesystem", "cachelib"):
        old.write_many(3)
        with pytest.raises(NotImplementedError, match="cannot be read back"):
            next(source.scan(None, BATCH))
        return
    live = set(old.write_many(SCANNED))
    expired = set() if old.swept else set(old.write_many(20))
    for cookie in expired:
        old.expire(old.store_id(cookie))
    corrupt = old.cookie_of("garbage0000")
    old.write_raw(old.store_id(corrupt), b"\xc1 not msgpack, JSON or a pickle")
    assert_scanned(source, live, expired, {corrupt})
    found = next(f for batch, _ in source.scan(None, BATCH) for f in batch if f.key in live)
    assert found.session is not None
    assert found.session.user_id == FLASK_VALUES.load(found.session.data["_user_id"])
    fetched = source.fetch(found.key)  # the scan's key is the cookie the read-through gets
    assert fetched is not None and fetched.data == found.session.data
    if old.kind != "redis":  # DBSIZE would count every key of the database
        assert source.count() == len(live) + len(expired) + 1


@pytest.mark.parametrize("kind", FLASK_SESSION_TYPES)
def test_a_flask_session_browser_stays_signed_in_through_the_front_door(
    kind: str, tmp_path: Path
) -> None:
    prefix = stores.unique_name("fs") + ":"
    factories: dict[str, Callable[[], OldFlaskApp]] = {
        "redis": lambda: _redis_app(prefix),
        "mongodb": lambda: _mongodb_app(prefix),
        "dynamodb": lambda: _dynamodb_app(prefix),
        "filesystem": lambda: _filesystem_app(prefix, tmp_path / "old"),
        "cachelib": lambda: _filesystem_app(prefix, tmp_path / "old", cachelib=True),
    }
    old = factories[kind]().start()
    _, signed_in = old.login(_user_id="21", cart="3 apples")
    leaver, left = old.login(_user_id="22")
    leaver.get("/logout")
    assert leaver.get_cookie("session") is None, "Flask-Session deleted the cookie"

    with stores.fresh("sqlite", tmp_path) as ours:
        store = ours.store
        store.provision()
        app = flask_app(store, CLOUDSESSIONS_MIGRATE_FROM=old.source())
        browser = FlaskDoor(store, app)
        browser.plant(signed_in)
        data = browser.get("/read").json["data"]
        assert data == {"_user_id": "21", "cart": "3 apples", "_permanent": True}
        assert browser.sid == migrated_id(signed_in), "our cookie replaced Flask-Session's"
        assert [s.record_id for s in store.for_user("21")] == [record_id(browser.sid)]
        assert old.sees(signed_in) == {"_permanent": "True"}, "the old record is gone"
        assert browser.get("/read").json["data"]["cart"] == "3 apples"

        stale = FlaskDoor(store, app)
        stale.plant(left)  # a browser that kept the cookie of a session logged out
        assert stale.get("/read").json["data"] == {}
        assert store.load(migrated_id(left)) is None
        assert store.for_user("22") == []


# =====================================================================================
# The seed engines' layouts


class SessionStore(SessionBase):
    """Django's encoding as every seed engine's class (all named SessionStore) has it."""


ENCODER = SessionStore()


def django_key() -> str:
    return get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")


@dataclass
class Layout:
    """An old engine's storage: writes in its layout, and the source that reads it."""

    name: str
    source: Callable[[], Source]
    write: Callable[[dict[str, Any]], str]  # a live session -> its cookie value
    expire: Callable[[str], None] | None  # None: the layout keeps no expiry
    expiry: Callable[[str], float | None]  # the expiry stored (None: none, a lifetime)
    corrupt: Callable[[], str]  # a record whose data does not decode -> its key
    exists: Callable[[str], bool]
    swept: bool = False  # the server deletes expired records by itself
    lifetime: float = 0  # the copy's lifetime where the layout keeps no expiry
    values: Callable[[dict[str, Any]], dict[str, Any]] = lambda data: data


def _dynamodb_engine() -> Layout:
    """The Django DynamoDB engine (seed 001): put_item {id, session_data, ttl (Decimal)}."""
    name = stores.unique_name("django_sessions")
    table = dynamodb_table(name, "id")

    def put(key: str, data: dict[str, Any], expires: datetime) -> None:
        table.put_item(
            Item={
                "id": key,
                "session_data": ENCODER.encode(data),
                "ttl": Decimal(expires.timestamp()),
            },
            ConditionExpression="attribute_not_exists(id)",
        )

    def write(data: dict[str, Any]) -> str:
        key = django_key()
        put(key, data, datetime.now(UTC) + timedelta(days=14))
        return key

    def corrupt() -> str:
        key = django_key()
        table.put_item(Item={"id": key, "session_data": "forged:x:y", "ttl": int(time.time()) + 60})
        return key

    url = f"dynamodb-engine://{name}?region={REGION}&endpoint={dynamodb_endpoint()}"
    return Layout(
        "dynamodb-engine",
        lambda: source_from_url(url),
        write,
        lambda key: table.update_item(
            Key={"id": key},
            UpdateExpression="SET #t = :past",
            ExpressionAttributeNames={"#t": "ttl"},
            ExpressionAttributeValues={":past": Decimal(time.time() - 60)},
        ),
        lambda key: float(table.get_item(Key={"id": key})["Item"]["ttl"]),
        corrupt,
        lambda key: "Item" in table.get_item(Key={"id": key}),
    )


def _dj_dynamodb_sessions() -> Layout:
    """PyPI's dj-dynamodb-sessions, writing through Django's session API itself."""
    from dynamodb_sessions.backends import dynamodb as engine

    name = stores.unique_name("dj_dynamodb_sessions")
    table = dynamodb_table(name, "session_key")
    # Its table is read once from settings: point it at ours for this test.
    _cleanup.callback(setattr, engine, "_DYNAMODB_TABLE", engine._DYNAMODB_TABLE)
    engine._DYNAMODB_TABLE = table

    def write(data: dict[str, Any]) -> str:
        session = engine.SessionStore()
        session.update(data)
        session.create()
        assert session.session_key is not None
        return session.session_key

    def corrupt() -> str:
        key = django_key()
        table.put_item(Item={"session_key": key, "data": "garbage", "ttl": int(time.time()) + 60})
        return key

    def expire(key: str) -> None:
        table.update_item(
            Key={"session_key": key},
            UpdateExpression="SET #t = :past",
            ExpressionAttributeNames={"#t": "ttl"},
            ExpressionAttributeValues={":past": int(time.time()) - 60},
        )

    url = f"dj-dynamodb-sessions://{name}?region={REGION}&endpoint={dynamodb_endpoint()}"
    return Layout(
        "dj-dynamodb-sessions",
        lambda: source_from_url(url),
        write,
        expire,
        lambda key: float(table.get_item(Key={"session_key": key})["Item"]["ttl"]),
        corrupt,
        lambda key: "Item" in table.get_item(Key={"session_key": key}),
    )


def _dysession() -> Layout:
    """django-dysession 1.1.1 (insert_session_item): {PK: key, PK again, every value}."""
    name = stores.unique_name("dysessions")
    table = dynamodb_table(name, "PK")

    def write(data: dict[str, Any]) -> str:
        key = django_key()
        table.put_item(Item={"PK": key, **data}, ReturnConsumedCapacity="TOTAL")
        return key

    def corrupt() -> str:
        key = django_key()
        table.put_item(Item={"PK": key, "blob": b"\x00"})  # no Django session value
        return key

    return Layout(
        "dysession",
        lambda: DysessionSource(name, client=dynamodb_resource(), lifetime=7200),
        write,
        lambda key: table.update_item(
            Key={"PK": key},
            UpdateExpression="SET #t = :past",
            ExpressionAttributeNames={"#t": "ttl"},
            ExpressionAttributeValues={":past": int(time.time()) - 60},
        ),
        lambda key: None,
        corrupt,
        lambda key: "Item" in table.get_item(Key={"PK": key}),
        lifetime=7200,
    )


def _firestore_client() -> Any:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import firestore

    client = firestore.Client(project="cloudsessions-test", credentials=AnonymousCredentials())
    client._emulator_host = firestore_host()
    return closing(client)


def _firestore_engine() -> Layout:
    """The Django Firestore engine (seed 000): set {session_key, session_data, expire_date}."""
    collection = _firestore_client().collection(stores.unique_name("django_sessions"))

    def write(data: dict[str, Any]) -> str:
        key = django_key()
        expires = datetime.now(UTC) + timedelta(days=14)
        collection.document(key).set(
            {
                "session_key": key,
                "session_data": ENCODER.encode(data),
                "expire_date": expires.isoformat(),
            }
        )
        return key

    def corrupt() -> str:
        key = django_key()
        expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        collection.document(key).set(
            {"session_key": key, "session_data": "garbage", "expire_date": expires}
        )
        return key

    def expire(key: str) -> None:
        past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        collection.document(key).update({"expire_date": past})

    url = f"firestore-engine://cloudsessions-test/{collection.id}?emulator_host={firestore_host()}"
    return Layout(
        "firestore-engine",
        lambda: source_from_url(url),
        write,
        expire,
        lambda key: datetime.fromisoformat(
            collection.document(key).get().to_dict()["expire_date"]
        ).timestamp(),
        corrupt,
        lambda key: bool(collection.document(key).get().exists),
    )


MONGO_SESSIONS_TTL = 7200


def _mongo_sessions() -> Layout:
    """django-mongo-sessions 0.0.4: its indexes, then update({session_key}, $set, upsert)."""
    from django.utils import timezone
    from pymongo import MongoClient

    client: Any = closing(MongoClient(mongo_uri()))
    database, name = mongo_database(), mongo_collection()
    collection = client[database][name]
    collection.create_index("session_key", unique=True)
    collection.create_index("creation_date", expireAfterSeconds=MONGO_SESSIONS_TTL)

    def save(key: str, data: str) -> None:
        document = {"session_key": key, "session_data": data, "creation_date": timezone.now()}
        collection.update_one({"session_key": key}, {"$set": document}, upsert=True)

    def write(data: dict[str, Any]) -> str:
        key = django_key()
        save(key, ENCODER.encode(data))
        return key

    def corrupt() -> str:
        key = django_key()
        save(key, "garbage")
        return key

    def expiry(key: str) -> float:
        created = collection.find_one({"session_key": key})["creation_date"]
        return float(created.replace(tzinfo=UTC).timestamp() + MONGO_SESSIONS_TTL)

    def expire(key: str) -> None:
        past = timezone.now() - timedelta(seconds=MONGO_SESSIONS_TTL + 60)
        collection.update_one({"session_key": key}, {"$set": {"creation_date": past}})

    uri = urlsplit(mongo_uri())
    url = f"mongo-sessions://{uri.netloc}/{database}?collection={name}"
    return Layout(
        "mongo-sessions",
        lambda: source_from_url(url),
        write,
        expire,
        expiry,
        corrupt,
        lambda key: collection.find_one({"session_key": key}) is not None,
        swept=True,
    )


def _firestore_tutorial() -> Layout:
    """Google's Flask tutorial: document(session_id).set({greeting, views}), no expiry."""
    from google.cloud.firestore import GeoPoint

    collection = _firestore_client().collection(stores.unique_name("sessions"))

    def write(data: dict[str, Any]) -> str:
        key = str(uuid.uuid4())  # the tutorial's session_id
        collection.document(key).set(data)
        return key

    def corrupt() -> str:
        key = str(uuid.uuid4())
        collection.document(key).set({"at": GeoPoint(1.0, 2.0)})  # no Flask value holds it
        return key

    return Layout(
        "firestore-tutorial",
        lambda: FirestoreTutorialSource(
            collection.id, project="cloudsessions-test", emulator_host=firestore_host()
        ),
        write,
        None,
        lambda key: None,
        corrupt,
        lambda key: bool(collection.document(key).get().exists),
        lifetime=31 * 24 * 3600,
        values=lambda data: {k: FLASK_VALUES.dump(v) for k, v in data.items()},
    )


LAYOUTS: dict[str, Callable[[], Layout]] = {
    "dynamodb-engine": _dynamodb_engine,
    "dj-dynamodb-sessions": _dj_dynamodb_sessions,
    "dysession": _dysession,
    "firestore-engine": _firestore_engine,
    "mongo-sessions": _mongo_sessions,
    "firestore-tutorial": _firestore_tutorial,
}


@pytest.fixture(params=list(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> Layout:
    return LAYOUTS[request.param]()


def _session_values(layout: Layout) -> dict[str, Any]:
    if layout.name == "firestore-tutorial":
        return {"greeting": "Hallo Welt", "views": 3, "_user_id": "31"}
    return {"_auth_user_id": "31", "cart": ["fig", "pear"], "views": 3, "admin": True}


def test_a_seed_engine_session_is_read_in_its_layout(layout: Layout) -> None:
    values = _session_values(layout)
    key = layout.write(values)
    before = time.time()
    found = closing(layout.source()).fetch(key)
    after = time.time()
    assert found is not None
    assert found.data == layout.values(values)
    assert found.user_id == "31"
    stored = layout.expiry(key)
    if stored is None:
        assert before + layout.lifetime <= found.expires_at <= after + layout.lifetime
    else:
        assert found.expires_at == pytest.approx(stored, abs=1e-3)


def test_seed_engine_expired_unknown_malformed_and_undecodable_keys_find_nothing(
    layout: Layout,
) -> None:
    source = closing(layout.source())
    key = layout.write(_session_values(layout))
    assert source.fetch(django_key()) is None, "unknown"
    for malformed in MALFORMED:
        assert source.fetch(malformed) is None, malformed
        source.discard(malformed)
    assert source.fetch(layout.corrupt()) is None
    assert source.fetch(key) is not None
    if layout.expire is not None:
        layout.expire(key)
        assert source.fetch(key) is None, "expired"


def test_seed_engine_discard_deletes_the_record(layout: Layout) -> None:
    source = closing(layout.source())
    key = layout.write(_session_values(layout))
    assert layout.exists(key)
    source.discard(key)
    assert not layout.exists(key)
    assert source.fetch(key) is None
    source.discard(key)


def test_seed_engine_scan_resumes_without_repeats_or_gaps(layout: Layout) -> None:
    source = closing(layout.source())
    live = {
        layout.write({"_auth_user_id": str(n), "_user_id": str(n), "n": n}) for n in range(SCANNED)
    }
    expired = set()
    if layout.expire is not None and not layout.swept:
        expired = {layout.write({"n": -n}) for n in range(1, 21)}
        for key in expired:
            layout.expire(key)
    corrupt = layout.corrupt()
    assert_scanned(source, live, expired, {corrupt}, stop_after=2)
    assert source.count() == len(live) + len(expired) + 1


def test_a_seed_engine_browser_stays_signed_in_through_the_front_door(
    layout: Layout, tmp_path: Path
) -> None:
    """The Django engines through the Django front door (its sessionid cookie); the Flask
    tutorial through the Flask one, from its own `session_id` cookie."""
    values = _session_values(layout)
    signed_in = layout.write(values)
    logged_out = layout.write(values)
    closing(layout.source()).discard(logged_out)  # as the engine's logout deletes it
    with stores.fresh("sqlite", tmp_path) as ours:
        store = ours.store
        store.provision()
        source = closing(layout.source())
        browsers: list[Door] = []
        with contextlib.ExitStack() as stack:
            if layout.name == "firestore-tutorial":
                app = flask_app(store, CLOUDSESSIONS_MIGRATE_FROM=source)
                for key in (signed_in, logged_out):
                    flask_browser = FlaskDoor(store, app)
                    flask_browser.client.set_cookie("session_id", key)
                    browsers.append(flask_browser)
            else:
                stack.enter_context(
                    override_settings(CLOUDSESSIONS={"STORE": store, "MIGRATE_FROM": source})
                )
                for key in (signed_in, logged_out):
                    django_browser = DjangoDoor(store)
                    django_browser.plant(key)
                    browsers.append(django_browser)
            browser, stale = browsers
            assert browser.get("/read").json["data"] == values
            assert browser.sid == migrated_id(signed_in)
            assert not layout.exists(signed_in), "the old record is gone"
            assert [s.record_id for s in store.for_user("31")] == [record_id(browser.sid)]
            assert browser.get("/read").json["data"] == values
            assert stale.get("/read").json["data"] == {}
            assert store.load(migrated_id(logged_out)) is None


# =====================================================================================
# The registry


def test_every_scheme_names_its_source_without_touching_a_server() -> None:
    secret = {"secret_key": "s"}
    built = {
        "flask-session+redis://h:6379/2?prefix=app:&use_signer=1": FlaskSessionRedis,
        "flask-session+rediss://h/0": FlaskSessionRedis,
        "flask-session+mongodb://h/db?collection=c&prefix=p:": FlaskSessionMongoDB,
        "flask-session+mongodb+srv://h/db": FlaskSessionMongoDB,
        "flask-session+dynamodb://T?region=eu-west-1&endpoint=http://h:8000": FlaskSessionDynamoDB,
        "flask-session+filesystem:///var/flask_session?hash_method=md5": FlaskSessionFiles,
        "dynamodb-engine://T?key_attribute=sid&ttl_attribute=TTL": DynamoDBEngineSource,
        "dj-dynamodb-sessions://T": DynamoDBEngineSource,
        "dysession://T?partition_key=pk&lifetime=60": DysessionSource,
        "firestore-engine://proj/coll?emulator_host=h:8080": FirestoreEngineSource,
        "mongo-sessions://h:27017/db?collection=c&ttl=600&authSource=admin": MongoSessionsSource,
        "firestore-tutorial://proj": FirestoreTutorialSource,
        "django:django.contrib.sessions.backends.db": DjangoEngineSource,
    }
    assert {u.partition(":")[0].removesuffix("//") for u in built} >= set(SCHEMES)
    for url, cls in built.items():
        source = source_from_url(url, **(secret if "signer" in url else {}))
        assert type(source) is cls, url
        source.close()
    redis = source_from_url("flask-session+redis://h:6379/2?prefix=app:&use_signer=1", **secret)
    assert isinstance(redis, FlaskSessionRedis)
    assert (redis.url, redis.prefix) == ("redis://h:6379/2", "app:")
    assert redis.key_of("app:abc") != "abc", "signed"
    mongo = source_from_url("mongo-sessions://h:27017/db?collection=c&ttl=600&authSource=admin")
    assert isinstance(mongo, MongoSessionsSource)
    assert (mongo.table.database, mongo.table.collection, mongo.ttl) == ("db", "c", 600.0)
    engine = source_from_url("dynamodb-engine://T?ttl_attribute=TTL", keep_old=True)
    assert isinstance(engine, DynamoDBEngineSource)
    assert (engine.table.table, engine.ttl_attribute, engine.keep_old) == ("T", "TTL", True)
    tutorial = source_from_url("firestore-tutorial://proj?cookie_name=sid&lifetime=60")
    assert isinstance(tutorial, FirestoreTutorialSource)
    assert (tutorial.table.path, tutorial.cookie_name, tutorial.lifetime) == ("sessions", "sid", 60)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("flask", "browsers' signed cookies"),
        ("starlette", 'migrate_from="starlette"'),
        ("memcached://h", "unknown previous session backend .* flask-session\\+redis://"),
        ("redis://h:6379/0", "unknown previous session backend"),  # a store URL, not a source
        ("dynamodb-engine://", "name the table"),
        ("dynamodb-engine://T?tabel=x", "takes no option tabel"),
        ("flask-session+redis://h/0?use_signer=1", "SECRET_KEY"),
        ("flask-session+redis://h/0?use_signer=1&secret_key=s", "keep the secret out of the URL"),
        ("flask-session+redis://h/0?use_signer=1&secret_key_env=NO_SUCH_VARIABLE", "not set"),
        ("flask-session+redis://h/0?keep_old=maybe", "keep_old must be true or false"),
        ("flask-session+filesystem://relative/path", "ABSOLUTE/PATH"),
        ("firestore-engine://proj", "PROJECT/COLLECTION"),
        ("django:django.contrib.sessions.backends.nope", "is not a session engine"),
        ("django:cloudsessions.django", "names cloudsessions itself"),
    ],
)
def test_a_wrong_url_is_a_configuration_error(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        source_from_url(url)


def test_the_old_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from itsdangerous import Signer

    monkeypatch.setenv("OLD_FLASK_SECRET", SECRET)
    source = source_from_url(
        "flask-session+redis://h/0?use_signer=yes&secret_key_env=OLD_FLASK_SECRET"
    )
    assert isinstance(source, FlaskSessionRedis)
    signer = Signer(SECRET, salt="flask-session", key_derivation="hmac")
    assert source.key_of("session:abc") == signer.sign("abc").decode()


def test_a_django_engine_url_reads_through_the_configured_site() -> None:
    from django.contrib.sessions.backends.signed_cookies import SessionStore as CookieSession

    old = CookieSession()
    old["_auth_user_id"] = "41"
    old.save()
    assert old.session_key is not None
    found = source_from_url("django:django.contrib.sessions.backends.signed_cookies").fetch(
        old.session_key
    )
    assert found is not None and found.user_id == "41"
