"""What the store operations tell operators: a span per call, and log events worth reading.

Every public Store operation (load, create, save, increment, delete, for_user,
delete_for_user, purge_expired, and their async twins) runs inside one `_Call`:

- a span "cloudsessions.<operation>" through the OpenTelemetry API, when that API is
  installed (the `otel` extra). Attributes: the store kind, the outcome (hit/miss for a
  load; ok/exists/gone/unavailable/too_large/... for the others), the error type, a count
  for the bulk operations. Never a session id, a record id or a user id: a trace backend is
  read by more people than the session table.
- a WARNING on the "cloudsessions" logger when a call took longer than the slow-call
  threshold (CLOUDSESSIONS_SLOW_CALL_SECONDS, default 1 s), and an ERROR when the store did
  not answer (StoreUnavailable), naming the store kind and the operation, never an id.
  The front doors answer such a request with a 503: this line tells the operator why.
  purge_expired logs neither (its caller reports progress and errors), only its span.

Nothing here runs at import time. Whether OpenTelemetry is importable is decided once, at
the first store call: without it a call costs two clock reads and no import is attempted
again. With the API but no SDK (its no-op tracer), a call starts a non-recording span and
does not touch the context (a few us; the API's own start_as_current_span costs 9 us
there). See docs/observability.md.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Concatenate,
    ParamSpec,
    Protocol,
    TypeAlias,
    TypeVar,
)

from .errors import (
    ConfigurationError,
    SessionExists,
    SessionGone,
    SessionTooLarge,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

__all__ = [
    "SLOW_CALL_ENV",
    "atraced",
    "slow_call_seconds",
    "traced",
    "use_slow_call_seconds",
    "use_tracer_provider",
]

logger = logging.getLogger("cloudsessions")

SLOW_CALL_ENV = "CLOUDSESSIONS_SLOW_CALL_SECONDS"
DEFAULT_SLOW_CALL_SECONDS = 1.0
TRACER_NAME = "cloudsessions"

# Attribute names. Ours are namespaced, as OpenTelemetry asks of names that are not in its
# semantic conventions; error.type and db.system.name are the conventions' own.
KIND = "cloudsessions.store.kind"
OUTCOME = "cloudsessions.outcome"
COUNT = "cloudsessions.count"
ERROR_TYPE = "error.type"
DB_SYSTEM = "db.system.name"
# The conventions' well-known db.system.name values (Firestore has none; "cached", a store
# with cache tiers in front, is no DBMS).
DB_SYSTEMS = {
    "sqlite": "sqlite",
    "dynamodb": "aws.dynamodb",
    "mongodb": "mongodb",
    "redis": "redis",
}

# The contract's answers that are not failures of the call: the caller handles them (a new
# id, dropped changes), so the span gets the outcome but no error status.
ANSWERS: tuple[tuple[type[BaseException], str], ...] = (
    (SessionExists, "exists"),
    (SessionGone, "gone"),
)
FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (StoreUnavailable, "unavailable"),
    (SessionTooLarge, "too_large"),
    (ConfigurationError, "misconfigured"),
)

# Maintenance, not requests: a purge of a large table takes long by design, and its caller
# (the CLI, clearsessions, a cron job) shows its progress and reports its errors itself.
# Its span is kept; a log line would say the same thing twice.
UNLOGGED = frozenset({"purge_expired"})

_UNDECIDED: Any = object()
_tracer: Any = _UNDECIDED  # Tracer, or None when OpenTelemetry is not importable
_otel: Any = None  # (opentelemetry.trace, opentelemetry.context) once imported
_provider: TracerProvider | None = None  # None: OpenTelemetry's global provider
_slow: float | None = None  # None: not read yet
_attributes: dict[str, Mapping[str, str]] = {}  # per store kind, made once


# ------------------------------------------------------------------ configuration


def use_tracer_provider(provider: TracerProvider | None) -> None:
    """Send cloudsessions' spans to `provider`; None (the default) means OpenTelemetry's
    global tracer provider, whenever the application sets it."""
    global _tracer, _provider
    _provider = provider
    _tracer = _UNDECIDED


def use_slow_call_seconds(seconds: float | None) -> None:
    """Warn about calls slower than `seconds` (0 turns the warning off); None reads
    CLOUDSESSIONS_SLOW_CALL_SECONDS again at the next call."""
    global _slow
    _slow = None if seconds is None else _threshold(seconds, "use_slow_call_seconds()")


def slow_call_seconds() -> float:
    """The slow-call threshold: set by use_slow_call_seconds(), else read once from
    CLOUDSESSIONS_SLOW_CALL_SECONDS, else 1 s. 0 means never warn."""
    global _slow
    if _slow is None:
        raw = os.environ.get(SLOW_CALL_ENV, "").strip()
        _slow = _threshold(raw, SLOW_CALL_ENV) if raw else DEFAULT_SLOW_CALL_SECONDS
    return _slow


def _threshold(value: object, where: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        raise ConfigurationError(
            f"{where} must be a number of seconds (0 turns slow-call warnings off), got {value!r}"
        )
    return seconds


def _decide() -> Tracer | None:
    # Once, at the first call (and after use_tracer_provider): is the API importable?
    global _tracer, _otel
    try:
        from opentelemetry import context, trace
    except ImportError:
        _tracer = None
        return None
    from . import __version__

    _otel = (trace, context)

    # Without a provider argument this is a proxy: it follows a global provider the
    # application sets later, so an app may configure OpenTelemetry after its first request.
    _tracer = trace.get_tracer(TRACER_NAME, __version__, tracer_provider=_provider)
    return _tracer  # type: ignore[no-any-return]


# -------------------------------------------------------------------- the call


class _Call:
    """One store operation: its span (if any), its clock, its log events."""

    __slots__ = ("count", "kind", "operation", "outcome", "slow", "span", "started", "token")

    def __init__(self, kind: str, operation: str) -> None:
        # Read before the call: a bad CLOUDSESSIONS_SLOW_CALL_SECONDS fails before any write.
        self.slow = 0.0 if operation in UNLOGGED else slow_call_seconds()
        self.kind = kind
        self.operation = operation
        self.outcome = "ok"
        self.count: int | None = None
        self.span: Span | None = None
        self.token: object = None
        tracer = _tracer if _tracer is not _UNDECIDED else _decide()
        if tracer is not None:
            self._start(tracer)
        self.started = time.perf_counter()

    def _start(self, tracer: Tracer) -> None:
        trace, context = _otel
        attributes = _attributes.get(self.kind) or _kind_attributes(self.kind)
        span = tracer.start_span(f"cloudsessions.{self.operation}", attributes=attributes)
        if not span.is_recording() and (
            span.get_span_context() is trace.get_current_span().get_span_context()
        ):
            return  # the API's no-op tracer: nothing to record, nothing to make current
        self.span = span
        # Current, so that the SDKs' own spans (botocore, pymongo, redis) nest under it.
        self.token = context.attach(trace.set_span_in_context(span))

    def __enter__(self) -> _Call:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        seconds = time.perf_counter() - self.started
        failed = exc is not None and _is_failure(exc)
        if exc is not None:
            self.outcome = _outcome(exc)
        if self.span is not None:
            self._finish(exc, failed)
        if self.operation in UNLOGGED:
            return
        if isinstance(exc, StoreUnavailable):
            logger.error(
                "the %s session store did not answer a %s call (%.2f s): %s",
                self.kind,
                self.operation,
                seconds,
                exc,
                extra=self._extra(seconds),
            )
        elif 0 < self.slow < seconds:
            logger.warning(
                "a %s session store call was slow: %s took %.2f s (over %g s, see %s)",
                self.kind,
                self.operation,
                seconds,
                self.slow,
                SLOW_CALL_ENV,
                extra=self._extra(seconds),
            )

    def _finish(self, exc: BaseException | None, failed: bool) -> None:
        trace, context = _otel
        span = self.span
        assert span is not None
        try:
            span.set_attribute(OUTCOME, self.outcome)
            if self.count is not None:
                span.set_attribute(COUNT, self.count)
            if exc is not None and failed:
                # The conventions: error.type, an "exception" event, and an error status.
                span.set_attribute(ERROR_TYPE, _type_name(exc))
                span.record_exception(exc)
                status = trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
                span.set_status(status)
            span.end()
        finally:
            context.detach(self.token)

    def _extra(self, seconds: float) -> dict[str, object]:
        # For structured log handlers (e.g. JSON formatters): the same facts as fields.
        return {
            "store_kind": self.kind,
            "operation": self.operation,
            "duration": seconds,
            "outcome": self.outcome,
        }

    # What a call returned, as the outcome of its operation.

    def returned(self, result: Any) -> Any:
        if self.operation == "load":
            self.outcome = "miss" if result is None else "hit"
        elif self.operation == "for_user":
            self.count = len(result)
        elif self.operation == "revoke":
            self.outcome = "revoked" if result else "not-found"
        elif self.operation in ("purge_expired", "delete_for_user"):
            self.count = result  # how many records went
        return result


def _kind_attributes(kind: str) -> Mapping[str, str]:
    attributes = {KIND: kind}
    if kind in DB_SYSTEMS:
        attributes[DB_SYSTEM] = DB_SYSTEMS[kind]
    _attributes[kind] = attributes
    return attributes


def _outcome(exc: BaseException) -> str:
    if not isinstance(exc, Exception):
        return "cancelled"  # a task cancelled or a process interrupted meanwhile
    for kind, outcome in (*ANSWERS, *FAILURES):
        if isinstance(exc, kind):
            return outcome
    return "error"


def _is_failure(exc: BaseException) -> bool:
    return isinstance(exc, Exception) and not isinstance(exc, (SessionExists, SessionGone))


def _type_name(exc: BaseException) -> str:
    # The conventions ask for the fully qualified class name ("builtins." left out).
    cls = type(exc)
    module = "" if cls.__module__ == "builtins" else f"{cls.__module__}."
    return module + cls.__qualname__


# -------------------------------------------------------------------- the hooks


class _Store(Protocol):
    kind: ClassVar[str]


P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S", bound=_Store)
Sync: TypeAlias = Callable[Concatenate[S, P], R]
Async: TypeAlias = Callable[Concatenate[S, P], Awaitable[R]]


def traced(operation: str) -> Callable[[Sync[S, P, R]], Sync[S, P, R]]:
    """Run a sync store operation as one traced, timed call (see the module docstring)."""

    def decorate(method: Sync[S, P, R]) -> Sync[S, P, R]:
        @functools.wraps(method)
        def call(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with _Call(store.kind, operation) as done:
                result: R = done.returned(method(store, *args, **kwargs))
                return result

        return call

    return decorate


def atraced(operation: str) -> Callable[[Async[S, P, R]], Async[S, P, R]]:
    """The async twin of traced(): the span covers the awaited call."""

    def decorate(method: Async[S, P, R]) -> Async[S, P, R]:
        @functools.wraps(method)
        async def call(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            with _Call(store.kind, operation) as done:
                result: R = done.returned(await method(store, *args, **kwargs))
                return result

        return call

    return decorate
