"""The Redis store: its clients, its errors, and the contract in one command per call.

Standalone or Redis Cluster (ElastiCache, Memorystore, Valkey alike). Every write is one
server-side script (scripts.py), atomic on the server: create only if absent, save and
increment only if the session exists and has not expired (never resurrect), per-key merge
writes. Expiry is native (PEXPIREAT), so purge_expired has nothing to do.

On a cluster the per-user index lives in other slots than the sessions; there, a write
that carries a user id first records it in the index (a second command, only for signed-in
sessions), so a live session is never missing from it. A delete or a change of user leaves
the old entry behind: for_user() reads each session the index names and drops (and
removes) what is deleted, expired or another user's, so none of those ever shows up.
Revoking one session there is its script on the session's slot, then a ZREM of its entry.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

import anyio
import redis.cluster
import redis.exceptions as rexc

from ... import deadline
from ...errors import ConfigurationError, SessionExists, SessionGone, StoreUnavailable
from ...record import Changes, CheckResult, EncodedRecord, SessionInfo
from ...store import ErrorKind, PerLoop, PerProcess, Progress, Store, StoreURL, parse_options
from . import admin
from .clients import Target, async_client, sync_client
from .options import RedisOptions
from .scripts import SOURCES

_GONE = "the session was deleted or has expired"
# Seconds a saved key outlives the save natively at least (see _save_args).
ENDED_KEY_LINGERS = 60

P = ParamSpec("P")
T = TypeVar("T")
# What a cluster answers while a replica takes over from a failed master.
# Never a timeout: the command may have run, and a script run twice could count twice.
_FAILING_OVER = (rexc.ConnectionError, rexc.ClusterDownError, rexc.TryAgainError)


def _failover_delays(store: RedisStore) -> Iterator[float]:
    """Sleeps between tries of a call on a cluster, until options.failover_timeout is spent."""
    if not store.cluster:
        return
    spent, delay = 0.0, 0.1
    while spent + delay <= store.options.failover_timeout:
        remaining = deadline.left("answer")  # the request deadline comes first
        if remaining is not None and delay >= remaining:
            return
        yield delay
        spent, delay = spent + delay, min(delay * 2, 1.0)


def _failing_over(exc: StoreUnavailable) -> bool:
    return isinstance(exc.__cause__, _FAILING_OVER)


def _outlasting_failover(
    method: Callable[Concatenate[RedisStore, P], T],
) -> Callable[Concatenate[RedisStore, P], T]:
    """On a cluster, try the call again while a failover may be under way."""

    @functools.wraps(method)
    def call(store: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if not store.cluster:
            return method(store, *args, **kwargs)  # a standalone server has no failover
        for delay in _failover_delays(store):
            try:
                return method(store, *args, **kwargs)
            except StoreUnavailable as exc:
                if not _failing_over(exc):
                    raise
            time.sleep(delay)
        return method(store, *args, **kwargs)

    return call


def _aoutlasting_failover(
    method: Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[RedisStore, P], Coroutine[Any, Any, T]]:
    """The same for an async call."""

    @functools.wraps(method)
    async def call(store: RedisStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        if not store.cluster:
            return await method(store, *args, **kwargs)
        for delay in _failover_delays(store):
            try:
                return await method(store, *args, **kwargs)
            except StoreUnavailable as exc:
                if not _failing_over(exc):
                    raise
            await anyio.sleep(delay)
        return await method(store, *args, **kwargs)

    return call


def _refused(exc: BaseException) -> bool:
    # A command a script runs, refused by the user's ACL.
    return "can't run this command" in str(exc) or "no permissions" in str(exc).lower()


# Every command the store sends (the scripts' too): what the user's ACL must allow.
ACL_COMMANDS = (
    "EVALSHA SCRIPT|LOAD SCRIPT|EXISTS HGETALL HMGET ZRANGE ZREM UNLINK SCAN INFO CONFIG|GET"
    " CLIENT|SETNAME, and inside the scripts EXISTS HGET HMGET HSET HDEL HEXISTS HINCRBY"
    " PEXPIREAT ZADD ZREMRANGEBYSCORE; SELECT for a database other than 0; on a cluster"
    " CLUSTER|SLOTS CLUSTER|INFO COMMAND"
)


class RedisStore(Store):
    kind = "redis"
    default_max_record_bytes = 64 * 1024 * 1024  # well under Redis's 512 MB per value
    error_kinds = (
        ErrorKind(
            (rexc.AuthenticationError, rexc.AuthorizationError),
            ConfigurationError,
            "check the user and password of the store URL",
        ),
        ErrorKind(
            (rexc.NoPermissionError, rexc.ResponseError),
            ConfigurationError,
            f"the user's ACL must allow {ACL_COMMANDS}",
            when=lambda exc: isinstance(exc, rexc.NoPermissionError) or _refused(exc),
        ),
        # Connection refused or reset, timeouts, a cluster failing over (CLUSTERDOWN,
        # TRYAGAIN, a master gone), a server loading or out of memory: after retries.
        ErrorKind(rexc.RedisError, StoreUnavailable),
        # A cluster none of whose nodes could be reached (its slot map is made again).
        ErrorKind(rexc.RedisClusterException, StoreUnavailable),
    )

    def __init__(self, target: Target, options: RedisOptions) -> None:
        super().__init__(max_record_bytes=options.max_record_bytes, deadline=options.deadline)
        if options.client is not None and not options.client.get_encoder().decode_responses:
            raise ConfigurationError(
                "the redis client given to the store must be made with decode_responses=True"
            )
        self.target = target
        self.options = options
        self.prefix = options.prefix
        # A cluster by its URL, or by the application's client it was given.
        self.cluster = target.cluster or isinstance(options.client, redis.cluster.RedisCluster)
        # Standalone: each script keeps the user index in its own atomic step.
        self._inline_index = "" if self.cluster else f"{self.prefix}u:"
        self._sync = PerProcess(self._make_client, _close_owned(options.client))
        self._async = PerLoop(self._make_async_client)

    @classmethod
    def from_url(cls, url: StoreURL, options: Mapping[str, Any]) -> RedisStore:
        return cls(Target.of(url), parse_options(RedisOptions, cls.kind, options))

    def describe(self) -> str:
        return f"{self.target.describe()} (prefix {self.prefix})"

    # ---------------------------------------------------------------------- clients

    # A cluster client connects as it is made (the slot map, the command table), inside the
    # first request's deadline: what that meets is the store's error, not a 500.
    def _make_client(self) -> Any:
        with self._errors("connect to the store"):
            client = self.options.client or sync_client(self.target, self.options)
        return client, {name: client.register_script(src) for name, src in SOURCES.items()}

    async def _make_async_client(self, stack: Any) -> Any:
        with self._errors("connect to the store"):
            client = await async_client(self.target, self.options, stack)
        return client, {name: client.register_script(src) for name, src in SOURCES.items()}

    def native_async(self) -> bool:
        return self.options.client is None

    def close(self) -> None:
        self._sync.close()
        self._async.close()

    async def aclose(self) -> None:
        await self._async.aclose()

    def _key(self, rid: str) -> str:
        return f"{self.prefix}s:{rid}"

    def _index(self, user_id: str) -> str:
        return f"{self.prefix}u:{user_id}"

    # --------------------------------------------------------------------- requests

    def _create_args(self, rid: str, record: EncodedRecord, now: float) -> list[Any]:
        args: list[Any] = [now, *_expiry(record.expires_at), record.user_id or ""]
        args += [self._inline_index, rid, record.meta or ""]
        for field, value in record.fields.items():
            args += [f"d:{field}", value]
        return args

    def _save_args(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> list[Any]:
        expires_s, expires_ms = _expiry(expires_at)
        # A save that ends the record (a rotation's retirement, see Store.save) keeps its
        # key a while, expired by its "e": a retry of the save then finds its own write,
        # where a key Redis had already dropped would read as a session ended elsewhere.
        expires_ms = max(expires_ms, int((now + ENDED_KEY_LINGERS) * 1000))
        args: list[Any] = [now, expires_s, expires_ms, user_id or "", self._inline_index, rid]
        args += [changes.meta or "", len(changes.set_fields)]
        for field, value in changes.set_fields.items():
            args += [f"d:{field}", value]
        return args + changes.removed_fields

    def _increment_args(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> list[Any]:
        return [now, *_expiry(expires_at), field, delta, base, self._inline_index, rid]

    def _index_put(
        self, rid: str, user_id: str | None, expires_at: float, now: float
    ) -> tuple[list[str], list[Any]] | None:
        """Cluster only: the index_put call that goes before a signed-in session's write, so
        the index never misses a live session."""
        if not user_id or self._inline_index:
            return None
        return [self._index(user_id)], [rid, *_expiry(expires_at), now]

    # --------------------------------------------------------------------- contract

    # A call's errors are translated only once it has failed (`with self._errors(): raise`
    # re-raises the error through the translation): around every call, the context manager
    # is a measurable share of a 0.1 ms round trip.

    @_outlasting_failover
    def _load(self, rid: str) -> EncodedRecord | None:
        client, _ = self._sync.get()
        try:
            return _decoded(client.hgetall(self._key(rid)))
        except Exception:
            with self._errors("load a session"):
                raise

    @_outlasting_failover
    def _create(self, rid: str, record: EncodedRecord) -> None:
        client, scripts = self._sync.get()
        now = time.time()
        args = self._create_args(rid, record, now)
        try:
            if index := self._index_put(rid, record.user_id, record.expires_at, now):
                _run(client, scripts["index_put"], *index)
            created = _run(client, scripts["create"], [self._key(rid)], args)
        except Exception:
            with self._errors("create a session"):
                raise
        if not created:
            raise SessionExists("a session with this id exists")

    @_outlasting_failover
    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        client, scripts = self._sync.get()
        args = self._save_args(rid, changes, expires_at, user_id, now)
        try:
            if index := self._index_put(rid, user_id, expires_at, now):
                _run(client, scripts["index_put"], *index)
            saved = _run(client, scripts["save"], [self._key(rid)], args)
        except Exception:
            with self._errors("save a session"):
                raise
        if not saved:
            raise SessionGone(_GONE)

    @_outlasting_failover
    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        client, scripts = self._sync.get()
        args = self._increment_args(rid, field, delta, base, expires_at, now)
        try:
            result = _run(client, scripts["increment"], [self._key(rid)], args)
            if result[0] and (index := self._index_put(rid, result[2], expires_at, now)):
                _run(client, scripts["index_put"], *index)
        except Exception:
            with self._errors("increment a session counter"):
                raise
        if not result[0]:
            raise SessionGone(_GONE)
        return int(result[1])

    @_outlasting_failover
    def _delete(self, rid: str) -> None:
        client, scripts = self._sync.get()
        try:
            _run(client, scripts["delete"], [self._key(rid)], [self._inline_index, rid])
        except Exception:
            with self._errors("delete a session"):
                raise

    # The async twins: the same requests on the running loop's client.

    @_aoutlasting_failover
    async def _aload(self, rid: str) -> EncodedRecord | None:
        client, _ = await self._async.get()
        try:
            return _decoded(await client.hgetall(self._key(rid)))
        except Exception:
            with self._errors("load a session"):
                raise

    @_aoutlasting_failover
    async def _acreate(self, rid: str, record: EncodedRecord) -> None:
        client, scripts = await self._async.get()
        now = time.time()
        args = self._create_args(rid, record, now)
        try:
            if index := self._index_put(rid, record.user_id, record.expires_at, now):
                await _arun(client, scripts["index_put"], *index)
            created = await _arun(client, scripts["create"], [self._key(rid)], args)
        except Exception:
            with self._errors("create a session"):
                raise
        if not created:
            raise SessionExists("a session with this id exists")

    @_aoutlasting_failover
    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        client, scripts = await self._async.get()
        args = self._save_args(rid, changes, expires_at, user_id, now)
        try:
            if index := self._index_put(rid, user_id, expires_at, now):
                await _arun(client, scripts["index_put"], *index)
            saved = await _arun(client, scripts["save"], [self._key(rid)], args)
        except Exception:
            with self._errors("save a session"):
                raise
        if not saved:
            raise SessionGone(_GONE)

    @_aoutlasting_failover
    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        client, scripts = await self._async.get()
        args = self._increment_args(rid, field, delta, base, expires_at, now)
        try:
            result = await _arun(client, scripts["increment"], [self._key(rid)], args)
            if result[0] and (index := self._index_put(rid, result[2], expires_at, now)):
                await _arun(client, scripts["index_put"], *index)
        except Exception:
            with self._errors("increment a session counter"):
                raise
        if not result[0]:
            raise SessionGone(_GONE)
        return int(result[1])

    @_aoutlasting_failover
    async def _adelete(self, rid: str) -> None:
        client, scripts = await self._async.get()
        try:
            await _arun(client, scripts["delete"], [self._key(rid)], [self._inline_index, rid])
        except Exception:
            with self._errors("delete a session"):
                raise

    # ------------------------------------------------------------ users, purge, admin

    @_outlasting_failover
    def _for_user(self, user_id: str) -> list[SessionInfo]:
        client, scripts = self._sync.get()
        with self._errors("list the sessions of a user"):
            return admin.sessions_of(self, client, scripts, user_id)

    @_outlasting_failover
    def _revoke(self, user_id: str, rid: str) -> bool:
        client, scripts = self._sync.get()
        with self._errors("revoke a session"):
            return admin.revoke(self, client, scripts, user_id, rid)

    @_outlasting_failover
    def _delete_for_user(
        self, user_id: str, keep_rid: str | None, progress: Progress | None = None
    ) -> list[str]:
        client, scripts = self._sync.get()
        with self._errors("delete the sessions of a user"):
            return admin.delete_sessions_of(self, client, scripts, user_id, keep_rid, progress)

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        return 0  # Redis removes expired keys itself (PEXPIREAT)

    def purge_note(self) -> str:
        """Why purge_expired removes nothing (see cloudsessions.admin)."""
        return (
            "Redis deletes expired sessions itself: each session's keys expire with it,"
            " so there is nothing to purge"
        )

    def provision(self, *, fix: bool = False) -> list[str]:
        client, _ = self._sync.get()
        with self._errors("load the scripts"):
            return admin.load_scripts(client)

    def drop(self, *, progress: Progress | None = None) -> None:
        client, _ = self._sync.get()
        with self._errors("delete this store's keys"):
            admin.delete_keys(client, self.prefix, progress)

    def check(self) -> list[CheckResult]:
        client, _ = self._sync.get()
        return admin.check(self, client)


def _run(client: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    """One EVALSHA of a registered script. Calling the Script does the same with a few µs
    of bookkeeping on every call; here it runs only when the server has lost the script
    (restarted, or SCRIPT FLUSH): it loads it again, then runs it."""
    try:
        return client.evalsha(script.sha, len(keys), *keys, *args)
    except rexc.NoScriptError:
        return script(keys, args)


async def _arun(client: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except rexc.NoScriptError:
        return await script(keys, args)


def _expiry(expires_at: float) -> tuple[float, int]:
    """The expiry as the scripts take it: seconds (stored) and milliseconds (PEXPIREAT)."""
    return expires_at, max(int(expires_at * 1000), 1)


def _decoded(fields: Mapping[str, str]) -> EncodedRecord | None:
    if "e" not in fields:
        return None  # absent (or not a session of ours)
    record = EncodedRecord({}, float(fields["e"]), fields.get("u"), meta=fields.get("m"))
    for name in fields.get("o", "").split(","):
        if (text := fields.get(f"d:{name}")) is not None:
            record.fields[name] = text
        elif (count := fields.get(f"c:{name}")) is not None:
            record.counters[name] = int(count)
    return record


def _close_owned(given: Any) -> Any:
    def close(made: tuple[Any, Any]) -> None:
        if made[0] is not given:  # an application's client stays open
            made[0].close()

    return close
