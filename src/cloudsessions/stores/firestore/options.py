"""What the Firestore store can be told (docs/stores/firestore.md), and the retry policy
and deadline its SDK calls are given."""

from __future__ import annotations

import dataclasses
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth.credentials import Credentials
from google.cloud import firestore

from ... import deadline, retries
from ...errors import ConfigurationError
from ...store import StoreOptions

TRANSIENT: tuple[type[Exception], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.Aborted,
    gexc.InternalServerError,
)
# Of those, the ones by which the server refused a call before running it (quota or
# contention): retried even for an increment.
REFUSED: tuple[type[Exception], ...] = (gexc.ResourceExhausted, gexc.Aborted)


@dataclasses.dataclass(frozen=True, kw_only=True)
class FirestoreOptions(StoreOptions):
    database: str | None = None  # a named database; None: "(default)"
    emulator_host: str | None = None  # host:port; None: $FIRESTORE_EMULATOR_HOST
    timeout: float = 5.0  # seconds: the deadline of one call, shared by its retries
    retry_deadline: float = 5.0  # seconds of retrying transient errors; 0: no retries
    credentials: Credentials | None = None  # None: Application Default Credentials
    # An application's own client (never closed by the store; the URL names the
    # collection), or its own collection (the URL is then firestore://).
    client: firestore.Client | None = None
    collection: firestore.CollectionReference | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, kind in (
            ("client", firestore.Client),
            ("collection", firestore.CollectionReference),
        ):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                raise ConfigurationError(
                    f"option {name!r} of the firestore store must be a"
                    f" google.cloud.firestore.{kind.__name__}, got {type(value).__name__}"
                )


def call_options(
    options: FirestoreOptions, retry: type[gretry.Retry | gretry.AsyncRetry]
) -> dict[str, Any]:
    """What each SDK call is given: its deadline, and retries of transient errors with
    backoff (0.1 s doubling to 1 s) for retry_deadline seconds (0 turns them off)."""
    policy = retry(
        predicate=gretry.if_exception_type(*TRANSIENT),
        initial=0.1,
        maximum=1.0,
        multiplier=2.0,
        timeout=options.retry_deadline,
    )
    return {"retry": policy if options.retry_deadline else None, "timeout": options.timeout}


def within_deadline(call: dict[str, Any]) -> dict[str, Any]:
    """`call` (from call_options), its timeout and retry deadline cut to what is left of
    the request deadline (cloudsessions.deadline): retries stop, and their jittered
    backoff does not sleep, past it. While an increment runs, only errors by which the
    server refused the call are retried (cloudsessions.retries)."""
    remaining = deadline.left()
    retry = call["retry"]
    if retry is not None and retries.increment_running() is not None:
        retry = retry.with_predicate(gretry.if_exception_type(*REFUSED))
    if remaining is None:
        return call if retry is call["retry"] else {**call, "retry": retry}
    if retry is not None and retry.timeout is not None and retry.timeout > remaining:
        retry = retry.with_timeout(remaining)
    return {"retry": retry, "timeout": min(call["timeout"], remaining)}


def whole_stream(call: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """`call` (from within_deadline) for a read, which the SDK streams (a document's get is
    a BatchGetDocuments stream): the retry to wrap the whole read in (None: no retries) and
    the SDK call's own options, without one. The SDK's own retry of a stream ends when its
    headers arrive (api_core's async stream wrapper waits for the connection, not for the
    first message), so a connection reset between the headers and the document would end
    an async load unretried: a 503 for a read that is safe to repeat."""
    return call["retry"], {**call, "retry": None}
