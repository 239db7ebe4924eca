"""What the fault proxy needs to know of a store's wire protocol: where each request and each
response ends, what a request is called, and how the store says "throttled" or "unavailable".

Each wire_<protocol>.py module defines a `Wire` (see below); tests/services/proxy.py frames
the bytes it relays with it, so a fault lands on a whole request or response, never on an
arbitrary chunk of bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class Request:
    """One request (a command, an API call) as the client sent it."""

    raw: bytes
    name: str  # "GetItem", "find", "EVALSHA", "Commit", ...
    handshake: bool = False  # connection set-up or monitoring: never meets an injected fault
    ident: int | None = None  # what its response refers to (MongoDB's requestID), if anything
    expects_reply: bool = True
    detail: Any = None  # what the wire needs to answer it itself (MongoDB: the command)
    streaming: bool = False  # opens a stream of replies (MongoDB's awaitable hello)


@dataclass
class Response:
    raw: bytes
    responds_to: int | None = None  # MongoDB's responseTo
    unsolicited: bool = False  # answers no request (a RESP3 push)
    extra: dict[str, Any] = field(default_factory=dict)


class Wire(Protocol):
    """How one protocol is framed and faulted.

    ordered: responses come in the order of their requests (HTTP/1.1, RESP); otherwise they
    name their request (MongoDB), and an injected answer may go out at once.
    """

    name: str
    ordered: bool
    errors: Mapping[str, str]  # error name -> what it stands for (docs, messages)

    def next_request(self, buffer: bytearray) -> Request | None:
        """The first complete request in `buffer`, removed from it; None if incomplete."""

    def next_response(self, buffer: bytearray) -> Response | None:
        """The first complete response in `buffer`, removed from it; None if incomplete."""

    def error_response(self, error: str, request: Request) -> bytes:
        """The server's answer `error` to `request`, as the server would send it."""

    def rewrite(self, response: Response, request: Request | None, addresses: Addresses) -> bytes:
        """The response with every server address it carries replaced by its proxy's."""


Addresses = Mapping[str, str]  # "host:port" of a server -> "host:port" of its proxy


def unknown_error(wire: str, error: str, known: Mapping[str, str]) -> ValueError:
    return ValueError(f"{wire} wire: no error {error!r}; known: {', '.join(sorted(known))}")


Matcher = Callable[[Request], bool]


def matcher(request: str | Any | None) -> Matcher:
    """A request filter from a name, a collection of names or a predicate (None: any)."""
    if request is None:
        return lambda r: True
    if isinstance(request, str):
        return lambda r: r.name == request
    if callable(request):
        return request  # type: ignore[no-any-return]
    names = frozenset(request)
    return lambda r: r.name in names
