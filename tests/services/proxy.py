"""TCP proxies between a client and a server, to inject faults on the wire.

Proxy: a plain relay that can be cut (partitions of one client, for the cache tier's tests).
FaultProxy: a relay that knows each store's protocol (tests/services/wire_*.py) and can add
latency, black-hole, reset, cut a response mid-way, and answer for the server with the
store's own throttling and transient errors (issue 16's fault tests and soak benchmark).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import copy
import dataclasses
import random
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ._process import HOST
from .wire_common import Matcher, Request, Response, matcher


class Proxy:
    """A TCP proxy to a local port: one client's way to a server, to cut on the wire while
    other clients keep their own way there (a partition, not an outage).

    - reset(): every connection through it is closed and new ones are refused (the host
      went away; the client notices at once);
    - blackhole(): nothing passes any more, connections stay open (a silent partition:
      the connection still looks alive at both ends, and nothing arrives).
    """

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.05)
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self.passing = True
        self.closed = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, name="proxy", daemon=True).start()

    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection((HOST, self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for source, sink in [(client, upstream), (upstream, client)]:
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if self.passing:
                    sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)

    def blackhole(self) -> None:
        self.passing = False

    def reset(self) -> None:
        self.closed.set()
        self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.reset()


# ----------------------------------------------------------------------- the fault proxy

PROTOCOLS = ("raw", "http", "grpc", "mongo", "redis")
_CLOSE = object()  # in an outbox: close the connection once what came before is sent


def _wire(protocol: str, servers: int) -> Any:
    if protocol == "http":
        from .wire_http import HttpWire

        return HttpWire()
    if protocol == "mongo":
        from .wire_mongo import MongoWire

        return MongoWire()
    if protocol == "redis":
        from .wire_redis import RedisWire

        return RedisWire(cluster=servers > 1)
    return None  # raw bytes (and the TCP front of the gRPC relay)


@dataclasses.dataclass
class ProxyStats:
    """What a proxy saw, counted from when it started (or clear_stats()).

    requests: each request (API call, command, RPC) that reached the proxy, by name,
    injected ones included: the store client's attempts. handshakes: connection set-up and
    monitoring commands, apart. injected: the requests answered by the proxy, by error.
    """

    requests: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    handshakes: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    injected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    connections: int = 0  # accepted
    cuts: int = 0  # responses cut mid-way
    resets: int = 0  # connections reset (RST)
    refused: int = 0  # connections the server refused (reset for the client)
    delayed: int = 0  # responses delayed by fault_rate's latency spikes

    @property
    def attempts(self) -> int:
        return sum(self.requests.values())

    def copy(self) -> ProxyStats:
        return copy.deepcopy(self)


@dataclasses.dataclass
class Decision:
    kind: str = "pass"  # "pass", "inject", "cut", "reset", "delay"
    error: str = ""
    after_bytes: int = 0
    fraction: float | None = None  # a cut after this fraction of the response instead
    delay: float = 0.0

    def cut_at(self, size: int) -> int:
        """Where a cut falls in a response of `size` bytes."""
        if self.fraction is None:
            return min(self.after_bytes, size)
        return int(size * self.fraction)


_PASS = Decision()


class FaultState:
    """The faults in force, shared by every connection of a proxy (thread-safe)."""

    def __init__(self, check_error: Callable[[str], None], seed: int) -> None:
        self.lock = threading.Lock()
        self.check_error = check_error
        self.latency = 0.0
        self.blackholed = False
        self.refusing = False
        self.injections: collections.deque[list[Any]] = collections.deque()  # [error, n, match]
        # [after_bytes, fraction, match]
        self.cuts: collections.deque[tuple[int, float | None, Matcher]] = collections.deque()
        self.rate = 0.0
        self.kinds: tuple[str, ...] = ()
        self.spike = 0.0
        self.random = random.Random(seed)
        self.stats = ProxyStats()

    def clear(self) -> None:
        with self.lock:
            self.latency = 0.0
            self.blackholed = self.refusing = False
            self.injections.clear()
            self.cuts.clear()
            self.rate = 0.0

    def decide(self, request: Request) -> Decision:
        with self.lock:
            if request.handshake:
                self.stats.handshakes[request.name] += 1
                return _PASS
            self.stats.requests[request.name] += 1
            for entry in self.injections:
                error, _, match = entry
                if match(request):
                    entry[1] -= 1
                    if entry[1] <= 0:
                        self.injections.remove(entry)
                    self.stats.injected[error] += 1
                    return Decision("inject", error)
            for armed in self.cuts:
                if armed[2](request):
                    self.cuts.remove(armed)
                    self.stats.cuts += 1
                    return Decision("cut", after_bytes=armed[0], fraction=armed[1])
            if self.rate and self.random.random() < self.rate:
                kind = self.random.choice(self.kinds)
                if kind == "cut":
                    self.stats.cuts += 1
                    return Decision("cut", after_bytes=0)
                if kind == "reset":
                    return Decision("reset")
                if kind == "latency":
                    self.stats.delayed += 1
                    return Decision("delay", delay=self.spike)
                self.stats.injected[kind] += 1
                return Decision("inject", kind)
            return _PASS

    def next_raw_cut(self) -> int | None:
        """For a raw proxy: the cut armed for the next response, if any (then disarmed)."""
        with self.lock:
            if not self.cuts:
                return None
            self.stats.cuts += 1
            after_bytes, fraction, _ = self.cuts.popleft()
            if fraction is not None:
                raise ValueError("a raw proxy does not know where a response ends: after_bytes")
            return after_bytes


class FaultProxy:
    """A TCP proxy in front of a store's server that can misbehave as networks and stores do.

    FaultProxy(port, protocol) listens on a loopback port of its own (`.port`) and relays
    to the server on `port`; `port` may be a list of servers (a cluster): one listener
    each (`.ports`: server port -> proxy port), sharing the faults, and every server
    address in the replies (cluster slot maps, redirections, replica set hosts) rewritten
    to its proxy's. protocol: "raw" (bytes), "http" (DynamoDB Local), "grpc" (the
    Firestore emulator: a gRPC-level relay behind a TCP front), "mongo", "redis". The
    framing protocols see whole requests and responses (tests/services/wire_*.py).

    Controls, at any time, with clients connected (each in force when it returns):
    - latency(s): every server->client byte arrives s later (0: off; what is on its way
      keeps its delay, unless restore() delivers it at once);
    - blackhole(): connections stay open (new ones are accepted), nothing passes either
      way; what was sent waits, as TCP retransmits it, and goes through on restore();
    - reset(until_restore=False): every open connection is reset (RST); new ones are
      accepted afterwards, or reset as well until restore() with until_restore;
    - cut_next_response(after_bytes=0, fraction=None, request=None): the response to the
      next request (named `request`, a name or a set of names or a predicate; None: any
      but a handshake) is cut after that many bytes (or that fraction of its length) and
      the connection closed: the server did the work, the client never hears all of it;
    - inject(error, count=1, request=None): the next `count` requests (matching `request`)
      are answered by the proxy with the store's own error `error` on the wire ("throttling",
      "unavailable", ... see the wire modules), never reaching the server;
    - fault_rate(rate, kinds): a random fraction of the requests meets one of `kinds`
      (error names, "cut", "reset", "latency" (a spike of `spike` s));
    - restore(): every fault off; what was held or delayed goes out at once, in order.
    `.stats` is a snapshot of what it saw (ProxyStats).
    """

    def __init__(
        self, port: int | Sequence[int], protocol: str = "raw", *, host: str = HOST, seed: int = 0
    ) -> None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        targets = [port] if isinstance(port, int) else list(port)
        self.protocol = protocol
        self.wire = _wire(protocol, len(targets))
        self._relay: Any = None
        check = self._check_error
        self.state = FaultState(check, seed)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"fault-proxy-{protocol}", daemon=True
        )
        self._thread.start()
        self._listeners: list[_Listener] = []
        try:
            if protocol == "grpc":
                from .wire_grpc import GrpcRelay

                (target,) = targets
                self._relay = GrpcRelay(
                    f"{host}:{target}", self.state.decide, self._cut_peer, self._reset_peer
                )
                self._listen([self._relay.port], host, front=True)
            else:
                self._listen(targets, host, front=False)
        except BaseException:
            self.close()
            raise
        self.ports = {
            t: listener.port for t, listener in zip(targets, self._listeners, strict=True)
        }
        self.port = self._listeners[0].port
        self.addresses = {f"{host}:{t}": f"{HOST}:{p}" for t, p in self.ports.items()}
        for listener in self._listeners:
            listener.addresses = self.addresses

    # ------------------------------------------------------------------ addresses

    @property
    def address(self) -> str:
        """ "127.0.0.1:PORT" of the (first) listener."""
        return f"{HOST}:{self.port}"

    @property
    def endpoint(self) -> str:
        """ "http://127.0.0.1:PORT" (DynamoDB's endpoint option)."""
        return f"http://{self.address}"

    def url(self, template: str) -> str:
        """`template` with "{address}" (or each "{address_PORT}", for a cluster) filled in."""
        return template.format(
            address=self.address, **{f"address_{t}": f"{HOST}:{p}" for t, p in self.ports.items()}
        )

    # ------------------------------------------------------------------ controls

    def latency(self, seconds: float) -> None:
        with self.state.lock:
            self.state.latency = max(0.0, float(seconds))

    def blackhole(self) -> None:
        with self.state.lock:
            self.state.blackholed = True

    def restore(self) -> None:
        self.state.clear()
        self._on_loop(self._flush_all)

    def reset(self, *, until_restore: bool = False) -> None:
        with self.state.lock:
            self.state.refusing = until_restore
        self._on_loop(self._reset_all)

    def cut_next_response(
        self, after_bytes: int = 0, *, fraction: float | None = None, request: Any = None
    ) -> None:
        with self.state.lock:
            self.state.cuts.append((after_bytes, fraction, matcher(request)))

    def inject(self, error: str, count: int = 1, *, request: Any = None) -> None:
        self._check_error(error)
        with self.state.lock:
            self.state.injections.append([error, count, matcher(request)])

    def fault_rate(
        self,
        rate: float,
        kinds: Sequence[str] = ("throttling", "cut", "reset"),
        *,
        spike: float = 0.25,
        seed: int | None = None,
    ) -> None:
        for kind in kinds:
            if kind not in ("cut", "reset", "latency"):
                self._check_error(kind)
        with self.state.lock:
            self.state.rate, self.state.kinds, self.state.spike = rate, tuple(kinds), spike
            if seed is not None:
                self.state.random.seed(seed)

    @property
    def stats(self) -> ProxyStats:
        with self.state.lock:
            return self.state.stats.copy()

    def clear_stats(self) -> None:
        with self.state.lock:
            self.state.stats = ProxyStats()

    def close(self) -> None:
        if self._relay is not None:
            self._relay.close()
        if self._loop.is_running():
            with contextlib.suppress(Exception):
                self._on_loop(self._close_all)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _check_error(self, error: str) -> None:
        if self.protocol == "grpc":
            from .wire_grpc import check_error

            check_error(error)
        elif self.wire is None:
            raise ValueError("a raw proxy cannot answer for the server: pick a protocol")
        elif error not in self.wire.errors:
            self.wire.error_response(error, Request(b"", ""))  # raises, naming the known ones

    def _on_loop(self, function: Callable[[], Any]) -> Any:
        """Run `function` on the proxy's event loop and wait for it."""
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(function())
            except BaseException as exc:
                done.set_exception(exc)

        self._loop.call_soon_threadsafe(run)
        return done.result(timeout=10)

    def _listen(self, targets: list[int], host: str, *, front: bool) -> None:
        for target in targets:
            listener = _Listener(self, host, target, front)
            future = asyncio.run_coroutine_threadsafe(listener.start(), self._loop)
            future.result(timeout=10)
            self._listeners.append(listener)

    def _links(self) -> list[_Link]:
        return [link for listener in self._listeners for link in list(listener.links)]

    def _flush_all(self) -> None:
        """restore(): what was held or delayed goes out now, in order."""
        for link in self._links():
            link.to_client.due_now()
            link.to_server.due_now()

    def _reset_all(self) -> None:
        for link in self._links():
            link.abort()

    def _close_all(self) -> None:
        for listener in self._listeners:
            if listener.server is not None:
                listener.server.close()
        for link in self._links():
            link.abort(count=False)

    def _state_change(self, wire: Any) -> None:
        """MongoDB: the server's state changes (wire_mongo): each waiting monitor hears it,
        as the answer to the awaitable hello it waits on."""
        answer = wire.state_change()
        if answer is not None:
            for link in self._links():
                if link.awaiting is not None:
                    link.to_client.push(answer(link.awaiting))

    def _peer(self, port: int) -> _Link | None:
        for link in self._links():
            if link.upstream_port == port:
                return link
        return None

    def _cut_peer(self, port: int, after_bytes: int) -> None:
        """gRPC: the next bytes to the client of the connection whose call the relay got
        from its `port` are cut after `after_bytes`."""

        def arm() -> None:
            link = self._peer(port)
            if link is not None:
                link.raw_cut = after_bytes

        self._on_loop(arm)

    def _reset_peer(self, port: int) -> None:
        def reset() -> None:
            link = self._peer(port)
            if link is not None:
                link.abort()

        self._on_loop(reset)


class _Listener:
    def __init__(self, proxy: FaultProxy, host: str, target: int, front: bool) -> None:
        self.proxy, self.host, self.target, self.front = proxy, host, target, front
        self.links: set[_Link] = set()
        self.addresses: dict[str, str] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _ClientSide(self), HOST, 0)
        self.port = int(self.server.sockets[0].getsockname()[1])


def _rst(transport: asyncio.BaseTransport) -> None:
    """Close with a reset (RST), not an orderly FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()  # type: ignore[attr-defined]


@dataclasses.dataclass
class _Pending:
    """A request waiting for its response (or an answer of the proxy's, waiting its turn)."""

    request: Request
    cut: Decision | None = None
    delay: float = 0.0
    answer: bytes | None = None  # the proxy's own answer


class _Outbox:
    """Bytes on their way to one end, in order, each due at a time (latency), held while
    the proxy is a black hole."""

    def __init__(self, link: _Link, delayed: bool) -> None:
        self.link, self.delayed = link, delayed
        self.transport: asyncio.Transport | None = None
        self.items: collections.deque[tuple[float, Any]] = collections.deque()
        self.timer: asyncio.TimerHandle | None = None

    def push(self, item: Any, extra: float = 0.0) -> None:
        loop = self.link.loop
        delay = (self.link.state.latency if self.delayed else 0.0) + extra
        self.items.append((loop.time() + delay, item))
        self.flush()

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        while self.items and self.transport is not None and not self.link.closed:
            if self.link.state.blackholed:
                return  # restore() flushes
            due, item = self.items[0]
            if due > self.link.loop.time():
                self.timer = self.link.loop.call_at(due, self.flush)
                return
            self.items.popleft()
            if item is _CLOSE:
                self.link.close()
                return
            self.transport.write(item)

    def due_now(self) -> None:
        now = self.link.loop.time()
        self.items = collections.deque((min(due, now), item) for due, item in self.items)
        self.flush()

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.items.clear()


class _Link:
    """One client connection and its connection to the server."""

    def __init__(self, listener: _Listener, client: asyncio.Transport) -> None:
        self.listener = listener
        self.state = listener.proxy.state
        self.wire: Any = None if listener.front else listener.proxy.wire
        self.loop = asyncio.get_running_loop()
        self.client = client
        self.server: asyncio.Transport | None = None
        self.upstream_port = 0
        self.requests = bytearray()
        self.responses = bytearray()
        self.pending: collections.deque[_Pending] = collections.deque()  # ordered protocols
        self.by_ident: dict[int, _Pending] = {}  # unordered ones
        self.to_client = _Outbox(self, delayed=True)
        self.to_client.transport = client
        self.to_server = _Outbox(self, delayed=False)
        self.raw_cut: int | None = None
        # MongoDB: the requestID of the awaitable hello a monitor waits on here, while its
        # reply (or its stream of replies) is still to come; None when nothing waits.
        self.awaiting: int | None = None
        self.closed = False

    async def connect(self) -> None:
        listener = self.listener
        try:
            transport, _ = await self.loop.create_connection(
                lambda: _ServerSide(self), listener.host, listener.target
            )
        except OSError:
            with self.state.lock:
                self.state.stats.refused += 1
            self.abort(count=False)
            return
        if self.closed:
            transport.abort()
            return
        self.server = transport
        self.upstream_port = int(transport.get_extra_info("sockname")[1])
        self.to_server.transport = self.server
        self.to_server.flush()
        self.client.resume_reading()

    # client -> server

    def from_client(self, data: bytes) -> None:
        if self.closed:
            return
        if self.wire is None:
            self.to_server.push(data)
            return
        self.requests += data
        while not self.closed and (request := self.wire.next_request(self.requests)) is not None:
            self._request(request)

    def _request(self, request: Request) -> None:
        decision = self.state.decide(request)
        if decision.kind == "reset":
            self.abort()
            return
        if request.streaming and request.expects_reply:
            self.awaiting = request.ident
        if decision.kind == "inject":
            if not request.expects_reply:
                return  # lost, as the server would have refused it without a word
            if hasattr(self.wire, "state_change"):
                self.listener.proxy._state_change(self.wire)
            answer = self.wire.error_response(decision.error, request)
            if self.wire.ordered and self.pending:
                self.pending.append(_Pending(request, answer=answer))
            else:
                self.to_client.push(answer)
            return
        cut = decision if decision.kind == "cut" else None
        entry = _Pending(request, cut, decision.delay)
        if self.wire.ordered:
            self.pending.append(entry)
        elif request.ident is not None and request.expects_reply:
            self.by_ident[request.ident] = entry
        self.to_server.push(request.raw)

    # server -> client

    def from_server(self, data: bytes) -> None:
        if self.closed:
            return
        if self.wire is None:
            self._raw_from_server(data)
            return
        self.responses += data
        while not self.closed and (response := self.wire.next_response(self.responses)):
            self._response(response)

    def _raw_from_server(self, data: bytes) -> None:
        if self.raw_cut is None and not self.listener.front:
            self.raw_cut = self.state.next_raw_cut()
        if self.raw_cut is None:
            self.to_client.push(data)
            return
        if len(data) < self.raw_cut:
            self.raw_cut -= len(data)
            self.to_client.push(data)
            return
        self.to_client.push(data[: self.raw_cut])
        self.to_client.push(_CLOSE)
        self.raw_cut = None
        self._stop_reading()

    def _response(self, response: Response) -> None:
        entry: _Pending | None
        if self.wire.ordered:
            entry = None if response.unsolicited or not self.pending else self.pending.popleft()
        else:
            entry = self.by_ident.pop(response.responds_to, None)  # type: ignore[arg-type]
        request = entry.request if entry is not None else None
        if (request is None or request.streaming) and not response.extra.get("more"):
            self.awaiting = None  # the monitor's hello is answered: its stream has ended
        raw = self.wire.rewrite(response, request, self.listener.addresses)
        if entry is not None and entry.cut is not None:
            self.to_client.push(raw[: entry.cut.cut_at(len(raw))], entry.delay)
            self.to_client.push(_CLOSE)
            self._stop_reading()
            return
        self.to_client.push(raw, entry.delay if entry is not None else 0.0)
        while self.pending and self.pending[0].answer is not None:
            self.to_client.push(self.pending.popleft().answer)

    def _stop_reading(self) -> None:
        """A cut: nothing more is read from either end; the link closes once the cut
        response's bytes are out."""
        self.wire = None
        self.requests.clear()
        self.responses.clear()
        for transport in (self.client, self.server):
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.pause_reading()

    # endings

    def server_gone(self) -> None:
        if not self.closed:
            self.to_client.push(_CLOSE)

    def client_gone(self) -> None:
        if not self.closed:
            self.closed = True
            self.listener.links.discard(self)
            self.to_server.stop()
            self.to_client.stop()
            if self.server is not None:
                self.server.close()

    def close(self) -> None:
        """An orderly close (FIN) of both ends, once what is queued is written."""
        if self.closed:
            return
        self.closed = True
        self.listener.links.discard(self)
        self.to_client.stop()
        self.to_server.stop()
        self.client.close()
        if self.server is not None:
            self.server.close()

    def abort(self, *, count: bool = True) -> None:
        """Reset both ends (RST)."""
        if self.closed:
            return
        self.closed = True
        self.listener.links.discard(self)
        self.to_client.stop()
        self.to_server.stop()
        if count:
            with self.state.lock:
                self.state.stats.resets += 1
        _rst(self.client)
        if self.server is not None:
            _rst(self.server)


class _ClientSide(asyncio.Protocol):
    def __init__(self, listener: _Listener) -> None:
        self.listener = listener
        self.link: _Link | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        state = self.listener.proxy.state
        with state.lock:
            state.stats.connections += 1
            refusing = state.refusing
        if refusing:
            with state.lock:
                state.stats.resets += 1
            _rst(transport)
            return
        assert isinstance(transport, asyncio.Transport)
        self.link = _Link(self.listener, transport)
        self.listener.links.add(self.link)
        transport.pause_reading()  # until the server's side is connected
        self.link.loop.create_task(self.link.connect())

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.from_client(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link is not None:
            self.link.client_gone()


class _ServerSide(asyncio.Protocol):
    def __init__(self, link: _Link) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        self.link.from_server(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.server_gone()
