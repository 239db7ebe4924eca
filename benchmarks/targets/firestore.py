"""Firestore: the same SDK calls the store makes, on the same client, collection and emulator.

raw_load is DocumentReference.get(), raw_create DocumentReference.create(), raw_delete
DocumentReference.delete(), each with the store's retry and timeout; raw_save is the
store's one Commit (a WriteBatch of the expiry-guard increment and the update with its
minimum and key-order transforms) built by hand with the same SDK calls.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath
from tests.backends.firestore import PROJECT, emulator_host

from benchmarks.harness import Target
from cloudsessions import open_store
from cloudsessions.record import Changes, EncodedRecord
from cloudsessions.stores.firestore import FirestoreStore

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@contextlib.contextmanager
def target(services: contextlib.ExitStack) -> Iterator[Target]:
    host = emulator_host(services)
    store = open_store(f"firestore://{PROJECT}/bench?emulator_host={host}")
    assert isinstance(store, FirestoreStore)
    client = store._sync.get()
    collection, rpc = client.collection(*store.path), store._rpc

    def raw_load(rid: str) -> object:
        return collection.document(rid).get(**rpc).to_dict()

    def raw_create(rid: str, record: EncodedRecord) -> object:
        expires = round(record.expires_at * 1_000_000)
        document: dict[str, Any] = {
            "d": record.fields,
            "keys": list(record.fields),
            "expires_at": _EPOCH + timedelta(microseconds=expires),
            "expires_us": expires,
            "user_id": record.user_id,
        }
        return collection.document(rid).create(document, **rpc)

    def raw_save(
        rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> object:
        ref, batch = collection.document(rid), client.batch()
        expires = round(expires_at * 1_000_000)
        guard = firestore.Increment(expires - math.floor(now * 1e6) - 1)
        batch.update(ref, {"expires_us": guard})
        updates: dict[str, Any] = {
            FieldPath("d", f).to_api_repr(): v for f, v in changes.set_fields.items()
        }
        updates["expires_at"] = _EPOCH + timedelta(microseconds=expires)
        updates["user_id"] = user_id
        updates["expires_us"] = firestore.Minimum(expires)
        updates["keys"] = firestore.ArrayUnion(list(changes.set_fields))
        batch.update(ref, updates)
        return batch.commit(**rpc)

    def raw_delete(rid: str) -> object:
        return collection.document(rid).delete(**rpc)

    try:
        yield Target(store, raw_load, raw_create, raw_save, raw_delete)
    finally:
        store.drop()
        store.close()
