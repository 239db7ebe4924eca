"""What operators see of the store: a span per operation, and log lines for slow calls and
for a store that does not answer (cloudsessions.telemetry, docs/observability.md).

Spans are read back with the OpenTelemetry SDK's in-memory exporter, on a tracer provider
handed to cloudsessions (use_tracer_provider): the global provider can be set only once per
process, so the test that relies on it runs in a subprocess. Every fault is real: a SQLite
write lock held by another connection, a Redis server stopped with SIGSTOP.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cloudsessions import (
    SessionExists,
    SessionGone,
    SessionTooLarge,
    Store,
    StoreUnavailable,
    new_session_id,
    open_store,
    record_id,
    telemetry,
)
from cloudsessions.testing import HOUR, event_loops, live, run_async
from tests import stores
from tests.services.redis import dedicated_redis

ROOT = Path(__file__).resolve().parent.parent

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
APP = PROVIDER.get_tracer("the-app")  # an application's own spans, parents of ours

USER = "user-7d1f3c"  # a user id, which must never reach a span or a log line
NETWORK = [n for n in ("redis",) if n in stores.STORE_NAMES]


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    telemetry.use_tracer_provider(PROVIDER)
    EXPORTER.clear()
    yield EXPORTER
    telemetry.use_tracer_provider(None)
    telemetry.use_slow_call_seconds(None)
    EXPORTER.clear()


@pytest.fixture(params=["sqlite", *NETWORK])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = open_store(stores.store_url(request.param, tmp_path))
    opened.provision()
    yield opened
    opened.close()


def ours() -> list[ReadableSpan]:
    return [s for s in EXPORTER.get_finished_spans() if s.name.startswith("cloudsessions.")]


def summary(spans: list[ReadableSpan]) -> list[tuple[str, Any, Any]]:
    return [
        (
            s.name,
            (s.attributes or {}).get(telemetry.OUTCOME),
            (s.attributes or {}).get("cloudsessions.count"),
        )
        for s in spans
    ]


def texts(spans: list[ReadableSpan]) -> str:
    """Everything a span carries as text: name, attributes, events, status."""
    found = []
    for span in spans:
        found += [span.name, str(span.status.description)]
        found += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            found += [event.name, *(f"{k}={v}" for k, v in (event.attributes or {}).items())]
    return "\n".join(found)


def assert_no_ids(text: str, *session_ids: str) -> None:
    for session_id in session_ids:
        assert session_id not in text and record_id(session_id) not in text
    assert USER not in text


# ------------------------------------------------------------------------- spans

# What the request below does, as (span name, outcome, count).
EVERY_OPERATION = [
    ("cloudsessions.create", "ok", None),
    ("cloudsessions.load", "hit", None),
    ("cloudsessions.load", "miss", None),
    ("cloudsessions.save", "ok", None),
    ("cloudsessions.increment", "ok", None),
    ("cloudsessions.create", "exists", None),
    ("cloudsessions.for_user", "ok", 1),
    ("cloudsessions.create", "ok", None),
    ("cloudsessions.delete_for_user", "ok", 1),
    ("cloudsessions.delete", "ok", None),
    ("cloudsessions.save", "gone", None),
    ("cloudsessions.purge_expired", "ok", 0),
]


def test_each_operation_is_one_span_under_the_app_span_with_kind_and_outcome(store: Store) -> None:
    sid, other = new_session_id(), new_session_id()
    with APP.start_as_current_span("GET /account") as request_span:
        store.create(sid, live({"a": 1}, user_id=USER))
        record = store.load(sid)
        assert record is not None
        store.load(new_session_id())
        record.data["a"] = 2
        store.save(sid, record, ["a"])
        store.increment(sid, "views", expires_at=time.time() + HOUR)
        with pytest.raises(SessionExists):
            store.create(sid, live({}))
        assert len(store.for_user(USER)) == 1
        store.create(other, live({}, user_id=USER))
        assert store.delete_for_user(USER, keep=sid) == 1
        store.delete(sid)
        with pytest.raises(SessionGone):
            store.save(sid, record, ["a"])
        store.purge_expired()

    spans = ours()
    assert summary(spans) == EVERY_OPERATION
    parent = request_span.get_span_context().span_id
    for span in spans:
        assert span.parent is not None and span.parent.span_id == parent
        assert span.attributes is not None
        assert span.attributes[telemetry.KIND] == store.kind
        assert span.attributes["db.system.name"] == store.kind  # sqlite, redis: the same names
        # exists and gone are the contract's answers, not failures of the call
        assert span.status.status_code is StatusCode.UNSET
        assert telemetry.ERROR_TYPE not in span.attributes and not span.events
    assert_no_ids(texts(spans), sid, other)


def test_a_failed_call_records_the_error_as_the_conventions_say(store: Store) -> None:
    store.max_record_bytes = 2048
    sid = new_session_id()
    with pytest.raises(SessionTooLarge):
        store.create(sid, live({"big": "x" * 4096}, user_id=USER))
    (span,) = ours()
    assert span.attributes is not None
    assert span.attributes[telemetry.OUTCOME] == "too_large"
    assert span.attributes["error.type"] == "cloudsessions.errors.SessionTooLarge"
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]
    assert_no_ids(texts([span]), sid)


@pytest.mark.parametrize("loop", event_loops())
def test_async_operations_are_spans_too_under_the_app_span(store: Store, loop: str) -> None:
    sid, other = new_session_id(), new_session_id()

    async def request() -> int:
        with APP.start_as_current_span("GET /async") as request_span:
            await store.acreate(sid, live({"a": 1}, user_id=USER))
            record = await store.aload(sid)
            assert record is not None
            assert await store.aload(new_session_id()) is None
            await store.asave(sid, record, ["a"])
            await store.aincrement(sid, "views", expires_at=time.time() + HOUR)
            with pytest.raises(SessionExists):
                await store.acreate(sid, live({}))
            # These three run in a worker thread: the app's span must still be the parent.
            assert len(await store.afor_user(USER)) == 1
            await store.acreate(other, live({}, user_id=USER))
            assert await store.adelete_for_user(USER, keep=sid) == 1
            await store.adelete(sid)
            with pytest.raises(SessionGone):
                await store.asave(sid, record, ["a"])
            await store.apurge_expired()
        await store.aclose()
        return request_span.get_span_context().span_id

    parent = run_async(loop, request)
    spans = ours()
    assert summary(spans) == EVERY_OPERATION
    assert all(s.parent is not None and s.parent.span_id == parent for s in spans)
    assert_no_ids(texts(spans), sid, other)


def test_spans_reach_a_global_provider_set_after_the_first_call(tmp_path: Path) -> None:
    # Applications often configure OpenTelemetry after their first request: the tracer
    # cloudsessions takes at its first call follows the global provider set later.
    code = f"""
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from cloudsessions import new_session_id, open_store

store = open_store({f"sqlite:///{tmp_path / 'global.db'}"!r})
store.load(new_session_id())  # before any provider: the API's no-op tracer
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
store.load(new_session_id())
print([(s.name, s.attributes["cloudsessions.outcome"]) for s in exporter.get_finished_spans()])
"""
    done = run_python(code)
    assert done.stdout.strip() == "[('cloudsessions.load', 'miss')]"


# ------------------------------------------------------------------- log events


@contextlib.contextmanager
def write_locked(path: Path, seconds: float) -> Iterator[None]:
    """Another connection holds the SQLite write lock for `seconds` (from a thread of its own)."""
    locked, done = threading.Event(), threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
        conn.close()
        done.set()

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait(5)
    try:
        yield
    finally:
        thread.join()


def sqlite_store(tmp_path: Path, query: str = "") -> tuple[Store, Path]:
    path = tmp_path / "locked.db"
    store = open_store(f"sqlite:///{path}{query}")
    store.provision()
    return store, path


def test_a_call_slower_than_the_threshold_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, path = sqlite_store(tmp_path)
    telemetry.use_slow_call_seconds(0.2)
    sid = new_session_id()
    with caplog.at_level(logging.WARNING, logger="cloudsessions"):
        with write_locked(path, 0.5):
            store.create(sid, live({"a": 1}, user_id=USER))  # waits for the lock, then writes
        assert store.load(sid) is not None  # a fast call: no warning
    (warning,) = [r for r in caplog.records if r.name == "cloudsessions"]
    assert warning.levelno == logging.WARNING
    assert warning.getMessage().startswith("a sqlite session store call was slow: create took")
    assert "CLOUDSESSIONS_SLOW_CALL_SECONDS" in warning.getMessage()
    assert (warning.store_kind, warning.operation, warning.outcome) == ("sqlite", "create", "ok")  # type: ignore[attr-defined]
    assert warning.duration >= 0.2  # type: ignore[attr-defined]
    assert_no_ids(caplog.text, sid)
    store.close()


def test_the_threshold_comes_from_the_environment_read_at_the_first_call(tmp_path: Path) -> None:
    code = f"""
import logging, os, sqlite3, threading, time
from cloudsessions import new_session_id, open_store
logging.basicConfig(format="%(levelname)s %(message)s")
os.environ["CLOUDSESSIONS_SLOW_CALL_SECONDS"] = "0.1"  # after import: read at the first call
store = open_store({f"sqlite:///{tmp_path / 'env.db'}"!r})
store.provision()
lock = sqlite3.connect({str(tmp_path / "env.db")!r}, isolation_level=None, check_same_thread=False)
lock.execute("BEGIN IMMEDIATE")
threading.Timer(0.3, lambda: lock.execute("COMMIT")).start()
store.delete(new_session_id())
"""
    done = run_python(code)
    assert "WARNING a sqlite session store call was slow: delete took" in done.stderr


def test_a_bad_threshold_names_the_variable(tmp_path: Path) -> None:
    code = f"""
import os
from cloudsessions import ConfigurationError, new_session_id, open_store
os.environ["CLOUDSESSIONS_SLOW_CALL_SECONDS"] = "1s"
try:
    open_store({f"sqlite:///{tmp_path / 'bad.db'}"!r}).load(new_session_id())
except ConfigurationError as exc:
    print(exc)
"""
    done = run_python(code)
    assert "CLOUDSESSIONS_SLOW_CALL_SECONDS must be a number of seconds" in done.stdout


def test_a_store_that_does_not_answer_is_an_error_line_and_an_error_span(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, path = sqlite_store(tmp_path, "?timeout=0.1")  # gives up on the lock after 0.1 s
    sid = new_session_id()
    with caplog.at_level(logging.WARNING, logger="cloudsessions"), write_locked(path, 0.6):
        with pytest.raises(StoreUnavailable):
            store.create(sid, live({"a": 1}, user_id=USER))
        # A purge's caller (the CLI, clearsessions) reports its error: its span only.
        with pytest.raises(StoreUnavailable):
            store.purge_expired()
    (error,) = [r for r in caplog.records if r.name == "cloudsessions"]  # not also "slow"
    assert error.levelno == logging.ERROR
    assert error.getMessage().startswith("the sqlite session store did not answer a create call")
    assert "database is locked" in error.getMessage()
    assert (error.store_kind, error.operation, error.outcome) == ("sqlite", "create", "unavailable")  # type: ignore[attr-defined]
    assert summary(ours()) == [
        ("cloudsessions.create", "unavailable", None),
        ("cloudsessions.purge_expired", "unavailable", None),
    ]
    for span in ours():
        assert span.attributes is not None
        assert span.attributes["error.type"] == "cloudsessions.errors.StoreUnavailable"
        assert span.status.status_code is StatusCode.ERROR
        assert [event.name for event in span.events] == ["exception"]
    assert_no_ids(caplog.text + texts(ours()), sid)
    store.close()


async def test_a_frozen_network_store_is_an_error_line_and_an_error_span(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with dedicated_redis() as node:
        store = open_store(f"redis://{node.address}/0?prefix=t:&socket_timeout=0.3&attempts=1")
        store.provision()
        sid = new_session_id()
        store.create(sid, live({"a": 1}, user_id=USER))
        EXPORTER.clear()
        node.freeze()
        try:
            with caplog.at_level(logging.WARNING, logger="cloudsessions"):
                with pytest.raises(StoreUnavailable):
                    store.load(sid)
                with pytest.raises(StoreUnavailable):
                    await store.aload(sid)
        finally:
            node.thaw()
        store.close()
        await store.aclose()
    errors = [r for r in caplog.records if r.name == "cloudsessions"]
    assert [(r.levelno, r.store_kind, r.operation) for r in errors] == [  # type: ignore[attr-defined]
        (logging.ERROR, "redis", "load"),
        (logging.ERROR, "redis", "load"),
    ]
    assert summary(ours()) == [("cloudsessions.load", "unavailable", None)] * 2
    assert_no_ids(caplog.text + texts(ours()), sid)


# ------------------------------------------------------------ without OpenTelemetry


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done


def test_without_opentelemetry_everything_works_and_nothing_is_imported(tmp_path: Path) -> None:
    code = f"""
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
import logging, sqlite3
from cloudsessions import StoreUnavailable, new_session_id, open_store
from cloudsessions.testing import live

store = open_store({f"sqlite:///{tmp_path / 'plain.db'}?timeout=0.05"!r})
sid = new_session_id()
store.create(sid, live({{"a": 1}}))
assert store.load(sid).data == {{"a": 1}}
store.delete(sid)
lock = sqlite3.connect({str(tmp_path / "plain.db")!r}, isolation_level=None)
lock.execute("BEGIN IMMEDIATE")
try:
    store.create(new_session_id(), live({{}}))
except StoreUnavailable:
    pass  # and logged: no logging configured, so Python's last-resort handler prints it
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry."))
assert not loaded, loaded
"""
    done = run_python(code)
    assert "the sqlite session store did not answer a create call" in done.stderr


def test_importing_and_opening_a_store_imports_no_opentelemetry(tmp_path: Path) -> None:
    # Installed, it is imported at the first store call, never before.
    code = f"""
import sys
import cloudsessions, cloudsessions.telemetry
store = cloudsessions.open_store({f"sqlite:///{tmp_path / 'lazy.db'}"!r})
assert "opentelemetry" not in sys.modules
store.load(cloudsessions.new_session_id())
assert "opentelemetry.trace" in sys.modules
"""
    run_python(code)
