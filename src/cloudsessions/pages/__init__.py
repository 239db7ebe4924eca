""" "Where you're signed in" pages, written once for Django, Flask and ASGI.

Each front door's page (cloudsessions.django.urls, cloudsessions.pages.flask,
cloudsessions.pages.asgi) is a thin mapping of its framework onto what is here:

- the view model (`Page`, `Row`): what the one template shows, made from the session
  object's `signed_in_sessions()`, every value a string, a bool or a `Stamp` formatted here,
  so that the template needs nothing but for/if/variables and reads the same under Django's
  template engine and Jinja2;
- the one template, `TEMPLATE` under `TEMPLATES_DIR`; a project overrides it by its
  framework's usual template lookup;
- CSRF for Flask and ASGI (Django uses its own): a form token derived from the session id
  with HMAC, so nothing is stored and no secret is configured (the session id is the secret:
  it lives in an HttpOnly cookie that another site can neither read nor choose), masked
  with a fresh salt on each page (BREACH), plus an Origin/Referer same-origin check; a
  failed check is a 403 and changes nothing;
- the actions: POST REVOKE (one session, by its handle) and POST REVOKE_OTHERS ("sign out
  everywhere else"), each answered with a 303 back to the page, whose `?done=` names one of
  MESSAGES (so a message costs no write, and a link can show only those fixed texts);
- the anonymous visitor: a redirect to the login URL, or FORBIDDEN_BODY with a 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from ..metadata import device
from ..record import SessionInfo

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE = "cloudsessions/signed_in.html"

# The form fields and the routes below the page's own URL (Flask and ASGI; Django's match).
CSRF_FIELD = "csrf_token"
HANDLE_FIELD = "handle"
REVOKE = "revoke"
REVOKE_OTHERS = "revoke-others"

# What the page can say after an action, by the `done` query value that names it.
DONE = "done"
MESSAGES = {
    "revoked": "Signed out. That browser's next request finds it signed out.",
    "gone": "That session had already ended.",
    "others": "Signed out everywhere else. Only this browser is still signed in.",
}
FORBIDDEN_BODY = "You are not signed in: sign in to see where you're signed in.\n"
CSRF_FAILED_BODY = (
    "Forbidden: this form did not come from this site's own page (its token or origin did"
    " not match), so nothing was changed. Reload the page and try again.\n"
)
# Private, per-user and with buttons: never cached, never framed (a framed "Sign out"
# button could be clicked through a decoy).
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
}


class Safe(str):
    """Markup both Django templates and Jinja2 insert unescaped (they honour __html__)."""

    __slots__ = ()

    def __html__(self) -> str:
        return self


# --------------------------------------------------------------------------- view model


@dataclass(frozen=True, slots=True)
class Stamp:
    """A moment as the page shows it: "5 minutes ago", with the exact time for <time>."""

    text: str  # "5 minutes ago", "in 13 days", "3 Mar 2026"
    iso: str  # 2026-03-03T10:15:00Z, the <time datetime> value
    exact: str  # 2026-03-03 10:15 UTC, its title

    @classmethod
    def of(cls, when: float | None, now: float) -> Stamp | None:
        if when is None:
            return None
        moment = datetime.fromtimestamp(when, UTC)
        return cls(
            relative(when, now),
            moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
            moment.strftime("%Y-%m-%d %H:%M UTC"),
        )


def relative(when: float, now: float) -> str:
    """`when` as a person says it, seen from `now`: "just now", "2 hours ago", "in 3 days"."""
    seconds = now - when
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        return "just now"
    if seconds >= 45 * 86400:
        moment = datetime.fromtimestamp(when, UTC)
        return f"{moment.day} {moment:%b %Y}"
    size, unit = next(
        u for u in ((86400, "day"), (3600, "hour"), (60, "minute")) if seconds >= u[0]
    )
    count = int(seconds // size)
    amount = f"{count} {unit}" if count == 1 else f"{count} {unit}s"
    return f"in {amount}" if future else f"{amount} ago"


@dataclass(frozen=True, slots=True)
class Row:
    """One signed-in session, as the page lists it. Empty strings where nothing is known."""

    handle: str  # what a revoke form posts: a hash, never the session id
    device: str  # "Firefox 133 on Linux", "Mobile Safari 17 on iPhone"
    browser: str  # "Firefox 133"
    os: str  # "iOS 17"
    detail: str  # what the label leaves out: the system of a named device ("iOS 17")
    user_agent: str
    ip: str  # the network, as recorded (truncated to /24 or /48 by default)
    created: Stamp | None  # signed in
    last_seen: Stamp | None  # last written: as precise as the refresh interval
    expires: Stamp
    current: bool  # the session of the request that shows the page


def rows(sessions: Iterable[SessionInfo], now: float | None = None) -> list[Row]:
    """The rows of `sessions` (as signed_in_sessions() or Store.for_user() list them)."""
    now = time.time() if now is None else now
    made = []
    for info in sessions:
        parsed = device(info.user_agent)
        named = bool(parsed.device) and parsed.device != "Other"
        made.append(
            Row(
                handle=info.handle,
                device=parsed.label,
                browser=parsed.browser or "",
                os=parsed.os or "",
                detail=(parsed.os or "") if named else "",
                user_agent=info.user_agent or "",
                ip=info.ip or "",
                created=Stamp.of(info.created_at, now),
                last_seen=Stamp.of(info.last_seen, now),
                expires=Stamp.of(info.expires_at, now) or Stamp("", "", ""),
                current=info.current,
            )
        )
    return made


@dataclass(frozen=True, slots=True)
class Page:
    """What the template shows: the rows, the forms' targets and token, a message."""

    rows: list[Row]
    csrf_input: str  # the hidden input of every form, rendered and marked safe
    revoke_url: str
    revoke_others_url: str
    message: str = ""
    back_url: str = ""  # a link back to the app, if the project gives one

    @property
    def others(self) -> int:
        """How many sessions "sign out everywhere else" would end."""
        return sum(1 for row in self.rows if not row.current)


def message(done: str | None) -> str:
    """The text a `?done=` value names; anything else says nothing."""
    return MESSAGES.get(done or "", "")


def done_url(page_url: str, done: str) -> str:
    """Where an action sends the browser back to (the PRG redirect), saying `done`."""
    return f"{page_url}?{urlencode({DONE: done})}"


def login_redirect(login_url: str, next_url: str) -> str:
    """`login_url` asked to come back to `next_url` afterwards (the `next` parameter)."""
    joiner = "&" if "?" in login_url else "?"
    return f"{login_url}{joiner}{urlencode({'next': next_url})}"


# --------------------------------------------------------------------------- CSRF

_PURPOSE = b"cloudsessions.pages: the signed-in page's forms"
_SALT_BYTES = 16


def csrf_token(session_id: str) -> str:
    """A form token for the session `session_id`: a fresh salt and its HMAC under the id.

    Valid for as long as the session id is; different on every page, so a compressed
    response reflecting attacker input cannot leak it byte by byte (BREACH).
    """
    salt = secrets.token_hex(_SALT_BYTES)
    return salt + _mac(session_id, salt)


def csrf_ok(session_id: str | None, token: str | None) -> bool:
    """The form's `token` was made by csrf_token(session_id)."""
    if not session_id or not token or len(token) != 2 * _SALT_BYTES + 64:
        return False
    salt, mac = token[: 2 * _SALT_BYTES], token[2 * _SALT_BYTES :]
    return hmac.compare_digest(mac, _mac(session_id, salt))


def _mac(session_id: str, salt: str) -> str:
    return hmac.new(session_id.encode(), _PURPOSE + salt.encode(), hashlib.sha256).hexdigest()


def csrf_input(session_id: str) -> Safe:
    """The hidden input carrying a fresh token, for the template."""
    token = csrf_token(session_id)  # hex only: nothing to escape
    return Safe(f'<input type="hidden" name="{CSRF_FIELD}" value="{token}">')


def same_origin(origin: str | None, referer: str | None, own: str) -> bool:
    """The request comes from a page of `own` origin (scheme://host[:port]).

    The Origin header decides when the browser sent one (browsers send it on every POST
    but the oldest; "null" is an opaque origin, never ours); else the Referer's origin. A
    request with neither (some privacy tools strip both) is left to the token, which
    another site cannot know.
    """
    if origin:
        return origin != "null" and _origin_of(origin) == _origin_of(own)
    if referer:
        return _origin_of(referer) == _origin_of(own)
    return True


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin_of(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not parts.scheme or not parts.hostname:
        return None
    return parts.scheme.lower(), parts.hostname.lower(), port


def request_ok(
    session_id: str | None, token: str | None, origin: str | None, referer: str | None, own: str
) -> bool:
    """A POST of the page's forms passes both checks (token and origin)."""
    return same_origin(origin, referer, own) and csrf_ok(session_id, token)


__all__ = [
    "CSRF_FAILED_BODY",
    "CSRF_FIELD",
    "DONE",
    "FORBIDDEN_BODY",
    "HANDLE_FIELD",
    "HEADERS",
    "MESSAGES",
    "REVOKE",
    "REVOKE_OTHERS",
    "TEMPLATE",
    "TEMPLATES_DIR",
    "Page",
    "Row",
    "Safe",
    "Stamp",
    "csrf_input",
    "csrf_ok",
    "csrf_token",
    "done_url",
    "login_redirect",
    "message",
    "relative",
    "request_ok",
    "rows",
    "same_origin",
]
