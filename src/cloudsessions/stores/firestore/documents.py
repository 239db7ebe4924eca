"""A session as a Firestore document, and the writes of each operation: no I/O here.

Layout of a document (its id is the hashed session id):

    d           map of encoded field name -> JSON text (one entry per session key)
    keys        array of the encoded field names in the session's order (maps come back
                sorted; ArrayUnion/ArrayRemove keep this right under concurrent saves)
    expires_at  Timestamp of the expiry: a TTL policy on it deletes expired sessions
    expires_us  the same instant in integer microseconds: the expiry guard (see below)
    user_id     string or null, queried by for_user()
    meta        a signed-in session's metadata (cloudsessions.metadata), JSON text; absent
                for anonymous sessions and for those written before it existed

Writes change single entries of ``d`` (update masks like ``d.`k%41```), so two requests
that change different keys of one session both keep their change.

Saving without resurrecting an expired session, in one write. Firestore's preconditions
can only say "exists" or "last updated at", never "expires_at > now", and the contract
allows neither a read before a save nor a transaction (a read plus a commit). So a save is
one Commit of two writes to the document, applied atomically and in order:

    1. expires_us += R - t - 1        (precondition: the document exists)
    2. set the changed keys (and their order), expires_at = R, user_id;
       expires_us = min(expires_us, R)

with R the new expiry and t the time of the save, in microseconds. If the session was live
(expires_us > t), step 1 lifts expires_us to at least R and step 2 brings it to exactly R:
expires_us == expires_at again. If it had expired (expires_us <= t), expires_us ends below
R, and a document whose expires_us is below its expires_at reads as expired. The commit
returns the value of expires_us, so the store knows at once: it deletes that document (a
second call, on this path only) and raises SessionGone. The details are in
docs/stores/firestore.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from ...errors import ConfigurationError, SessionGone
from ...store import Changes, EncodedRecord, logger

DATA, KEYS, EXPIRES_AT, EXPIRES_US, USER_ID = "d", "keys", "expires_at", "expires_us", "user_id"
META = "meta"
DEFAULT_COLLECTION = "cloudsessions"
# Firestore's own limits: 1 MiB per document; at most 500 writes per batch commit.
MAX_DOCUMENT_BYTES = 1_048_576
MAX_BATCH = 500

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Firestore timestamps end with the year 9999.
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // _MICROSECOND
_MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _MICROSECOND


def us(seconds: float) -> int:
    return min(max(round(seconds * 1_000_000), _MIN_US), _MAX_US)


def timestamp(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def us_of(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


def data_path(field: str) -> str:
    # Encoded names hold % and -, which Firestore field paths accept only back-quoted.
    return FieldPath(DATA, field).to_api_repr()


def collection_path(path: str) -> tuple[str, ...]:
    segments = tuple(path.strip("/").split("/")) if path.strip("/") else (DEFAULT_COLLECTION,)
    if len(segments) % 2 == 0 or any(
        not s or s in (".", "..") or (s.startswith("__") and s.endswith("__")) for s in segments
    ):
        raise ConfigurationError(
            f"firestore collection path {path!r} must name a collection: 'sessions' or"
            " 'parent/doc/sessions'; ids may not be empty, '.', '..' or __reserved__"
        )
    return segments


def document(record: EncodedRecord) -> dict[str, Any]:
    expires = us(record.expires_at)
    doc = {
        DATA: record.fields,
        KEYS: list(record.fields),
        EXPIRES_AT: timestamp(expires),
        EXPIRES_US: expires,
        USER_ID: record.user_id,
    }
    if record.meta is not None:
        doc[META] = record.meta
    return doc


def meta(doc: Mapping[str, Any]) -> str | None:
    text = doc.get(META)
    return text if isinstance(text, str) else None


def record(snapshot: Any) -> EncodedRecord | None:
    if not snapshot.exists:
        return None
    doc = snapshot.to_dict() or {}
    fields, expires_at, guard = doc.get(DATA), doc.get(EXPIRES_AT), doc.get(EXPIRES_US)
    if not (
        isinstance(fields, dict) and isinstance(expires_at, datetime) and isinstance(guard, int)
    ):
        logger.warning("a firestore document that is not a cloudsessions session was ignored")
        return None
    expires = us_of(expires_at)
    if guard < expires:
        return None  # a save reached it after it had expired: see the module docstring
    # Firestore returns map entries sorted; `keys` keeps the session's own order.
    ordered = {f: fields[f] for f in doc.get(KEYS) or () if f in fields}
    if len(ordered) < len(fields):
        ordered.update(fields)
    # JSON text is a string; a counter (Store.increment) is a native integer.
    counters = {f: v for f, v in ordered.items() if type(v) is int}
    for field in counters:
        del ordered[field]
    return EncodedRecord(ordered, expires / 1_000_000, doc.get(USER_ID), counters, meta(doc))


@dataclass(frozen=True)
class Guarded:
    """The two writes of a save or an increment (see the module docstring), in order."""

    first: dict[str, Any]
    second: dict[str, Any]
    expires: int

    def batch(self, client: Any, ref: Any) -> Any:
        batch = client.batch()
        batch.update(ref, self.first)
        batch.update(ref, self.second)
        return batch

    def was_live(self, results: Sequence[Any]) -> bool:
        """Whether the commit found the session live: its guard came back as `expires`."""
        guard: int = results[-1].transform_results[0].integer_value
        return guard == self.expires


def guarded(
    first: dict[str, Any], second: dict[str, Any], expires_at: float, now: float
) -> Guarded:
    expires = us(expires_at)
    # Lifts a live guard (> now) to >= expires; leaves an expired one below it.
    first[EXPIRES_US] = firestore.Increment(expires - math.floor(now * 1e6) - 1)
    second[EXPIRES_AT] = timestamp(expires)
    # The SDK sends transforms sorted by path: expires_us's result comes first here.
    second[EXPIRES_US] = firestore.Minimum(expires)
    return Guarded(first, second, expires)


def save(changes: Changes, expires_at: float, user_id: str | None, now: float) -> Guarded:
    first: dict[str, Any] = {}
    if changes.removed_fields:
        first[KEYS] = firestore.ArrayRemove(changes.removed_fields)
    second: dict[str, Any] = {data_path(f): v for f, v in changes.set_fields.items()}
    for field in changes.removed_fields:
        second[data_path(field)] = firestore.DELETE_FIELD
    second[USER_ID] = user_id
    if changes.meta is not None:  # else the stored metadata stays as it is
        second[META] = changes.meta
    if changes.set_fields:
        # Appends only the new keys, in order, whatever other saves did meanwhile.
        second[KEYS] = firestore.ArrayUnion(list(changes.set_fields))
    return guarded(first, second, expires_at, now)


def increment(field: str, delta: int, expires_at: float, now: float) -> Guarded:
    # Firestore's increment of a value that is not a number (the JSON text a save
    # wrote) or of a missing one starts from 0: exactly Store.increment with base 0.
    first = {data_path(field): firestore.Increment(delta)}
    return guarded(first, {KEYS: firestore.ArrayUnion([field])}, expires_at, now)


def counter(results: Sequence[Any]) -> int:
    """The new value of an increment's counter, from its commit's results."""
    value: int = results[0].transform_results[0].integer_value
    return value


def increment_from(
    snapshot: Any, field: str, delta: int, base: int, expires_at: float, now: float
) -> tuple[int, dict[str, Any], Any]:
    """The new value, the update and its write option that make a plain integer (`base`)
    a counter, from a read of the document: Firestore's transforms cannot start from a
    value of ours when the field is not a number, so the update is applied only if the
    document is unchanged since that read."""
    found = record(snapshot)
    if found is None or found.expires_at <= now:
        raise SessionGone("the session was deleted or has expired")
    value, expires = found.counters.get(field, base) + delta, us(expires_at)
    update = {
        data_path(field): value,
        KEYS: firestore.ArrayUnion([field]),
        EXPIRES_AT: timestamp(expires),
        EXPIRES_US: expires,
    }
    return value, update, firestore.Client.write_option(last_update_time=snapshot.update_time)


def size(path: Sequence[str], encoded: EncodedRecord) -> int:
    """Firestore's storage size of the document (its 1 MiB limit counts this).

    Document name: each collection and document id's UTF-8 bytes + 1, plus 16; each
    field: name bytes + 1 plus the value (string: bytes + 1; map: its fields; integer
    and timestamp: 8; null: 1); plus 32 bytes per document. Record ids are 64 bytes.
    """
    name = sum(len(s.encode()) + 1 for s in path) + 65 + 16
    names = sum(len(f.encode()) + 1 for f in encoded.fields)
    values = sum(len(v.encode()) + 1 for v in encoded.fields.values())
    user = len(encoded.user_id.encode()) + 1 if encoded.user_id is not None else 1
    # d (names and values), keys (names again), expires_at, expires_us, user_id, meta.
    fields = (2 + names + values) + (5 + names) + (11 + 8) + (11 + 8) + (8 + user)
    if encoded.meta is not None:
        fields += 5 + len(encoded.meta.encode()) + 1
    return name + fields + 32
