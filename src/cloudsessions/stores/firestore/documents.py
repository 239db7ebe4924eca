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

Saving without resurrecting an expired session. Firestore's preconditions can only say
"exists" or "last updated at T", never "expires_at > now", and the contract allows
neither a read before a save nor a transaction (a read plus a commit). A save is one
Commit, of one write or of two:

One write (`Direct`), when this process knows the document's version: a load, create or
save here saw it live until E at update time U, with these keys. The write carries the
precondition "last updated at U", so Firestore applies it only to that very version, and
the store sends it only if E > t (t: the time of the save). Applied, it proves the
session was live at t; refused (FailedPrecondition: another write came first, or a
delete), nothing was written and the store sends the two-write commit below. The write
sets expires_us = expires_at = R and, knowing the keys, the whole `keys` array.

Two writes (`Guarded`), without a known version, applied atomically and in order:

    1. expires_us += R - t - 1        (precondition: the document exists)
    2. set the changed keys (and their order), expires_at = R, user_id;
       expires_us = min(expires_us, R)

with R the new expiry and t the time of the save, in microseconds. If the session was live
(expires_us > t), step 1 lifts expires_us to at least R and step 2 brings it to exactly R:
expires_us == expires_at again. If it had expired (expires_us <= t), expires_us ends below
R, and a document whose expires_us is below its expires_at reads as expired. The commit
returns the value of expires_us, so the store knows at once: it deletes that document (a
second call, on this path only) and raises SessionGone.

Both leave the same layout, so servers of either kind share sessions. The details and
the figures (Firestore bills each write of a commit) are in docs/stores/firestore.md.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from google.protobuf.timestamp_pb2 import Timestamp

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
    return loaded(snapshot)[0]


def answered(snapshot: Any) -> Any:
    """`snapshot`, if the server sent it.

    google-cloud-firestore answers a BatchGetDocuments stream that ended without a response
    (a connection cut mid-stream) with a "missing" snapshot of its own making, whose
    read_time is the local clock as a protobuf Timestamp (a real answer's is the server's,
    a datetime). Taken for a missing record, it would log the browser out silently. It is
    the server unavailable instead, which the store's retry of a read repeats.
    """
    if not snapshot.exists and isinstance(snapshot.read_time, Timestamp):
        cut = "the Firestore read ended without an answer (a cut stream)"
        raise gexc.ServiceUnavailable(cut)  # type: ignore[no-untyped-call]
    return snapshot


def loaded(snapshot: Any) -> tuple[EncodedRecord | None, Version | None]:
    """The record a snapshot holds, and its version (None unless it is marked live)."""
    if not snapshot.exists:
        return None, None
    doc = snapshot.to_dict() or {}
    fields, expires_at, guard = doc.get(DATA), doc.get(EXPIRES_AT), doc.get(EXPIRES_US)
    if not (
        isinstance(fields, dict) and isinstance(expires_at, datetime) and isinstance(guard, int)
    ):
        logger.warning("a firestore document that is not a cloudsessions session was ignored")
        return None, None
    expires = us_of(expires_at)
    if guard < expires:
        return None, None  # a save reached it after it had expired: see the module docstring
    keys = doc.get(KEYS)
    keys = [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []
    # Firestore returns map entries sorted; `keys` keeps the session's own order.
    ordered = {f: fields[f] for f in keys if f in fields}
    if len(ordered) < len(fields):
        ordered.update(fields)
    # JSON text is a string; a counter (Store.increment) is a native integer.
    counters = {f: v for f, v in ordered.items() if type(v) is int}
    for field in counters:
        del ordered[field]
    found = EncodedRecord(ordered, expires / 1_000_000, doc.get(USER_ID), counters, meta(doc))
    return found, Version(snapshot.update_time, expires, tuple(keys))


# ----------------------------------------------------------- one write per save


@dataclass(frozen=True, slots=True)
class Version:
    """What a document was when last updated at `update_time` (as Firestore reports it):
    marked live (expires_us == expires_at), expiring at `expires` (microseconds), with the
    `keys` array as stored. True of that version forever: a write conditioned on the
    update time applies to that version only."""

    update_time: datetime
    expires: int
    keys: tuple[str, ...]


class Versions:
    """The newest version of each document this process read or wrote, for the next
    save's one write; the oldest entries go beyond `capacity` (a request needs its entry
    from its load to its save). A missing or outdated entry costs the two-write commit,
    never a wrong write."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, Version] = OrderedDict()

    def get(self, rid: str) -> Version | None:
        with self._lock:
            return self._seen.get(rid)

    def put(self, rid: str, version: Version | None) -> None:
        with self._lock:
            if version is None:
                self._seen.pop(rid, None)
                return
            known = self._seen.pop(rid, None)
            # A load answered after a later write must not replace that write's version.
            self._seen[rid] = (
                known if known and known.update_time > version.update_time else version
            )
            while len(self._seen) > self.capacity:
                self._seen.popitem(last=False)

    def forget(self, rid: str) -> None:
        self.put(rid, None)

    def __len__(self) -> int:
        return len(self._seen)


@dataclass(frozen=True)
class Direct:
    """A save or an increment as one write, applied only if the document is still
    `base` (see the module docstring)."""

    update: dict[str, Any]
    base: Version
    expires: int
    keys: tuple[str, ...]

    def batch(self, client: Any, ref: Any) -> Any:
        batch = client.batch()
        unchanged = firestore.Client.write_option(last_update_time=self.base.update_time)
        batch.update(ref, self.update, option=unchanged)
        return batch

    def version(self, results: Sequence[Any]) -> Version:
        """The document's version after this write, from its commit's results."""
        return Version(results[0].update_time, self.expires, self.keys)


def _live(base: Version | None, now: float) -> bool:
    # The guard's own test (see guarded()): expires_us > t, in whole microseconds.
    return base is not None and base.expires > math.floor(now * 1e6)


def _direct(
    base: Version,
    update: dict[str, Any],
    removed: Sequence[str],
    added: Sequence[str],
    expires: int,
) -> Direct:
    # The document is exactly `base` when this applies, so the new key order is known:
    # what ArrayRemove then ArrayUnion would leave, written whole (one value, not two
    # transforms of one field).
    gone = set(removed)
    keys = [k for k in base.keys if k not in gone]
    keys += [k for k in dict.fromkeys(added) if k not in keys]
    if keys != list(base.keys):
        update[KEYS] = keys
    update[EXPIRES_AT] = timestamp(expires)
    update[EXPIRES_US] = expires
    return Direct(update, base, expires, tuple(keys))


def direct_save(
    base: Version | None, changes: Changes, expires_at: float, user_id: str | None, now: float
) -> Direct | None:
    """The save as one write on `base`, or None if this process does not know the
    document live at `now` (then: save(), two writes)."""
    if base is None or not _live(base, now):
        return None
    update: dict[str, Any] = {data_path(f): v for f, v in changes.set_fields.items()}
    for field in changes.removed_fields:
        update[data_path(field)] = firestore.DELETE_FIELD
    update[USER_ID] = user_id
    if changes.meta is not None:  # else the stored metadata stays as it is
        update[META] = changes.meta
    expires = us(expires_at)
    return _direct(base, update, changes.removed_fields, list(changes.set_fields), expires)


def direct_increment(
    base: Version | None, field: str, delta: int, expires_at: float, now: float
) -> Direct | None:
    """The increment as one write on `base`, or None (then: increment(), two writes)."""
    if base is None or not _live(base, now):
        return None
    update: dict[str, Any] = {data_path(field): firestore.Increment(delta)}
    return _direct(base, update, (), [field], us(expires_at))


# ----------------------------------------------------------- two writes per save


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
) -> tuple[int, Direct]:
    """The new value, and the one write that makes a plain integer (`base`) a counter,
    from a read of the document: Firestore's transforms cannot start from a value of ours
    when the field is not a number, so the write applies only if the document is
    unchanged since that read."""
    found, version = loaded(snapshot)
    if found is None or version is None or found.expires_at <= now:
        raise SessionGone("the session was deleted or has expired")
    value = found.counters.get(field, base) + delta
    return value, _direct(version, {data_path(field): value}, (), [field], us(expires_at))


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
