"""What every demo front door shows: the tutorial's greeting, view count, and sign-in."""

from __future__ import annotations

import html
import random

GREETINGS = ["Hello World", "Hallo Welt", "Ciao Mondo", "Salut le Monde", "Hola Mundo"]
USER_KEY = "demo_user"


def new_greeting() -> str:
    return random.choice(GREETINGS)  # noqa: S311 - a greeting, not a secret


def render(views: int, greeting: str, user: str | None, fingerprint: str, csrf: str) -> str:
    """The tutorial's page, plus sign in / sign out to show the session id rotating.

    `fingerprint` is the start of the hashed record id, never the session id itself.
    """
    csrf_field = f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(csrf)}">'
    if user:
        account = (
            f'<p>Signed in as <b id="user">{html.escape(user)}</b></p>'
            f'<form method="post" action="logout">{csrf_field}<button>Sign out</button></form>'
        )
    else:
        account = (
            f'<form method="post" action="login">{csrf_field}'
            '<input name="name" placeholder="your name" required> <button>Sign in</button></form>'
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>cloudsessions demo</title>"
        "</head><body>"
        f'<p id="greeting">{views} views for "{html.escape(greeting)}"</p>'
        f'<p>Session record: <code id="fingerprint">{html.escape(fingerprint)}</code>'
        " (changes when you sign in or out)</p>"
        f"{account}</body></html>"
    )
