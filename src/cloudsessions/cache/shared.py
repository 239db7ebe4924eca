"""The cache's Redis: the shared tier's entries, and the invalidation channel's messages.

Two keys per cached session, in one slot (the record id is their hash tag), so a cluster
runs each script on one node:

    <prefix>{<rid>}:d   the record, JSON, expiring after shared_ttl (never past the session)
    <prefix>{<rid>}:t   the token of the record's last invalidation

A read fetches both (MGET). A miss reads the store and then fills the entry with a script
that writes it only if the token is still the one the read saw: an invalidation in between
(a logout, a rotation, a save) changes the token, so what the reader found before it can
never be put back. An invalidation deletes the entry and sets a new token in one script,
which also publishes the record id on the channel for the process-local tiers.

A Redis that fails is skipped for retry_after seconds (the store alone serves meanwhile,
with a warning); an invalidation that failed is kept and sent again before this process
reads the shared tier again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis.exceptions

from ..errors import StoreUnavailable
from ..record import CheckResult, EncodedRecord
from ..store import PerLoop, PerProcess, StoreURL, parse_options
from ..stores.redis.admin import delete_keys, load_scripts
from ..stores.redis.clients import Target, async_client, sync_client
from ..stores.redis.options import RedisOptions
from .options import CacheOptions

logger = logging.getLogger("cloudsessions")

# What a cache that is down, slow or unreachable raises (a cluster client that cannot map
# its slots raises the second, which is no RedisError).
FAILURES = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException, OSError)
# A token outlives any read under way by far (reads time out in seconds).
_TOKEN_TTL_MS = 15 * 60 * 1000
# The cache answers in well under a millisecond, or not at all: fail fast to the store.
_REDIS_DEFAULTS = {
    "socket_timeout": 0.5,
    "socket_connect_timeout": 0.5,
    "attempts": 1,
    "client_name": "cloudsessions-cache",
}

_FILL = """
if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
# The delete goes first: under maxmemory the SET may be refused, never the DEL.
_INVALIDATE = """
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], ARGV[4])
end
return 1
"""


@dataclass(slots=True)
class Read:
    """What a shared-tier read found: the record, or the token a fill must present."""

    record: EncodedRecord | None
    token: str


def dumps(record: EncodedRecord) -> str:
    payload = {"f": record.fields, "e": record.expires_at, "u": record.user_id}
    if record.counters:
        payload["c"] = record.counters
    if record.meta is not None:
        payload["m"] = record.meta
    return json.dumps(payload, separators=(",", ":"))


def loads(text: str) -> EncodedRecord:
    payload = json.loads(text)
    counters = payload.get("c", {})
    return EncodedRecord(payload["f"], payload["e"], payload["u"], counters, payload.get("m"))


class SharedTier:
    """The Redis of a cache: sync and asyncio clients, the scripts, and the breaker."""

    NEW = Read(None, "")
    """What a fill of a record just created presents: nobody has invalidated it yet."""

    def __init__(self, options: CacheOptions) -> None:
        assert options.redis
        url = StoreURL.parse(options.redis)
        self.target = Target.of(url)
        values = {**_REDIS_DEFAULTS, **url.query, **options.redis_options}
        self.redis_options = parse_options(RedisOptions, "cache's redis", values)
        self.prefix = options.prefix
        self.ttl_ms = int(options.shared_ttl * 1000)
        self.keep = options.shared
        self.channel = options.channel_name or ""
        self.retry_after = options.retry_after
        self._sync = PerProcess(self._make_client, lambda made: made[0].close())
        self._async = PerLoop(self._make_async_client)
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._pending: set[str] = set()  # invalidations not yet delivered
        self.errors = 0
        self.hits = 0

    def describe(self) -> str:
        return self.target.describe()

    # ------------------------------------------------------------------- clients

    def _make_client(self) -> tuple[Any, dict[str, Any]]:
        given = self.redis_options.client
        client = given or sync_client(self.target, self.redis_options)
        return client, _scripts(client)

    async def _make_async_client(self, stack: Any) -> tuple[Any, dict[str, Any]]:
        client = await async_client(self.target, self.redis_options, stack)
        return client, _scripts(client)

    def client(self) -> Any:
        """This process's sync client (the channel subscribes with it)."""
        return self._sync.get()[0]

    def close(self) -> None:
        self._sync.close()
        self._async.close()

    async def aclose(self) -> None:
        await self._async.aclose()

    def provision(self) -> list[str]:
        """Load the scripts, so no request pays for a SCRIPT LOAD (cloudsessions init)."""
        try:
            return [f"cache: {done}" for done in load_scripts(self.client(), _SOURCES)]
        except FAILURES as exc:
            raise StoreUnavailable(f"the session cache ({self.describe()}): {exc}") from exc

    def drop(self) -> None:
        """Delete every key of this cache (cloudsessions destroy, tests)."""
        with contextlib.suppress(*FAILURES):  # a cache entry expires anyway
            delete_keys(self.client(), self.prefix)

    def check(self) -> CheckResult:
        try:
            self.client().ping()
        except FAILURES as exc:
            detail = f"{self.describe()}: {type(exc).__name__}; the store alone serves meanwhile"
            return CheckResult("session cache", ok=False, detail=detail)
        return CheckResult("session cache", ok=True, detail=f"{self.describe()} answers")

    # ------------------------------------------------------------------- the keys

    def _keys(self, rid: str) -> list[str]:
        tagged = f"{self.prefix}{{{rid}}}"
        return [f"{tagged}:d", f"{tagged}:t"]

    def _fill_args(self, token: str, record: EncodedRecord) -> list[Any] | None:
        ttl_ms = min(self.ttl_ms, int((record.expires_at - time.time()) * 1000))
        return [token, dumps(record), ttl_ms] if ttl_ms > 0 else None

    def _invalidate_args(self, rid: str) -> list[Any]:
        return [secrets.token_hex(8), _TOKEN_TTL_MS, self.channel, rid]

    # ------------------------------------------------------------------- breaker

    def usable(self) -> bool:
        """False while this process skips the cache after an error."""
        return time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        with self._lock:
            self.errors += 1
            first = self.usable()
            self._down_until = time.monotonic() + self.retry_after
        if first:
            logger.warning(
                "the session cache (%s) failed to %s; this process uses the store alone for"
                " %g s, and servers that still reach the cache may serve a session this one"
                " revokes meanwhile for up to shared_ttl (%g s): %s",
                self.describe(),
                what,
                self.retry_after,
                self.ttl_ms / 1000,
                type(exc).__name__,
            )

    def _take_pending(self) -> list[str]:
        with self._lock:
            pending, self._pending = list(self._pending), set()
        return pending

    def _keep_pending(self, rids: Iterable[str]) -> None:
        with self._lock:
            self._pending.update(rids)

    # ------------------------------------------------------------------- sync calls

    def read(self, rid: str) -> Read | None:
        """The entry and token of `rid`; None if there is no shared tier (the Redis carries
        only the channel) or the cache is not usable now."""
        if not self.keep or not self.usable() or not self._flushed():
            return None
        try:
            client, _ = self._sync.get()
            text, token = client.mget(self._keys(rid))
        except FAILURES as exc:
            self._failed("read", exc)
            return None
        return self._found(text, token)

    def fill(self, rid: str, read: Read, record: EncodedRecord) -> None:
        """Keep `record` (just read from the store) unless invalidated since `read`."""
        args = self._fill_args(read.token, record) if self.keep else None
        if args is None or not self.usable():
            return
        try:
            _, scripts = self._sync.get()
            scripts["fill"](self._keys(rid), args)
        except FAILURES as exc:
            self._failed("fill", exc)

    def invalidate(self, rids: Iterable[str]) -> bool:
        """Drop the entries and change the tokens of `rids`, and publish them; False if the
        cache could not be told (kept, and sent before this process reads it again)."""
        to_send = self._to_send(rids)
        if to_send is None:
            return False
        # One call per record: a cluster client pipelines no scripts, and revoking many
        # sessions at once ("log out everywhere") is rare.
        for n, rid in enumerate(to_send):
            try:
                client, scripts = self._sync.get()
                self._send(client, scripts, rid)
            except FAILURES as exc:
                return self._unsent(to_send[n:], exc)
        return True

    def _to_send(self, rids: Iterable[str]) -> list[str] | None:
        """`rids` and those kept from a failure; None (all kept) while the cache is skipped."""
        to_send = list(rids) + self._take_pending()
        if to_send and not self.usable():
            self._keep_pending(to_send)
            return None
        return to_send

    def _unsent(self, rids: list[str], exc: BaseException) -> bool:
        self._keep_pending(rids)
        self._failed("invalidate", exc)
        return False

    def _send(self, client: Any, scripts: dict[str, Any], rid: str) -> Any:
        """The invalidation of one record (a publish alone if there is no shared tier)."""
        if not self.keep:
            return client.publish(self.channel, rid)
        return scripts["inv"](self._keys(rid), self._invalidate_args(rid), client=client)

    def _flushed(self) -> bool:
        """Deliver the invalidations kept from a failure; True once none are left."""
        if self._pending:
            self.invalidate(())
        return not self._pending

    # ------------------------------------------------------------------ async calls

    async def aread(self, rid: str) -> Read | None:
        if not self.keep or not self.usable() or not await self._aflushed():
            return None
        try:
            client, _ = await self._async.get()
            text, token = await client.mget(self._keys(rid))
        except FAILURES as exc:
            self._failed("read", exc)
            return None
        return self._found(text, token)

    async def afill(self, rid: str, read: Read, record: EncodedRecord) -> None:
        args = self._fill_args(read.token, record) if self.keep else None
        if args is None or not self.usable():
            return
        try:
            _, scripts = await self._async.get()
            await scripts["fill"](self._keys(rid), args)
        except FAILURES as exc:
            self._failed("fill", exc)

    async def ainvalidate(self, rids: Iterable[str]) -> bool:
        to_send = self._to_send(rids)
        if to_send is None:
            return False
        for n, rid in enumerate(to_send):
            try:
                client, scripts = await self._async.get()
                await self._send(client, scripts, rid)
            except FAILURES as exc:
                return self._unsent(to_send[n:], exc)
        return True

    async def _aflushed(self) -> bool:
        if self._pending:
            await self.ainvalidate(())
        return not self._pending

    def _found(self, text: str | None, token: str | None) -> Read:
        if text is not None:
            try:
                record = loads(text)
            except (ValueError, KeyError, TypeError):
                logger.warning("a session cache entry could not be decoded and was ignored")
            else:
                self.hits += 1
                return Read(record, token or "")
        return Read(None, token or "")


_SOURCES = {"fill": _FILL, "inv": _INVALIDATE}


def _scripts(client: Any) -> dict[str, Any]:
    return {name: client.register_script(source) for name, source in _SOURCES.items()}
