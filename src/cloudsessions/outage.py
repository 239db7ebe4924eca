"""What a front door answers when the store is unavailable: 503 Service Unavailable.

A store that does not answer (after its bounded retries) is a temporary condition of the
server, not a fault of the request: 503 with Retry-After tells browsers, load balancers and
monitoring so, where a bare 500 says "bug". The alternatives are worse: a failed load turned
into an empty session logs the user out silently, and a failed save answered with the view's
200 loses the data while claiming success. Flask and ASGI answer so by default; Django through
`cloudsessions.django.middleware.SessionMiddleware`.
"""

from __future__ import annotations

from .errors import ConfigurationError

STATUS = 503
DEFAULT_RETRY_AFTER = 5  # seconds: about one store timeout, so a retry meets a recovered store
BODY = "Service Unavailable: the session store did not answer. Please retry shortly.\n"


def check_retry_after(value: object, name: str) -> int | None:
    """Validate a Retry-After setting (whole seconds, or None for no header)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be a whole number of seconds or None, got {value!r}")
    return value


def headers(retry_after: int | None) -> list[tuple[str, str]]:
    """The headers of the outage response."""
    extra = [("Retry-After", str(retry_after))] if retry_after is not None else []
    return [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"), *extra]
