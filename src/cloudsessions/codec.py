"""How session values are kept in stores with very different type systems.

Each session key becomes one field of the record, so a store can change one key without
rewriting the others (per-key merge writes). Each value is kept as its JSON text: DynamoDB
has no floats and 38-digit numbers, Firestore no nested arrays, MongoDB no integers beyond
64 bits; JSON text round-trips every JSON value exactly in all of them.

Field names are the session keys, percent-encoded to [A-Za-z0-9_%-] and prefixed with "k":
'.', '$' and '/' mean something in MongoDB and Firestore field paths, Firestore reserves
names like __x__, and no store accepts an empty name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPE = re.compile(r"%([0-9A-F]{2})")
FIELD_PREFIX = "k"


def encode_field(key: str) -> str:
    raw = key.encode("utf-8", "surrogatepass")
    return FIELD_PREFIX + "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)


def decode_field(field: str) -> str:
    if not field.startswith(FIELD_PREFIX):
        raise ValueError(f"not an encoded session field: {field!r}")
    body = field[len(FIELD_PREFIX) :]
    raw = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(body):
        raw += body[pos : match.start()].encode("ascii")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += body[pos:].encode("ascii")
    return raw.decode("utf-8", "surrogatepass")


def encode_value(value: Any) -> str:
    # Compact separators: the size limit is checked against this text.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode_value(text: str) -> Any:
    return json.loads(text)


def encode_data(data: Mapping[str, Any], keys: Iterable[str] | None = None) -> dict[str, str]:
    """Field name -> JSON text, for all of `data` or only `keys` present in it."""
    chosen = data.keys() if keys is None else (k for k in keys if k in data)
    return {encode_field(k): encode_value(data[k]) for k in chosen}


def decode_data(fields: Mapping[str, str]) -> dict[str, Any]:
    return {decode_field(f): decode_value(v) for f, v in fields.items()}


def encoded_size(fields: Mapping[str, str]) -> int:
    """Bytes of field names plus JSON values: what every store's item limit mostly counts."""
    return sum(len(f.encode()) + len(v.encode()) for f, v in fields.items())
