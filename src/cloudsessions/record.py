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
    # Where a signed-in session is used (see cloudsessions.metadata); None on a write leaves
    # what the store holds as it is.
    meta: Metadata | None = None


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
    # The metadata's JSON text (cloudsessions.metadata.encode), kept beside the user id.
    meta: str | None = None


@dataclass(slots=True, frozen=True)
class Metadata:
    """What a signed-in session records of where it is used; each part may be off (None).

    `last_seen` is set by writes the session makes anyway (a change, a due expiry refresh),
    never by a read: its precision is the refresh interval.
    """

    created_at: float | None = None
    last_seen: float | None = None
    ip: str | None = None
    user_agent: str | None = None


@dataclass(slots=True, frozen=True)
class SessionInfo:
    """What for_user() reports of a session: never the session id.

    `handle` names the session to revoke() it: the record id, a hash of the session id
    (it cannot be turned back into one, so showing it to its user is safe). `current` marks
    the session of the request that asked.
    """

    record_id: str
    expires_at: float
    user_id: str | None = None
    meta: Metadata = Metadata()
    current: bool = False

    @property
    def handle(self) -> str:
        return self.record_id

    @property
    def created_at(self) -> float | None:
        return self.meta.created_at

    @property
    def last_seen(self) -> float | None:
        return self.meta.last_seen

    @property
    def ip(self) -> str | None:
        return self.meta.ip

    @property
    def user_agent(self) -> str | None:
        return self.meta.user_agent

    @property
    def device(self) -> str:
        """The user agent as a person reads it ("Firefox 133 on Windows 10")."""
        from .metadata import device  # lazily: ua-parser loads its rules on first use

        return device(self.user_agent).label


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
    # The metadata's JSON text to write (replacing the stored one); None leaves it.
    meta: str | None = None
