"""RESP (Redis): requests are arrays of bulk strings, replies any RESP2 or RESP3 value.

Errors the proxy can answer with, as a Redis server sends them:
- "throttling" / "loading": `-LOADING Redis is loading the dataset in memory` (a server that
  restarted and reads its data back; redis-py raises BusyLoadingError, a ConnectionError);
- "unavailable": what a master that cannot serve for a while says: LOADING for a standalone
  server, `-CLUSTERDOWN The cluster is down` through a cluster's proxies (a failover);
- "clusterdown", "tryagain" (`-TRYAGAIN Multiple keys request during rehashing of slot`),
  "masterdown" (`-MASTERDOWN ...`: a replica cut off from its master), "readonly"
  (`-READONLY You can't write against a read only replica.`: a demoted master).
Connection set-up and cluster housekeeping (HELLO, CLIENT, SELECT, CLUSTER, ...) pass: a
loading Redis answers those too. Replies to CLUSTER SLOTS and MOVED/ASK redirections are
rewritten so that a cluster client keeps going through the proxies.
"""

from __future__ import annotations

from typing import Any

from .wire_common import Addresses, Request, Response, unknown_error

LOADING = "-LOADING Redis is loading the dataset in memory"
CLUSTERDOWN = "-CLUSTERDOWN The cluster is down"
ERRORS = {
    "throttling": LOADING,
    "loading": LOADING,
    "unavailable": LOADING,  # CLUSTERDOWN through a cluster's proxies
    "clusterdown": CLUSTERDOWN,
    "tryagain": "-TRYAGAIN Multiple keys request during rehashing of slot",
    "masterdown": "-MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set"
    " to 'no'.",
    "readonly": "-READONLY You can't write against a read only replica.",
}
# Commands a loading server still answers (its "ok-loading" ones, and set-up).
HANDSHAKE = frozenset(
    {
        "HELLO", "AUTH", "CLIENT", "SELECT", "CLUSTER", "INFO", "CONFIG", "PING", "READONLY",
        "READWRITE", "ASKING", "COMMAND", "ECHO", "QUIT", "RESET", "SCRIPT",
    }
)  # fmt: skip


class Incomplete(Exception):
    pass


def value_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """Where the RESP value starting at `pos` ends; Incomplete if it has not all arrived."""
    if pos >= len(buf):
        raise Incomplete
    kind = buf[pos : pos + 1]
    eol = buf.find(b"\r\n", pos)
    if eol < 0:
        raise Incomplete
    after = eol + 2
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return after
    if kind in (b"$", b"!", b"="):
        size = int(buf[pos + 1 : eol])
        if size < 0:
            return after
        end = after + size + 2
        if len(buf) < end:
            raise Incomplete
        return end
    if kind in (b"*", b"~", b">", b"%", b"|"):
        count = int(buf[pos + 1 : eol])
        items = 2 * count if kind in (b"%", b"|") else count
        for _ in range(max(items, 0)):
            after = value_end(buf, after)
        if kind == b"|":  # attributes, then the value they describe
            after = value_end(buf, after)
        return after
    # An inline command (not RESP): one line.
    return after


def decode(buf: bytes, pos: int = 0) -> tuple[Any, int]:
    """A RESP value as Python (bytes, int, list, dict; errors as ("error", text)) and its end."""
    kind = buf[pos : pos + 1]
    eol = buf.index(b"\r\n", pos)
    head = buf[pos + 1 : eol]
    after = eol + 2
    if kind in (b"+", b"(", b","):
        return head, after
    if kind == b"-":
        return ("error", head), after
    if kind == b":":
        return int(head), after
    if kind == b"_":
        return None, after
    if kind == b"#":
        return head == b"t", after
    if kind in (b"$", b"!", b"="):
        size = int(head)
        if size < 0:
            return None, after
        return buf[after : after + size], after + size + 2
    count = int(head)
    if kind in (b"%", b"|"):
        mapping = {}
        for _ in range(count):
            key, after = decode(buf, after)
            mapping[key], after = decode(buf, after)
        return mapping, after
    items = []
    for _ in range(max(count, 0)):
        item, after = decode(buf, after)
        items.append(item)
    return (None if count < 0 else items), after


def encode(value: Any) -> bytes:
    """RESP2/3 for what decode() returns (bulk strings for bytes)."""
    if value is None:
        return b"_\r\n"
    if isinstance(value, bool):
        return b"#t\r\n" if value else b"#f\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, tuple) and value and value[0] == "error":
        return b"-" + bytes(value[1]) + b"\r\n"
    if isinstance(value, (bytes, bytearray)):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if isinstance(value, dict):
        return b"%%%d\r\n" % len(value) + b"".join(encode(k) + encode(v) for k, v in value.items())
    return b"*%d\r\n" % len(value) + b"".join(encode(item) for item in value)


def command(raw: bytes) -> list[bytes]:
    """The arguments of one request (an array of bulk strings, or an inline command)."""
    if raw[:1] != b"*":
        return raw.strip().split()
    args, _ = decode(raw)
    return list(args)


class RedisWire:
    name = "redis"
    ordered = True
    errors = ERRORS

    def __init__(self, cluster: bool = False) -> None:
        self.cluster = cluster

    def next_request(self, buffer: bytearray) -> Request | None:
        try:
            end = value_end(buffer)
        except Incomplete:
            return None
        raw = bytes(buffer[:end])
        del buffer[:end]
        args = command(raw)
        name = args[0].decode(errors="replace").upper() if args else ""
        return Request(raw, name, handshake=name in HANDSHAKE or not name, detail=args)

    def next_response(self, buffer: bytearray) -> Response | None:
        try:
            end = value_end(buffer)
        except Incomplete:
            return None
        raw = bytes(buffer[:end])
        del buffer[:end]
        return Response(raw, unsolicited=raw[:1] == b">")

    def error_response(self, error: str, request: Request) -> bytes:
        if error not in ERRORS:
            raise unknown_error(self.name, error, ERRORS)
        answer = CLUSTERDOWN if error == "unavailable" and self.cluster else ERRORS[error]
        return answer.encode() + b"\r\n"

    def rewrite(self, response: Response, request: Request | None, addresses: Addresses) -> bytes:
        raw = response.raw
        if not addresses:
            return raw
        if raw[:1] == b"-" and (raw.startswith((b"-MOVED ", b"-ASK "))):
            for server, proxy in addresses.items():
                raw = raw.replace(b" " + server.encode() + b"\r\n", b" " + proxy.encode() + b"\r\n")
            return raw
        args = request.detail if request is not None else None
        if not args or [a.upper() for a in args[:2]] != [b"CLUSTER", b"SLOTS"]:
            return raw
        slots, _ = decode(raw)
        for entry in slots:
            for node in entry[2:]:
                address = f"{node[0].decode()}:{node[1]}"
                if address in addresses:
                    node[1] = int(addresses[address].rsplit(":", 1)[1])
        return encode(slots)
