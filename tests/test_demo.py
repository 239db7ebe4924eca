"""Helpers to drive the demo over HTTP (used by test_demo_frameworks and test_browser),
and the demo command's own error handling."""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path


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
