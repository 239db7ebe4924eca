"""How a front door configures the session lifecycle: lifetime, refresh, user id, values.

Also what the lifecycle tells a front door to do with the cookie (`Cookie`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .metadata import MetadataSettings

if TYPE_CHECKING:
    from .migration import Migration


class Cookie(Enum):
    """What the response does with the session cookie, as far as the store is concerned."""

    KEEP = "keep"  # no Set-Cookie header needed
    SET = "set"  # (re)send the session id: the record was written
    DELETE = "delete"  # expire the cookie in the browser: this request ended the session


class Values:
    """How a front door's session values become JSON values in the store, and back.

    The default keeps JSON values as they are (Django's and Starlette's sessions hold JSON);
    Flask's front door swaps in Flask's tagged JSON.
    """

    name = "JSON"

    def dump(self, value: Any) -> Any:
        return value

    def load(self, value: Any) -> Any:
        return value


JSON_VALUES = Values()


@dataclass(frozen=True, slots=True)
class Policy:
    """One front door's configuration of the lifecycle.

    Every write sets the record's expiry to now + `lifetime` (Django passes its own expiry).
    A request that changes nothing writes only when a refresh is due: when more than
    `refresh_after` (a fraction of the lifetime) has passed since the expiry was last set.
    With 0.1 and a 14-day lifetime an active session costs one extra write every 1.4 days
    and survives at least 12.6 days of inactivity; 0 refreshes on every request (one write
    each); None never refreshes, so a session expires `lifetime` after its last change
    however often it is read.

    `user_id_key` names the session key recorded as the record's user id; with
    `rotate_on_user_change` a change of that value (a login, a logout, another user) moves
    the session to a new id, whatever the application calls, which closes session fixation.

    `metadata` says what a signed-in session records beside its user id (created at, last
    seen, address, user agent; see cloudsessions.metadata); None records nothing.

    `migration` names the previous backend a cookie unknown to the store is looked up in
    (see cloudsessions.migration); None looks nowhere else.
    """

    lifetime: float
    refresh_after: float | None = 0.1
    user_id_key: str | None = None
    rotate_on_user_change: bool = True
    values: Values = field(default=JSON_VALUES)
    metadata: MetadataSettings | None = field(default_factory=MetadataSettings)
    migration: Migration | None = None

    def refresh_due(self, expires_at: float | None, now: float) -> bool:
        if self.refresh_after is None or expires_at is None:
            return False
        return expires_at - now < self.lifetime * (1.0 - self.refresh_after)

    def user_id(self, data: Mapping[str, Any]) -> str | None:
        if self.user_id_key is None:
            return None
        value = data.get(self.user_id_key)
        return None if value is None else str(value)


def check_refresh_after(value: object, name: str) -> float | None:
    """Validate a refresh fraction from configuration; `name` is the setting to fix."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise ConfigurationError(f"{name} must be a number from 0 to 1 or None, got {value!r}")
    return float(value)
