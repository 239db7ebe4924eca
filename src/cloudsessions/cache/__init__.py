"""Cache tiers in front of any store: a shared Redis and a process-local LRU (see store.py).

Configured with the CACHE setting of each front door, or around a store of your own::

    from cloudsessions.cache import CachedStore
    store = CachedStore(open_store("dynamodb://sessions"), {"redis": "redis://cache:6379/0"})
"""

from .options import CacheOptions, cache_options
from .store import CachedStore, CacheMetrics

__all__ = ["CacheMetrics", "CacheOptions", "CachedStore", "cache_options"]
