"""What only the embedded SQLite store does: files, WAL, processes, its URL and options."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from cloudsessions import (
    ConfigurationError,
    SessionRecord,
    StoreUnavailable,
    new_session_id,
    open_store,
)
from cloudsessions.stores.sqlite import SQLiteStore


def test_urls_name_relative_and_absolute_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///sub.db")
    assert isinstance(relative, SQLiteStore) and relative.path == Path("sub.db")
    absolute = open_store(f"sqlite:///{tmp_path}/abs.db?table=web_sessions&timeout=2")
    assert isinstance(absolute, SQLiteStore)
    assert absolute.path == tmp_path / "abs.db"
    assert (absolute.table, absolute.options.timeout) == ("web_sessions", 2.0)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("sqlite://", "must look like sqlite:///"),
        ("sqlite://host/x.db", "must look like sqlite:///"),
        ("sqlite:///x.db?tabel=x", "unknown option(s) for the sqlite store: tabel"),
        ("sqlite:///x.db?timeout=soon", "'timeout' of the sqlite store must be a number"),
        ("sqlite:///x.db?table=drop;table", "table name"),
        ("postgres://x", "unknown store URL scheme"),
    ],
)
def test_bad_urls_name_what_to_fix(url: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        open_store(url)


def test_opening_a_store_touches_nothing(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path / 'lazy.db'}")
    assert not (tmp_path / "lazy.db").exists()


def test_first_use_creates_the_file_in_wal_mode(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'wal.db'}")
    assert store.load(new_session_id()) is None
    with sqlite3.connect(tmp_path / "wal.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert {r.name: r.ok for r in store.check()} == {
        "database file": True,
        "journal mode": True,
        "table": True,
        "index": True,
        "sessions": True,
    }


def test_an_unreachable_file_is_store_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}")
    with pytest.raises(StoreUnavailable, match=r"sqlite file .* could not open the database"):
        store.load(new_session_id())


def test_a_locked_database_is_store_unavailable_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    store = open_store(f"sqlite:///{path}?timeout=0.2")
    key = new_session_id()
    store.create(key, SessionRecord({"a": 1}, time.time() + 60))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable, match="locked") as raised:
            store.save(key, SessionRecord({"a": 2}, time.time() + 60), ["a"])
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.save(key, SessionRecord({"a": 2}, time.time() + 60), ["a"])  # recovers by itself
    record = store.load(key)
    assert record is not None and record.data == {"a": 2}


def _write_key(url: str, key: str, field: str, ready: multiprocessing.synchronize.Barrier) -> None:
    store = open_store(url)
    record = store.load(key)
    assert record is not None
    record.data[field] = field
    ready.wait()
    store.save(key, record, [field])


def test_processes_changing_different_keys_of_one_session_all_keep_their_change(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    store = open_store(url)
    key = new_session_id()
    store.create(key, SessionRecord({}, time.time() + 60))
    ctx = multiprocessing.get_context("spawn")
    writers = 4
    barrier = ctx.Barrier(writers)
    procs = [
        ctx.Process(target=_write_key, args=(url, key, f"p{n}", barrier)) for n in range(writers)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [p.exitcode for p in procs] == [0] * writers
    record = store.load(key)
    assert record is not None
    assert record.data == {f"p{n}": f"p{n}" for n in range(writers)}


def test_provision_reports_creation_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'p.db'}")
    assert store.provision() == [f"created {store.describe()}"]
    assert store.provision() == []
    store.drop()
    assert [r.ok for r in store.check() if r.name == "table"] == [False]


def test_a_corrupt_record_reads_as_unknown_and_a_corrupt_file_as_unavailable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.db"
    store = open_store(f"sqlite:///{path}")
    key = new_session_id()
    store.create(key, SessionRecord({"a": 1}, time.time() + 60))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE cloudsessions SET data = 'not json'")
    assert store.load(key) is None
    assert "could not be decoded" in caplog.text and key not in caplog.text
    store.close()
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreUnavailable):
        open_store(f"sqlite:///{garbage}").load(new_session_id())
