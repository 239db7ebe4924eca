"""The embedded store: one SQLite file, shared by the threads and processes of one machine.

WAL mode lets readers run beside a writer; every operation is one SQL statement, so each
is atomic on its own. A session's fields live in one JSON object column, and save()
changes single fields with json_set/json_remove inside that one UPDATE, so two processes
that change different keys of one session both keep their change.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, SessionExists, SessionGone, StoreUnavailable
from ..options import Options
from ..record import Changes, CheckResult, SessionInfo, StoredRecord
from ..store import Progress, Store, logger
from ..urls import StoreURL

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

OnConnect = Callable[[sqlite3.Connection], None]


def _path_of(field: str) -> str:
    # Field names are [A-Za-z0-9_%-] (see codec), so quoting them needs no escaping.
    return f'$."{field}"'


class SQLiteStore(Store):
    kind = "sqlite"
    default_max_record_bytes = 16 * 1024 * 1024

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "cloudsessions",
        timeout: float = 5.0,
        max_record_bytes: int | None = None,
        on_connect: OnConnect | None = None,
    ) -> None:
        super().__init__(max_record_bytes=max_record_bytes)
        if not _TABLE_NAME.fullmatch(table):
            raise ConfigurationError(
                f"sqlite table name {table!r} must match {_TABLE_NAME.pattern}"
            )
        self.path = Path(path)
        self.table = table
        self.timeout = timeout
        self.on_connect = on_connect
        self._local = threading.local()
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: StoreURL, options: dict[str, Any]) -> SQLiteStore:
        opts = Options(cls.kind, options, {"table", "timeout", "max_record_bytes", "on_connect"})
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs/x.db -> "/abs/x.db"
        path = url.path[1:] if url.path.startswith("/") else url.path
        if url.netloc or not path:
            raise ConfigurationError(
                f"sqlite store URL {url.raw!r} must look like sqlite:///relative/path.db"
                " or sqlite:////absolute/path.db"
            )
        return cls(
            path,
            table=opts.text("table", "cloudsessions"),
            timeout=opts.number("timeout", 5.0),
            max_record_bytes=opts.integer("max_record_bytes", 0) or None,
            on_connect=opts.get("on_connect"),
        )

    def describe(self) -> str:
        return f"sqlite file {self.path} (table {self.table})"

    # ------------------------------------------------------------------ connections

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread (sqlite3 connections are not shared across threads),
        # and a new one after fork: a connection must not cross into a child process.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._open()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=True
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if self.on_connect is not None:
                self.on_connect(conn)
            if not self._schema_ready:
                with self._schema_lock:
                    if not self._schema_ready:
                        self._create_schema(conn)
                        self._schema_ready = True
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open {self.describe()}: {exc}") from exc
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        t = self.table
        conn.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS {t} (
                id TEXT PRIMARY KEY,
                data TEXT NOT NULL,
                expires_at REAL NOT NULL,
                user_id TEXT
            );
            CREATE INDEX IF NOT EXISTS {t}_user_id ON {t}(user_id) WHERE user_id IS NOT NULL;
            CREATE INDEX IF NOT EXISTS {t}_expires_at ON {t}(expires_at);
            """
        )

    @contextmanager
    def _errors(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        try:
            yield conn
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as exc:
            # "database is locked" after the busy timeout, disk I/O errors, a vanished or
            # corrupt file.
            raise StoreUnavailable(f"{self.describe()}: {exc}") from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -------------------------------------------------------------------- contract

    def _load(self, rid: str) -> StoredRecord | None:
        with self._errors() as conn:
            row = conn.execute(
                f"SELECT data, expires_at, user_id FROM {self.table} WHERE id = ?", (rid,)
            ).fetchone()
        if row is None:
            return None
        fields, counters = {}, {}
        try:
            stored = json.loads(row[0])
        except ValueError:
            logger.warning("a session record could not be decoded and was ignored")
            return None
        for name, value in stored.items():
            # JSON text is a string; a counter is a native integer (see Store.increment).
            if isinstance(value, str):
                fields[name] = value
            else:
                counters[name] = value
        return StoredRecord(fields, row[1], row[2], counters)

    def _create(self, rid: str, record: StoredRecord) -> None:
        data = json.dumps(record.fields, separators=(",", ":"), ensure_ascii=False)
        try:
            with self._errors() as conn:
                conn.execute(
                    f"INSERT INTO {self.table} (id, data, expires_at, user_id) VALUES (?, ?, ?, ?)",
                    (rid, data, record.expires_at, record.user_id),
                )
        except sqlite3.IntegrityError:
            raise SessionExists("a session with this id exists") from None

    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        data_sql, params = "data", []
        if changes.removed_fields:
            data_sql = f"json_remove({data_sql}{', ?' * len(changes.removed_fields)})"
            params += [_path_of(f) for f in changes.removed_fields]
        if changes.set_fields:
            data_sql = f"json_set({data_sql}{', ?, ?' * len(changes.set_fields)})"
            for field, value in changes.set_fields.items():
                params += [_path_of(field), value]
        with self._errors() as conn:
            cursor = conn.execute(
                f"UPDATE {self.table} SET data = {data_sql}, expires_at = ?, user_id = ?"
                " WHERE id = ? AND expires_at > ?",
                (*params, expires_at, user_id, rid, now),
            )
        if cursor.rowcount != 1:
            raise SessionGone("the session was deleted or has expired")

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        path = _path_of(field)
        with self._errors() as conn:
            rows = conn.execute(
                f"UPDATE {self.table} SET data = json_set(data, ?,"
                " CASE json_type(data, ?) WHEN 'integer' THEN json_extract(data, ?) ELSE ? END"
                " + ?), expires_at = ? WHERE id = ? AND expires_at > ?"
                " RETURNING json_extract(data, ?)",
                (path, path, path, base, delta, expires_at, rid, now, path),
            ).fetchall()
        if not rows:
            raise SessionGone("the session was deleted or has expired")
        return int(rows[0][0])

    def _delete(self, rid: str) -> None:
        with self._errors() as conn:
            conn.execute(f"DELETE FROM {self.table} WHERE id = ?", (rid,))

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        removed = 0
        while True:
            with self._errors() as conn:
                cursor = conn.execute(
                    f"DELETE FROM {self.table} WHERE id IN"
                    f" (SELECT id FROM {self.table} WHERE expires_at <= ? LIMIT ?)",
                    (now, batch_size),
                )
            if cursor.rowcount <= 0:
                return removed
            removed += cursor.rowcount
            if progress is not None:
                progress(removed)

    def _for_user(self, user_id: str) -> list[SessionInfo]:
        with self._errors() as conn:
            rows = conn.execute(
                f"SELECT id, expires_at FROM {self.table} WHERE user_id = ?", (user_id,)
            ).fetchall()
        return [SessionInfo(rid, expires_at, user_id) for rid, expires_at in rows]

    def _delete_for_user(self, user_id: str, keep_rid: str | None) -> int:
        with self._errors() as conn:
            cursor = conn.execute(
                f"DELETE FROM {self.table} WHERE user_id = ? AND id IS NOT ?",
                (user_id, keep_rid),
            )
        return max(cursor.rowcount, 0)

    # ------------------------------------------------------------------ operations

    def provision(self, *, fix: bool = False) -> list[str]:
        existed = self.path.exists()
        self._connection()  # creates the file, WAL mode and the schema
        return [] if existed and self._table_exists() else [f"created {self.describe()}"]

    def drop(self) -> None:
        with self._errors() as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        self._schema_ready = False
        self.close()

    def _table_exists(self) -> bool:
        with self._errors() as conn:
            row = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,)
            ).fetchone()
        return row is not None

    def check(self) -> list[CheckResult]:
        if not self.path.exists():
            return [CheckResult("database file", False, f"{self.path} does not exist: run init")]
        results = [CheckResult("database file", True, str(self.path.resolve()))]
        conn = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            results.append(CheckResult("journal mode", mode == "wal", mode))
            names = {
                row[0]
                for row in conn.execute(
                    "SELECT name FROM sqlite_master WHERE tbl_name = ?", (self.table,)
                )
            }
            results.append(CheckResult("table", self.table in names, self.table))
            for index in (f"{self.table}_user_id", f"{self.table}_expires_at"):
                results.append(CheckResult("index", index in names, index))
            if self.table in names:
                count, expired = conn.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE expires_at <= ?) FROM {self.table}",
                    (time.time(),),
                ).fetchone()
                results.append(CheckResult("sessions", True, f"{count} stored, {expired} expired"))
        finally:
            conn.close()
        return results
