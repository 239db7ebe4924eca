"""The tutorial demo on every framework, served by `cloudsessions demo --framework X` in a real
process and driven over HTTP with a real cookie jar: the same page and behaviour everywhere,
a page that counts in words and says what to try, and view counts that lose no increment
under concurrent requests from one visitor.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudsessions.demo.page import FRAMEWORK_NAMES, GREETINGS, SIGNED_IN_PAGE
from cloudsessions.testing import at_once
from tests import stores
from tests.real_servers import (
    DEMO_FRAMEWORKS,
    Browser,
    demo_server,
    fingerprint,
    page_shape,
    views_and_greeting,
)


@pytest.fixture(params=DEMO_FRAMEWORKS)
def demo(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with demo_server(request.param, f"sqlite:///{tmp_path / 'demo.db'}", tmp_path) as base:
        yield base


def test_visitors_keep_their_greeting_and_count_views(demo: str) -> None:
    alice, bob = Browser(demo), Browser(demo)
    views, greeting = views_and_greeting(alice.get())
    assert (views, greeting in GREETINGS) == (1, True)
    assert views_and_greeting(alice.get()) == (2, greeting)
    assert views_and_greeting(alice.get()) == (3, greeting)
    assert views_and_greeting(bob.get())[0] == 1  # a second visitor has a session of their own
    assert views_and_greeting(alice.get()) == (4, greeting)


def test_the_page_counts_in_words_and_says_what_to_try(demo: str) -> None:
    browser = Browser(demo)
    first, second = browser.get(), browser.get()
    assert '<b id="views">1 view</b>' in first, "one view, not '1 views'"
    assert '<b id="views">2 views</b>' in second
    said = _text(first)
    for hint in (
        "Reload the page",
        "Open a private window",
        "Sign in and watch the session record change",
        "cloudsessions check --store URL",
        "the store's own console",
    ):
        assert hint in said, hint
    # Styled inline and without scripts: nothing to fetch, nothing to run.
    assert "<style>" in first and "<script" not in first
    assert not re.search(r"\b(src|href)=", first), "the page loads nothing else"


def test_the_page_is_the_same_on_every_framework_but_its_name(tmp_path: Path) -> None:
    pages = {}
    for framework in DEMO_FRAMEWORKS:
        # The same relative store URL from the same folder: one store, one description.
        with demo_server(framework, "sqlite:///demo.db", tmp_path) as base:
            pages[framework] = Browser(base).get()
    for framework, page in pages.items():
        name = FRAMEWORK_NAMES[framework]
        assert f'<span class="badge" id="framework">{html.escape(name)}</span>' in page
    shapes = {
        page_shape(page).replace(html.escape(FRAMEWORK_NAMES[framework]), "FRAMEWORK")
        for framework, page in pages.items()
    }
    assert len(shapes) == 1, "the frameworks' pages differ beyond their names"


def _text(page: str) -> str:
    """What a visitor reads: the page without its tags, spaces as a browser collapses them."""
    body = page.split("<body>", 1)[1]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", body)).split())


def test_signing_in_and_out_rotates_the_session_record(demo: str) -> None:
    browser = Browser(demo)
    page = browser.get()
    before = fingerprint(page)
    _, greeting = views_and_greeting(page)
    signed_in = browser.post("/login", page, name="Ada")
    assert 'Signed in as <b id="user">Ada</b>' in signed_in
    assert fingerprint(signed_in) != before
    assert views_and_greeting(signed_in) == (2, greeting), "sign-in keeps the session's data"
    signed_out = browser.post("/logout", signed_in)
    assert "Sign in</button>" in signed_out
    assert fingerprint(signed_out) not in (before, fingerprint(signed_in))
    assert views_and_greeting(signed_out)[0] == 1, "sign-out starts a new session"


def test_a_planted_session_id_is_not_signed_in_by_the_victims_sign_in(demo: str) -> None:
    # Session fixation: the attacker gets an id, plants it in the victim's browser (a
    # sibling subdomain can set cookies), and waits for the victim to sign in. The demo's
    # sign-in only sets the user id, as Flask-Login's login_user() does; the id rotates anyway.
    attacker, victim = Browser(demo), Browser(demo)
    planted = fingerprint(attacker.get())
    for cookie in attacker.jar:
        victim.jar.set_cookie(copy.copy(cookie))
    page = victim.get()
    assert fingerprint(page) == planted, "the victim really uses the planted session"
    signed_in = victim.post("/login", page, name="Ada")
    assert 'Signed in as <b id="user">Ada</b>' in signed_in
    assert fingerprint(signed_in) != planted
    after = attacker.get()
    assert "Signed in as" not in after, "the planted id does not carry the victim's sign-in"
    assert views_and_greeting(after)[0] == 1, "the planted id names no session any more"
    assert "Signed in as" in victim.get()


def test_a_form_without_the_sessions_token_is_refused(demo: str) -> None:
    import urllib.error

    browser = Browser(demo)
    page = browser.get()
    forged = page.replace(
        'name="csrfmiddlewaretoken" value="', 'name="csrfmiddlewaretoken" value="x'
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        browser.post("/login", forged, name="Mallory")
    assert refused.value.code == 403


@pytest.mark.parametrize("framework", DEMO_FRAMEWORKS)
def test_concurrent_page_views_lose_no_count(
    framework: str, store_name: str, tmp_path: Path
) -> None:
    url = stores.store_url(store_name, tmp_path)
    with demo_server(framework, url, tmp_path) as base:
        browser = Browser(base)
        views, greeting = views_and_greeting(browser.get())
        assert views == 1
        requests = 20  # all at once, with one visitor's cookie
        seen = at_once(requests, lambda _: views_and_greeting(browser.get()))
        assert sorted(seen) == [(n, greeting) for n in range(2, requests + 2)]
        assert views_and_greeting(browser.get()) == (requests + 2, greeting)


def test_the_signed_in_page_is_the_same_on_every_framework(tmp_path: Path) -> None:
    # One template under Django's engine and Jinja2 alike: the same page but for the name
    # of the form's token (Django's own CSRF field) and what differs between runs.
    shapes = {}
    for framework in DEMO_FRAMEWORKS:
        with demo_server(framework, f"sqlite:///{tmp_path / framework}.db", tmp_path) as base:
            first, second = Browser(base), Browser(base)
            for browser in (first, second):
                browser.post("/login", browser.get(), name="Ada")
            signed_in = first.get()
            assert f'<a id="signed-in" href="{SIGNED_IN_PAGE.lstrip("/")}">' in signed_in
            page = first.get(SIGNED_IN_PAGE)
            assert page.count('<li class="session') == 2
            assert page.count('<li class="session current" aria-current="true">') == 1
            shapes[framework] = _signed_in_shape(page)
            # An anonymous visitor is sent to the demo's sign-in form.
            assert "Sign in</button>" in Browser(base).get(SIGNED_IN_PAGE)
    assert len(set(shapes.values())) == 1, "the frameworks' signed-in pages differ"


def _signed_in_shape(page: str) -> str:
    for pattern, replacement in (
        (r'name="(csrfmiddlewaretoken|csrf_token)" value="[^"]+"', 'name="TOKEN"'),
        (r'(name="handle" value=")[0-9a-f]{64}', r"\1..."),
        (r"<time [^>]*>[^<]*</time>", "<time>...</time>"),
    ):
        page = re.sub(pattern, replacement, page)
    return page.rstrip("\n")  # Jinja2 drops the template's last newline, Django keeps it
