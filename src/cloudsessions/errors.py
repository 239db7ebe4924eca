"""The errors callers of cloudsessions see. Every store maps its SDK's errors onto these."""

from __future__ import annotations


class CloudSessionsError(Exception):
    """Base class of every error raised by cloudsessions."""


class SessionExists(CloudSessionsError):
    """create() found a record with that id already; pick a new id and retry."""


class SessionGone(CloudSessionsError):
    """save() found no live record: it was deleted (logout elsewhere) or has expired.

    The record is never re-created by a save, so a logged-out session stays logged out.
    """


class StoreUnavailable(CloudSessionsError):
    """The store did not answer after bounded retries. The SDK's error is the __cause__.

    A load that fails this way raises; it is never turned into an empty session.
    """


class DeadlineExceeded(StoreUnavailable):
    """The request's store time ran out (the store option `deadline`, retries included);
    what was stored is as it was before the call that ran out (see cloudsessions.deadline)."""


class SessionTooLarge(CloudSessionsError):
    """The encoded session exceeds the store's record limit; nothing was written."""

    def __init__(self, size: int, limit: int, store: str) -> None:
        super().__init__(
            f"session is {size} bytes encoded, over the {limit}-byte limit of the {store} store;"
            " nothing was written"
        )
        self.size = size
        self.limit = limit


class SessionValueError(CloudSessionsError, TypeError):
    """A session value that the front door cannot store; nothing was written.

    Django and ASGI sessions hold JSON values; Flask sessions also hold the types of Flask's
    tagged JSON (tuple, bytes, Markup, UUID, datetime). The message names the key.
    """

    def __init__(self, key: str, value: object, values: str) -> None:
        super().__init__(
            f"session key {key!r} holds a {type(value).__name__}, which is not a {values} value;"
            " nothing was written"
        )
        self.key = key


class ConfigurationError(CloudSessionsError):
    """The configuration is wrong or incomplete; the message names what to set or run."""
