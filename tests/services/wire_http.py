"""HTTP/1.1 with keep-alive, as botocore talks to DynamoDB (JSON 1.0 protocol).

Requests end after their Content-Length; responses after theirs, or their last chunk. A
request is named by its X-Amz-Target operation ("DynamoDB_20120810.GetItem" -> "GetItem").

Errors the proxy can answer with, as DynamoDB sends them (status, __type, message; with
x-amzn-RequestId and the x-amz-crc32 of the body, which botocore checks):
- "throttling": 400 ThrottlingException;
- "provisioned_throughput": 400 ProvisionedThroughputExceededException;
- "unavailable": 503 ServiceUnavailableException;
- "internal": 500 InternalServerError.
"""

from __future__ import annotations

import email.utils
import json
import secrets
import string
import zlib

from .wire_common import Addresses, Request, Response, unknown_error

_DYNAMODB = "com.amazonaws.dynamodb.v20120810#"
# error name -> (status, reason, __type, message)
ERRORS = {
    "throttling": (
        400,
        "Bad Request",
        _DYNAMODB + "ThrottlingException",
        "Rate of requests exceeds the allowed throughput.",
    ),
    "provisioned_throughput": (
        400,
        "Bad Request",
        _DYNAMODB + "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded."
        " Consider increasing your provisioning level with the UpdateTable API.",
    ),
    "unavailable": (
        503,
        "Service Unavailable",
        "com.amazon.coral.availability#ServiceUnavailableException",
        "Service Unavailable",
    ),
    "internal": (
        500,
        "Internal Server Error",
        _DYNAMODB + "InternalServerError",
        "Internal server error",
    ),
}
_ID_LETTERS = string.ascii_uppercase + string.digits


def _head(buffer: bytearray) -> tuple[int, list[bytes], dict[bytes, bytes]] | None:
    """(length of the head, its start line's words, lower-case headers) or None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return end + 4, lines[0].split(b" ", 2), headers


def _chunked_end(buffer: bytearray, pos: int) -> int | None:
    """Where a chunked body starting at `pos` ends (after its trailers), or None."""
    while True:
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(buffer[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            trailers = buffer.find(b"\r\n", pos)
            while trailers >= 0 and trailers != pos:  # trailer lines, then an empty one
                pos = trailers + 2
                trailers = buffer.find(b"\r\n", pos)
            return None if trailers < 0 else trailers + 2
        pos += size + 2
        if pos > len(buffer):
            return None


class HttpWire:
    name = "http"
    ordered = True
    errors = {
        name: f"{status} {kind.rsplit('#', 1)[1]}" for name, (status, _, kind, _) in ERRORS.items()
    }

    def next_request(self, buffer: bytearray) -> Request | None:
        head = _head(buffer)
        if head is None:
            return None
        size, _, headers = head
        end = size + int(headers.get(b"content-length", b"0"))
        if len(buffer) < end:
            return None
        raw = bytes(buffer[:end])
        del buffer[:end]
        target = headers.get(b"x-amz-target", b"").decode()
        return Request(raw, target.rsplit(".", 1)[-1] or "HTTP")

    def next_response(self, buffer: bytearray) -> Response | None:
        head = _head(buffer)
        if head is None:
            return None
        size, start, headers = head
        status = int(start[1]) if len(start) > 1 else 0
        end: int | None
        if status < 200 or status in (204, 304):
            end = size
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            end = _chunked_end(buffer, size)
        else:
            end = size + int(headers.get(b"content-length", b"0"))
        if end is None or len(buffer) < end:
            return None
        raw = bytes(buffer[:end])
        del buffer[:end]
        return Response(raw, extra={"status": status})

    def error_response(self, error: str, request: Request) -> bytes:
        if error not in ERRORS:
            raise unknown_error(self.name, error, self.errors)
        status, reason, kind, message = ERRORS[error]
        body = json.dumps({"__type": kind, "message": message}, separators=(",", ":")).encode()
        request_id = "".join(secrets.choice(_ID_LETTERS) for _ in range(52))
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Server: Server\r\n"
            f"Date: {email.utils.formatdate(usegmt=True)}\r\n"
            "Content-Type: application/x-amz-json-1.0\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n"
            f"x-amzn-RequestId: {request_id}\r\n"
            f"x-amz-crc32: {zlib.crc32(body)}\r\n"
            "\r\n"
        )
        return head.encode() + body

    def rewrite(self, response: Response, request: Request | None, addresses: Addresses) -> bytes:
        return response.raw
