"""What only the Django engine does: its API beyond a request (concurrent saves, the async
API, increment), clearsessions, the management command and the system check. The rest is in
tests/test_front_doors.py, and Django's own SessionTestsMixin in test_django_mixin.py."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
from django.core import checks, management
from django.test import override_settings

from cloudsessions import SessionRecord, new_session_id, open_store
from cloudsessions.django.engine import SessionStore
from tests.stores import Instrumented


@pytest.fixture
def on_store(on_store: Instrumented) -> Iterator[Instrumented]:
    """conftest's provisioned store, as the store of the Django settings."""
    with override_settings(CLOUDSESSIONS={"STORE": on_store.store}):
        yield on_store


def test_concurrent_requests_changing_different_keys_both_survive(on_store: Instrumented) -> None:
    session = SessionStore()
    session["base"] = "0"
    session.save()
    key = session.session_key
    first, second = SessionStore(key), SessionStore(key)
    first["x"], second["y"] = "from first", "from second"
    del first["base"]
    first.save()
    second.save()
    assert dict(SessionStore(key).items()) == {"x": "from first", "y": "from second"}


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


async def test_aincrement(on_store: Instrumented) -> None:
    session = SessionStore()
    assert await session.aincrement("views") == 1
    assert await session.aincrement("views", 2) == 3
    assert await SessionStore(session.session_key).aget("views") == 3


def test_a_value_assigned_before_an_increment_is_the_one_incremented(
    on_store: Instrumented,
) -> None:
    session = SessionStore()
    assert session.increment("views") == 1  # now a counter in the store
    again = SessionStore(session.session_key)
    again["views"] = 100
    assert again.increment("views") == 101
    assert SessionStore(session.session_key)["views"] == 101


def test_clearsessions_purges_expired_sessions(on_store: Instrumented) -> None:
    store = on_store.store
    old, fresh = new_session_id(), new_session_id()
    store.create(old, SessionRecord({"x": 1}, 1.0))
    store.create(fresh, SessionRecord({"x": 2}, 4e9))
    management.call_command("clearsessions")
    assert store.load(fresh) is not None
    if not on_store.purges_by_ttl:
        assert store.purge_expired() == 0, "clearsessions already removed the expired one"


def test_management_command_shares_the_cli_operations(tmp_path: Path) -> None:
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
        store.create(new_session_id(), SessionRecord({}, 1.0))
        out = StringIO()
        management.call_command("cloudsessions", "purge", "--batch-size", "10", stdout=out)
        assert "removed 1 expired session(s) from" in out.getvalue()
        out = StringIO()
        management.call_command("cloudsessions", "destroy", "--yes", stdout=out)
        assert "deleted table cloudsessions" in out.getvalue()
        assert "(the file itself is kept)" in out.getvalue()
        out = StringIO()
        with pytest.raises(management.CommandError):
            management.call_command("cloudsessions", "check", stdout=out)
        assert "FAIL table" in out.getvalue()


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"STORE": "postgres://localhost"}, "unknown store URL scheme"),
        ({"STORES": "sqlite:///x.db"}, "unknown key(s) STORES"),
        ("sqlite:///x.db", "must be a dict"),
        ({"STORE": 42}, "must be a store URL or a Store"),
        ({"STORE": "sqlite://host/x.db"}, "must look like sqlite:///"),
        ({"STORE": "sqlite:///x.db", "OPTIONS": {"timout": 3}}, "unknown option(s)"),
    ],
)
def test_system_check_reports_a_wrong_setting(value: object, fragment: str) -> None:
    with override_settings(CLOUDSESSIONS=value):
        found = checks.run_checks()
        errors = [m for m in found if (m.id or "").startswith("cloudsessions.E")]
    assert len(errors) == 1 and fragment in errors[0].msg
