"""Logout is final with cache tiers on, across two real server processes.

Two servers, A and B, each a front door's app behind its production server (gunicorn,
uvicorn) in processes of their own, share one store and one cache Redis. A browser signs
in and out on A (the app's own login and logout views); the old cookie is then replayed on
B, which had read the session, so B's tiers held it. Each test first shows that B really
serves from its cache (a change made in the store behind the cache's back stays unseen, or
B serves a revoked session while the bound allows it), so that it can fail.

- shared tier: the old cookie is anonymous on B at the first request after the revoking
  call returned (logout, the rotation at login, "log out everywhere");
- local tier with the channel, bound 30 s: anonymous on B well within 2 s;
- local tier with the channel cut on the wire: B may serve the revoked session, never
  longer than the bound;
- the cache Redis stopped: both servers serve from the store alone, logouts stay final.

Not here, because it does not hold: a revoking server cut off from a cache that other
servers still reach leaves them its stale entry for up to shared_ttl (docs/cache.md, "When
the cache fails").
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cloudsessions import Store, new_session_id, open_store
from cloudsessions.cache import CachedStore
from tests import stores
from tests.backends import redis as test_redis
from tests.real_servers import SERVED, Browser, FrontDoorServer, front_door_server
from tests.services._process import cache_dir
from tests.services.proxy import Proxy
from tests.services.redis import dedicated_redis

# The store behind both servers: DynamoDB Local (the case: a read is a network round
# trip) unless CLOUDSESSIONS_TEST_STORES narrows the run to other stores.
BEHIND = next((n for n in ["dynamodb", "mongodb", "sqlite"] if n in stores.STORE_NAMES), "sqlite")
USER = "ada"


def redis_url() -> str:
    return test_redis.server_url(stores.services()) + "/0"


def cache(redis: str, **options: Any) -> dict[str, Any]:
    """A CACHE setting on `redis` with a key prefix (and channel) of this test's own."""
    return {"redis": redis, "prefix": stores.unique_name("servers") + ":", **options}


@contextlib.contextmanager
def two_servers(
    door: str, folder: Path, setting: dict[str, Any], setting_b: dict[str, Any] | None = None
) -> Iterator[tuple[FrontDoorServer, FrontDoorServer]]:
    """A and B: the app of `door` on one fresh store, each with its CACHE setting.

    One worker process each, so that "B" is the very process that read the session (a
    fleet of workers could answer from one that never did); the two start and stop at
    once, so that the file stays well within a minute on two cores.
    """
    url = stores.store_url(BEHIND, folder)
    with contextlib.closing(open_store(url)) as store:
        store.provision()
    settings = [setting, setting if setting_b is None else setting_b]
    managers = [
        front_door_server(door, BEHIND, folder, url=url, cache=s, workers=1) for s in settings
    ]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        starts = [pool.submit(manager.__enter__) for manager in managers]
        running = [m for m, start in zip(managers, starts, strict=True) if not start.exception()]
        try:
            a, b = (start.result() for start in starts)  # raises if either failed to start
            yield a, b
        finally:
            for stop in [pool.submit(m.__exit__, None, None, None) for m in running]:
                stop.result()


# ------------------------------------------------------------------ what a server serves


def session_on(server: FrontDoorServer, cookie: str) -> dict[str, Any]:
    """The session data `server` serves to a request carrying exactly this cookie.

    No cookie jar: a revoked cookie is replayed as a stale tab or a thief would, even after
    a server asked to delete it. A 4xx or 5xx answer raises (urllib's HTTPError).
    """
    headers = {"Cookie": f"{server.door.cookie_name}={cookie}"}
    request = urllib.request.Request(server.base + "/read", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        data: dict[str, Any] = json.loads(response.read())["data"]
    return data


def until_anonymous(server: FrontDoorServer, cookie: str, within: float) -> float:
    """Ask `server` again until it serves `cookie` as no session; the seconds it took."""
    started = time.monotonic()
    while True:
        data = session_on(server, cookie)
        took = time.monotonic() - started
        if data == {}:
            return took
        assert took < within, f"still served {took:.2f} s after the revocation: {data}"
        time.sleep(0.01)


def sign_in(server: FrontDoorServer, user: str = USER) -> tuple[Browser, str, str]:
    """A browser with a cart, then signed in through the login view (which rotates the id);
    the browser, the id before the login and the id after it."""
    browser = server.browser()
    browser.get('/write?cart="apples"')
    before = browser.cookie()
    browser.get(f"/login?user={user}")
    after = browser.cookie()
    assert before is not None and after is not None and after != before
    return browser, before, after


def behind_the_cache(store: Store, session_id: str, **values: Any) -> None:
    """Change a session in the store itself, telling no cache."""
    record = store.load(session_id)
    assert record is not None
    record.data.update(values)
    store.save(session_id, record, values)


def served_from_cache(server: FrontDoorServer, session_id: str) -> dict[str, Any]:
    """What `server` serves for `session_id`, checked to come from a cache tier: a change
    made in the store behind the cache's back stays unseen."""
    seen = session_on(server, session_id)
    assert seen, "nothing to serve"
    behind_the_cache(server.store, session_id, probe=stores.unique_name("probe"))
    assert session_on(server, session_id) == seen, "served from the store, not a cache tier"
    return seen


@contextlib.contextmanager
def cached_store(url: str, setting: dict[str, Any]) -> Iterator[CachedStore]:
    """The store as a third process opens it with the same CACHE (an admin's script)."""
    store = CachedStore(open_store(url), setting)
    try:
        yield store
    finally:
        store.close()


def subscribers(redis: str, name: str) -> int:
    """Connections named `name` (a server's cache client_name) subscribed on the Redis."""
    import redis as redis_py

    with contextlib.closing(redis_py.Redis.from_url(redis, decode_responses=True)) as client:
        return sum(1 for c in client.client_list(_type="pubsub") if c.get("name") == name)


def wait_for(condition: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {within} s"
        time.sleep(0.02)


def server_log(server: FrontDoorServer, door: str) -> str:
    """The log real_servers wrote for this server (see tests.services._process.run_server)."""
    port = server.base.rsplit(":", 1)[1]
    return (cache_dir() / "logs" / f"{door}-{SERVED[door][0][0]}-{port}.log").read_text()


# ------------------------------------------------------------------ 1 and 2: revocations


def revoked_three_ways(
    a: FrontDoorServer,
    b: FrontDoorServer,
    setting: dict[str, Any],
    gone_on_b: Callable[[str], None],
) -> None:
    """A browser on A: a cart, the login (which rotates the id), the logout; then "log out
    everywhere" of a user with two sessions, from a third process with the same CACHE.
    Before each revocation B serves the session from its cache; after it returns,
    gone_on_b(old id) checks B."""
    user_key = a.door.user_key
    browser = a.browser()
    browser.get('/write?cart="apples"')
    first = browser.cookie()
    assert first is not None
    assert served_from_cache(b, first) == {"cart": "apples"}

    browser.get(f"/login?user={USER}")  # on A: cycle_key, regenerate()
    gone_on_b(first)
    signed_in = browser.cookie()
    assert signed_in is not None and signed_in != first
    assert served_from_cache(b, signed_in)[user_key] == USER

    browser.get("/logout")  # on A
    gone_on_b(signed_in)

    devices = [sign_in(a, "grace")[2] for _ in range(2)]
    for session_id in devices:
        assert served_from_cache(b, session_id)[user_key] == "grace"
    with cached_store(a.url, setting) as admin:
        assert admin.delete_for_user("grace") == 2
    for session_id in devices:
        gone_on_b(session_id)


@pytest.mark.parametrize("door", sorted(SERVED))
def test_shared_tier_a_revocation_on_one_server_is_final_on_the_other_at_once(
    door: str, tmp_path: Path
) -> None:
    setting = cache(redis_url())

    def at_once(session_id: str) -> None:  # B's first request after the revocation
        assert session_on(b, session_id) == {}, "B served a session revoked on A"

    with two_servers(door, tmp_path, setting) as (a, b):
        revoked_three_ways(a, b, setting, at_once)


CHANNEL_WITHIN = 2.0  # seconds; the bound is 30 s, so only the channel can be this fast


@pytest.mark.parametrize("door", sorted(SERVED))
def test_local_tier_the_channel_brings_a_revocation_far_within_the_bound(
    door: str, tmp_path: Path
) -> None:
    # The local tier and its channel, no shared tier that could answer in its stead; B's
    # connections are named, to see its subscription on the Redis.
    redis = redis_url()
    setting = cache(redis, shared=False, max_staleness=30)
    name = stores.unique_name("server-b")
    setting_b = {**setting, "redis_options": {"client_name": name}}
    lags: list[float] = []

    def soon(session_id: str) -> None:
        lags.append(until_anonymous(b, session_id, CHANNEL_WITHIN))

    with two_servers(door, tmp_path, setting, setting_b) as (a, b):
        session_on(b, new_session_id())  # B's first read starts its channel
        # Joining forgets every entry: the reads below are cached after it.
        wait_for(lambda: subscribers(redis, name) == 1, what="subscription of B")
        revoked_three_ways(a, b, setting, soon)
    assert len(lags) == 4 and max(lags) < CHANNEL_WITHIN


# ------------------------------------------------------------------ 3. local tier, channel cut


BOUND = 1.5  # max_staleness, seconds
MARGIN = 0.5  # a request's time and the poll's, on a loaded machine


@pytest.mark.parametrize(("door", "fault"), [("django", "blackhole"), ("asgi", "reset")])
def test_local_tier_with_its_channel_cut_serves_a_revoked_session_never_past_the_bound(
    door: str, fault: str, tmp_path: Path
) -> None:
    redis = redis_url()
    setting = cache(redis, max_staleness=BOUND)  # both tiers and the channel
    name = stores.unique_name("server-b")
    with Proxy(int(redis.rsplit(":", 1)[1].split("/")[0])) as proxy:
        setting_b = {**setting, "redis": proxy.url(), "redis_options": {"client_name": name}}
        with two_servers(door, tmp_path, setting, setting_b) as (a, b):
            browser, _, signed_in = sign_in(a)
            session_on(b, signed_in)  # B's first read starts its channel
            wait_for(lambda: subscribers(redis, name) == 1, what="subscription of B")

            getattr(proxy, fault)()
            if fault == "reset":  # the Redis saw B's subscription go
                wait_for(lambda: subscribers(redis, name) == 0, what="end of B's subscription")
            # B reads with its Redis unreachable: from the store, kept in its local tier.
            assert session_on(b, signed_in)[a.door.user_key] == USER

            browser.get("/logout")  # on A: the invalidation never reaches B
            logged_out = time.monotonic()
            assert session_on(b, signed_in)[a.door.user_key] == USER, (
                "B should still serve its local entry (within the bound): else this test"
                " proves nothing about the bound"
            )
            until_anonymous(b, signed_in, BOUND + MARGIN)
            late = time.monotonic() - logged_out
            assert late <= BOUND + MARGIN, f"served {late:.2f} s after the logout returned"
            for _ in range(5):  # and not again
                assert session_on(b, signed_in) == {}


# ------------------------------------------------------------------ 4. the cache down


@pytest.mark.parametrize("door", ["flask", "asgi"])
def test_a_stopped_cache_leaves_both_servers_on_the_store_alone(door: str, tmp_path: Path) -> None:
    with dedicated_redis() as node:
        setting = cache(node.url + "/0", retry_after=0.5)
        with two_servers(door, tmp_path, setting) as (a, b):
            user_key = a.door.user_key
            browser, _, signed_in = sign_in(a)
            assert session_on(b, signed_in) == {"cart": "apples", user_key: USER}
            with contextlib.closing(node.client()) as client:
                assert client.keys(setting["prefix"] + "*"), "the shared tier held nothing"

            node.stop()
            for server in [a, b] * 5:  # the first fails over, the others skip the cache
                assert session_on(server, signed_in) == {"cart": "apples", user_key: USER}
            for server in [a, b]:  # one warning each
                assert "the session cache" in server_log(server, door)
            browser.get('/write?cart="pears"')  # a write on A, read on B
            assert session_on(b, signed_in)["cart"] == "pears"
            browser.get("/logout")
            for _ in range(5):
                assert session_on(b, signed_in) == {}
                assert session_on(a, signed_in) == {}
            other, _, other_id = sign_in(b, "grace")  # signing in works, on the store alone
            assert session_on(a, other_id)[user_key] == "grace"

            # The cache back (empty): used again once retry_after has passed, still final.
            node.start()
            with contextlib.closing(node.client()) as client:

                def filled() -> bool:
                    session_on(b, other_id)
                    return bool(client.keys(setting["prefix"] + "*:d"))

                wait_for(filled, what="shared tier in use again")
            other.get("/logout")  # on B
            assert session_on(a, other_id) == {}
            assert session_on(b, signed_in) == {}
