"""What every demo front door shows: the tutorial's greeting, view count, and sign-in.

One renderer for the three frameworks, so the page is the same on each apart from the
framework's name. Plain HTML with inline CSS: no JavaScript, nothing fetched from a network.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass
from string import Template

GREETINGS = ["Hello World", "Hallo Welt", "Ciao Mondo", "Salut le Monde", "Hola Mundo"]
USER_KEY = "demo_user"
# "Where you're signed in" (cloudsessions.pages) on every framework; signing in is the form
# on the home page, so that is where an anonymous visitor of it is sent.
SIGNED_IN_PAGE = "/account/sessions/"
LOGIN_URL = "/"
FRAMEWORK_NAMES = {"django": "Django", "flask": "Flask", "asgi": "Starlette (ASGI)"}


def new_greeting() -> str:
    return random.choice(GREETINGS)  # noqa: S311 - a greeting, not a secret


@dataclass(frozen=True)
class Visit:
    """What one request of one visitor shows.

    `fingerprint` is the start of the hashed record id, never the session id itself.
    """

    views: int
    greeting: str
    user: str | None
    fingerprint: str
    csrf: str


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def render(framework: str, store: str, visit: Visit) -> str:
    """The page for `visit` on `framework` (a FRAMEWORK_NAMES key), sessions kept in `store`
    (the store's own description, which names no secret)."""
    csrf_field = (
        f'<input type="hidden" name="csrfmiddlewaretoken" value="{html.escape(visit.csrf)}">'
    )
    if visit.user:
        account = (
            f'<form method="post" action="logout">{csrf_field}'
            f'<span class="who">Signed in as <b id="user">{html.escape(visit.user)}</b></span>'
            " <button>Sign out</button>"
            f' <a id="signed-in" href="{SIGNED_IN_PAGE.lstrip("/")}">Where you\'re signed in</a>'
            "</form>"
        )
    else:
        account = (
            f'<form method="post" action="login">{csrf_field}'
            '<input name="name" placeholder="your name" aria-label="your name" required>'
            " <button>Sign in</button></form>"
        )
    return PAGE.substitute(
        css=CSS,
        framework=html.escape(FRAMEWORK_NAMES.get(framework, framework)),
        store=html.escape(store),
        greeting=html.escape(visit.greeting),
        views=plural(visit.views, "view"),
        fingerprint=html.escape(visit.fingerprint),
        account=account,
    )


# The visitor's page. Ids name what the tests read: greeting, views, fingerprint, user.
PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>cloudsessions demo on $framework</title>
<style>$css</style>
</head>
<body>
<main>
<header><span class="brand">cloudsessions demo</span>
<span class="badge" id="framework">$framework</span></header>
<h1 id="greeting">$greeting</h1>
<p class="count"><b id="views">$views</b> in this session</p>
<dl>
<dt>Session record</dt>
<dd><code id="fingerprint">$fingerprint</code>
<small>the start of the record's id in the store: a hash of your cookie,
never the cookie itself</small></dd>
<dt>Account</dt>
<dd>$account</dd>
<dt>Stored in</dt>
<dd><code id="store">$store</code></dd>
</dl>
<section id="try">
<h2>Try this</h2>
<ul>
<li><b>Reload</b> the page: the count goes up and the greeting stays,
both kept in the session on the server.</li>
<li><b>Open a private window</b>: a new visitor, with a session and a count of its own.</li>
<li><b>Sign in</b> and watch the session record change while the count carries on:
a new id at sign-in defeats session fixation. Signing out deletes the record.</li>
<li><b>Sign in from two browsers</b> under one name, then open <b>Where you're signed in</b>:
both are listed with their device, and signing the other one out ends it at once.</li>
<li><b>Look at the store</b>: <code>cloudsessions check --store URL</code> (the URL you
started the demo with) counts the sessions, and in the store's own console your record is
the one whose id starts with the session record above.</li>
</ul>
</section>
</main>
</body>
</html>
""")

CSS = """
:root { color-scheme: light dark; --ink: #1d2433; --soft: #5b6475; --line: #dfe3ea;
  --card: #ffffff; --page: #eef1f6; --accent: #2f6fd0; --accent-ink: #ffffff; }
@media (prefers-color-scheme: dark) {
  :root { --ink: #e6e9ef; --soft: #a3abba; --line: #343b49; --card: #1f2430;
    --page: #151921; --accent: #6fa3ef; --accent-ink: #0d1320; }
}
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 16px; background: var(--page); color: var(--ink);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 720px; margin: 0 auto; padding: 22px 28px; background: var(--card);
  border: 1px solid var(--line); border-radius: 14px; box-shadow: 0 2px 12px #0000000f; }
header { display: flex; justify-content: space-between; align-items: center;
  color: var(--soft); font-size: 13px; }
.brand { font-weight: 600; letter-spacing: .02em; }
.badge { padding: 2px 10px; border-radius: 999px; background: var(--accent);
  color: var(--accent-ink); font-weight: 600; }
h1 { margin: 14px 0 0; font-size: 40px; line-height: 1.15; letter-spacing: -.01em; }
.count { margin: 4px 0 16px; color: var(--soft); font-size: 17px; }
.count b { color: var(--accent); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 8px 18px; margin: 0;
  padding: 14px 0; border-top: 1px solid var(--line); border-bottom: 1px solid var(--line); }
dt { color: var(--soft); font-size: 13px; padding-top: 3px; }
dd { margin: 0; }
dd small { display: block; color: var(--soft); font-size: 12px; }
code { font: 13px/1.3 ui-monospace, "DejaVu Sans Mono", monospace; padding: 1px 5px;
  border-radius: 5px; background: var(--page); }
form { display: flex; gap: 8px; align-items: center; margin: 0; }
input[name=name] { font: inherit; padding: 5px 9px; width: 180px; color: inherit;
  background: var(--card); border: 1px solid var(--line); border-radius: 7px; }
form a { margin-left: 4px; color: var(--accent); font-size: 14px; }
button { font: inherit; font-weight: 600; padding: 5px 14px; border: 0; border-radius: 7px;
  background: var(--accent); color: var(--accent-ink); cursor: pointer; }
h2 { margin: 14px 0 4px; font-size: 15px; }
ul { margin: 0; padding-left: 20px; }
li { margin: 3px 0; font-size: 14px; }
"""
