"""Redis: the same commands through the store's own redis-py client, on a redis-server
started here (Debian's, through tests/services/redis.py).

raw_load is HGETALL; raw_create, raw_save and raw_delete are the EVALSHA of the store's own
script (its SHA1, the same key and arguments, built by hand): the one round trip the store
makes for each, so the ratio is what cloudsessions adds around it (id checks and hashing,
encoding, the size check, building the arguments, decoding the hash, error mapping).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from tests.services.redis import redis_server

from benchmarks.harness import Target
from cloudsessions import open_store
from cloudsessions.record import Changes, EncodedRecord
from cloudsessions.stores.redis import RedisStore


def _expiry(expires_at: float) -> list[object]:
    return [expires_at, int(expires_at * 1000)]


@contextlib.contextmanager
def target(services: contextlib.ExitStack) -> Iterator[Target]:
    server = services.enter_context(redis_server())
    prefix = f"bench{os.getpid()}:"
    store = open_store(f"{server}/0?prefix={prefix}")
    assert isinstance(store, RedisStore)
    store.provision()  # the scripts, as `cloudsessions init` loads them
    client, scripts = store._sync.get()  # the store's client: same pool, same settings
    shas = {name: script.sha for name, script in scripts.items()}
    index = f"{prefix}u:"  # standalone: the scripts keep the user index themselves

    def key(rid: str) -> str:
        return f"{prefix}s:{rid}"

    def raw_load(rid: str) -> object:
        return client.hgetall(key(rid))

    def raw_create(rid: str, record: EncodedRecord) -> object:
        now, user = time.time(), record.user_id or ""
        args: list[object] = [now, *_expiry(record.expires_at), user, index, rid, record.meta or ""]
        for field, value in record.fields.items():
            args += [f"d:{field}", value]
        return client.evalsha(shas["create"], 1, key(rid), *args)

    def raw_save(
        rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> object:
        args: list[object] = [now, *_expiry(expires_at), user_id or "", index, rid]
        args += [changes.meta or "", len(changes.set_fields)]
        for field, value in changes.set_fields.items():
            args += [f"d:{field}", value]
        return client.evalsha(shas["save"], 1, key(rid), *args, *changes.removed_fields)

    def raw_delete(rid: str) -> object:
        return client.evalsha(shas["delete"], 1, key(rid), index, rid)

    try:
        yield Target(store, raw_load, raw_create, raw_save, raw_delete)
    finally:
        store.drop()
        store.close()
