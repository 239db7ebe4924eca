"""MongoDB: the same PyMongo calls, with the same arguments, on the store's own collection.

Runs against SecantusDB (started here), or the MongoDB named by MONGODB_URI.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime

from tests.backends.mongodb import url_for
from tests.services.secantus import secantus

from benchmarks.harness import Target
from cloudsessions import open_store
from cloudsessions.record import Changes, EncodedRecord
from cloudsessions.stores.mongodb import MongoDBStore

_PROJECTION = {"_id": 0, "d": 1, "expires_at": 1, "user_id": 1}


@contextlib.contextmanager
def target(services: contextlib.ExitStack) -> Iterator[Target]:
    server = os.environ.get("MONGODB_URI") or services.enter_context(secantus())
    url = url_for(server, "cloudsessions_bench", f"bench_{os.getpid()}")
    store = open_store(url)
    assert isinstance(store, MongoDBStore)
    store.provision()
    # The store's collection: same client, same write concern, same timeouts.
    coll = store._collection()

    def raw_load(rid: str) -> object:
        return coll.find_one({"_id": rid}, _PROJECTION)

    def raw_create(rid: str, record: EncodedRecord) -> object:
        doc = {
            "_id": rid,
            "d": record.fields,
            "expires_at": datetime.fromtimestamp(record.expires_at, UTC),
        }
        if record.user_id is not None:
            doc["user_id"] = record.user_id
        return coll.insert_one(doc)

    def raw_save(
        rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> object:
        ((field, value),) = changes.set_fields.items()
        return coll.update_one(
            {"_id": rid, "expires_at": {"$gt": datetime.fromtimestamp(now, UTC)}},
            {
                "$set": {
                    f"d.{field}": value,
                    "expires_at": datetime.fromtimestamp(expires_at, UTC),
                },
                "$unset": {"user_id": ""},
            },
        )

    def raw_delete(rid: str) -> object:
        return coll.delete_one({"_id": rid})

    try:
        yield Target(store, raw_load, raw_create, raw_save, raw_delete)
    finally:
        store.drop()
        store.close()
