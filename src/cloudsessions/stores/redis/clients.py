"""redis-py clients for a store URL: standalone or cluster, sync or asyncio, observed.

`on_command` is wired in as a connection class of ours (one subclass per redis-py
connection class), so every command is seen as the client sends it, retries included.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.connection
import redis.asyncio.retry
import redis.cluster
import redis.connection
import redis.exceptions
from redis._parsers import AsyncCommandsParser
from redis.backoff import AbstractBackoff, ExponentialWithJitterBackoff
from redis.retry import Retry

from ... import deadline, retries
from ...errors import ConfigurationError
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
    """`base` within the request deadline (cloudsessions.deadline), never sending an
    increment twice (cloudsessions.retries), and observed by `on_command` if given.

    No command is sent once the deadline has passed, and no reply is waited for longer
    than is left of it: the connection's own socket timeout is shortened for that reply,
    so redis-py disconnects on a timeout (an explicit `timeout=` would make the async client
    return None and leave the late reply on the connection, to be read as the next
    command's). A connection whose handshake fails for any reason is closed, never pooled
    half made.
    """
    is_async = base.__module__.startswith("redis.asyncio")
    # Where each client packs a command: sync connections in send_command, asyncio ones
    # (and the asyncio cluster, which packs for them) in pack_command.
    method = "pack_command" if is_async else "send_command"
    send, read = getattr(base, method), base.read_response

    def sending(self: Any, *args: Any, **kwargs: Any) -> Any:
        deadline.left("answer")  # raises DeadlineExceeded: nothing is sent
        increment = retries.increment_running()
        if increment is not None and str(args[0]).upper() in _SCRIPT_CALLS:
            increment.sending()  # raises if its last sending may have run unanswered
            self._increment_sent = True  # its reply is the next this connection reads
        if on_command is not None:
            on_command(args)
        return send(self, *args, **kwargs)

    def reading(self: Any, *args: Any, **kwargs: Any) -> Any:
        bound = _reply_bound(self.socket_timeout)
        sock = self._sock
        if bound is not None and sock is not None:
            sock.settimeout(bound)
        try:
            with _answering(self):
                return read(self, *args, **kwargs)
        finally:
            if bound is not None and self._sock is not None:
                self._sock.settimeout(self.socket_timeout)

    async def areading(self: Any, *args: Any, **kwargs: Any) -> Any:
        usual = self.socket_timeout
        bound = _reply_bound(usual)
        if bound is not None:
            self.socket_timeout = bound
        try:
            with _answering(self):
                return await read(self, *args, **kwargs)
        finally:
            self.socket_timeout = usual

    connect = base.connect_check_health

    def connecting(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return connect(self, *args, **kwargs)
        except BaseException:
            # redis-py closes a connection whose handshake failed with a RedisError only:
            # the deadline (or a cancellation) met before HELLO was sent left it open and
            # pooled, speaking RESP2 to a client reading RESP3 (a hash read as a list).
            self.disconnect()
            raise

    async def aconnecting(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await connect(self, *args, **kwargs)
        except BaseException:
            await self.disconnect(nowait=True)  # no wait: this may be a cancellation
            raise

    methods: dict[str, Any] = {
        method: sending,
        "read_response": areading if is_async else reading,
        "connect_check_health": aconnecting if is_async else connecting,
    }
    if is_async:
        sendall = base.send_packed_command

        async def asending(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await sendall(self, *args, **kwargs)
            except AttributeError as exc:
                # Python 3.13.0's asyncio, writing to a connection the server has reset,
                # fails so (its transport is gone) instead of with a ConnectionError: it is
                # one, and retried as one (nothing was sent).
                if "_add_writer" not in str(exc):
                    raise
                raise redis.exceptions.ConnectionError(f"the connection was reset: {exc}") from exc

        methods["send_packed_command"] = asending
    return type(f"Bounded{base.__name__}", (base,), methods)


# The commands that run a store script (the increment is one): the only ones an increment's
# guard watches (a new connection's handshake pipelines commands of its own).
_SCRIPT_CALLS = frozenset({"EVALSHA", "EVAL"})


@contextlib.contextmanager
def _answering(connection: Any) -> Iterator[None]:
    """The reply to the running increment's script call, read on the connection that sent
    it (an error reply too), answers it; a lost connection or a timeout leaves it
    unanswered. Replies read elsewhere (a new connection's handshake, a cluster's slot map)
    answer nothing."""
    increment = retries.increment_running()
    if increment is None or not getattr(connection, "_increment_sent", False):
        yield
        return
    connection._increment_sent = False
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
        raise
    except BaseException:
        increment.answered()
        raise
    increment.answered()


def _reply_bound(usual: float | None) -> float | None:
    """How long the next reply may take, if the request deadline leaves less than `usual`."""
    remaining = deadline.remaining()
    if remaining is None or (usual is not None and remaining >= usual):
        return None
    return max(remaining, 0.001)


class _WithinDeadline(AbstractBackoff):
    """redis-py's jittered exponential backoff, which gives up rather than sleep past the
    request deadline (the Retry then raises DeadlineExceeded)."""

    def __init__(self) -> None:
        self._backoff = ExponentialWithJitterBackoff(cap=0.5, base=0.05)

    def reset(self) -> None:
        self._backoff.reset()  # type: ignore[no-untyped-call]

    def compute(self, failures: int) -> float:
        return deadline.afford(self._backoff.compute(failures))


def _retry(kind: type[Any], options: RedisOptions) -> Any:
    """redis-py's Retry (sync or asyncio: each client takes its own) on connection errors
    only, never a timeout: the server may have run the command, and a script run twice could
    count an increment twice. A server still loading its data (-LOADING) is one. (A cluster
    client retries without backoff: the store outlasts a failover itself, see store.py.)"""
    return kind(
        _WithinDeadline(),
        options.attempts - 1,
        supported_errors=(redis.exceptions.ConnectionError,),
    )


class _CommandTableOnce(AsyncCommandsParser):
    """The asyncio cluster client reads the server's whole COMMAND table each time it
    rebuilds its slot map, as it does after every CLUSTERDOWN: about 110 ms of parsing, a
    fifth of a 0.5 s deadline, in the middle of a retry. The table (where each command's
    keys are) does not change with a failover: this client reads it once."""

    async def initialize(self, node: Any = None) -> None:
        if not self.commands:
            await super().initialize(node)
        elif node is not None:
            self.node = node


def _common(target: Target, options: RedisOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": target.username,
        "password": target.password,
        "socket_timeout": min(options.socket_timeout, options.deadline),
        "socket_connect_timeout": min(options.socket_connect_timeout, options.deadline),
        "client_name": options.client_name,
        "decode_responses": True,
        "retry": _retry(Retry, options),
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
    kwargs = {**_common(target, options), "retry": _retry(redis.asyncio.retry.Retry, options)}
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
        client.commands_parser = _CommandTableOnce()
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
