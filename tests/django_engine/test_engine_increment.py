"""SessionStore.increment through Django's middleware, on every store."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client, override_settings

from cloudsessions.django.engine import SessionStore
from tests.stores import Instrumented


@pytest.fixture
def on_store(instrumented: Instrumented) -> Iterator[Instrumented]:
    instrumented.store.provision()
    with override_settings(
        CLOUDSESSIONS={"STORE": instrumented.store}, ROOT_URLCONF="tests.django_engine.urls"
    ):
        yield instrumented


def test_a_counting_request_costs_one_write(on_store: Instrumented) -> None:
    client, trips = Client(), on_store.trips
    trips.reset()
    assert client.get("/count").json() == {"views": 1}
    assert trips.counts == (0, 2), "a new session: create, then the increment"
    trips.reset()
    assert client.get("/count").json() == {"views": 2}
    assert trips.counts == (1, 1), "load, then the increment; no save after it"
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    record = on_store.store.load(key)
    assert record is not None and record.data == {"views": 2}


def test_concurrent_increments_of_one_session_all_count(on_store: Instrumented) -> None:
    session = SessionStore()
    session["views"] = 0
    session.save()
    key = session.session_key
    workers = 12
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def visit() -> None:
        try:
            request_session = SessionStore(key)
            request_session.load()
            barrier.wait()
            request_session.increment("views")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=visit) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert SessionStore(key)["views"] == workers


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
