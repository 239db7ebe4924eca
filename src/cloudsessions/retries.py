"""What the stores' SDK retries may repeat: everything but an increment sent once.

Each SDK retries a call whose connection failed. For every write but one that is harmless:
a save sets keys to values (twice is once), a create finds its own record the second time
(SessionExists: the lifecycle takes a new id), a delete is idempotent. An increment is not:
a reply lost after the server counted, then a retry, counts twice. So while an increment
runs (`at_most_once`), the stores retry it only when the server cannot have run it (it was
refused: throttled, never sent, connection refused), and otherwise fail with
StoreUnavailable: the counter then holds the count or not, never two.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from .errors import StoreUnavailable


class Sent:
    """An increment's command, sent and not answered yet (a lost reply leaves it so)."""

    __slots__ = ("unanswered",)

    def __init__(self) -> None:
        self.unanswered = False

    def sending(self) -> None:
        """Called before the command goes out; refuses to send it a second time."""
        if self.unanswered:
            raise StoreUnavailable(
                "the session store lost the reply to an increment it may have counted;"
                " it is not sent again, so the counter holds it once or not at all"
            )
        self.unanswered = True

    def answered(self) -> None:
        self.unanswered = False


_current: ContextVar[Sent | None] = ContextVar("cloudsessions_at_most_once", default=None)


@contextlib.contextmanager
def at_most_once() -> Iterator[None]:
    """The store call in the block is an increment: never repeated once it may have run."""
    token = _current.set(Sent())
    try:
        yield
    finally:
        _current.reset(token)


def increment_running() -> Sent | None:
    """The running increment's state, if an increment is running."""
    return _current.get()
