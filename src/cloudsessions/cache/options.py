"""The CACHE setting: which tiers sit in front of the store, and their bounds.

One mapping on every front door (Django ``CLOUDSESSIONS["CACHE"]``, Flask
``CLOUDSESSIONS_CACHE``, ASGI ``cache=``); each option and its default written once here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from ..store import parse_options


@dataclasses.dataclass(frozen=True, kw_only=True)
class CacheOptions:
    # The Redis that holds the shared tier and carries the invalidation channel
    # (redis://, rediss://, redis+cluster://; its query takes the Redis store's options).
    redis: str | None = None
    # Keep sessions in that Redis (the shared tier). False: it only carries the channel.
    shared: bool = True
    # How long the shared tier keeps an entry, seconds (never past the session's expiry);
    # also the most another server may serve a session revoked by a server that could not
    # reach the cache at that moment (see strict_invalidation).
    shared_ttl: float = 120.0
    # A write whose invalidation cannot reach the shared tier raises StoreUnavailable (after
    # the store write): a logout is then never reported done while the cache may still
    # hold the session. False: it succeeds, with a warning (the cache is optional).
    strict_invalidation: bool = False
    # The process-local tier: a hit younger than this many seconds is served without any
    # network call. 0 turns the local tier off.
    max_staleness: float = 0.0
    max_entries: int = 10_000
    max_bytes: int = 32 * 1024 * 1024
    # Publish every write's invalidation on the Redis, and apply the others' (local tier).
    channel: bool = True
    # Every key and the channel of the cache start with it.
    prefix: str = "cloudsessions:cache:"
    # After a cache error, this process uses the store alone for this many seconds.
    retry_after: float = 5.0
    # The Redis client's options (socket_timeout, attempts, on_command, client, ...).
    redis_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.shared_tier and not self.local_tier:
            raise ConfigurationError(
                "CACHE turns on no tier: give it a redis URL (the shared tier) and/or"
                " max_staleness in seconds (the process-local tier)"
            )
        if not self.prefix or any(c in self.prefix for c in "{}*?[]"):
            raise ConfigurationError(
                f"cache option prefix {self.prefix!r} must be non-empty, without {{}}*?[]"
            )
        if self.max_entries < 1 or self.max_bytes < 1:
            raise ConfigurationError("cache options max_entries and max_bytes must be positive")

    @property
    def shared_tier(self) -> bool:
        return bool(self.redis) and self.shared

    @property
    def local_tier(self) -> bool:
        return self.max_staleness > 0

    @property
    def channel_name(self) -> str | None:
        """Where invalidations travel, if anywhere."""
        return f"{self.prefix}invalidations" if self.redis and self.channel else None

    def describe(self) -> str:
        tiers = []
        if self.local_tier:
            tiers.append(f"process-local (max_staleness {self.max_staleness:g} s)")
        if self.shared_tier:
            tiers.append("shared redis")
        return " + ".join(tiers)


def cache_options(values: Mapping[str, Any] | str | CacheOptions) -> CacheOptions:
    """CacheOptions from a setting: a mapping of the options above, or a Redis URL alone."""
    if isinstance(values, CacheOptions):
        return values
    if isinstance(values, str):
        values = {"redis": values}
    if not isinstance(values, Mapping):
        raise ConfigurationError(
            f"the CACHE setting must be a dict of cache options or a redis URL, got {values!r}"
        )
    return parse_options(CacheOptions, "cache", {k.lower(): v for k, v in values.items()})
