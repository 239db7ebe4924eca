"""What the Firestore store does outside requests: provisioning (a TTL policy and index
exemptions through the Admin API), checks, drop, purge and the per-user queries.

Each runs the store's sync client; the async API runs them in a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from google.cloud.firestore_v1.base_query import FieldFilter

from ...errors import ConfigurationError, StoreUnavailable
from ...store import CheckResult, Progress, SessionInfo, decode_meta, logger
from .documents import (
    DATA,
    EXPIRES_AT,
    EXPIRES_US,
    MAX_BATCH,
    META,
    USER_ID,
    meta,
    timestamp,
    us,
    us_of,
)

if TYPE_CHECKING:
    from .store import FirestoreStore


def purge_expired(
    store: FirestoreStore, now: float, batch_size: int, progress: Progress | None
) -> int:
    query = (
        _collection(store)
        .where(filter=FieldFilter(EXPIRES_AT, "<=", timestamp(us(now))))
        .order_by(EXPIRES_AT)
    )
    what = "purge expired sessions"
    return _delete_matching(store, query, batch_size, progress, what, unchanged=True)


def for_user(store: FirestoreStore, user_id: str) -> list[SessionInfo]:
    sessions = []
    for snapshot in _user_documents(store, user_id, META):
        expires = us_of(snapshot.get(EXPIRES_AT))
        if snapshot.get(EXPIRES_US) >= expires:  # else a late save left it expired
            text = meta(snapshot.to_dict() or {})
            sessions.append(
                SessionInfo(snapshot.id, expires / 1_000_000, user_id, decode_meta(text))
            )
    return sessions


def delete_for_user(
    store: FirestoreStore, user_id: str, keep_rid: str | None, progress: Progress | None = None
) -> list[str]:
    # Names only, and only their references kept: what the caller gets back (the ids), not
    # every document's snapshot (a user with very many sessions: a bot, an API client).
    what = "delete the sessions of a user"
    query = _collection(store).where(filter=FieldFilter(USER_ID, "==", user_id))
    with store._errors(what):
        found = query.select(["__name__"]).stream(**store._rpc)
        refs = [s.reference for s in found if s.id != keep_rid]
    _delete_refs(store, refs, what, progress)
    return [ref.id for ref in refs]


def _collection(store: FirestoreStore) -> Any:
    return store._sync.get().collection(*store.path)


def _user_documents(store: FirestoreStore, user_id: str, *also: str) -> list[Any]:
    """The user's documents, with the expiry fields and `also`: one query on user_id."""
    query = (
        _collection(store)
        .where(filter=FieldFilter(USER_ID, "==", user_id))
        .select([EXPIRES_AT, EXPIRES_US, *also])
    )
    with store._errors("list the sessions of a user"):
        return list(query.stream(**store._rpc))


def _delete_matching(
    store: FirestoreStore,
    query: Any,
    batch_size: int,
    progress: Progress | None,
    what: str,
    *,
    unchanged: bool = False,
) -> int:
    """Delete what `query` finds, one page at a time, so memory stays flat.

    With `unchanged` (a purge), each delete applies only if the document was not written
    since the query saw it (its update time): a session that a request refreshed in
    between stays. The page is one commit; if any document was written meanwhile, that
    commit is refused as a whole and the page's documents go one commit each.
    """
    from google.api_core.exceptions import FailedPrecondition, NotFound

    limit = max(1, min(batch_size, MAX_BATCH))
    page = query.select(["__name__"]).limit(limit)
    client = store._sync.get()
    removed = 0
    while True:
        with store._errors(what):
            found = list(page.stream(**store._rpc))
        if not found:
            return removed
        if not unchanged:
            _delete_refs(store, [s.reference for s in found], what)
            removed += len(found)
        else:
            options = [client.write_option(last_update_time=s.update_time) for s in found]
            batch = client.batch()
            for snapshot, option in zip(found, options, strict=True):
                batch.delete(snapshot.reference, option=option)
            with store._errors(what):
                try:
                    batch.commit(**store._rpc)
                    removed += len(found)
                except FailedPrecondition:
                    for snapshot, option in zip(found, options, strict=True):
                        try:
                            snapshot.reference.delete(option=option, **store._rpc)
                            removed += 1
                        except (FailedPrecondition, NotFound):
                            pass  # written since the query (refreshed), or gone already
        if progress is not None:
            progress(removed)
        if len(found) < limit:
            return removed


def _delete_refs(
    store: FirestoreStore, refs: Sequence[Any], what: str, progress: Progress | None = None
) -> None:
    """Delete `refs`, one commit per MAX_BATCH, each followed by a progress call."""
    client = store._sync.get()
    for start in range(0, len(refs), MAX_BATCH):
        chunk = refs[start : start + MAX_BATCH]
        batch = client.batch()
        for ref in chunk:
            batch.delete(ref)
        with store._errors(what):
            batch.commit(**store._rpc)
        if progress is not None:
            progress(start + len(chunk))


# ------------------------------------------------------------------- provisioning


# Fields no query filters or orders on: exempt from Firestore's automatic indexes, whose
# entries would only cost storage and write latency.
_NEVER_QUERIED = (DATA, EXPIRES_US, META)


def _field_name(store: FirestoreStore, field: str) -> str:
    return (
        f"projects/{store.project}/databases/{store.database}"
        f"/collectionGroups/{store.path[-1]}/fields/{field}"
    )


def _admin(store: FirestoreStore) -> Any:
    from google.cloud.firestore_admin_v1 import FirestoreAdminClient

    _, credentials, _ = store._settings()
    return FirestoreAdminClient(credentials=credentials)


def provision(store: FirestoreStore, *, fix: bool = False) -> list[str]:
    """Ask Firestore for the TTL policy on expires_at and an index exemption for d.

    Collections need no creating. The emulator has no Admin API (and no TTL): there
    the store logs that and returns nothing, as purge_expired does the sweeping.
    """
    store._sync.get()  # settles project and credentials (ConfigurationError if missing)
    if store._emulator() is not None:
        logger.warning(
            "the Firestore emulator has no TTL policies or index settings: nothing to"
            " provision; run `cloudsessions purge` to remove expired sessions"
        )
        return []
    from google.cloud.firestore_admin_v1.types import Field

    done: list[str] = []
    admin, timeout = _admin(store), store.options.timeout
    with store._errors("provision"):
        ttl = admin.get_field(name=_field_name(store, EXPIRES_AT), timeout=timeout)
        if ttl.ttl_config.state == Field.TtlConfig.State.STATE_UNSPECIFIED:
            admin.update_field(
                field=Field(name=ttl.name, ttl_config=Field.TtlConfig()),
                update_mask={"paths": ["ttl_config"]},
                timeout=timeout,
            )
            done.append(
                f"requested a TTL policy on {EXPIRES_AT} of collection group"
                f" {store.path[-1]}: Firestore deletes expired sessions once it is ACTIVE"
            )
        for field in _NEVER_QUERIED:
            config = admin.get_field(name=_field_name(store, field), timeout=timeout)
            if config.index_config.uses_ancestor_config:
                admin.update_field(
                    field=Field(name=config.name, index_config=Field.IndexConfig()),
                    update_mask={"paths": ["index_config"]},
                    timeout=timeout,
                )
                done.append(f"requested a single-field index exemption for {field} (never queried)")
    return done


def drop(store: FirestoreStore, *, progress: Progress | None = None) -> None:
    """Delete every document of the collection, a batch at a time."""
    _delete_matching(store, _collection(store), MAX_BATCH, progress, "drop the collection")


def drop_target(store: FirestoreStore) -> tuple[bool, str]:
    """What drop() deletes, or why there is nothing to (cloudsessions.admin): a collection
    exists only through its documents."""
    with store._errors("count the documents"):
        count = _count(store, _collection(store))
    if not count:
        return False, f"{store.describe()} holds no documents"
    return True, f"{store.describe()} with its {count} document(s)"


def count_records(store: FirestoreStore, *, expired_only: bool) -> int:
    """What purge (expired_only) or drop will delete, by an aggregation query: the total
    of their progress bar."""
    query = _collection(store)
    if expired_only:
        query = query.where(filter=FieldFilter(EXPIRES_AT, "<=", timestamp(us(time.time()))))
    with store._errors("count the documents"):
        return _count(store, query)


def check(store: FirestoreStore) -> list[CheckResult]:
    try:
        collection = _collection(store)
        expired_query = collection.where(filter=FieldFilter(EXPIRES_AT, "<=", datetime.now(UTC)))
        with store._errors("check the collection"):
            count, expired = (_count(store, q) for q in (collection, expired_query))
    except (ConfigurationError, StoreUnavailable) as exc:
        return [CheckResult("collection", False, str(exc))]
    results = [
        CheckResult("collection", True, store.describe()),
        CheckResult("sessions", True, f"{count} stored, {expired} expired"),
    ]
    if store._emulator() is not None:
        note = "not on the Firestore emulator"
        return [
            *results,
            CheckResult("ttl policy", True, f"{note}: `cloudsessions purge` sweeps"),
            CheckResult("indexes", True, f"{note}: it indexes every field"),
        ]
    return results + _check_fields(store)


def _count(store: FirestoreStore, query: Any) -> int:
    # An aggregation query: Firestore counts without sending the documents.
    return int(query.count().get(**store._rpc)[0][0].value)


def _check_fields(store: FirestoreStore) -> list[CheckResult]:
    from google.cloud.firestore_admin_v1.types import Field

    admin = _admin(store)
    try:
        with store._errors("read the field settings"):
            fields = {
                f: admin.get_field(name=_field_name(store, f), timeout=store.options.timeout)
                for f in (EXPIRES_AT, USER_ID, *_NEVER_QUERIED)
            }
    except (ConfigurationError, StoreUnavailable) as exc:
        return [CheckResult("field settings", False, f"cannot read them: {exc}")]
    state = fields[EXPIRES_AT].ttl_config.state
    ttl_ok = state in (Field.TtlConfig.State.ACTIVE, Field.TtlConfig.State.CREATING)
    results = [
        CheckResult(
            "ttl policy", ttl_ok, f"{EXPIRES_AT}: {state.name}" + ("" if ttl_ok else ": run init")
        )
    ]
    for field in (EXPIRES_AT, USER_ID):
        config = fields[field].index_config
        ok = config.uses_ancestor_config or bool(config.indexes)
        detail = "automatic single-field index" if ok else "exempted from indexing"
        results.append(CheckResult(f"index {field}", ok, detail))
    for field in _NEVER_QUERIED:
        config = fields[field].index_config
        ok = not config.uses_ancestor_config and not config.indexes
        detail = "exempted from indexing" if ok else "indexed (costs writes): run init"
        results.append(CheckResult(f"exemption {field}", ok, detail))
    return results
