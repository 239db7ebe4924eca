"""What every front door promises, tested once: Django, Flask and ASGI (on asyncio and on
trio) on every store, through each framework's test client (tests/front_doors.py), with
round trips counted at the SDK level (`trips.counts` is (reads, writes)); and Django, Flask
and ASGI behind real servers (gunicorn, uvicorn) with several worker processes. What only
one door does is in tests/test_flask.py, tests/test_asgi.py and tests/django_engine/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.exceptions import SessionInterrupted

from cloudsessions import (
    SessionRecord,
    SessionValueError,
    StoreUnavailable,
    new_session_id,
    open_store,
    signals,
)
from cloudsessions import record_id as rid
from cloudsessions.testing import at_once
from tests.front_doors import DOORS, LIFETIME, Door, age, open_door, sessions_of, stored
from tests.real_servers import SERVED, FrontDoorServer, front_door_server
from tests.stores import Instrumented

# Django's own middleware saves a session only when it is marked modified, keeps an emptied
# one (as with Django's own engines), and refreshes an expiry only by saving.
NOT_DJANGO = ["flask", "asgi", "asgi-trio"]


@pytest.fixture(params=DOORS)
def door_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def door(door_name: str, on_store: Instrumented) -> Iterator[Door]:
    with open_door(door_name, on_store.store) as browser:
        yield browser


# ------------------------------------------------------------------ round trips


def test_request_round_trips_match_the_budget(door: Door, on_store: Instrumented) -> None:
    trips = on_store.trips

    trips.reset()
    answer = door.get("/read")
    assert answer.json == {"data": {}, "sid": None}
    assert trips.counts == (0, 0), "no cookie: nothing to load, nothing to write"
    assert answer.cookies == []

    trips.reset()
    answer = door.write(a=1)
    assert trips.counts == (0, 1), "first write: one create, no existence check"
    key = door.sid
    assert key is not None and len(answer.cookies) == 1

    trips.reset()
    answer = door.get("/read")
    assert answer.json == {"data": {"a": 1}, "sid": key}
    assert trips.counts == (1, 0), "a read-only request writes nothing"
    assert answer.cookies == [], "and sends no cookie"
    assert answer.headers["vary"] == "Cookie"

    trips.reset()
    door.write(a=1)
    # Django saves a session marked modified, and a save writes the expiry it re-sends.
    assert trips.counts == (1, 1 if door.saves_unchanged else 0), "assigning the same value"

    trips.reset()
    door.write(b="x")
    assert trips.counts == (1, 1), "load + one conditional save"
    assert stored(on_store.store, key) == {"a": 1, "b": "x"}
    assert door.sid == key


@pytest.mark.parametrize("door_name", NOT_DJANGO)
def test_a_nested_change_is_saved_without_setting_modified(
    door: Door, on_store: Instrumented
) -> None:
    key = door.begin(items=[], other=1)
    on_store.trips.reset()
    door.get("/append", item="apple")
    assert on_store.trips.counts == (1, 1)
    assert stored(on_store.store, key) == {"items": ["apple"], "other": 1}


# ------------------------------------------------------------------ login and logout


def test_login_rotates_the_id_deletes_the_old_record_and_records_the_user(
    door: Door, on_store: Instrumented
) -> None:
    store, trips = on_store.store, on_store.trips
    before = door.begin(cart="3 apples")

    trips.reset()
    seen_in_view = door.get("/login", user="42").json["sid"]
    after = door.sid
    assert after not in (None, before)
    assert seen_in_view == after, "the id the view saw after the rotation call is the one stored"
    index = int(on_store.index_apart)  # a signed-in write's index entry, where kept apart
    writes = door.login_writes + index
    assert trips.counts == (1, writes), "load, create the new record, retire the old one"
    assert store.load(before) is None, "the pre-login id is dead"
    assert stored(store, after) == {"cart": "3 apples", door.user_key: "42"}
    assert sessions_of(store, "42") == [rid(after or "")]


def test_the_session_moves_to_a_new_id_whenever_its_user_changes_and_only_then(
    door: Door, on_store: Instrumented
) -> None:
    """Session fixation is closed whatever the app calls: setting or removing only the user
    id (as Flask-Login's login_user() and logout_user() do) rotates the id."""
    store, trips = on_store.store, on_store.trips
    anonymous = door.begin(cart="3 apples")

    trips.reset()
    door.get("/signin", user="7")
    signed_in = door.sid
    assert signed_in not in (None, anonymous)
    index = int(on_store.index_apart)  # a signed-in write's index entry, where kept apart
    assert trips.counts == (1, 2 + index), "load, retire the old record, create the new one"
    assert store.load(anonymous) is None
    assert stored(store, signed_in) == {"cart": "3 apples", door.user_key: "7"}
    assert sessions_of(store, "7") == [rid(signed_in or "")]

    trips.reset()
    door.write(cart="4 apples")
    assert (door.sid, trips.counts) == (signed_in, (1, 1 + index)), "the same user's change"
    trips.reset()
    door.get("/signin", user="7")
    unchanged = (1 + index) if door.saves_unchanged else 0
    assert (door.sid, trips.counts) == (signed_in, (1, unchanged))

    trips.reset()
    door.get("/signout")
    signed_out = door.sid
    assert signed_out not in (None, signed_in)
    assert trips.counts == (1, 2)
    assert store.load(signed_in or "") is None and store.for_user("7") == []
    assert stored(store, signed_out) == {"cart": "4 apples"}


def test_a_planted_session_id_does_not_sign_the_planter_in(
    door: Door, on_store: Instrumented
) -> None:
    attacker, victim = door, door.another()
    planted = attacker.begin(cart="bait")
    victim.plant(planted)
    victim.get("/signin", user="7")
    assert victim.sid not in (None, planted)
    assert attacker.get("/read").json == {"data": {}, "sid": None}, "not signed in as 7"
    assert on_store.store.load(planted) is None
    assert sessions_of(on_store.store, "7") == [rid(victim.sid or "")]


def test_rotation_on_login_can_be_turned_off(door: Door, on_store: Instrumented) -> None:
    trips = on_store.trips
    with door.reopen(rotate_on_login=False) as browser:
        key = browser.begin(cart="3 apples")
        trips.reset()
        browser.get("/signin", user="7")
        index = int(on_store.index_apart)  # a signed-in write's index entry, where kept apart
        assert (browser.sid, trips.counts) == (key, (1, 1 + index)), "load + a save, same id"
    assert stored(on_store.store, key) == {"cart": "3 apples", door.user_key: "7"}
    assert sessions_of(on_store.store, "7") == [rid(key)]


def test_logout_deletes_the_record_and_the_cookie(door: Door, on_store: Instrumented) -> None:
    door.get("/login", user="7")
    key = door.sid

    on_store.trips.reset()
    answer = door.get("/logout")
    # Django's flush() deletes without reading: its session had not been read yet.
    assert on_store.trips.counts == (0 if door.loads_lazily else 1, 1), "one delete"
    assert on_store.store.load(key or "") is None and on_store.store.for_user("7") == []
    assert door.sid is None
    assert len(answer.cookies) == 1 and door.deletes_cookie(answer.cookies[0])


@pytest.mark.parametrize("door_name", NOT_DJANGO)
def test_removing_the_last_key_ends_the_session(door: Door, on_store: Instrumented) -> None:
    key = door.begin(a=1)
    on_store.trips.reset()
    answer = door.get("/remove", a="")
    assert on_store.trips.counts == (1, 1), "load + one delete"
    assert on_store.store.load(key) is None and door.sid is None
    assert len(answer.cookies) == 1 and door.deletes_cookie(answer.cookies[0])


# ------------------------------------------------------------------ ids that name nothing


@pytest.mark.parametrize("kind", ["unknown", "malformed", "path", "expired"])
def test_a_cookie_naming_no_live_session_gets_a_fresh_one_and_writes_nothing(
    door: Door, on_store: Instrumented, kind: str
) -> None:
    store, trips = on_store.store, on_store.trips
    value = {"malformed": "x" * 10, "path": "../../etc/passwd"}.get(kind) or new_session_id()
    if kind == "expired":
        store.create(value, SessionRecord({"old": 1}, time.time() - 1))
    door.plant(value)

    trips.reset()
    answer = door.get("/read")
    assert answer.json == {"data": {}, "sid": None}
    assert trips.counts == ((1, 0) if kind in ("unknown", "expired") else (0, 0))
    if door.keeps_stale_cookie:  # left alone: a concurrent login may just have replaced it
        assert answer.cookies == []
    else:
        assert len(answer.cookies) == 1 and door.deletes_cookie(answer.cookies[0])

    assert door.begin(a=1) != value
    assert store.load(value) is None, "the old id was not revived"


def test_a_session_deleted_during_the_request_is_not_resurrected(
    door: Door, on_store: Instrumented, caplog: pytest.LogCaptureFixture
) -> None:
    key = door.begin(a=1)
    answer = door.get("/race")
    assert answer.status == door.interrupted_status
    if door.name == "django":
        assert [type(r.exc_info[1]) for r in caplog.records if r.exc_info] == [SessionInterrupted]
    assert answer.cookies == [], "the cookie is left alone"
    assert on_store.store.load(key) is None, "the save did not re-create the record"


def test_a_rotation_never_revives_a_session_revoked_during_the_request(
    door: Door, on_store: Instrumented
) -> None:
    # Revoked (say by "log out everywhere") while this request ran, which then signs a user
    # in: the rotation creates the new record first, finds the old one already ended, and
    # removes the new one again. Nothing of the session lives on under any id.
    store = on_store.store
    key = door.begin(cart="apples")
    answer = door.get("/race-signin", user="7")
    assert answer.status == door.interrupted_status
    assert answer.cookies == [], "no new id reaches the browser"
    assert store.load(key) is None
    assert store.for_user("7") == [], "no session of the user was created"


def test_a_value_that_cannot_be_stored_fails_before_anything_is_written(
    door: Door, on_store: Instrumented
) -> None:
    store, trips = on_store.store, on_store.trips
    key = door.begin(a=1)

    trips.reset()
    with pytest.raises(SessionValueError, match="'tags'") as raised:
        door.get("/write-set")  # "a" = 2, and "tags" a set
    assert isinstance(raised.value, TypeError) and raised.value.key == "tags"
    assert trips.counts == (1, 0), "nothing written"
    assert stored(store, key) == {"a": 1}, "the stored session is unchanged"

    newcomer = door.another()
    trips.reset()
    with pytest.raises(SessionValueError):
        newcomer.get("/write-set")
    assert trips.counts == (0, 0) and newcomer.sid is None, "no session created"


# ------------------------------------------------------------------ expiry refresh


@pytest.mark.parametrize("door_name", NOT_DJANGO)
@pytest.mark.parametrize(
    ("refresh_after", "remaining", "refreshed"),
    [
        (0.1, LIFETIME * 0.95, False),  # 5 % of the lifetime passed: not due
        (0.1, LIFETIME * 0.5, True),  # half of it passed: due
        (0.6, LIFETIME * 0.5, False),
        (None, LIFETIME * 0.01, False),  # never
        (0, LIFETIME - 1, True),  # every request
    ],
)
def test_a_read_only_request_refreshes_the_expiry_only_when_due(
    door: Door,
    on_store: Instrumented,
    refresh_after: float | None,
    remaining: float,
    refreshed: bool,
) -> None:
    store, trips = on_store.store, on_store.trips
    with door.reopen(refresh_after=refresh_after) as browser:
        key = browser.begin(a=1)
        age(store, key, remaining)
        trips.reset()
        answer = browser.get("/read")
    assert trips.counts == ((1, 1) if refreshed else (1, 0))
    assert len(answer.cookies) == (1 if refreshed else 0), "the cookie follows the record"
    record = store.load(key)
    assert record is not None
    expected = time.time() + (LIFETIME if refreshed else remaining)
    assert record.expires_at == pytest.approx(expected, abs=5)


# ------------------------------------------------------------------ where you're signed in

FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/131.0.0.0 Safari/537.36"
)


def browsers(door: Door, *agents: str) -> list[Door]:
    """One browser per user agent (the first is `door` itself), each signed in as "ann"."""
    found = [door, *(door.another() for _ in agents[1:])]
    for browser, agent in zip(found, agents, strict=True):
        browser.user_agent = agent
        browser.begin(cart="1 pear")
        browser.get("/login", user="ann")
    return found


def test_two_logins_list_two_sessions_and_revoking_one_signs_only_it_out(
    door: Door, on_store: Instrumented
) -> None:
    trips = on_store.trips
    laptop, phone = browsers(door, FIREFOX, IPHONE)

    trips.reset()
    listed = laptop.get("/signed-in").json
    checks = 2 if on_store.index_apart else 0
    assert trips.counts == (1 + on_store.listing_reads + checks, 0), (
        "load + the listing; a read-only request writes nothing, metadata or not"
    )
    truncated = "127.0.0.0" if laptop.client_ip else None  # /24 by default
    assert [(s["device"], s["current"], s["ip"]) for s in listed] == [
        ("Firefox 133 on Ubuntu", True, truncated),
        ("Mobile Safari 17 on iPhone", False, truncated),
    ]
    assert all(s["created_at"] <= s["last_seen"] <= time.time() for s in listed)
    assert rid(phone.sid or "") == listed[1]["handle"], "the handle is the record id"
    assert phone.sid not in str(listed) and laptop.sid not in str(listed)

    trips.reset()
    assert laptop.get("/revoke", handle=listed[1]["handle"]).json == {"revoked": True}
    load, (reads, writes) = 1, on_store.revoke_trips
    assert trips.counts == (load + reads, writes)
    assert phone.get("/read").json["data"] == {}, "the revoked browser is signed out at once"
    assert laptop.get("/read").json["data"] == {"cart": "1 pear", door.user_key: "ann"}
    assert [s["current"] for s in laptop.get("/signed-in").json] == [True]


def test_sign_out_everywhere_else_keeps_only_this_browser(
    door: Door, on_store: Instrumented
) -> None:
    here, *elsewhere = browsers(door, FIREFOX, IPHONE, CHROME)
    assert len(here.get("/signed-in").json) == 3
    assert here.get("/revoke-others").json == {"revoked": 2}
    assert [b.get("/read").json["data"] for b in elsewhere] == [{}, {}]
    assert [s["device"] for s in here.get("/signed-in").json] == ["Firefox 133 on Ubuntu"]


def test_a_handle_reaches_only_the_users_own_sessions(door: Door, on_store: Instrumented) -> None:
    [ann] = browsers(door, FIREFOX)
    bob = door.another()
    bob.begin(cart="2 figs")
    bob.get("/login", user="bob")
    bobs = rid(bob.sid or "")
    for handle in (bobs, bobs.upper(), "x" * 64, "' OR 1=1 --"):
        assert ann.get("/revoke", handle=handle).json == {"revoked": False}
    assert bob.get("/read").json["data"][door.user_key] == "bob"
    anonymous = door.another()
    anonymous.begin(cart="3 plums")
    assert anonymous.get("/signed-in").json == []
    assert anonymous.get("/revoke", handle=bobs).json == {"revoked": False}
    assert bob.get("/read").json["data"][door.user_key] == "bob"


def test_created_at_survives_rotation_and_last_seen_rides_only_on_writes(
    door: Door, on_store: Instrumented
) -> None:
    [browser] = browsers(door, FIREFOX)
    [first] = browser.get("/signed-in").json
    before = browser.sid
    browser.get("/login", user="ann")  # the same user signs in again: a new id
    assert browser.sid != before
    [again] = browser.get("/signed-in").json
    assert again["created_at"] == pytest.approx(first["created_at"])
    assert again["last_seen"] > first["last_seen"]

    on_store.trips.reset()
    browser.get("/read")
    assert on_store.trips.counts[1] == 0, "a read records nothing"
    assert browser.get("/signed-in").json[0]["last_seen"] == again["last_seen"]
    browser.write(cart="5 pears")
    assert browser.get("/signed-in").json[0]["last_seen"] > again["last_seen"]


@pytest.mark.parametrize(
    ("metadata", "shown"),
    [
        (False, (None, None, None)),
        ({"ip": False}, ("Firefox 133 on Ubuntu", None, True)),
        ({"truncate_ip": False, "last_seen": False}, ("Firefox 133 on Ubuntu", "127.0.0.1", None)),
    ],
)
def test_metadata_records_only_what_it_is_told(
    door: Door, on_store: Instrumented, metadata: Any, shown: tuple[Any, ...]
) -> None:
    with door.reopen(metadata=metadata) as browser:
        [browser] = browsers(browser, FIREFOX)
        [listed] = browser.get("/signed-in").json
    device, ip, seen = shown
    assert (listed["device"] != "Unknown browser") == (device is not None)
    assert listed["ip"] == (ip if browser.client_ip else None)
    assert (listed["last_seen"] is not None) == bool(seen)


def test_signals_tell_the_story_of_a_session_without_its_id(
    door: Door, on_store: Instrumented
) -> None:
    heard: list[tuple[str, dict[str, Any]]] = []

    def receiver(name: str) -> Callable[..., None]:
        def receive(sender: object, **facts: Any) -> None:
            assert sender is on_store.store or getattr(sender, "store", None) is on_store.store
            heard.append((name, facts))

        return receive

    receivers = {name: receiver(name) for name in ("created", "rotated", "revoked", "expired")}
    for name, receive in receivers.items():
        getattr(signals, f"session_{name}").connect(receive)
    try:
        laptop, phone = browsers(door, FIREFOX, IPHONE)
        secrets = [laptop.sid, phone.sid, handle := rid(phone.sid or "")]
        laptop.get("/revoke", handle=handle)
        laptop.get("/logout")
        third = door.another()
        secrets.append(third.begin(cart="1 fig"))
        age(on_store.store, secrets[-1] or "", -1)  # expired, as the store sees it
        third.get("/read")
    finally:
        for name, receive in receivers.items():
            getattr(signals, f"session_{name}").disconnect(receive)
    story = [(name, facts["user_id"], facts.get("reason")) for name, facts in heard]
    assert story == [
        ("created", None, None),  # laptop, anonymous
        ("rotated", "ann", None),  # its login
        ("created", None, None),  # phone
        ("rotated", "ann", None),
        ("revoked", "ann", "revoked"),  # laptop revokes phone
        # laptop logs out; Django's flush() before any read knows no user
        ("revoked", None if door.loads_lazily else "ann", "logout"),
        ("created", None, None),  # the third browser
        ("expired", None, None),  # found expired on read
    ]
    assert heard[1][1]["meta"].user_agent == FIREFOX
    told = repr(heard)
    for secret in secrets:
        assert secret and secret not in told


# ------------------------------------------------------------------ increment


def test_increment_creates_then_counts_in_place(door: Door, on_store: Instrumented) -> None:
    trips = on_store.trips
    trips.reset()
    assert door.get("/count").json == {"views": 1}
    assert trips.counts == (0, 2), "a new session: create, then one increment"
    trips.reset()
    assert door.get("/count").json == {"views": 2}
    assert trips.counts == (1, 1), "load + one increment; nothing else to save"
    door.write(views=10)  # a plain integer becomes the base
    assert door.get("/count").json == {"views": 11}
    assert door.get("/read").json["data"] == {"views": 11}
    assert stored(on_store.store, door.sid) == {"views": 11}


def test_concurrent_increments_of_one_session_lose_no_count(door: Door) -> None:
    assert door.get("/count").json == {"views": 1}
    requests = 20
    # Every request has read its session (views: 1) before any of them adds to it.
    answers = door.concurrently("/count", requests)
    assert [a.status for a in answers] == [200] * requests
    seen = sorted(a.json["views"] for a in answers)
    assert seen == list(range(2, requests + 2)), "each request saw its own count"
    assert door.get("/read").json["data"]["views"] == requests + 1


# ------------------------------------------------------------------ real servers


@pytest.fixture(params=sorted(SERVED))
def server(
    request: pytest.FixtureRequest, store_name: str, tmp_path: Path
) -> Iterator[FrontDoorServer]:
    with front_door_server(request.param, store_name, tmp_path) as served:
        yield served


def test_sessions_and_concurrent_increments_through_a_real_server(
    server: FrontDoorServer,
) -> None:
    """Browsers with cookie jars on each door's real multi-process server (one server for
    both checks: starting it is most of the time either takes)."""
    sessions_live_in_the_store_not_a_worker(server)
    concurrent_increments_lose_no_count(server)


def sessions_live_in_the_store_not_a_worker(server: FrontDoorServer) -> None:
    """Two browsers on a multi-process server: the session lives in the store, not a worker."""
    alice, bob = server.browser(), server.browser()
    assert alice.json("/read") == {"data": {}, "sid": None}
    assert alice.cookie() is None
    alice.get('/write?cart="apples"')
    first = alice.cookie()
    assert first is not None
    for _ in range(6):  # several worker processes share the session through the store
        assert alice.json("/read") == {"data": {"cart": "apples"}, "sid": first}
    assert bob.json("/read")["data"] == {}
    alice.get("/login?user=ada")
    second = alice.cookie()
    assert second not in (None, first) and server.store.load(first) is None
    assert alice.json("/read")["data"] == {"cart": "apples", server.door.user_key: "ada"}
    alice.get("/logout")
    assert alice.cookie() is None and second is not None and server.store.load(second) is None


def concurrent_increments_lose_no_count(server: FrontDoorServer) -> None:
    """20 requests at once from one visitor's cookie jar: each adds one."""
    browser = server.browser()
    assert browser.json("/count") == {"views": 1}
    requests = 20
    at_once(requests, lambda _: browser.get("/count"))
    assert browser.json("/read")["data"]["views"] == 1 + requests


# ------------------------------------------------------------------ outages


@pytest.mark.parametrize("door_name", DOORS)
def test_an_unreachable_store_fails_the_request_instead_of_emptying_the_session(
    door_name: str, tmp_path: Path
) -> None:
    broken = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with open_door(door_name, broken, outages="raise") as browser:
        browser.plant(new_session_id())
        with pytest.raises(StoreUnavailable):
            browser.get("/read")
    with open_door(door_name, broken, outages="503") as browser:  # what a user sees
        browser.plant(new_session_id())
        answer = browser.get("/read")
        assert (answer.status, answer.headers["retry-after"]) == (503, "5")
        assert answer.cookies == []
