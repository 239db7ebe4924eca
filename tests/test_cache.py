"""What is the cache's own (cloudsessions.cache): each tier's round trips, the races its
tokens and marks close, the channel, a cache that fails, options and front-door settings.

The contract and Django's mixin run through each tier (tests/stores.py CACHED); two real
servers behind one cache are in test_cache_servers.py.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from cloudsessions import ConfigurationError, SessionGone, new_session_id, record_id
from cloudsessions.cache import CachedStore, CacheOptions, cache_options
from cloudsessions.cache.local import LocalTier
from cloudsessions.cache.shared import dumps, loads
from cloudsessions.record import EncodedRecord, SessionRecord
from cloudsessions.registry import close_shared_stores, configured_store
from cloudsessions.store import Store
from cloudsessions.testing import RoundTrips, live, run_async
from tests import stores
from tests.backends import redis as redis_backend
from tests.services.redis import RedisNode, dedicated_redis

# --------------------------------------------------------------------------- helpers


@dataclass
class Commands:
    """The cache's Redis commands, as its client sends them (its on_command hook)."""

    sent: list[str] = field(default_factory=list)

    def __call__(self, args: tuple[Any, ...]) -> None:
        verb = str(args[0]).split(" ", 1)[0].upper()
        if verb not in {"CLIENT", "HELLO", "SELECT", "SCRIPT", "PING", "SUBSCRIBE"}:
            self.sent.append(verb)

    def take(self) -> list[str]:
        sent, self.sent = list(self.sent), []
        return sent


@dataclass
class Setup:
    """A store behind a cache: its round trips (store) and the cache's Redis commands."""

    store: CachedStore
    trips: RoundTrips
    commands: Commands
    url: str
    setting: dict[str, Any]

    def peer(self, **changes: Any) -> CachedStore:
        """Another server's store: the same store and cache, its own process-local tier."""
        behind = stores.backend("sqlite").instrument(self.url, RoundTrips())
        return CachedStore(behind, {**self.setting, **changes})


def redis_url() -> str:
    return redis_backend.server_url(stores.services()) + "/0"


@contextlib.contextmanager
def cached(tmp_path: Path, **setting: Any) -> Iterator[Setup]:
    """SQLite behind the cache tiers of `setting` (redis=True: the test Redis), a prefix of
    its own on the cache's Redis."""
    url = stores.store_url("sqlite", tmp_path)
    trips, commands = RoundTrips(), Commands()
    if setting.get("redis") is True:
        setting["redis"] = redis_url()
    if setting.get("redis"):
        setting["prefix"] = stores.unique_name("cache") + ":"
    options = {**setting, "redis_options": {"on_command": commands}}
    store = CachedStore(stores.backend("sqlite").instrument(url, trips), options)
    store.provision()
    try:
        yield Setup(store, trips, commands, url, setting)
    finally:
        store.drop()
        store.close()


def eventually(condition: Callable[[], bool], within: float = 5.0) -> float:
    """Wait until `condition()` holds; returns the seconds it took (fails past `within`)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"not true within {within} s")
        time.sleep(0.005)
    return time.monotonic() - start


# ------------------------------------------------------------------ shared tier trips


def test_shared_tier_round_trips_are_exact(tmp_path: Path) -> None:
    with cached(tmp_path, redis=True) as s:
        sid = new_session_id()
        s.store.create(sid, live({"a": 1}))
        assert s.trips.counts == (0, 1)
        assert s.commands.take() == ["EVALSHA"], "create writes through: one fill"

        s.trips.reset()
        record = s.store.load(sid)
        assert record is not None and record.data == {"a": 1}
        assert s.trips.counts == (0, 0) and s.commands.take() == ["MGET"], "a hit"

        record.data["a"] = 2
        s.store.save(sid, record, ["a"])
        assert s.trips.counts == (0, 1)
        assert s.commands.take() == ["EVALSHA"], "save, then one invalidation"

        loaded = s.store.load(sid)
        assert loaded is not None and loaded.data == {"a": 2}
        assert s.trips.counts == (1, 1), "a miss reads the store"
        assert s.commands.take() == ["MGET", "EVALSHA"], "a miss: read, then one fill"

        s.trips.reset()
        assert s.store.load(new_session_id()) is None
        assert s.trips.counts == (1, 0) and s.commands.take() == ["MGET"], "nothing to fill"

        s.store.delete(sid)
        assert s.commands.take() == ["EVALSHA"]
        assert s.store.load(sid) is None
        metrics = s.store.metrics()
        assert (metrics.shared_hits, metrics.misses, metrics.invalidations_sent) == (1, 3, 2)


def test_async_calls_have_the_same_trips(tmp_path: Path) -> None:
    with cached(tmp_path, redis=True) as s:
        sid = new_session_id()

        async def work() -> None:
            await s.store.acreate(sid, live({"a": 1}))
            record = await s.store.aload(sid)
            assert record is not None and record.data == {"a": 1}
            record.data["b"] = 2
            await s.store.asave(sid, record, ["b"])
            again = await s.store.aload(sid)
            assert again is not None and again.data == {"a": 1, "b": 2}
            await s.store.adelete(sid)
            assert await s.store.aload(sid) is None
            await s.store.aclose()

        run_async("asyncio", work)
        assert s.commands.take() == [
            *["EVALSHA", "MGET"],  # create (fill), load (hit)
            *["EVALSHA", "MGET", "EVALSHA"],  # save (invalidate), load (miss, fill)
            *["EVALSHA", "MGET"],  # delete (invalidate), load (miss)
        ]
        assert s.trips.counts == (2, 3)


# ----------------------------------------------------------------------- the races


def test_a_fill_after_an_invalidation_is_refused(tmp_path: Path) -> None:
    """A reader that read the store before a logout can never put the session back."""
    with cached(tmp_path, redis=True) as s:
        sid = new_session_id()
        rid = record_id(sid)
        s.store.create(sid, live({"who": "alice"}, user_id="alice"))
        assert s.store.shared is not None
        s.store.shared.invalidate([rid])  # empties the entry, as any write does
        read = s.store.shared.read(rid)  # the reader's miss: no entry, a token
        assert read is not None and read.record is None
        stale = s.store.store._load(rid)  # ... it reads the store, still signed in
        assert stale is not None

        other = s.peer()
        other.delete(sid)  # meanwhile, another server logs the session out
        s.store.shared.fill(rid, read, stale)  # the reader's fill comes too late
        after = s.store.shared.read(rid)
        assert after is not None and after.record is None and after.token != read.token
        assert s.store.load(sid) is None
        other.close()


def test_a_local_put_after_an_invalidation_is_refused() -> None:
    tier = LocalTier(max_staleness=60, max_entries=10, max_bytes=10**6)
    record = EncodedRecord({"a": "1"}, time.time() + 60)
    mark = tier.mark()
    tier.invalidate("r1")
    assert not tier.put("r1", record, mark), "read before the invalidation"
    assert tier.put("r2", record, mark), "another record is unaffected"
    assert tier.put("r1", record, tier.mark())
    assert tier.get("r1") is record

    mark = tier.mark()
    tier.clear()  # the channel was joined again: every read under way is refused
    assert not tier.put("r2", record, mark)


def test_the_invalidation_log_is_bounded_and_stays_safe() -> None:
    tier = LocalTier(max_staleness=60, max_entries=10, max_bytes=10**6)
    record = EncodedRecord({}, time.time() + 60)
    mark = tier.mark()
    for n in range(5000):  # more than the log remembers
        tier.invalidate(f"r{n}")
    assert not tier.put("r0", record, mark), "forgotten, so refused"
    assert not tier.put("unrelated", record, mark), "a read older than the log is refused"
    assert tier.put("r0", record, tier.mark())


def test_local_tier_is_bounded_by_entries_and_bytes() -> None:
    tier = LocalTier(max_staleness=60, max_entries=3, max_bytes=2000)
    small = EncodedRecord({"k": "x" * 10}, time.time() + 60)
    for n in range(5):
        assert tier.put(f"r{n}", small, tier.mark())
    assert tier.size()[0] == 3 and tier.get("r0") is None and tier.get("r4") is small
    big = EncodedRecord({"k": "x" * 900}, time.time() + 60)
    tier.put("b1", big, tier.mark())
    tier.put("b2", big, tier.mark())
    entries, size = tier.size()
    assert size <= 2000 and tier.get("b2") is big and tier.get("r1") is None
    assert not tier.put("huge", EncodedRecord({"k": "x" * 5000}, time.time() + 60), tier.mark())
    assert tier.size() == (entries, size)


def test_a_local_entry_is_served_only_while_younger_than_the_bound() -> None:
    tier = LocalTier(max_staleness=0.2, max_entries=10, max_bytes=10**6)
    record = EncodedRecord({}, time.time() + 60)
    tier.put("r", record, tier.mark())
    assert tier.get("r") is record
    waited = eventually(lambda: tier.get("r") is None, within=2)
    assert waited < 0.5
    assert 0 < tier.oldest_served < 0.2


# ---------------------------------------------------------------- local tier, channel


def test_local_tier_serves_without_any_call_and_this_process_writes_apply_at_once(
    tmp_path: Path,
) -> None:
    with cached(tmp_path, max_staleness=60) as s:
        sid = new_session_id()
        s.store.create(sid, live({"n": 1}))
        s.trips.reset()
        for _ in range(3):
            record = s.store.load(sid)
            assert record is not None and record.data == {"n": 1}
        assert s.trips.counts == (0, 0)
        assert s.store.metrics().local_hits == 3
        s.store.save(sid, live({"n": 2}), ["n"])
        record = s.store.load(sid)
        assert record is not None and record.data == {"n": 2}
        assert s.trips.counts == (1, 1)
        s.store.delete(sid)
        assert s.store.load(sid) is None


def test_the_channel_brings_other_servers_revocations(tmp_path: Path) -> None:
    with cached(tmp_path, redis=True, shared=False, max_staleness=60) as s:
        sid = new_session_id()
        s.store.create(sid, live({}, user_id="7"))
        assert s.commands.take() == [], "no shared tier: create sends nothing"
        other = s.peer()
        assert other.load(sid) is not None
        assert other.channel is not None and other.channel.joined.wait(5)
        assert s.store.channel is not None and s.store.channel.joined.wait(5)
        assert s.store.load(sid) is not None  # joining forgot what came before; filled again
        s.trips.reset()
        assert s.store.load(sid) is not None and s.trips.counts == (0, 0)

        other.delete_for_user("7")  # "log out everywhere" on the other server
        eventually(lambda: s.store.metrics().invalidations_received >= 1)
        assert s.store.load(sid) is None
        assert s.commands.take() == [], "the local tier and channel alone: no command sent"
        other.close()


def test_rejoining_the_channel_forgets_every_entry(tmp_path: Path) -> None:
    with cached(tmp_path, redis=True, shared=False, max_staleness=60) as s:
        sid = new_session_id()
        s.store.create(sid, live({}))
        assert s.store.load(sid) is not None
        channel = s.store.channel
        assert channel is not None and channel.joined.wait(5) and channel.joins == 1
        assert s.store.load(sid) is not None  # joining forgot what came before; filled again
        s.store.create(sid2 := new_session_id(), live({}))
        assert s.store.metrics().entries == 2
        admin = redis.Redis.from_url(redis_url(), decode_responses=True)
        admin.client_kill_filter(_type="pubsub")  # the channel's connection is cut
        eventually(lambda: channel.joins == 2)
        assert s.store.metrics().entries == 0, "what was published meanwhile is lost"
        s.trips.reset()
        assert s.store.load(sid2) is not None and s.trips.counts == (1, 0)
        admin.close()


# ------------------------------------------------------------------ a failing cache


@pytest.fixture
def cache_node() -> Iterator[RedisNode]:
    with dedicated_redis() as node:
        yield node


def test_a_dead_cache_degrades_to_the_store_with_a_warning(
    tmp_path: Path, cache_node: RedisNode, caplog: pytest.LogCaptureFixture
) -> None:
    with cached(tmp_path, redis=cache_node.url + "/0", retry_after=60) as s:
        sid = new_session_id()
        s.store.create(sid, live({"a": 1}, user_id="9"))
        cache_node.stop()
        with caplog.at_level(logging.WARNING, logger="cloudsessions"):
            record = s.store.load(sid)
            assert record is not None and record.data == {"a": 1}, "never an empty session"
            s.trips.reset()
            s.commands.take()
            assert s.store.load(sid) is not None
            assert s.trips.counts == (1, 0) and s.commands.take() == [], (
                "the store alone, without trying the dead cache on every request"
            )
            s.store.save(sid, live({"a": 2}, user_id="9"), ["a"])
            assert s.store.delete_for_user("9") == 1
            assert s.store.load(sid) is None
        warnings = [r for r in caplog.records if "session cache" in r.getMessage()]
        assert len(warnings) == 1, "one warning per outage, not one per request"
        assert sid not in caplog.text and record_id(sid) not in caplog.text
        assert s.store.metrics().cache_errors >= 1
        assert [c.ok for c in s.store.check()][-1] is False


def test_an_invalidation_the_cache_missed_is_sent_before_it_is_read_again(
    tmp_path: Path,
) -> None:
    # A cache that keeps its data across a restart (append-only file): it comes back with
    # the entry of a session that was logged out while it was down.
    with (
        dedicated_redis(None, "--appendonly", "yes") as node,
        cached(tmp_path, redis=node.url + "/0", retry_after=0.3) as s,
    ):
        sid = new_session_id()
        s.store.create(sid, live({}))
        assert s.store.load(sid) is not None  # the shared tier holds it
        node.stop()
        s.store.delete(sid)  # the logout reaches the store; its invalidation fails
        node.start()
        raw = node.client()
        data_key = f"{s.setting['prefix']}{{{record_id(sid)}}}:d"
        assert raw.exists(data_key) == 1, "the cache still holds the logged-out session"
        assert s.store.shared is not None
        eventually(s.store.shared.usable)
        assert s.store.load(sid) is None
        assert raw.exists(data_key) == 0, "the kept invalidation went first"
        raw.close()


# ------------------------------------------------------------ options and settings


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({}, "turns on no tier"),
        ({"redis": "redis://h:1/0", "shared": False}, "turns on no tier"),
        ({"max_staleness": 1, "max_entries": 0}, "must be positive"),
        ({"max_staleness": 1, "prefix": "a{b}"}, "prefix"),
        ({"max_staleness": "soon"}, "must be a number"),
        ({"max_staleness": 1, "ttl": 5}, "unknown option(s) for the cache store: ttl"),
        (["redis://h"], "must be a dict of cache options or a redis URL"),
    ],
)
def test_bad_cache_settings_are_refused_clearly(setting: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cache_options(setting)


def test_a_url_alone_is_the_shared_tier_and_upper_case_keys_are_accepted() -> None:
    assert cache_options("redis://h:1/0") == CacheOptions(redis="redis://h:1/0")
    options = cache_options({"MAX_STALENESS": "2.5", "CHANNEL": "off"})
    assert (options.max_staleness, options.channel, options.shared_tier) == (2.5, False, False)


def test_each_front_door_setting_puts_one_cache_per_process_in_front(tmp_path: Path) -> None:
    url = stores.store_url("sqlite", tmp_path)
    setting = {"max_staleness": 1}
    try:
        first = configured_store(url, {}, setting)
        assert isinstance(first, CachedStore) and configured_store(url, {}, dict(setting)) is first
        assert "cached: process-local (max_staleness 1 s)" in first.describe()
        with pytest.raises(ConfigurationError, match="already has a cache"):
            CachedStore(first, setting)
    finally:
        close_shared_stores()


def test_the_store_limit_and_message_still_apply(tmp_path: Path) -> None:
    with cached(tmp_path, max_staleness=60) as s:
        assert s.store.max_record_bytes == s.store.store.max_record_bytes
        too_big = SessionRecord({"x": "y" * (s.store.max_record_bytes + 1)}, time.time() + 60)
        with pytest.raises(Exception, match="sqlite store"):
            s.store.create(new_session_id(), too_big)
        with pytest.raises(SessionGone):
            s.store.save(new_session_id(), live({"a": 1}), ["a"])


def test_entries_round_trip_exactly() -> None:
    record = EncodedRecord({"a": '"x"', "b": "[1]"}, 1234.5, "u1", {"c": 3})
    assert loads(dumps(record)) == record
    assert loads(dumps(EncodedRecord({}, 1.0))) == EncodedRecord({}, 1.0)


def test_a_store_behind_a_cache_keeps_its_own_kind_of_store(tmp_path: Path) -> None:
    with cached(tmp_path, max_staleness=60) as s:
        assert isinstance(s.store.store, Store) and s.store.store.kind == "sqlite"


def test_a_redis_cluster_holds_the_shared_tier_and_carries_the_channel(tmp_path: Path) -> None:
    from tests.backends import redis_cluster

    cluster_url = redis_cluster.cluster(stores.services()).url
    with cached(tmp_path, redis=cluster_url, max_staleness=60) as s:
        assert s.store.provision() == [], "the scripts were loaded on every master"
        alice = [new_session_id() for _ in range(4)]  # records in several slots
        for sid in alice:
            s.store.create(sid, live({"who": "alice"}, user_id="alice"))
        other = s.peer(max_staleness=0)  # another server: the shared tier alone
        assert all(other.load(sid) is not None for sid in alice)
        assert other.metrics().shared_hits == 4
        assert s.store.channel is not None and s.store.channel.joined.wait(5)
        assert all(s.store.load(sid) is not None for sid in alice)  # filled again after joining

        assert other.delete_for_user("alice", keep=alice[0]) == 3  # one pipeline, many slots
        eventually(lambda: s.store.metrics().invalidations_received >= 3)
        s.trips.reset()
        assert [s.store.load(sid) is not None for sid in alice] == [True, False, False, False]
        assert [other.load(sid) is not None for sid in alice] == [True, False, False, False]
        assert s.trips.counts == (3, 0), "the kept session still cached; the others gone"
        other.close()


def test_the_cli_sets_up_checks_and_empties_the_cache_with_the_store(tmp_path: Path) -> None:
    from tests.test_cli import cli

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with dedicated_redis() as node:
        done = cli("init", "--store", url, "--cache", node.url)
        assert done.returncode == 0, done.stderr
        assert f"cache: loaded 2 script(s) on {node.address}" in done.stdout
        checked = cli("check", "--store", url, "--cache", node.url)
        assert checked.returncode == 0 and "ok   session cache" in checked.stdout
        node.stop()
        down = cli("check", "--store", url, "--cache", node.url)
        assert down.returncode == 1 and "FAIL session cache" in down.stdout
        assert "the store alone serves meanwhile" in down.stdout


def test_every_front_door_takes_the_same_cache_setting(tmp_path: Path) -> None:
    import flask
    from django.test import override_settings
    from starlette.applications import Starlette

    from cloudsessions.asgi import SessionMiddleware
    from cloudsessions.django.conf import Config
    from cloudsessions.django.engine import SessionStore
    from cloudsessions.flask import CloudSessions

    url = stores.store_url("sqlite", tmp_path)
    setting = {"max_staleness": 1}
    try:
        app = flask.Flask(__name__)
        app.config.update(CLOUDSESSIONS_STORE=url, CLOUDSESSIONS_CACHE=setting)
        CloudSessions(app)
        from_flask = CloudSessions.get_store(app)
        assert isinstance(from_flask, CachedStore)
        assert SessionMiddleware(Starlette(), store=url, cache=setting).store is from_flask
        with override_settings(CLOUDSESSIONS={"STORE": url, "CACHE": {"MAX_STALENESS": 1}}):
            assert SessionStore.get_store() is from_flask, "one cache per process and setting"

        app.config["CLOUDSESSIONS_CACHE"] = {"max_staleness": 1, "size": 3}
        with pytest.raises(ConfigurationError, match="CLOUDSESSIONS_CACHE: unknown option"):
            CloudSessions(app)
        with pytest.raises(ConfigurationError, match=r"^cache: CACHE turns on no tier"):
            SessionMiddleware(Starlette(), store=url, cache={"shared": True})
        problems = Config({"CACHE": {"max_staleness": -1}}).problems
        assert [p.key for p in problems] == ["CACHE"] and "max_staleness" in problems[0].message
    finally:
        close_shared_stores()


# ---------------------------------------------------------- a server cut off the cache


@pytest.mark.parametrize("strict", [False, True])
def test_a_server_cut_off_the_cache_revokes_within_shared_ttl_or_refuses_when_strict(
    tmp_path: Path, strict: bool
) -> None:
    """A reaches the cache through a proxy that is cut; B still reaches it directly."""
    from cloudsessions import StoreUnavailable
    from tests.services.proxy import Proxy

    ttl = 1.0
    with (
        dedicated_redis() as node,
        cached(tmp_path, redis=node.url + "/0", shared_ttl=ttl, strict_invalidation=strict) as b,
        Proxy(node.port) as proxy,
    ):
        a = b.peer(redis=f"redis://127.0.0.1:{proxy.port}/0")
        sid = new_session_id()
        a.create(sid, live({"who": "ada"}, user_id="ada"))
        assert b.store.load(sid) is not None and b.store.metrics().shared_hits == 1
        proxy.reset()  # A is cut off the cache; B is not
        if strict:
            with pytest.raises(StoreUnavailable, match="could not be told"):
                a.delete(sid)
        else:
            a.delete(sid)  # succeeds: the store is the truth; A warns
        assert a.store.load(sid) is None, "the store has the logout either way"
        # B serves the revoked session from the cache (this is the case strict_invalidation
        # refuses to report as done), never past shared_ttl.
        assert b.store.load(sid) is not None
        waited = eventually(lambda: b.store.load(sid) is None, within=ttl + 1)
        assert waited <= ttl + 0.5
        a.close()
