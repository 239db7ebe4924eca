"""The request deadline: one bound on the store time a request spends, retries included.

A request's session makes a few store calls (a load, a write, perhaps a delete), and each
store retries throttling and transient errors with its SDK's backoff. Bounded only per call
and per attempt, the worst case is the sum of every call's timeouts times its attempts: new
visitors waited 10 s through an outage before this. The store option `deadline` (seconds)
is the one bound instead:

- the session lifecycle gives each request one `Budget` (cloudsessions.session), and only
  the time spent inside store calls is taken from it (the view's own time is not);
- a store call made outside a request (a script's `store.load(...)`) gets a budget of its
  own;
- before each attempt, the stores' I/O shells ask `left()` and give the SDK no more (socket
  timeouts, retry deadlines, MongoDB's CSOT), so no attempt and no backoff sleep runs past
  it; the async twins are also cancelled at the deadline as a backstop;
- a budget that has run out raises `DeadlineExceeded`, a `StoreUnavailable`: 503 with
  Retry-After at the front doors, no cookie set, the stored session as it was.

Housekeeping (purge_expired, drop, provisioning) is not a request: each of its SDK calls is
bounded by the store's own timeouts instead.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

from .errors import DeadlineExceeded

DEFAULT = 5.0  # seconds; the same as the front doors' Retry-After (cloudsessions.outage)

# A little past the deadline, the async backstop cancels what the SDK's own timeouts did not
# end (they end it at the deadline; this only catches what slips past them).
_BACKSTOP_SLACK = 0.01


class Budget:
    """The store time one request may still spend: `seconds`, less what its calls took."""

    __slots__ = ("_since", "seconds", "spent")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.spent = 0.0
        self._since: float | None = None  # when the running call began

    def left(self) -> float:
        running = time.monotonic() - self._since if self._since is not None else 0.0
        return self.seconds - self.spent - running

    def renew(self) -> None:
        """Start over: the request ended (its session was committed)."""
        self.spent, self._since = 0.0, None


_current: ContextVar[Budget | None] = ContextVar("cloudsessions_deadline", default=None)


@contextlib.contextmanager
def spending(budget: Budget, what: str) -> Iterator[None]:
    """Store calls in the block take their time from `budget`; one already running (a call
    the block makes from inside another) keeps its own."""
    if _current.get() is not None:
        yield
        return
    _check(budget, what)
    token = _current.set(budget)
    budget._since = time.monotonic()
    try:
        yield
    finally:
        budget.spent += time.monotonic() - budget._since
        budget._since = None
        _current.reset(token)


@contextlib.contextmanager
def call(seconds: float | None, what: str) -> Iterator[None]:
    """One public store call: within the running budget, or a budget of its own of
    `seconds` (None: none)."""
    budget = _current.get()
    if budget is None:
        if seconds is None:
            yield
            return
        with spending(Budget(seconds), what):
            yield
    else:
        _check(budget, what)
        yield


def left(what: str = "call the store") -> float | None:
    """Seconds the running store call may still spend (None outside any: not bounded).

    Raises DeadlineExceeded when nothing is left: an attempt that cannot finish in time is
    not started.
    """
    budget = _current.get()
    if budget is None:
        return None
    return _check(budget, what)


def remaining() -> float | None:
    """What left() says, without raising: for a call already under way (a reply that is
    still to be read must be read or dropped with its connection, never left behind)."""
    budget = _current.get()
    return None if budget is None else budget.left()


def capped(timeout: float, what: str = "call the store") -> float:
    """`timeout`, or what is left of the running budget if that is less."""
    remaining = left(what)
    return timeout if remaining is None else min(timeout, remaining)


def afford(delay: float) -> float:
    """`delay`, a retry's backoff, if the running budget can afford to sleep it; raises
    DeadlineExceeded if it cannot (a retry that would start past the deadline is not
    waited for)."""
    remaining = left("answer")
    if remaining is not None and delay >= remaining:
        raise DeadlineExceeded(
            "the session store kept failing until the request deadline"
            f" ({delay:.2f} s of backoff left {remaining:.2f} s)"
        )
    return delay


def backstop() -> float | None:
    """When to cancel an async call that overran the deadline (None: no budget)."""
    remaining = left()
    return None if remaining is None else remaining + _BACKSTOP_SLACK


def _check(budget: Budget, what: str) -> float:
    remaining = budget.left()
    if remaining <= 0:
        raise DeadlineExceeded(
            f"the session store did not {what} within the request deadline"
            f" ({budget.seconds:g} s of store time)"
        )
    return remaining
