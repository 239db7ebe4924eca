"""redis-py clients for a store URL: standalone or cluster, sync or asyncio, observed.

`on_command` is wired in as a connection class of ours (one subclass per redis-py
connection class), so every command is seen as the client sends it, retries included.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.cluster
import redis.connection
import redis.exceptions
from redis.backoff import AbstractBackoff, ExponentialWithJitterBackoff
from redis.retry import Retry

from ... import deadline
from ...errors import ConfigurationError, DeadlineExceeded
from ...store import StoreURL
from .options import OnCommand, RedisOptions

DEFAULT_PORT = 6379
_NODE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(?P<port>\d+))?")
SCHEMES = {"redis": False, "rediss": True, "redis+cluster": False, "rediss+cluster": True}


@dataclass(frozen=True)
class Target:
    """Where the store's server(s) are, from its URL (never logged: it may hold a password)."""

    cluster: bool
    ssl: bool
    nodes: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None

    @classmethod
    def of(cls, url: StoreURL) -> Target:
        cluster = url.scheme.endswith("+cluster")
        example = "redis+cluster://HOST:PORT,HOST:PORT" if cluster else "redis://HOST:PORT/DB"
        userinfo, _, hosts = url.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        nodes = []
        for node in hosts.split(","):
            found = _NODE.fullmatch(node)
            if found is None:
                raise ConfigurationError(f"redis store URL must look like {example}: {node!r}")
            nodes.append((found["host"].strip("[]"), int(found["port"] or DEFAULT_PORT)))
        db = url.path.strip("/") or "0"
        if not db.isdigit() or (cluster and db != "0") or (len(nodes) > 1 and not cluster):
            raise ConfigurationError(
                f"redis store URL must look like {example} (a cluster has only database 0)"
            )
        return cls(
            cluster,
            SCHEMES[url.scheme],
            tuple(nodes),
            int(db),
            unquote(username) or None,
            unquote(password) or None,
        )

    def describe(self) -> str:
        where = ",".join(f"{h}:{p}" for h, p in self.nodes)
        return f"redis cluster {where}" if self.cluster else f"redis {where}/{self.db}"


def _connection_class(base: type[Any], on_command: OnCommand | None) -> type[Any]:
    """`base` within the request deadline (cloudsessions.deadline), and observed by
    `on_command` if given.

    No command is sent once the deadline has passed, and none waits for its reply longer
    than is left of it (a reply that does not come in time disconnects the connection, as
    any redis-py timeout does, so a late reply is never read as another command's).
    """
    # Where each client packs a command: sync connections in send_command, asyncio ones
    # (and the asyncio cluster, which packs for them) in pack_command.
    method = "pack_command" if base.__module__.startswith("redis.asyncio") else "send_command"
    send, read = getattr(base, method), base.read_response

    def sending(self: Any, *args: Any, **kwargs: Any) -> Any:
        deadline.left("answer")  # raises DeadlineExceeded: nothing is sent
        if on_command is not None:
            on_command(args)
        return send(self, *args, **kwargs)

    def reading(self: Any, *args: Any, **kwargs: Any) -> Any:
        remaining = deadline.remaining()
        if remaining is not None and (
            self.socket_timeout is None or remaining < self.socket_timeout
        ):
            kwargs.setdefault("timeout", max(remaining, 0.001))
        return read(self, *args, **kwargs)

    return type(f"Bounded{base.__name__}", (base,), {method: sending, "read_response": reading})


class _WithinDeadline(AbstractBackoff):
    """redis-py's jittered exponential backoff, which gives up rather than sleep past the
    request deadline (the Retry then raises DeadlineExceeded)."""

    def __init__(self) -> None:
        self._backoff = ExponentialWithJitterBackoff(cap=0.5, base=0.05)

    def reset(self) -> None:
        self._backoff.reset()  # type: ignore[no-untyped-call]

    def compute(self, failures: int) -> float:
        delay = self._backoff.compute(failures)
        remaining = deadline.left("answer")
        if remaining is not None and delay >= remaining:
            raise DeadlineExceeded(
                "the session store kept failing until the request deadline"
                f" ({delay:.2f} s of backoff left {remaining:.2f} s)"
            )
        return delay


def _common(target: Target, options: RedisOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "socket_timeout": options.socket_timeout,
        "socket_connect_timeout": min(options.socket_connect_timeout, options.deadline),
        "client_name": options.client_name,
        "decode_responses": True,
        # On connection errors only, never a timeout: the server may have run the command,
        # and a script run twice could count an increment twice. (A cluster client retries
        # without backoff: the store outlasts a failover itself, see store.py.)
        "retry": Retry(
            _WithinDeadline(),
            options.attempts - 1,
            supported_errors=(redis.exceptions.ConnectionError,),
        ),
        "ssl": target.ssl,
    }
    if options.max_connections:
        kwargs["max_connections"] = options.max_connections
    if target.ssl and options.ssl_ca_certs:
        kwargs["ssl_ca_certs"] = options.ssl_ca_certs
    return kwargs


def sync_client(target: Target, options: RedisOptions) -> Any:
    kwargs = _common(target, options)
    del kwargs["ssl"]
    base = redis.connection.SSLConnection if target.ssl else redis.connection.Connection
    base = _connection_class(base, options.on_command)
    (host, port), *others = target.nodes
    if target.cluster:
        # Given a url, the cluster client builds each node's pool with our connection class.
        nodes = [redis.cluster.ClusterNode(h, p) for h, p in others]  # type: ignore[no-untyped-call]
        return redis.cluster.RedisCluster(
            url=f"redis://{host}:{port}", startup_nodes=nodes, connection_class=base, **kwargs
        )
    pool = redis.ConnectionPool(host=host, port=port, db=target.db, connection_class=base, **kwargs)
    return redis.Redis(connection_pool=pool)


async def async_client(
    target: Target, options: RedisOptions, stack: contextlib.AsyncExitStack
) -> Any:
    kwargs = _common(target, options)
    ssl = target.ssl
    if target.cluster:
        nodes = [redis.asyncio.cluster.ClusterNode(h, p) for h, p in target.nodes]
        client: Any = redis.asyncio.cluster.RedisCluster(startup_nodes=nodes, **kwargs)
        # The async cluster client takes no connection class: it is one of the keyword
        # arguments it hands each node it discovers.
        base = client.nodes_manager.connection_kwargs["connection_class"]
        client.nodes_manager.connection_kwargs["connection_class"] = _connection_class(
            base, options.on_command
        )
        await client.initialize()  # the slot map, before the first command
    else:
        del kwargs["ssl"]
        connection: Any = (
            redis.asyncio.connection.SSLConnection if ssl else redis.asyncio.connection.Connection
        )
        connection = _connection_class(connection, options.on_command)
        ((host, port),) = target.nodes
        pool = redis.asyncio.ConnectionPool(
            host=host, port=port, db=target.db, connection_class=connection, **kwargs
        )
        client = redis.asyncio.Redis(connection_pool=pool)
    stack.push_async_callback(client.aclose)
    return client
