"""What the request path sends to MongoDB and how its answers decode: no I/O here.

A document is ``{_id: <record id>, d: {<field>: <JSON text>}, expires_at: <Date>,
user_id: <str>, meta: <str>}`` (user_id and meta absent for anonymous sessions; meta is
the metadata's JSON text, see cloudsessions.metadata, absent too on documents written
before it existed). Keeping the values in the subdocument ``d`` lets a save change single
keys with ``$set``/``$unset`` of ``d.<field>`` in one update; field names are already
encoded to [A-Za-z0-9_%-] (see codec), so no '.' or '$' reaches a field path. Counters
are the one kind of value kept natively (an integer in ``d``) rather than as JSON text, so
the server can add to them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ...errors import SessionGone
from ...store import Changes, EncodedRecord, SessionInfo, decode_meta

Document = dict[str, Any]

LOAD_PROJECTION = {"_id": 0, "d": 1, "expires_at": 1, "user_id": 1, "meta": 1}
# The listing reads the metadata in the same find on the user index.
INFO_PROJECTION = {"_id": 1, "expires_at": 1, "meta": 1}

# BSON sizes (bsonspec.org): a document is int32 length + elements + NUL; an element is a
# type byte + its name as a NUL-terminated cstring + the value; a string value is int32
# length + UTF-8 bytes + NUL; a Date is 8 bytes.
_BSON_DOC = 4 + 1
_BSON_STRING = 4 + 1
_ID_ELEMENT = 1 + len("_id") + 1 + _BSON_STRING  # + len(record id)
_DATA_ELEMENT = 1 + len("d") + 1 + _BSON_DOC
_FIELD_ELEMENT = 1 + 1 + _BSON_STRING  # + name + value
_COUNTER_ELEMENT = 1 + 1  # + name + 4 (int32) or 8 (int64) bytes
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_EXPIRES_ELEMENT = 1 + len("expires_at") + 1 + 8
_USER_ELEMENT = 1 + len("user_id") + 1 + _BSON_STRING  # + len(user id)
_META_ELEMENT = 1 + len("meta") + 1 + _BSON_STRING  # + len(meta text)
_RECORD_ID_LENGTH = 64  # hex SHA-256, see session_ids.record_id


def utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def bson_size(record: EncodedRecord) -> int:
    """The BSON size of the record's document: what MongoDB holds to its 16 MiB limit."""
    fields = sum(_FIELD_ELEMENT + len(f) + len(v.encode()) for f, v in record.fields.items())
    for name, value in record.counters.items():
        fields += _COUNTER_ELEMENT + len(name) + (4 if _INT32_MIN <= value <= _INT32_MAX else 8)
    size = _BSON_DOC + _ID_ELEMENT + _RECORD_ID_LENGTH + _DATA_ELEMENT + fields
    size += _EXPIRES_ELEMENT
    if record.user_id is not None:
        size += _USER_ELEMENT + len(record.user_id.encode())
    if record.meta is not None:
        size += _META_ELEMENT + len(record.meta.encode())
    return size


def document(rid: str, record: EncodedRecord) -> Document:
    data = {**record.fields, **record.counters} if record.counters else record.fields
    doc: Document = {"_id": rid, "d": data, "expires_at": utc(record.expires_at)}
    if record.user_id is not None:
        doc["user_id"] = record.user_id
    if record.meta is not None:
        doc["meta"] = record.meta
    return doc


def decoded(doc: Document | None) -> EncodedRecord | None:
    if doc is None:
        return None
    data, expires_at = doc.get("d"), doc.get("expires_at")
    if not isinstance(data, dict) or not isinstance(expires_at, datetime):
        return None  # not a document this store wrote: treated as an unknown id
    # Values are JSON text, except counters: native integers that $add can work on.
    counters = {f: v for f, v in data.items() if not isinstance(v, str)}
    if counters:
        if not all(type(v) is int for v in counters.values()):
            return None
        data = {f: v for f, v in data.items() if isinstance(v, str)}
    return EncodedRecord(data, expires_at.timestamp(), doc.get("user_id"), counters, _meta(doc))


def _meta(doc: Document) -> str | None:
    # Absent on anonymous sessions and on documents written before metadata existed.
    meta = doc.get("meta")
    return meta if isinstance(meta, str) else None


def save_command(
    rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
) -> tuple[Document, Document]:
    """The filter and update of a save: the changed fields, only on a live record."""
    set_: Document = {f"d.{f}": v for f, v in changes.set_fields.items()}
    set_["expires_at"] = utc(expires_at)
    unset: Document = {f"d.{f}": "" for f in changes.removed_fields}
    if user_id is None:
        unset["user_id"] = ""
    else:
        set_["user_id"] = user_id
    # No metadata to write leaves the stored one.
    if changes.meta is not None:
        set_["meta"] = changes.meta
    update: Document = {"$set": set_}
    if unset:
        update["$unset"] = unset
    return _live(rid, now), update


def check_saved(matched_count: int) -> None:
    if matched_count == 0:
        raise SessionGone("the session was deleted or has expired")


def increment_command(
    rid: str, field: str, delta: int, base: int, expires_at: float, now: float
) -> tuple[Document, list[Document], Document]:
    """The filter, update pipeline and projection of an increment, only on a live record.

    A pipeline, so the one write can read the field: a counter (a native integer) is
    added to; anything else (absent, or JSON text written by a save) is replaced by
    base + delta.
    """
    path = f"d.{field}"
    current = f"${path}"
    is_counter = {"$in": [{"$type": current}, ["int", "long"]]}
    value = {"$add": [{"$cond": [is_counter, current, base]}, delta]}
    pipeline = [{"$set": {path: value, "expires_at": utc(expires_at)}}]
    return _live(rid, now), pipeline, {"_id": 0, path: 1}


def counter(doc: Document | None, field: str) -> int:
    if doc is None:
        raise SessionGone("the session was deleted or has expired")
    return int(doc["d"][field])


def _live(rid: str, now: float) -> Document:
    # Never an upsert: a deleted or expired session is not re-created.
    return {"_id": rid, "expires_at": {"$gt": utc(now)}}


def expired(now: float) -> Document:
    return {"expires_at": {"$lte": utc(now)}}


def of_user(user_id: str, keep_rid: str | None = None) -> Document:
    filter_: Document = {"user_id": user_id}
    if keep_rid is not None:
        filter_["_id"] = {"$ne": keep_rid}
    return filter_


def session_infos(docs: Iterable[Document], user_id: str) -> list[SessionInfo]:
    return [
        SessionInfo(d["_id"], d["expires_at"].timestamp(), user_id, decode_meta(_meta(d)))
        for d in docs
    ]


def owned(user_id: str, rid: str) -> Document:
    """The filter of a revoke: record `rid`, only if it is `user_id`'s."""
    return {"_id": rid, "user_id": user_id}
