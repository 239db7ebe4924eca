"""What a previous backend must answer: one session by its cookie, and (for bulk copies)
all of them, a batch at a time."""

from __future__ import annotations

import abc
import base64
import contextlib
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import CloudSessionsError, StoreUnavailable
from ..session_ids import ID_ALPHABET
from ..store import in_thread

# Ours are at least 32 symbols; a derived id is longer, so it can never equal a fresh one.
MIGRATED_ID_LENGTH = 40


def migrated_id(old_key: str) -> str:
    """Our session id for the old session `old_key` names: the same for every request and
    for the bulk copy, so they all meet on one record (the create of a second copy finds
    the first). One-way: nothing about the old key can be read back from it."""
    digest = hashlib.sha256(b"cloudsessions-migrated\0" + old_key.encode()).digest()
    number = int.from_bytes(digest, "big")
    symbols = []
    for _ in range(MIGRATED_ID_LENGTH):  # 40 base-36 digits of 256 bits: 206 bits kept
        number, digit = divmod(number, len(ID_ALPHABET))
        symbols.append(ID_ALPHABET[digit])
    return "".join(symbols)


@dataclass(frozen=True, slots=True)
class OldSession:
    """A live session of the previous backend, as our store will keep it.

    `data` holds the values as the front door stores them (JSON values; for Flask, Flask's
    tagged JSON, see cloudsessions.flask.TaggedValues); `expires_at` is the old expiry
    (epoch seconds); `user_id` is the value of the source's user id key, if any.
    """

    data: dict[str, Any]
    expires_at: float
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class Found:
    """One record of a bulk scan: the old key, and the session to copy or why not."""

    key: str
    session: OldSession | None
    reason: str = ""  # why there is nothing to copy: "expired", "undecodable: ..."


class Source(abc.ABC):
    """A previous session backend, read through its own client.

    `keep_old`: leave the old record in place after copying it (default: delete it, so the
    old backend can be emptied and retired). `cookie_name`: the old session cookie's name,
    if it is not the front door's own (Flask's "session", Django's SESSION_COOKIE_NAME).
    """

    name: ClassVar[str]
    """The backend in messages, e.g. "django.contrib.sessions.backends.db"."""

    def __init__(self, *, keep_old: bool = False, cookie_name: str | None = None) -> None:
        self.keep_old = keep_old
        self.cookie_name = cookie_name

    @abc.abstractmethod
    def fetch(self, key: str) -> OldSession | None:
        """The live session the old cookie value `key` names, or None (unknown, expired,
        logged out, a bad signature). One lookup; never raises for a malformed key."""

    def discard(self, key: str) -> None:  # noqa: B027 - a signed cookie has no record
        """Delete the old record (after it was copied); idempotent."""

    def discard_many(self, keys: list[str]) -> None:
        """Delete the old records of a copied batch; sources that can, in one request."""
        for key in keys:
            self.discard(key)

    async def afetch(self, key: str) -> OldSession | None:
        return await in_thread(functools.partial(self.fetch, key))

    async def adiscard(self, key: str) -> None:
        await in_thread(functools.partial(self.discard, key))

    def scan(self, resume: str | None, batch_size: int) -> Iterator[tuple[list[Found], str]]:
        """Every old session, a batch at a time, each batch with the token that resumes the
        scan after it. Sources whose sessions live only in browsers (signed cookies) cannot
        be scanned: they raise NotImplementedError and are copied by the read-through."""
        raise NotImplementedError(f"{self.name} sessions live in the browsers' cookies")

    def count(self) -> int | None:
        """How many records a scan will visit, if cheap to know (the progress bar's total)."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the source's clients."""

    def describe(self) -> str:
        return self.name


class Migration:
    """The read-through a front door runs: its Source, and the ids sessions move to."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def new_id(self, old_key: str) -> str:
        return migrated_id(old_key)

    # The lifecycle's steps call these (cloudsessions.steps.Call with this as the target).
    # A failure of the old backend is a StoreUnavailable, as the store's own: the request
    # is answered 503 and the browser keeps its cookie, never an empty session.

    def fetch(self, key: str) -> OldSession | None:
        with self._unavailable("read"):
            return self.source.fetch(key)

    async def afetch(self, key: str) -> OldSession | None:
        with self._unavailable("read"):
            return await self.source.afetch(key)

    def discard(self, key: str) -> None:
        if not self.source.keep_old:
            with self._unavailable("delete"):
                self.source.discard(key)

    async def adiscard(self, key: str) -> None:
        if not self.source.keep_old:
            with self._unavailable("delete"):
                await self.source.adiscard(key)

    @contextlib.contextmanager
    def _unavailable(self, what: str) -> Iterator[None]:
        try:
            yield
        except CloudSessionsError:
            raise
        except Exception as exc:
            raise StoreUnavailable(
                f"the previous session backend ({self.source.describe()}) could not {what}"
                f" a session: {type(exc).__name__}: {exc}"
            ) from exc


def token(value: str) -> str:
    """A resume token that survives a checkpoint file and a command line (URL-safe)."""
    return base64.urlsafe_b64encode(value.encode()).decode()


def untoken(value: str) -> str:
    return base64.urlsafe_b64decode(value.encode()).decode()
