"""Redis Cluster: 3 masters + 3 replicas formed once per pytest process; a prefix per store.

The store is given the masters as seed nodes (redis+cluster://H:P1,H:P2,H:P3); round trips
are counted as for the standalone server (tests/backends/redis.py), on every node's
connections. Fault tests start a cluster of their own (tests.services.redis.redis_cluster).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from tests.backends.redis import counter, instrument, provisioned, store_url
from tests.services.redis import RedisCluster, redis_cluster
from tests.stores import started

__all__ = ["INDEX_APART", "PURGE_BY_TTL", "REVOKE_TRIPS", "cluster", "counter", "instrument", "url"]

# Redis expires keys itself (PEXPIREAT): purge_expired has nothing to do.
PURGE_BY_TTL = True
# The per-user index lives in other slots than the sessions: a signed-in write also writes
# the index, and for_user() reads each session the index names (see Instrumented).
INDEX_APART = True
# revoke(): the script on the session's slot (check its user, delete it), then a ZREM of
# its entry on the index's slot.
REVOKE_TRIPS = (0, 2)


def cluster(services: contextlib.ExitStack) -> RedisCluster:
    """The cluster shared by this pytest process (its nodes and topology), formed once."""
    shared: RedisCluster = started("redis_cluster", redis_cluster)
    return shared


def url(folder: Path, services: contextlib.ExitStack) -> str:
    return provisioned(store_url(cluster(services).url))
