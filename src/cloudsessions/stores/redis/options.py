"""The Redis store's options: each default written once (see cloudsessions.store.options)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ...errors import ConfigurationError
from ...store import StoreOptions

OnCommand = Callable[[tuple[Any, ...]], None]


@dataclasses.dataclass(frozen=True, kw_only=True)
class RedisOptions(StoreOptions):
    # Every key of this store starts with it: several apps (or tests) share one server.
    prefix: str = "cloudsessions:"
    # Bounds of one attempt; with `attempts`, the bound of a call against a dead server.
    socket_timeout: float = 2.0
    socket_connect_timeout: float = 2.0
    # Tries per call on a connection error or timeout (and, on a cluster, on a failover:
    # MOVED, CLUSTERDOWN, TRYAGAIN), with a short exponential backoff in between.
    attempts: int = 3
    # A cluster: how long calls keep retrying while a failed master's replica takes over
    # (cluster-node-timeout plus the election); then the call fails as unavailable.
    failover_timeout: float = 10.0
    client_name: str | None = "cloudsessions"
    max_connections: int | None = None  # per process (per node on a cluster)
    ssl_ca_certs: str | None = None  # rediss://: a CA bundle other than the system's
    # Called with each command's arguments as the client sends it (metrics, tests).
    on_command: OnCommand | None = None
    # An application's client (redis.Redis or redis.cluster.RedisCluster): used as given;
    # async calls then run it in worker threads.
    client: Any = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.prefix or any(c in self.prefix for c in "{}*?[]"):
            raise ConfigurationError(
                f"redis option prefix {self.prefix!r} must be non-empty, without {{}}*?[]"
                " (hash tags and SCAN patterns)"
            )
        if self.attempts < 1:
            raise ConfigurationError("redis option attempts must be at least 1")
