"""gRPC (the Firestore emulator): a relay at the gRPC level, as a gRPC proxy is built.

A grpc.server with a generic handler takes every method as a stream of raw messages
(nothing is decoded) and calls the same method on the emulator through a channel of its
own, passing the messages, the metadata and what is left of the deadline. A fault it is
told to inject ends the call with a real gRPC status on the wire:
- "throttling": RESOURCE_EXHAUSTED (Firestore's answer to a quota or a hot document);
- "unavailable": UNAVAILABLE; "aborted": ABORTED (contention).
Byte-level faults (latency, black hole, reset, a response cut mid-way) are the TCP front's
(tests/services/proxy.py): the relay only tells it which connection the call came on.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

from .wire_common import Request, unknown_error

ERRORS = {
    "throttling": (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "Resource has been exhausted (e.g. check quota).",
    ),
    "unavailable": (grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable."),
    "aborted": (
        grpc.StatusCode.ABORTED,
        "Too much contention on these documents. Please try again.",
    ),
}
_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
# Headers gRPC sets itself on every call; the rest of the metadata goes through.
_OWN_HEADERS = ("user-agent", "te", "content-type")


def check_error(error: str) -> None:
    if error not in ERRORS:
        raise unknown_error("grpc", error, {k: v[0].name for k, v in ERRORS.items()})


class GrpcRelay:
    """A gRPC server on a loopback port relaying every call to `target` ("host:port").

    decide(request) says what to do with each call; cut(peer_port, after_bytes) and
    reset(peer_port) act on the TCP connection the call came on (the relay's peer is the
    TCP front's upstream socket).
    """

    def __init__(
        self,
        target: str,
        decide: Callable[[Request], Any],
        cut: Callable[[int, int], None],
        reset: Callable[[int], None],
    ) -> None:
        self.decide, self.cut, self.reset = decide, cut, reset
        self.channel = grpc.insecure_channel(target, options=_OPTIONS)
        pool = futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="grpc-relay")
        self.server = grpc.server(pool, options=_OPTIONS)
        self.server.add_generic_rpc_handlers((_Handler(self),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def close(self) -> None:
        self.server.stop(grace=None).wait(5)
        self.channel.close()

    def call(self, method: str, requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        decision = self.decide(Request(b"", method.rsplit("/", 1)[-1]))
        peer_port = int(context.peer().rsplit(":", 1)[1])
        if decision.kind == "inject":
            code, message = ERRORS[decision.error]
            context.abort(code, message)
        if decision.kind == "reset":
            self.reset(peer_port)
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection reset")
        metadata = [
            (key, value)
            for key, value in context.invocation_metadata()
            if not key.startswith((":", "grpc-")) and key not in _OWN_HEADERS
        ]
        upstream = self.channel.stream_stream(method)
        call = upstream(requests, metadata=metadata, timeout=context.time_remaining())
        context.add_callback(call.cancel)
        try:
            if decision.kind == "cut":
                answers = list(call)  # the emulator has done the work; its answer is lost
                # On the wire each message is a DATA frame (9 bytes) with a 5-byte prefix.
                self.cut(peer_port, decision.cut_at(sum(len(a) + 14 for a in answers)))
                yield from answers
            else:
                for answer in call:
                    if decision.kind == "delay":
                        time.sleep(decision.delay)
                    yield answer
            with contextlib.suppress(Exception):
                context.set_trailing_metadata(call.trailing_metadata())
        except grpc.RpcError as error:
            context.abort(error.code(), error.details() or "")


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, relay: GrpcRelay) -> None:
        self.relay = relay

    def service(self, details: Any) -> Any:
        method = details.method

        def behaviour(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
            return self.relay.call(method, requests, context)

        # No (de)serializers: messages pass as bytes. One streaming handler serves every
        # method: on the wire a unary call is a stream of one message.
        return grpc.stream_stream_rpc_method_handler(behaviour)
