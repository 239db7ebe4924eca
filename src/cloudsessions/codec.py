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

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

FIELD_PREFIX = "k"


@functools.lru_cache(maxsize=4096)
def encode_field(key: str) -> str:
    # quote() leaves letters, digits and "_.-~" alone; "." and "~" are escaped too, so a
    # field name is only [A-Za-z0-9_%-].
    quoted = quote(key, safe="", encoding="utf-8", errors="surrogatepass")
    return FIELD_PREFIX + quoted.replace(".", "%2E").replace("~", "%7E")


@functools.lru_cache(maxsize=4096)  # a site's sessions use few distinct keys
def decode_field(field: str) -> str:
    if not field.startswith(FIELD_PREFIX):
        raise ValueError(f"not an encoded session field: {field!r}")
    body = field[len(FIELD_PREFIX) :]
    if "%" not in body:  # the common case: a plain identifier
        return body
    return unquote(body, encoding="utf-8", errors="surrogatepass")


# Made once: json.dumps with any non-default argument builds a new encoder per call.
# Compact separators: the size limit is checked against this text.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_ASCII_ENCODER = json.JSONEncoder(separators=(",", ":"))
_DECODER = json.JSONDecoder()


def encode_value(value: Any) -> str:
    text = _ENCODER.encode(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate (valid in a Python str, not in UTF-8): escape it as \udXXX.
            text = _ASCII_ENCODER.encode(value)
    return text


def snapshot(data: Mapping[str, Any]) -> dict[str, str]:
    """The JSON text of each value: what the session lifecycle diffs a later write against."""
    return {k: encode_value(v) for k, v in data.items()}


def decode_value(text: str) -> Any:
    return json.loads(text)


def encode_data(data: Mapping[str, Any], keys: Iterable[str] | None = None) -> dict[str, str]:
    """Field name -> JSON text, for all of `data` or only `keys` present in it."""
    chosen = data.keys() if keys is None else (k for k in keys if k in data)
    return {encode_field(k): encode_value(data[k]) for k in chosen}


def decode_counters(counters: Mapping[str, int]) -> dict[str, int]:
    return {decode_field(f): int(v) for f, v in counters.items()}


def decode_data(fields: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Session key -> value, and session key -> its JSON text as stored (the snapshot a
    later write is diffed against: what encode_value gave when it was written)."""
    # One JSON parse for all values: parsing is most of the cost of a load.
    texts = list(fields.values())
    values = _DECODER.decode("[" + ",".join(texts) + "]")
    if len(values) != len(texts):
        raise ValueError("a stored session value is not a single JSON value")
    keys = list(map(decode_field, fields))
    return dict(zip(keys, values, strict=True)), dict(zip(keys, texts, strict=True))


def encoded_size(fields: Mapping[str, str]) -> int:
    """Bytes of field names plus JSON values: what every store's item limit mostly counts."""
    return sum(len(f.encode()) + len(v.encode()) for f, v in fields.items())
