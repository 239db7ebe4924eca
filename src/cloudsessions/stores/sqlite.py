"""The embedded store: one SQLite file, shared by the threads and processes of one machine.

WAL mode lets readers run beside a writer; every operation is one SQL statement, so each
is atomic on its own. A session's fields live in one JSON object column, and save()
changes single fields with json_set/json_remove inside that one UPDATE, so two processes
that change different keys of one session both keep their change.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from .. import deadline
from ..errors import ConfigurationError, SessionExists, SessionGone, StoreUnavailable
from ..store import (
    Changes,
    CheckResult,
    EncodedRecord,
    ErrorKind,
    PerThread,
    Progress,
    SessionInfo,
    Store,
    StoreOptions,
    StoreURL,
    decode_meta,
    logger,
    parse_options,
)

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

OnConnect = Callable[[sqlite3.Connection], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class SQLiteOptions(StoreOptions):
    table: str = "cloudsessions"
    timeout: float = 5.0  # seconds to wait for another process's write lock
    on_connect: OnConnect | None = None  # called with each new connection (tests trace SQL)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _TABLE_NAME.fullmatch(self.table):
            raise ConfigurationError(
                f"sqlite table name {self.table!r} must match {_TABLE_NAME.pattern}"
            )


def _path_of(field: str) -> str:
    # Field names are [A-Za-z0-9_%-] (see codec), so quoting them needs no escaping.
    return f'$."{field}"'


class SQLiteStore(Store):
    kind = "sqlite"
    default_max_record_bytes = 16 * 1024 * 1024
    error_kinds = (
        # Only an INSERT can break the primary key: create() found the id taken.
        ErrorKind(sqlite3.IntegrityError, SessionExists),
        # "database is locked" after the busy timeout, disk I/O errors, a vanished or
        # corrupt file.
        ErrorKind(sqlite3.Error, StoreUnavailable),
    )

    def __init__(self, path: Path, options: SQLiteOptions) -> None:
        super().__init__(max_record_bytes=options.max_record_bytes, deadline=options.deadline)
        self.path = path
        self.options = options
        self.table = options.table
        # sqlite3 connections are not shared across threads: one per thread (and process).
        self._connections = PerThread(self._open, sqlite3.Connection.close)
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: StoreURL, options: Mapping[str, Any]) -> SQLiteStore:
        # sqlite:///relative.db -> "relative.db"; sqlite:////abs/x.db -> "/abs/x.db"
        path = url.path[1:] if url.path.startswith("/") else url.path
        if url.netloc or not path:
            raise ConfigurationError(
                f"sqlite store URL {url.raw!r} must look like sqlite:///relative/path.db"
                " or sqlite:////absolute/path.db"
            )
        return cls(Path(path), parse_options(SQLiteOptions, cls.kind, options))

    def describe(self) -> str:
        return f"sqlite file {self.path} (table {self.table})"

    # ------------------------------------------------------------------ connections

    def _open(self) -> sqlite3.Connection:
        with self._errors("open the database"):
            conn = sqlite3.connect(
                self.path,
                timeout=min(self.options.timeout, self.options.deadline),
                isolation_level=None,
                check_same_thread=True,
            )
            # Switching a new file to WAL takes its write lock without waiting for it: two
            # threads opening a new file at once would see "database is locked".
            with self._schema_lock:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if self.options.on_connect is not None:
                self.options.on_connect(conn)
            if not self._schema_ready:
                with self._schema_lock:
                    if not self._schema_ready:
                        self._create_schema(conn)
                        self._schema_ready = True
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        t = self.table
        conn.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS {t} (
                id TEXT PRIMARY KEY,
                data TEXT NOT NULL,
                expires_at REAL NOT NULL,
                user_id TEXT,
                meta TEXT
            );
            CREATE INDEX IF NOT EXISTS {t}_user_id ON {t}(user_id) WHERE user_id IS NOT NULL;
            CREATE INDEX IF NOT EXISTS {t}_expires_at ON {t}(expires_at);
            """
        )
        # A table made before session metadata existed gains its column (instant in SQLite:
        # the rows are not rewritten).
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({t})")}
        if "meta" not in columns:
            conn.execute(f"ALTER TABLE {t} ADD COLUMN meta TEXT")

    def _execute(self, what: str, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        with self._errors(what):
            conn = self._connections.get()
            with self._lock_wait_within_deadline(conn):
                return conn.execute(sql, params)

    @contextlib.contextmanager
    def _lock_wait_within_deadline(self, conn: sqlite3.Connection) -> Iterator[None]:
        """A statement waits for another process's lock (the busy timeout) no longer than
        what is left of the request deadline (cloudsessions.deadline); the connection's
        usual wait is set again after it. Within 10% of it, the usual wait stands: two
        PRAGMAs per statement would cost more than they save."""
        usual = min(self.options.timeout, self.options.deadline)
        remaining = deadline.left()
        if remaining is None or remaining >= usual * 0.9:
            yield
            return
        conn.execute(f"PRAGMA busy_timeout = {max(int(remaining * 1000), 1)}")
        try:
            yield
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(usual * 1000)}")

    def close(self) -> None:
        self._connections.close()

    # -------------------------------------------------------------------- contract

    def _load(self, rid: str) -> EncodedRecord | None:
        row = self._execute(
            "load a session",
            f"SELECT data, expires_at, user_id, meta FROM {self.table} WHERE id = ?",
            (rid,),
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
        return EncodedRecord(fields, row[1], row[2], counters, row[3])

    def _create(self, rid: str, record: EncodedRecord) -> None:
        data = json.dumps(record.fields, separators=(",", ":"), ensure_ascii=False)
        self._execute(
            "create a session",
            f"INSERT INTO {self.table} (id, data, expires_at, user_id, meta)"
            " VALUES (?, ?, ?, ?, ?)",
            (rid, data, record.expires_at, record.user_id, record.meta),
        )

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
        # No metadata to write leaves the stored one: meta = coalesce(NULL, meta).
        cursor = self._execute(
            "save a session",
            f"UPDATE {self.table} SET data = {data_sql}, expires_at = ?, user_id = ?,"
            " meta = coalesce(?, meta) WHERE id = ? AND expires_at > ?",
            (*params, expires_at, user_id, changes.meta, rid, now),
        )
        if cursor.rowcount != 1:
            raise SessionGone("the session was deleted or has expired")

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        path = _path_of(field)
        rows = self._execute(
            "increment a session counter",
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
        self._execute("delete a session", f"DELETE FROM {self.table} WHERE id = ?", (rid,))

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        removed = 0
        while True:
            cursor = self._execute(
                "purge expired sessions",
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
        rows = self._execute(
            "list the sessions of a user",
            f"SELECT id, expires_at, meta FROM {self.table} WHERE user_id = ?",
            (user_id,),
        ).fetchall()
        return [SessionInfo(rid, exp, user_id, decode_meta(meta)) for rid, exp, meta in rows]

    def _revoke(self, user_id: str, rid: str) -> bool:
        cursor = self._execute(
            "revoke a session",
            f"DELETE FROM {self.table} WHERE id = ? AND user_id = ?",
            (rid, user_id),
        )
        return cursor.rowcount == 1

    def _delete_for_user(
        self, user_id: str, keep_rid: str | None, progress: Progress | None = None
    ) -> list[str]:
        sql = f"DELETE FROM {self.table} WHERE user_id = ? AND id IS NOT ? RETURNING id"
        with self._errors("delete the sessions of a user"):
            # The statement runs to its end as its rows are fetched.
            conn = self._connections.get()
            with self._lock_wait_within_deadline(conn):
                rows = conn.execute(sql, (user_id, keep_rid)).fetchall()
        # One statement, one batch: a single progress call, once it is done.
        if rows and progress is not None:
            progress(len(rows))
        return [rid for (rid,) in rows]

    # ------------------------------------------------------------------ operations

    def provision(self, *, fix: bool = False) -> list[str]:
        existed = self.path.exists()
        try:
            self._connections.get()  # creates the file, WAL mode and the schema
        except StoreUnavailable as exc:
            wrong = self._not_a_database(exc)
            if wrong is None:
                raise
            raise wrong from exc.__cause__
        return [] if existed and self._table_exists() else [f"created {self.describe()}"]

    def drop(self, *, progress: Progress | None = None) -> None:
        """DROP TABLE (its indexes go with it). The file is kept, as it may hold other
        tables; a missing file is not created."""
        if not self.path.exists():
            return
        self.close()
        self._schema_ready = False  # a later use creates the table again
        with self._inspecting("drop the table") as conn:
            conn.execute(f"DROP TABLE IF EXISTS {self.table}")

    def drop_target(self) -> tuple[bool, str]:
        """What drop() deletes, or why there is nothing to (see cloudsessions.admin)."""
        if not self.path.exists():
            return False, f"{self.path} does not exist"
        with self._inspecting("find the table") as conn:
            count = self._count(conn, expired_only=False)
        if count is None:
            return False, f"sqlite file {self.path} has no table {self.table}"
        return True, (
            f"table {self.table} ({count} session(s)) in sqlite file {self.path}"
            " (the file itself is kept)"
        )

    def count_records(self, *, expired_only: bool) -> int | None:
        """The expired sessions purge will delete (drop, one statement, reports none)."""
        if not expired_only or not self.path.exists():
            return None
        with self._inspecting("count the expired sessions") as conn:
            return self._count(conn, expired_only=True)

    def _count(self, conn: sqlite3.Connection, *, expired_only: bool) -> int | None:
        """The sessions in the table (expired ones only: through the expires_at index),
        or None if there is no table."""
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self.table,)
        ).fetchone()
        if found is None:
            return None
        where = " WHERE expires_at <= ?" if expired_only else ""
        params = (time.time(),) if expired_only else ()
        count: int = conn.execute(f"SELECT count(*) FROM {self.table}{where}", params).fetchone()[0]
        return count

    @contextlib.contextmanager
    def _inspecting(self, what: str) -> Iterator[sqlite3.Connection]:
        """A plain connection to an existing file: unlike the store's own, it creates
        neither the schema nor WAL mode (check and destroy change nothing by looking)."""
        try:
            with self._errors(what):
                conn = sqlite3.connect(
                    self.path,
                    timeout=min(self.options.timeout, self.options.deadline),
                    isolation_level=None,
                )
                try:
                    yield conn
                finally:
                    conn.close()
        except StoreUnavailable as exc:
            wrong = self._not_a_database(exc)
            if wrong is None:
                raise
            raise wrong from exc.__cause__

    def _table_exists(self) -> bool:
        row = self._execute(
            "find the table",
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
            (self.table,),
        ).fetchone()
        return row is not None

    def _init_hint(self) -> str:
        table = f"?table={self.table}" if self.table != SQLiteOptions.table else ""
        return f"run `cloudsessions init --store 'sqlite:///{self.path}{table}'`"

    def check(self) -> list[CheckResult]:
        if not self.path.exists():
            return [
                CheckResult(
                    "database file", False, f"{self.path} does not exist: {self._init_hint()}"
                )
            ]
        where = str(self.path.resolve())
        try:
            with self._inspecting("check the database") as conn:
                return self._check(conn, where)
        except ConfigurationError as exc:  # not a database (a text file, another format)
            return [CheckResult("database file", False, str(exc))]
        except StoreUnavailable as exc:  # unreadable, or locked for longer than the timeout
            fix = "check its permissions and that no process holds a lock on it"
            return [CheckResult("database file", False, f"{where}: {exc.__cause__}: {fix}")]

    def _not_a_database(self, exc: StoreUnavailable) -> ConfigurationError | None:
        """The error naming the fix, if `exc` is SQLite finding a file of another kind."""
        cause = exc.__cause__
        if not (isinstance(cause, sqlite3.DatabaseError) and "not a database" in str(cause)):
            return None
        return ConfigurationError(
            f"{self.path.resolve()} is not a SQLite database ({cause}): give the store URL"
            " another file, or move this one away and run `cloudsessions init`"
        )

    def _check(self, conn: sqlite3.Connection, where: str) -> list[CheckResult]:
        results = [CheckResult("database file", True, where)]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        results.append(
            CheckResult(
                "journal mode",
                mode == "wal",
                mode if mode == "wal" else f"{mode}, not wal: {self._init_hint()}",
            )
        )
        names = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE tbl_name = ?", (self.table,)
            )
        }
        if self.table not in names:
            detail = f"{self.table} missing: {self._init_hint()}"
            return [*results, CheckResult("table", False, detail)]
        results.append(CheckResult("table", True, self.table))
        for index in (f"{self.table}_user_id", f"{self.table}_expires_at"):
            ok = index in names
            results.append(
                CheckResult("index", ok, index if ok else f"{index} missing: {self._init_hint()}")
            )
        count = self._count(conn, expired_only=False)
        expired = self._count(conn, expired_only=True)
        results.append(CheckResult("sessions", True, f"{count} stored, {expired} expired"))
        return results
