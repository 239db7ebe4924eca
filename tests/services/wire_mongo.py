"""The MongoDB wire protocol: a 16-byte header (length, requestID, responseTo, opCode), then
OP_MSG sections (or the legacy OP_QUERY/OP_REPLY of a driver's first handshake).

A request is named by its command (the first key of its body: "find", "insert", ...). The
handshake and monitoring commands (hello, isMaster, ping, buildInfo, endSessions, SASL) pass.

Errors the proxy can answer with, as a replica set member sends them during an election:
- "throttling" / "not_primary": {ok: 0, errmsg: "not primary", code: 10107,
  codeName: "NotWritablePrimary"};
- "unavailable": {ok: 0, code: 91, codeName: "ShutdownInProgress"} (a member shutting down);
- "interrupted": {ok: 0, code: 11602, codeName: "InterruptedDueToReplStateChange"}.
As a 4.4+ server does, a retryable write (one carrying a txnNumber, outside a transaction)
gets the error label "RetryableWriteError"; the driver relies on the server for it at wire
version 9 and up.

Each of these errors is a state change of the server (it stepped down, it is shutting
down), and a 4.4+ server says so twice: the error carries a newer topologyVersion, and its
hello stream (the driver's monitor waits on an awaitable hello) answers at once with that
version. The proxy plays both parts: it counts its injected state changes (`bump`), adds
them to every topologyVersion the server sends and takes them off those the client sends,
and answers each waiting monitor with the server's last hello under the new version (a
primary again: the step-down is over). Without that, the driver marks the server Unknown
and waits for a hello stream that never moves (up to heartbeatFrequencyMS, 10 s).

The server's hello replies name its own address (hosts, me, primary): they are rewritten to
the proxy's, so a driver discovering the replica set keeps going through the proxy.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from typing import Any

import bson

from .wire_common import Addresses, Request, Response, unknown_error

OP_REPLY, OP_QUERY, OP_COMPRESSED, OP_MSG = 1, 2004, 2012, 2013
MORE_TO_COME = 1 << 1
CHECKSUM_PRESENT = 1 << 0
EXHAUST_ALLOWED = 1 << 16

# error name -> (code, codeName, errmsg)
ERRORS = {
    "throttling": (10107, "NotWritablePrimary", "not primary"),
    "not_primary": (10107, "NotWritablePrimary", "not primary"),
    "unavailable": (91, "ShutdownInProgress", "The server is in quiesce mode and will shut down"),
    "interrupted": (
        11602,
        "InterruptedDueToReplStateChange",
        "operation was interrupted because a node stepped down",
    ),
}
HANDSHAKE = frozenset(
    {
        "hello", "ismaster", "ping", "buildinfo", "endsessions", "saslstart", "saslcontinue",
        "authenticate", "getnonce", "logout", "killcursors",
    }
)  # fmt: skip
_ids = itertools.count(1 << 30)  # the proxy's own requestIDs, far from the server's


def _cstring_end(buf: bytes, pos: int) -> int:
    return buf.index(b"\x00", pos)


def _first_key(buf: bytes, doc: int) -> str:
    """The name of the first element of the BSON document at `doc`."""
    if buf[doc + 4] == 0:  # empty document
        return ""
    return buf[doc + 5 : _cstring_end(buf, doc + 5)].decode(errors="replace")


def _msg_body(raw: bytes) -> tuple[int, int] | None:
    """(flags, offset of the kind-0 section's document) of an OP_MSG."""
    (flags,) = struct.unpack_from("<I", raw, 16)
    end = len(raw) - (4 if flags & CHECKSUM_PRESENT else 0)
    pos = 20
    while pos < end:
        kind = raw[pos]
        pos += 1
        (size,) = struct.unpack_from("<i", raw, pos)
        if kind == 0:
            return flags, pos
        pos += size
    return None


def _frame(buffer: bytearray) -> tuple[bytes, int, int, int] | None:
    if len(buffer) < 16:
        return None
    length, request_id, response_to, opcode = struct.unpack_from("<iiii", buffer, 0)
    if len(buffer) < length:
        return None
    raw = bytes(buffer[:length])
    del buffer[:length]
    return raw, request_id, response_to, opcode


class MongoWire:
    name = "mongo"
    ordered = False
    errors = {name: f"{code} {code_name}" for name, (code, code_name, _) in ERRORS.items()}

    def __init__(self) -> None:
        self.bump = 0  # state changes injected so far
        self.hello: dict[str, Any] | None = None  # the server's last hello (its own version)

    def next_request(self, buffer: bytearray) -> Request | None:
        frame = _frame(buffer)
        if frame is None:
            return None
        raw, request_id, _, opcode = frame
        if opcode == OP_MSG:
            found = _msg_body(raw)
            if found is not None:
                flags, doc = found
                name = _first_key(raw, doc)
                handshake = name.lower() in HANDSHAKE
                if handshake and self.bump and b"topologyVersion" in raw:
                    raw = _edited(raw, lambda d: self._versioned(d, -self.bump))
                return Request(
                    raw,
                    name,
                    handshake=handshake,
                    ident=request_id,
                    expects_reply=not flags & MORE_TO_COME,
                    detail=doc,
                    streaming=bool(flags & EXHAUST_ALLOWED),
                )
        if opcode == OP_QUERY:  # a driver's first hello, before it knows the wire version
            doc = _cstring_end(raw, 20) + 1 + 8
            name = _first_key(raw, doc)
            return Request(raw, name, handshake=True, ident=request_id)
        return Request(raw, f"opcode {opcode}", handshake=True, ident=request_id)

    def next_response(self, buffer: bytearray) -> Response | None:
        frame = _frame(buffer)
        if frame is None:
            return None
        raw, _, response_to, opcode = frame
        more = opcode == OP_MSG and bool(struct.unpack_from("<I", raw, 16)[0] & MORE_TO_COME)
        return Response(raw, responds_to=response_to, extra={"opcode": opcode, "more": more})

    def error_response(self, error: str, request: Request) -> bytes:
        if error not in ERRORS:
            raise unknown_error(self.name, error, self.errors)
        code, code_name, message = ERRORS[error]
        reply: dict[str, Any] = {"ok": 0.0, "errmsg": message, "code": code, "codeName": code_name}
        if request.detail is not None:
            command = bson.decode(
                request.raw[request.detail :][: _doc_size(request.raw, request.detail)]
            )
            in_transaction = "autocommit" in command or "startTransaction" in command
            if "txnNumber" in command and not in_transaction:
                reply["errorLabels"] = ["RetryableWriteError"]
        if self.hello is not None and "topologyVersion" in self.hello:
            reply["topologyVersion"] = self._versioned(self.hello, self.bump)["topologyVersion"]
        return _op_msg(reply, request.ident or 0)

    def state_change(self) -> Callable[[int], bytes] | None:
        """A state change is injected: what answers a monitor's awaitable hello (its
        requestID) with the newer hello, as the server's stream would (None if the server
        sent no hello with a topologyVersion yet).

        The answer says more is to come, so the driver reads the server's own reply to that
        hello as the next of the stream, whether the server streams (exhaust) or, as
        SecantusDB does, answers each awaitable hello once. An answer that named no request
        would be refused by a driver not yet reading a stream ("Got response id 0"), which
        then drops its monitoring connection and clears its pool.
        """
        self.bump += 1
        if self.hello is None or "topologyVersion" not in self.hello:
            return None
        hello = self._versioned(self.hello, self.bump)
        body = struct.pack("<I", MORE_TO_COME) + b"\x00" + bson.encode(hello)

        def answer(responds_to: int) -> bytes:
            header = struct.pack("<iiii", 16 + len(body), next(_ids), responds_to, OP_MSG)
            return header + body

        return answer

    @staticmethod
    def _versioned(document: dict[str, Any], bump: int) -> dict[str, Any]:
        """`document` with `bump` added to its topologyVersion's counter."""
        version = document.get("topologyVersion")
        if not isinstance(version, dict) or not bump:
            return document
        counter = max(0, int(version["counter"]) + bump)
        return {**document, "topologyVersion": {**version, "counter": bson.Int64(counter)}}

    def _reply(self, document: dict[str, Any], addresses: Addresses) -> dict[str, Any]:
        document = _replace(document, addresses)
        if "topologyVersion" in document and (
            "isWritablePrimary" in document or "ismaster" in document
        ):
            self.hello = document
        return self._versioned(document, self.bump)

    def rewrite(self, response: Response, request: Request | None, addresses: Addresses) -> bytes:
        raw = response.raw
        if b"topologyVersion" not in raw and not any(a.encode() in raw for a in addresses):
            return raw
        if response.extra["opcode"] == OP_REPLY:
            docs = bson.decode_all(raw[36:])
            body = raw[16:36] + b"".join(bson.encode(self._reply(d, addresses)) for d in docs)
            return _header(raw, body) + body
        return _edited(raw, lambda d: self._reply(d, addresses))


def _header(raw: bytes, body: bytes) -> bytes:
    _, request_id, response_to, opcode = struct.unpack_from("<iiii", raw, 0)
    return struct.pack("<iiii", 16 + len(body), request_id, response_to, opcode)


def _edited(raw: bytes, edit: Callable[[dict[str, Any]], dict[str, Any]]) -> bytes:
    """An OP_MSG with its body document replaced by edit(document)."""
    if struct.unpack_from("<i", raw, 12)[0] != OP_MSG:
        return raw
    found = _msg_body(raw)
    if found is None:
        return raw
    flags, doc = found
    size = _doc_size(raw, doc)
    replaced = bson.encode(edit(bson.decode(raw[doc : doc + size])))
    body = raw[16:doc] + replaced + raw[doc + size :]
    if flags & CHECKSUM_PRESENT:  # the checksum no longer holds: drop it
        body = struct.pack("<I", flags & ~CHECKSUM_PRESENT) + body[4:-4]
    return _header(raw, body) + body


def _doc_size(raw: bytes, doc: int) -> int:
    return int(struct.unpack_from("<i", raw, doc)[0])


def _op_msg(document: dict[str, Any], response_to: int) -> bytes:
    body = struct.pack("<I", 0) + b"\x00" + bson.encode(document)
    return struct.pack("<iiii", 16 + len(body), next(_ids), response_to, OP_MSG) + body


def _replace(value: Any, addresses: Addresses) -> Any:
    if isinstance(value, str):
        return addresses.get(value, value)
    if isinstance(value, list):
        return [_replace(v, addresses) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, addresses) for k, v in value.items()}
    return value
