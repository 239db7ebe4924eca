"""The values that cross the Store contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class SessionRecord:
    """One session as the application sees it: decoded values, expiry, and owner."""

    data: dict[str, Any]
    expires_at: float  # epoch seconds, UTC
    user_id: str | None = None
    # Keys of `data` kept as counters (see Store.increment): ints the store adds to in place.
    counters: frozenset[str] = frozenset()
    # Set by a load: each key's JSON text as stored, so the session lifecycle need not
    # encode what it loaded again to find later changes.
    texts: dict[str, str] | None = None


@dataclass(slots=True)
class EncodedRecord:
    """One session as a store keeps it: encoded fields (see codec), expiry, and owner.

    `fields` hold JSON text; `counters` are fields of the same namespace that the store
    keeps as native integers so that Store.increment can add to them atomically. A field
    name is in one of the two at most: writing JSON text to a counter's field replaces it.
    """

    fields: dict[str, str]
    expires_at: float
    user_id: str | None = None
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class SessionInfo:
    """What for_user() reports of a session: never the session id, only its hash."""

    record_id: str
    expires_at: float
    user_id: str | None = None


@dataclass(slots=True)
class CheckResult:
    """One line of `cloudsessions check`. A warning is reported but does not fail the check."""

    name: str
    ok: bool
    detail: str = ""
    warning: bool = False


@dataclass(slots=True)
class Changes:
    """What save() writes: only the fields that changed, so concurrent saves merge."""

    set_fields: dict[str, str] = field(default_factory=dict)
    removed_fields: list[str] = field(default_factory=list)
