"""The store operations the session lifecycle yields, and the drivers that carry them out.

The lifecycle (cloudsessions.session) decides; it never calls a store. Its decisions are
generators that yield these calls and receive each one's result: `drive` makes them on the
sync store API (Store.load, ...), `adrive` on its async twins (Store.aload, ...), so a front
door's sync and async paths are the same decisions. The contract's errors (SessionExists,
SessionGone, StoreUnavailable) are thrown back into the generator, which decides what they
mean (most often: nothing, and they reach the caller); any other error propagates after the
generator is closed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .deadline import Budget, spending
from .errors import SessionExists, SessionGone, StoreUnavailable
from .record import SessionRecord
from .store import Store

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One store call: Store.<method>(*args, **kwargs), or its async twin Store.a<method>.

    `target`: another object to call instead of the store (a migration's old backend, see
    cloudsessions.migration), with the same sync/async pair of methods.
    """

    method: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    target: Any = None


Steps = Generator[Call, Any, T]


def load(session_id: str) -> Call:
    return Call("load", (session_id,))


def delete(session_id: str) -> Call:
    return Call("delete", (session_id,))


def create(session_id: str, record: SessionRecord) -> Call:
    return Call("create", (session_id, record))


def save(
    session_id: str, record: SessionRecord, changed: list[str], live_at: float | None = None
) -> Call:
    options = {} if live_at is None else {"live_at": live_at}
    return Call("save", (session_id, record, changed), options)


def increment(session_id: str, name: str, delta: int, expires_at: float, base: int) -> Call:
    return Call("increment", (session_id, name, delta), {"expires_at": expires_at, "base": base})


def for_user(user_id: str, current: str | None) -> Call:
    return Call("for_user", (user_id,), {"current": current})


def revoke(user_id: str, handle: str) -> Call:
    return Call("revoke", (user_id, handle))


def delete_for_user(user_id: str, keep: str | None) -> Call:
    return Call("delete_for_user", (user_id,), {"keep": keep})


def fetch_old(migration: Any, key: str) -> Call:
    return Call("fetch", (key,), target=migration)


def discard_old(migration: Any, key: str) -> Call:
    return Call("discard", (key,), target=migration)


class _Feed(Generic[T]):
    """Feeds each call's outcome back into the steps; the drivers only make the calls."""

    def __init__(self, steps: Steps[T]) -> None:
        self.steps = steps
        self.result: Any = None
        self.error: SessionExists | SessionGone | StoreUnavailable | None = None
        self.value: Any = None

    def next(self) -> Call | None:
        steps, error = self.steps, self.error
        try:
            call = steps.send(self.result) if error is None else steps.throw(error)
        except StopIteration as stop:
            self.value = stop.value
            return None
        self.result, self.error = None, None
        return call


def drive(store: Store, steps: Steps[T], budget: Budget | None = None) -> T:
    """Run `steps` against the sync store API, each call's time taken from `budget` (the
    request's, see cloudsessions.deadline) if given."""
    feed = _Feed(steps)
    with contextlib.closing(steps):
        while (call := feed.next()) is not None:
            target = store if call.target is None else call.target
            try:
                with _spending(budget, call):
                    feed.result = getattr(target, call.method)(*call.args, **call.kwargs)
            except (SessionExists, SessionGone, StoreUnavailable) as exc:
                feed.error = exc
        return feed.value  # type: ignore[no-any-return]


async def adrive(store: Store, steps: Steps[T], budget: Budget | None = None) -> T:
    """Run `steps` against the async store API (no thread hop for native async stores)."""
    feed = _Feed(steps)
    with contextlib.closing(steps):
        while (call := feed.next()) is not None:
            target = store if call.target is None else call.target
            try:
                with _spending(budget, call):
                    method = getattr(target, "a" + call.method)
                    feed.result = await method(*call.args, **call.kwargs)
            except (SessionExists, SessionGone, StoreUnavailable) as exc:
                feed.error = exc
        return feed.value  # type: ignore[no-any-return]


def _spending(budget: Budget | None, call: Call) -> contextlib.AbstractContextManager[None]:
    if budget is None:
        return contextlib.nullcontext()
    return spending(budget, call.method.replace("_", " "))
