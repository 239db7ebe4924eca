"""Provisioning and checks of the MongoDB store's collection: never run on a request.

A TTL index on ``expires_at`` lets the server remove expired sessions a minute after
their expiry (expireAfterSeconds=60; expiry is enforced on read, so this changes only
when the document goes): a save that ends a session (the old id of a rotation, see
Store.save) and is sent again after its answer was lost must still find its document.
Collections provisioned with expireAfterSeconds=0 are accepted as they are (`--fix`
moves them to 60). A sparse index on ``user_id`` serves for_user and delete_for_user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo.collection import Collection
from pymongo.read_preferences import Primary

from ...errors import CloudSessionsError, ConfigurationError
from ...store import CheckResult
from .requests import Document, expired

# Seconds a session's document stays past its expiry (the TTL index's expireAfterSeconds).
ENDED_DOCUMENTS_STAY = 60

Errors = Callable[[str], contextlib.AbstractContextManager[None]]
"""The store's _errors: raises the block's PyMongo errors as ours."""


@dataclass(frozen=True, slots=True)
class _Index:
    name: str
    field: str
    options: Mapping[str, Any]

    # Options that an index provisioned by an earlier release may have instead.
    accepted: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def matches(self, found: Mapping[str, Any], *, exactly: bool = False) -> bool:
        if _key_of(found) != [(self.field, 1)]:
            return False
        options = _options_of(found)
        return options == dict(self.options) or (
            not exactly and options == {**self.options, **self.accepted}
        )

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name} on {self.field} ({opts})"


INDEXES = (
    _Index(
        "expires_at_ttl",
        "expires_at",
        {"expireAfterSeconds": ENDED_DOCUMENTS_STAY},
        accepted={"expireAfterSeconds": 0},
    ),
    # Sparse: anonymous sessions (no user_id field) take no room in it.
    _Index("user_id", "user_id", {"sparse": True}),
)


def provision(coll: Collection[Document], describe: str, *, fix: bool) -> list[str]:
    """Create the collection's TTL and user indexes; idempotent.

    An index of the same name or key with other options (say, another
    expireAfterSeconds) is reported as a ConfigurationError and left alone, unless
    `fix` is true: then it is changed in place (collMod) or dropped and rebuilt.
    Nothing else is ever dropped.
    """
    done: list[str] = []
    conflicts: list[str] = []
    existing = list(coll.list_indexes())
    if not existing:
        done.append(f"created collection {coll.full_name}")
    for want in INDEXES:
        found = _find_index(existing, want)
        if found is None:
            coll.create_index(want.field, name=want.name, **want.options)
            done.append(f"created index {want.describe()} in {coll.full_name}")
        elif want.matches(found, exactly=fix):
            continue
        elif fix:
            done.append(_fix_index(coll, want, found))
        else:
            conflicts.append(f"index {_show_index(found)} differs from {want.describe()}")
    if conflicts:
        made = f" (done: {'; '.join(done)})" if done else ""
        raise ConfigurationError(
            f"{describe}: {'; '.join(conflicts)}{made}. Nothing was changed;"
            " `cloudsessions init --fix` (provision(fix=True)) rebuilds it"
        )
    return done


def _fix_index(coll: Collection[Document], want: _Index, found: Mapping[str, Any]) -> str:
    was = _show_index(found)
    ttl_only = (
        found["name"] == want.name
        and _key_of(found) == [(want.field, 1)]
        and "expireAfterSeconds" in found
        and {k: v for k, v in _options_of(found).items() if k != "expireAfterSeconds"}
        == {k: v for k, v in want.options.items() if k != "expireAfterSeconds"}
    )
    if ttl_only:
        # A TTL change needs no rebuild.
        coll.database.command(
            "collMod",
            coll.name,
            index={"name": want.name, "expireAfterSeconds": want.options["expireAfterSeconds"]},
        )
        return f"changed index {was} to {want.describe()}"
    coll.drop_index(found["name"])
    coll.create_index(want.field, name=want.name, **want.options)
    return f"replaced index {was} by {want.describe()}"


def check(coll: Collection[Document], describe: str, errors: Errors) -> list[CheckResult]:
    """Whether the server answers and the collection, its indexes and settings are right."""
    db = coll.database
    try:
        with errors("answer"):
            version = db.command("buildInfo").get("version", "?")
    except CloudSessionsError as exc:
        return [CheckResult("server", False, str(exc))]
    results = [CheckResult("server", True, f"MongoDB {version}, {describe}")]
    try:
        with errors("read"):
            exists = bool(db.list_collection_names(filter={"name": coll.name}))
            existing = list(coll.list_indexes()) if exists else []
            if exists:
                count = coll.estimated_document_count()
                stale = coll.count_documents(expired(time.time()))
    except CloudSessionsError as exc:
        return [*results, CheckResult("collection", False, str(exc))]
    if not exists:
        hint = "missing: run `cloudsessions init --store URL`"
        return [*results, CheckResult("collection", False, f"{coll.full_name} {hint}")]
    results.append(CheckResult("collection", True, coll.full_name))
    for want in INDEXES:
        found = _find_index(existing, want)
        if found is None:
            detail, ok = f"{want.name} missing: run `cloudsessions init`", False
        elif want.matches(found):
            detail, ok = _show_index(found), True
        else:
            detail = f"{_show_index(found)}, expected {want.describe()}: run init --fix"
            ok = False
        results.append(CheckResult("index", ok, detail))
    concern = coll.write_concern.document or {"w": "server default"}
    results.append(CheckResult("write concern", coll.write_concern.acknowledged, str(concern)))
    mode = coll.read_preference
    primary = isinstance(mode, Primary)
    lag = "" if primary else ": a secondary may miss a session written a moment ago"
    results.append(CheckResult("read preference", primary, mode.mongos_mode + lag))
    results.append(CheckResult("sessions", True, f"about {count} stored, {stale} expired"))
    return results


def drop_target(coll: Collection[Document], describe: str) -> tuple[bool, str]:
    """What dropping the collection deletes, or why there is nothing to (cloudsessions.admin):
    a drop of a collection that does not exist succeeds, having deleted nothing."""
    if not coll.database.list_collection_names(filter={"name": coll.name}):
        return False, f"{describe} does not exist"
    return True, f"{describe} with about {coll.estimated_document_count()} session(s)"


def count_expired(coll: Collection[Document]) -> int:
    """The expired sessions a purge will delete, through the TTL index: its progress total."""
    return coll.count_documents(expired(time.time()))


def _find_index(existing: Sequence[Mapping[str, Any]], want: _Index) -> Mapping[str, Any] | None:
    """The index that is, or stands in the way of, `want`: same name, else same key."""
    for index in existing:
        if index["name"] == want.name:
            return index
    for index in existing:
        if _key_of(index) == [(want.field, 1)]:
            return index
    return None


def _key_of(index: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(name, int(order)) for name, order in dict(index["key"]).items()]


def _options_of(index: Mapping[str, Any]) -> dict[str, Any]:
    opts = {k: v for k, v in index.items() if k not in {"v", "key", "name", "ns"}}
    if "expireAfterSeconds" in opts:  # may come back as int32, int64 or double
        opts["expireAfterSeconds"] = int(opts["expireAfterSeconds"])
    return opts


def _show_index(index: Mapping[str, Any]) -> str:
    opts = ", ".join(f"{k}={v}" for k, v in _options_of(index).items()) or "no options"
    keys = ", ".join(f"{k}: {v}" for k, v in _key_of(index))
    return f"{index['name']} on {{{keys}}} ({opts})"
