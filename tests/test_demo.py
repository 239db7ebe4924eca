"""The demo site, served by `cloudsessions demo` in a real process, driven over HTTP."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudsessions.demo.page import GREETINGS
from tests.services._process import free_port, run_server


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "cloudsessions.cli",
        "demo",
        "--port",
        str(port),
        "--store",
        f"sqlite:///{tmp_path / 'demo.db'}",
    ]
    with run_server("demo", argv, port, cwd=tmp_path, timeout=60):
        yield f"http://127.0.0.1:{port}/"


class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str = "") -> str:
        with self.opener.open(self.base + path, timeout=10) as response:
            return str(response.read().decode())

    def post(self, path: str, page: str, **fields: str) -> str:
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        assert token is not None
        body = urllib.parse.urlencode({"csrfmiddlewaretoken": token.group(1), **fields}).encode()
        request = urllib.request.Request(
            self.base + path, data=body, headers={"Referer": self.base}
        )
        with self.opener.open(request, timeout=10) as response:
            return str(response.read().decode())


def views_and_greeting(page: str) -> tuple[int, str]:
    match = re.search(r'<p id="greeting">(\d+) views for "([^"]+)"</p>', page)
    assert match is not None, page
    return int(match.group(1)), match.group(2)


def fingerprint(page: str) -> str:
    match = re.search(r'<code id="fingerprint">([0-9a-f-]+)</code>', page)
    assert match is not None
    return match.group(1)


def test_visitors_keep_their_greeting_and_count_views(demo: str) -> None:
    alice, bob = Browser(demo), Browser(demo)
    first = alice.get()
    views, greeting = views_and_greeting(first)
    assert (views, greeting in GREETINGS) == (1, True)
    assert views_and_greeting(alice.get()) == (2, greeting)
    assert views_and_greeting(alice.get()) == (3, greeting)
    assert views_and_greeting(bob.get())[0] == 1  # a second visitor has a session of their own
    assert views_and_greeting(alice.get()) == (4, greeting)


def test_signing_in_and_out_rotates_the_session_record(demo: str) -> None:
    browser = Browser(demo)
    page = browser.get()
    before = fingerprint(page)
    _, greeting = views_and_greeting(page)
    signed_in = browser.post("login", page, name="Ada")
    assert 'Signed in as <b id="user">Ada</b>' in signed_in
    assert fingerprint(signed_in) != before
    assert views_and_greeting(signed_in) == (2, greeting), "sign-in keeps the session's data"
    signed_out = browser.post("logout", signed_in)
    assert "Sign in</button>" in signed_out
    assert fingerprint(signed_out) not in (before, fingerprint(signed_in))
    assert views_and_greeting(signed_out)[0] == 1, "sign-out starts a new session"


def test_the_demo_command_reports_a_bad_store_url(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cloudsessions.cli", "demo", "--store", "nosuch://x"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "unknown store URL scheme" in done.stderr and "Traceback" not in done.stderr
