"""What never runs on a request: per-user queries, scripts, destroy, and the checks."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import redis.exceptions

from ...record import CheckResult, SessionInfo
from ...store import Progress, decode_meta
from .scripts import SOURCES

if TYPE_CHECKING:
    from .store import RedisStore

_SAFE_POLICY = "noeviction"


def sessions_of(
    store: RedisStore, client: Any, scripts: dict[str, Any], user_id: str
) -> list[SessionInfo]:
    """The live sessions the user's index names, with their metadata: one script reads the
    index and each session's fields; on a cluster, a range query and a read of each."""
    now = time.time()
    if not store.cluster:
        # Standalone: the scripts keep the index exact in the same step as each write.
        found = scripts["sessions_of"]([store._index(user_id)], [store._key(""), now, user_id])
        return [
            SessionInfo(rid, float(expires), user_id, decode_meta(meta or None))
            for rid, expires, meta in zip(found[::3], found[1::3], found[2::3], strict=True)
        ]
    # Cluster: written apart from the sessions, the index may name a session that has
    # since been deleted, expired or moved to another user: read each, drop the stale.
    entries = client.zrange(store._index(user_id), now, "+inf", byscore=True)
    live, stale = [], []
    for rid in entries:
        expires, owner, meta = client.hmget(store._key(rid), "e", "u", "m")
        if expires is not None and float(expires) > now and owner == user_id:
            live.append(SessionInfo(rid, float(expires), user_id, decode_meta(meta)))
        else:
            stale.append(rid)
    if stale:
        client.zrem(store._index(user_id), *stale)
    return live


def delete_sessions_of(
    store: RedisStore,
    client: Any,
    scripts: dict[str, Any],
    user_id: str,
    keep: str | None,
    progress: Progress | None = None,
) -> list[str]:
    """Delete the user's sessions but `keep`: one script on a standalone server (one
    progress call, after it), a script and a ZREM per session on a cluster (one each)."""
    removed: list[str] = []
    if not store.cluster:
        keys, args = [store._index(user_id)], [store._key(""), keep or ""]
        removed = list(scripts["delete_for_user"](keys, args))
        if removed and progress is not None:
            progress(len(removed))
        return removed
    for info in sessions_of(store, client, scripts, user_id):
        if info.record_id != keep:
            scripts["delete"]([store._key(info.record_id)], ["", info.record_id])
            client.zrem(store._index(user_id), info.record_id)  # or for_user drops it later
            removed.append(info.record_id)
            if progress is not None:
                progress(len(removed))
    return removed


def revoke(store: RedisStore, client: Any, scripts: dict[str, Any], user_id: str, rid: str) -> bool:
    """Delete session `rid` if it is `user_id`'s: one script, which on a standalone server
    also drops its index entry; on a cluster the index is in another slot, so its entry
    goes with a ZREM after (if that fails, for_user drops it later)."""
    index = store._inline_index
    revoked = bool(scripts["revoke"]([store._key(rid)], [user_id, index, rid]))
    if revoked and store.cluster:
        client.zrem(store._index(user_id), rid)
    return revoked


def _masters(client: Any) -> list[Any]:
    """A client per master: the client itself, or each primary node's on a cluster."""
    if hasattr(client, "get_primaries"):
        return [client.get_redis_connection(node) for node in client.get_primaries()]
    return [client]


def _missing_scripts(master: Any, sources: Mapping[str, str] = SOURCES) -> list[str]:
    shas = [master.register_script(source).sha for source in sources.values()]
    return [name for name, ok in zip(sources, master.script_exists(*shas), strict=True) if not ok]


def load_scripts(client: Any, sources: Mapping[str, str] = SOURCES) -> list[str]:
    """Load the scripts on every master, so no request pays for a SCRIPT LOAD."""
    loaded = []
    for master in _masters(client):
        missing = _missing_scripts(master, sources)
        for name in missing:
            master.script_load(sources[name])
        if missing:
            loaded.append(f"loaded {len(missing)} script(s) on {_address(master)}")
    return loaded


def _address(client: Any) -> str:
    kwargs = client.connection_pool.connection_kwargs
    return f"{kwargs.get('host')}:{kwargs.get('port')}"


def delete_keys(
    client: Any, prefix: str, progress: Progress | None = None, batch: int = 500
) -> int:
    """UNLINK every key under `prefix`, on every master, a batch per round trip.

    One UNLINK per key: on a cluster, keys of one node may still be in different slots.
    """
    removed = 0
    for master in _masters(client):
        keys = master.scan_iter(match=f"{prefix}*", count=batch)
        while chunk := list(itertools.islice(keys, batch)):
            pipe = master.pipeline(transaction=False)
            for key in chunk:
                pipe.unlink(key)
            removed += sum(pipe.execute())
            if progress is not None:
                progress(removed)
    return removed


def check(store: RedisStore, client: Any) -> list[CheckResult]:
    """Per master: version, eviction policy, persistence, scripts; and the cluster state."""
    try:
        results = []
        for master in _masters(client):
            where = _address(master)
            version = master.info("server")["redis_version"]
            results.append(CheckResult("server", True, f"{where}: redis {version}"))
            results += _memory_and_persistence(master, where)
            missing = _missing_scripts(master)
            detail = f"not loaded ({', '.join(missing)}): run init" if missing else "loaded"
            results.append(CheckResult("scripts", not missing, f"{where}: {detail}"))
        if store.cluster:
            state = client.cluster_info().get("cluster_state")
            results.append(CheckResult("cluster state", state == "ok", str(state)))
        return results
    except Exception as exc:  # noqa: BLE001 - reported as a failed check, never raised
        return [CheckResult("server", False, f"{store.describe()}: {type(exc).__name__}: {exc}")]


def _memory_and_persistence(master: Any, where: str) -> list[CheckResult]:
    try:
        config = master.config_get("maxmemory-policy", "save", "appendonly")
    except redis.exceptions.ResponseError:
        # Managed services (ElastiCache, Memorystore) often refuse CONFIG.
        return [CheckResult("eviction and persistence", True, f"{where}: not verifiable here")]
    policy = config.get("maxmemory-policy", "?")
    evicts = policy != _SAFE_POLICY
    persisted = bool(config.get("save")) or config.get("appendonly") == "yes"
    return [
        CheckResult(
            "eviction policy",
            not evicts,
            f"{where}: {policy}"
            + (
                ": under memory pressure Redis may evict sessions, which then vanish"
                " silently; set maxmemory-policy noeviction"
                if evicts
                else ""
            ),
            warning=evicts,
        ),
        CheckResult(
            "persistence",
            persisted,
            f"{where}: "
            + (
                "RDB snapshots or AOF on"
                if persisted
                else "none (no save, appendonly no): a restart loses every session"
            ),
            warning=not persisted,
        ),
    ]
