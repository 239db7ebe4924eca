"""Redis: one standalone redis-server per pytest process; a key prefix per store.

Round trips are the commands the client sends, seen through the store's `on_command` hook
(a connection class of the store's on every client it makes: sync, asyncio, cluster).
Script calls (EVALSHA, EVAL) are classified by the script's SHA1 through SCRIPTS. Commands
that set up a connection or cluster (HELLO, CLIENT, SELECT, SCRIPT, CLUSTER, ...) are not
round trips of the contract; a command in none of the lists fails the test, so the lists
grow with the store rather than miscount it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cloudsessions import open_store
from cloudsessions.store import Store
from cloudsessions.stores.redis import SCRIPTS
from tests.services.redis import redis_server
from tests.stores import RoundTrips, started, unique_name

# Redis expires keys itself (PEXPIREAT): purge_expired has nothing to do.
PURGE_BY_TTL = True
# revoke(): one script checks the session's user, deletes it and its index entry.
REVOKE_TRIPS = (0, 1)

READS = frozenset(
    {
        "HGETALL", "HMGET", "HGET", "HEXISTS", "HLEN", "HKEYS", "HVALS", "HSCAN",
        "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE", "ZREVRANGEBYSCORE", "ZCARD", "ZCOUNT",
        "ZSCORE", "ZSCAN", "EXISTS", "SCAN", "GET", "MGET", "TTL", "PTTL", "TYPE",
        "EXPIRETIME", "PEXPIRETIME", "KEYS", "EVALSHA_RO", "EVAL_RO",
    }
)  # fmt: skip
WRITES = frozenset(
    {
        "DEL", "UNLINK", "ZREM", "ZADD", "ZREMRANGEBYSCORE", "HSET", "HSETNX", "HMSET",
        "HDEL", "HINCRBY", "HINCRBYFLOAT", "PEXPIREAT", "PEXPIRE", "EXPIREAT", "EXPIRE",
        "PERSIST", "SET", "MSET", "RENAME",
    }
)  # fmt: skip
# Connection and cluster housekeeping, admin, and the brackets of a transaction (its
# commands count on their own).
IGNORED = frozenset(
    {
        "HELLO", "AUTH", "CLIENT", "SELECT", "SCRIPT", "CLUSTER", "INFO", "CONFIG", "PING",
        "READONLY", "READWRITE", "ASKING", "COMMAND", "ECHO", "QUIT", "RESET", "TIME",
        "DBSIZE", "MEMORY", "MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH",
    }
)  # fmt: skip


def server_url(services: contextlib.ExitStack) -> str:
    """redis://127.0.0.1:PORT of the standalone server shared by this pytest process."""
    url: str = started("redis", redis_server)
    return url


def store_url(base: str) -> str:
    """A URL on `base` (a server or cluster URL, no path or query) with a prefix of its own."""
    prefix = unique_name("test") + ":"
    database = "" if base.startswith("redis+cluster") else "/0"
    return f"{base}{database}?prefix={prefix}"


def provisioned(url: str) -> str:
    """Load the scripts (as `cloudsessions init` does), so no test pays a SCRIPT LOAD."""
    store = open_store(url)
    try:
        store.provision()
    finally:
        store.close()
    return url


def url(folder: Path, services: contextlib.ExitStack) -> str:
    return provisioned(store_url(server_url(services)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, (bytes, bytearray, memoryview)) else str(value)


def classify(args: tuple[Any, ...]) -> tuple[str, str] | None:
    """("read" | "write", a name for the trip) for a command's arguments, None if ignored."""
    if not args:
        return None
    # redis-py sends some commands as one word ("CLUSTER SLOTS"), some as two arguments.
    verb = _text(args[0]).split(" ", 1)[0].upper()
    if verb in ("EVALSHA", "EVAL"):
        sha = _text(args[1])
        if verb == "EVAL":
            sha = hashlib.sha1(sha.encode()).hexdigest()
        if sha.lower() not in SCRIPTS:
            raise AssertionError(f"{verb} of a script not in SCRIPTS: {sha}")
        name, kind = SCRIPTS[sha.lower()]
        return kind, f"{verb} {name}"
    if verb in READS:
        return "read", verb
    if verb in WRITES:
        return "write", verb
    if verb in IGNORED:
        return None
    raise AssertionError(f"unclassified Redis command {args[:3]!r}: add it to tests/backends")


def counter(trips: RoundTrips) -> Callable[[tuple[Any, ...]], None]:
    def on_command(args: tuple[Any, ...]) -> None:
        found = classify(args)
        if found is not None:
            kind, name = found
            (trips.reads if kind == "read" else trips.writes).append(name)

    return on_command


def instrument(url: str, trips: RoundTrips) -> Store:
    return open_store(url, on_command=counter(trips))
