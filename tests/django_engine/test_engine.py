"""The Django engine through Django's own session middleware, on every store.

Round trips are counted by the store's SDK-level instrumentation (tests/backends).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.sessions.exceptions import SessionInterrupted
from django.core import checks, management
from django.test import Client, override_settings

from cloudsessions import SessionRecord, StoreUnavailable, new_key, open_store, record_id
from cloudsessions.django.engine import SessionStore
from tests.stores import Instrumented


@pytest.fixture
def on_store(instrumented: Instrumented) -> Iterator[Instrumented]:
    instrumented.store.provision()
    with override_settings(CLOUDSESSIONS={"STORE": instrumented.store}):
        yield instrumented


def cookie(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def test_request_round_trips_match_the_budget(on_store: Instrumented) -> None:
    store, trips = on_store.store, on_store.trips
    client = Client()

    trips.reset()
    assert client.get("/read").json() == {"data": {}}
    assert trips.counts == (0, 0), "no cookie: nothing to load, nothing to write"
    assert settings.SESSION_COOKIE_NAME not in client.cookies

    trips.reset()
    client.get("/write", {"a": "1"})
    assert trips.counts == (0, 1), "first write: one create, no existence check"
    key = cookie(client)

    trips.reset()
    assert client.get("/read").json() == {"data": {"a": "1"}}
    assert trips.counts == (1, 0), "a read-only request writes nothing"

    trips.reset()
    client.get("/write", {"b": "2"})
    assert trips.counts == (1, 1), "load + one conditional save"
    record = store.load(key)
    assert record is not None and record.data == {"a": "1", "b": "2"}


def test_login_rotates_the_id_deletes_the_old_record_and_records_the_user(
    on_store: Instrumented,
) -> None:
    store, trips = on_store.store, on_store.trips
    client = Client()
    client.get("/write", {"cart": "3 apples"})
    before = cookie(client)

    trips.reset()
    seen_in_view = client.get("/login", {"user": "42"}).json()["key"]
    after = cookie(client)
    assert after != before
    assert seen_in_view == after, "the id the view saw after cycle_key() is the one stored"
    assert trips.counts == (1, 2), "load, delete the old record, create the new one"
    assert store.load(before) is None, "the pre-login id is dead"
    record = store.load(after)
    assert record is not None
    assert record.data == {"cart": "3 apples", "_auth_user_id": "42"}
    assert [s.record_id for s in store.for_user("42")] == [record_id(after)]


def test_logout_deletes_the_record_and_the_cookie(on_store: Instrumented) -> None:
    store = on_store.store
    client = Client()
    client.get("/login", {"user": "7"})
    key = cookie(client)
    on_store.trips.reset()
    client.get("/logout")
    assert on_store.trips.counts == (0, 1), "flush: one delete, nothing loaded"
    assert store.load(key) is None
    assert cookie(client) == ""  # Django's middleware deletes the cookie
    assert store.for_user("7") == []


def test_concurrent_requests_changing_different_keys_both_survive(on_store: Instrumented) -> None:
    client = Client()
    client.get("/write", {"base": "0"})
    key = cookie(client)
    first, second = SessionStore(key), SessionStore(key)
    first["x"], second["y"] = "from first", "from second"
    del first["base"]
    first.save()
    second.save()
    assert dict(SessionStore(key).items()) == {"x": "from first", "y": "from second"}


def test_a_session_logged_out_elsewhere_is_not_resurrected(on_store: Instrumented) -> None:
    client = Client()
    client.get("/write", {"a": "1"})
    key = cookie(client)
    request_session = SessionStore(key)
    request_session["a"] = "2"
    SessionStore(key).delete()  # logout in another request
    with pytest.raises(SessionInterrupted):
        _save_through_middleware(request_session)
    assert on_store.store.load(key) is None


def _save_through_middleware(session: SessionStore) -> None:
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.http import HttpResponse
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.session = session
    SessionMiddleware(lambda r: HttpResponse()).process_response(request, HttpResponse())


async def test_async_session_api_uses_the_store(on_store: Instrumented) -> None:
    session = SessionStore()
    await session.aset("a", 1)
    await session.asave()
    key = session.session_key
    assert key is not None
    other = SessionStore(key)
    assert await other.aget("a") == 1
    await other.aset("b", 2)
    await asyncio.gather(other.asave())
    assert (await on_store.store.aload(key)).data == {"a": 1, "b": 2}  # type: ignore[union-attr]
    await other.acycle_key()
    assert await on_store.store.aload(key) is None


def test_clearsessions_purges_expired_sessions(on_store: Instrumented, store_name: str) -> None:
    from tests import stores

    store = on_store.store
    old, fresh = new_key(), new_key()
    store.create(old, SessionRecord({"x": 1}, 1.0))
    store.create(fresh, SessionRecord({"x": 2}, 4e9))
    management.call_command("clearsessions")
    assert store.load(fresh) is not None
    if not getattr(stores.backend(store_name), "PURGE_BY_TTL", False):
        assert store.purge_expired() == 0, "clearsessions already removed the expired one"


# ------------------------------------------------------------------ sqlite only


def test_a_store_that_is_down_fails_the_request_instead_of_emptying_the_session(
    tmp_path: Path,
) -> None:
    broken = open_store(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    with override_settings(CLOUDSESSIONS={"STORE": broken}):
        client = Client(raise_request_exception=True)
        client.cookies[settings.SESSION_COOKIE_NAME] = new_key()
        with pytest.raises(StoreUnavailable):
            client.get("/read")


def test_management_command_shares_the_cli_operations(tmp_path: Path) -> None:
    from io import StringIO

    url = f"sqlite:///{tmp_path / 'ops.db'}"
    with override_settings(CLOUDSESSIONS={"STORE": url}):
        out = StringIO()
        management.call_command("cloudsessions", "init", stdout=out)
        assert "created sqlite file" in out.getvalue()
        assert "ok   table" in out.getvalue()
        out = StringIO()
        management.call_command("cloudsessions", "check", stdout=out)
        assert "FAIL" not in out.getvalue()
        store = open_store(url)
        store.create(new_key(), SessionRecord({}, 1.0))
        out = StringIO()
        management.call_command("cloudsessions", "purge", "--batch-size", "10", stdout=out)
        assert "removed 1 expired session(s) from" in out.getvalue()
        out = StringIO()
        management.call_command("cloudsessions", "destroy", "--yes", stdout=out)
        assert "deleted sqlite file" in out.getvalue()
        out = StringIO()
        with pytest.raises(management.CommandError):
            management.call_command("cloudsessions", "check", stdout=out)
        assert "FAIL table" in out.getvalue()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"STORE": "redis://localhost"}, "unknown store URL scheme"),
        ({"STORES": "sqlite:///x.db"}, "unknown key(s) STORES"),
        ("sqlite:///x.db", "must be a dict"),
        ({"STORE": 42}, "must be a store URL or a Store"),
        ({"STORE": "sqlite://host/x.db"}, "must look like sqlite:///"),
        ({"STORE": "sqlite:///x.db", "OPTIONS": {"timout": 3}}, "unknown option(s)"),
    ],
)
def test_system_check_reports_a_wrong_setting(value: object, fragment: str) -> None:
    with override_settings(CLOUDSESSIONS=value):
        errors = [m for m in checks.run_checks() if m.id == "cloudsessions.E001"]
    assert len(errors) == 1 and fragment in errors[0].msg
