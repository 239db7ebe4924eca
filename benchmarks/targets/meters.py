"""Billing meters: what each store would bill for the calls an engine makes, counted exactly.

A meter counts while `counting` is set and adds up one `Bill` per request:

- DynamoDB: the consumed capacity DynamoDB Local reports. A before-parameter-build hook adds
  ReturnConsumedCapacity=INDEXES to every request whose operation accepts it; an after-call
  hook reads ConsumedCapacity from the response (the table's units and each index's). A
  conditional write whose condition fails returns no ConsumedCapacity but is billed (1 WRU
  per KB, as DynamoDB documents): it counts 1 and is flagged. On-demand request units count
  the same as these capacity units.
- Firestore: a gRPC interceptor on the store's channel reads each request: a document lookup
  is one document read per document asked for, found or not; a Commit is one write per
  update (or transform-only) Write and one delete per delete Write. Index entries are not
  billed per write in Firestore Standard edition.
- MongoDB: a PyMongo command listener, priced by Atlas's per-operation model (RPU/WPU, see
  `MongoBill`), with the collection's indexes read once to tell an index lookup from a scan.
- Redis: the commands sent (`tests.backends.redis.classify`); no per-command price.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

READ_OPERATIONS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})


@dataclass
class Bill:
    """The billed units of the requests counted, and the calls that made them."""

    reads: float = 0.0  # RRU, document reads, RPU, or Redis read commands
    writes: float = 0.0  # WRU (index units included), document writes, WPU, Redis writes
    deletes: float = 0.0  # Firestore only: deletes are billed apart
    index_writes: float = 0.0  # DynamoDB: the part of `writes` spent on secondary indexes
    calls: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)

    def add(self, other: Bill) -> None:
        self.reads += other.reads
        self.writes += other.writes
        self.deletes += other.deletes
        self.index_writes += other.index_writes
        self.calls += other.calls
        self.flags |= other.flags


class Meter:
    """Adds what the hooks report to `bill`, only while `counting`."""

    def __init__(self) -> None:
        self.counting = False
        self.bill = Bill()
        self._lock = threading.Lock()

    def take(self) -> Bill:
        """The bill so far, and a fresh one."""
        self.settle()
        with self._lock:
            bill, self.bill = self.bill, Bill()
        return bill

    def settle(self) -> None:
        """Price what needs a look at the store after the request (MongoDB)."""

    def _charge(self, call: str, **units: float) -> None:
        if not self.counting:
            return
        with self._lock:
            self.bill.calls.append(call)
            for name, value in units.items():
                setattr(self.bill, name, getattr(self.bill, name) + value)


# ---------------------------------------------------------------------------- DynamoDB


class DynamoDBMeter(Meter):
    """botocore event hooks: `hooks` for a store's event_hooks option, `register` for any
    botocore event emitter (a boto3 Session's `events`, a client's `meta.events`)."""

    @property
    def hooks(self) -> dict[str, Callable[..., None]]:
        return {
            "before-parameter-build.dynamodb": self._ask_capacity,
            "after-call.dynamodb": self._after_call,
        }

    def register(self, events: Any) -> None:
        for name, handler in self.hooks.items():
            events.register(name, handler)

    def _ask_capacity(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        members = model.input_shape.members
        if "ReturnConsumedCapacity" in members:
            params["ReturnConsumedCapacity"] = "INDEXES"
        if self.counting and "ConsistentRead" in members and not params.get("ConsistentRead"):
            # Half the price, and may still show a session that was just logged out.
            with self._lock:
                self.bill.flags.add("eventually consistent reads")

    def _after_call(self, event_name: str, parsed: Mapping[str, Any], **_: Any) -> None:
        if not self.counting:
            return
        operation = event_name.rsplit(".", 1)[-1]
        consumed = parsed.get("ConsumedCapacity")
        if consumed is None:
            if "Error" in parsed and operation not in READ_OPERATIONS:
                # A failed condition: billed, but not reported.
                self._charge(f"{operation} (failed)", writes=1.0)
                with self._lock:
                    self.bill.flags.add("failed conditional write counted as 1 WRU")
            elif operation in READ_OPERATIONS or operation.endswith("Item"):
                raise AssertionError(f"{operation}: DynamoDB reported no ConsumedCapacity")
            return
        entries = consumed if isinstance(consumed, list) else [consumed]
        total = sum(float(e.get("CapacityUnits", 0.0)) for e in entries)
        indexes = sum(
            float(units.get("CapacityUnits", 0.0))
            for e in entries
            for units in (e.get("GlobalSecondaryIndexes") or {}).values()
        )
        if operation in READ_OPERATIONS:
            self._charge(operation, reads=total)
        else:
            self._charge(operation, writes=total, index_writes=indexes)


# --------------------------------------------------------------------------- Firestore

_LOOKUPS = {"GetDocument", "BatchGetDocuments"}


class FirestoreMeter(Meter):
    """Bills each Firestore RPC from its request message."""

    def record(self, method: str, request: Any) -> None:
        if not self.counting:
            return
        name = method.rsplit("/", 1)[-1]
        message = type(request).pb(request) if hasattr(type(request), "pb") else request
        if name in _LOOKUPS:
            documents = len(message.documents) if name == "BatchGetDocuments" else 1
            self._charge(name, reads=float(documents))
        elif name == "Commit" or name == "BatchWrite":
            kinds = [w.WhichOneof("operation") for w in message.writes]
            deletes = float(kinds.count("delete"))
            self._charge(f"{name}({len(kinds)})", writes=len(kinds) - deletes, deletes=deletes)
        elif name == "RunQuery":
            self._charge(name, reads=1.0)  # at least one read; none of the shapes queries
            with self._lock:
                self.bill.flags.add("a query counted as one read")
        else:
            raise AssertionError(f"unpriced Firestore RPC {method}")


def firestore_interceptor(meter: FirestoreMeter) -> Any:
    """A client interceptor for grpc.intercept_channel that tells `meter` of every RPC."""
    import grpc

    class Interceptor(
        grpc.UnaryUnaryClientInterceptor,
        grpc.UnaryStreamClientInterceptor,
    ):
        def _call(self, continuation: Any, details: Any, request: Any) -> Any:
            method = details.method
            meter.record(method.decode() if isinstance(method, bytes) else method, request)
            return continuation(details, request)

        intercept_unary_unary = intercept_unary_stream = _call

    return Interceptor()


def metered_firestore_store(url: str, meter: FirestoreMeter) -> Any:
    """The Firestore store as shipped, its sync channel wrapped by the meter's interceptor."""
    import grpc

    from cloudsessions.store import StoreURL
    from cloudsessions.stores.firestore import FirestoreStore

    class Metered(FirestoreStore):
        def _channel(
            self, target: str, credentials: Any, emulator: str | None, asynchronous: bool
        ) -> Any:
            channel = super()._channel(target, credentials, emulator, asynchronous)
            if asynchronous:
                raise AssertionError("the cost benchmark drives sync requests only")
            return grpc.intercept_channel(channel, firestore_interceptor(meter))

    parsed = StoreURL.parse(url)
    return Metered.from_url(parsed, dict(parsed.query))


# ---------------------------------------------------------------------------- MongoDB

RPU_DOCUMENT_BYTES = 4096  # one RPU per document read, per 4 KB
RPU_INDEX_BYTES = 256  # one RPU per index entry read, per 256 bytes
WPU_BYTES = 1024  # one WPU per KB of document and index entries written together
_FILTERED = {"find": "filter", "findAndModify": "query"}


@dataclass
class _Pending:
    """A command's document work, priced once the request is over (see MongoMeter.settle)."""

    collection: str
    filters: list[Mapping[str, Any]]  # each a read: an index lookup or a scan
    written: list[tuple[Mapping[str, Any], set[str] | None]]  # filter, fields changed (None: all)
    inserted: list[Mapping[str, Any]]
    deleted: int
    found: int  # documents the reads matched (from the reply)


class MongoMeter(Meter):
    """Atlas's per-operation model (Serverless instances' RPU and WPU):

    - RPU: one per index entry read (up to 256 bytes) and one per document read (up to
      4 KB). A lookup through an index reads one entry and the documents it matched; a
      filter no index serves scans the collection: every document in it is read (a session
      just written is at the end of the natural order, so a forward scan reads about all).
      The match of an update, findAndModify or delete is a read as well.
    - WPU: one per KB of each document written (its whole size after the write) together
      with the index entries the write changes; a delete is one WPU.

    `inspect` is an uncounted PyMongo database, used after each request to read the
    collection's indexes, sizes and counts.
    """

    def __init__(self, inspect: Any) -> None:
        super().__init__()
        self.inspect = inspect
        self._pending: list[_Pending] = []
        self._requests: dict[int, tuple[str, _Pending]] = {}
        self._indexes: dict[str, list[list[str]]] = {}

    def listener(self) -> Any:
        from pymongo import monitoring

        meter = self

        class Listener(monitoring.CommandListener):
            def started(self, event: monitoring.CommandStartedEvent) -> None:
                meter._started(event.request_id, event.command_name, event.command)

            def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
                meter._succeeded(event.request_id, event.reply)

            def failed(self, event: monitoring.CommandFailedEvent) -> None:
                meter._requests.pop(event.request_id, None)

        return Listener()

    def _started(self, request_id: int, name: str, command: Mapping[str, Any]) -> None:
        if not self.counting or name not in ("find", "insert", "update", "delete", *_FILTERED):
            return
        pending = _Pending(str(command[name]), [], [], [], 0, 0)
        if name in _FILTERED:
            pending.filters.append(command.get(_FILTERED[name]) or {})
            if name == "findAndModify" and "update" in command:
                pending.written.append((command.get("query") or {}, _changed(command["update"])))
        elif name == "insert":
            pending.inserted.extend(command.get("documents", []))
        elif name == "update":
            for update in command.get("updates", []):
                pending.filters.append(update.get("q") or {})
                pending.written.append((update.get("q") or {}, _changed(update.get("u"))))
        else:
            pending.filters.extend(d.get("q") or {} for d in command.get("deletes", []))
        self._requests[request_id] = (name, pending)

    def _succeeded(self, request_id: int, reply: Mapping[str, Any]) -> None:
        started = self._requests.pop(request_id, None)
        if started is None:
            return
        name, pending = started
        if name == "find":
            pending.found = len(reply.get("cursor", {}).get("firstBatch", []))
        elif name == "findAndModify":
            pending.found = int(reply.get("lastErrorObject", {}).get("n", 0))
            if not pending.found:
                pending.written.clear()
        elif name == "update":
            upserted = len(reply.get("upserted", []))
            pending.found = int(reply.get("n", 0)) - upserted  # n counts the upserted too
            if upserted:  # a new document: every index entry is written
                pending.written = [(query, None) for query, _ in pending.written]
            elif not pending.found:
                pending.written.clear()
        elif name == "delete":
            pending.found = pending.deleted = int(reply.get("n", 0))
        self._charge(name)
        with self._lock:
            self._pending.append(pending)

    def settle(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for work in pending:
            reads, writes = self._price(work)
            with self._lock:
                self.bill.reads += reads
                self.bill.writes += writes

    def _price(self, work: _Pending) -> tuple[float, float]:
        coll = self.inspect[work.collection]
        indexes = self._indexes.get(work.collection)
        if indexes is None:
            indexes = [list(ix["key"]) for ix in coll.list_indexes()]
            self._indexes[work.collection] = indexes
        reads = 0.0
        for query in work.filters:
            if any(ix[0] in query for ix in indexes):
                reads += _units(_bson_size(_key(query)), RPU_INDEX_BYTES)  # the entry looked up
            else:
                reads += float(coll.estimated_document_count())
                self.bill.flags.add("collection scan: no index on the filter")
        # The documents matched, sized as they are now (a deleted one: within 4 KB).
        sizes = [_bson_size(d) for q in work.filters for d in coll.find(_key(q), limit=1)]
        reads += sum(
            _units(sizes[i] if i < len(sizes) else 0, RPU_DOCUMENT_BYTES) for i in range(work.found)
        )
        writes = float(work.deleted)
        for document in work.inserted:
            writes += _units(_bson_size(document) + _entries(document, indexes, None), WPU_BYTES)
        for query, fields in work.written:
            # Looked up by the filter's equalities: the write may have made the rest false
            # (a session retired by setting its expiry in the past).
            found = coll.find_one(_key(query))
            size = 0 if found is None else _bson_size(found) + _entries(found, indexes, fields)
            writes += _units(size, WPU_BYTES)
        return reads, writes


def _key(query: Mapping[str, Any]) -> dict[str, Any]:
    """The plain equalities of a filter (`{"_id": x}` of `{"_id": x, "expires": {"$gt": t}}`)."""
    return {
        k: v
        for k, v in query.items()
        if not k.startswith("$")
        and not (isinstance(v, Mapping) and any(str(o)[:1] == "$" for o in v))
    }


def _bson_size(document: Mapping[str, Any]) -> int:
    import bson

    return len(bson.encode(document))


def _units(size: int, unit: int) -> float:
    return float(max(1, math.ceil(size / unit)))


def _entries(
    document: Mapping[str, Any], indexes: Iterable[list[str]], fields: set[str] | None
) -> int:
    """Bytes of the index entries a write of `document` changes (`fields` None: all of them):
    each entry is its key's BSON and a record id (8 bytes)."""
    total = 0
    for keys in indexes:
        if fields is not None and not fields.intersection(keys):
            continue
        if any(k in document for k in keys):
            total += _bson_size({k: document.get(k) for k in keys}) + 8
    return total


def _changed(update: Any) -> set[str] | None:
    """Top-level fields an update document or pipeline changes; None for a replacement."""
    stages = update if isinstance(update, list) else [update]
    fields: set[str] = set()
    for stage in stages:
        if not isinstance(stage, Mapping) or not all(k.startswith("$") for k in stage):
            return None
        for spec in stage.values():
            # {field: value} of $set and the like, or [field, ...] of a pipeline's $unset
            if isinstance(spec, Mapping | list):
                fields.update(str(k).split(".", 1)[0] for k in spec)
    return fields


# ------------------------------------------------------------------------------ Redis


class RedisMeter(Meter):
    """Commands the client sends: reads and writes by `tests.backends.redis.classify`."""

    def __call__(self, args: tuple[Any, ...]) -> None:
        from tests.backends.redis import classify

        found = classify(args)
        if found is not None:
            kind, name = found
            self._charge(name, **{"reads" if kind == "read" else "writes": 1.0})
