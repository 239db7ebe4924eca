"""The Redis store: standalone or Redis Cluster, redis-py sync and asyncio.

``redis://[user:password@]HOST:PORT/DB``, ``rediss://`` (TLS),
``redis+cluster://HOST:PORT,HOST:PORT`` (seed nodes; ``rediss+cluster://`` with TLS).
See docs/stores/redis.md.
"""

from .options import RedisOptions
from .scripts import SCRIPTS
from .store import RedisStore

__all__ = ["SCRIPTS", "RedisOptions", "RedisStore"]
