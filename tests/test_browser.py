"""The demo in a real browser: headless Chromium driven by Selenium (tests/browsers.py),
against `cloudsessions demo` on every framework.

The README's screenshot of the demo, docs/images/demo.png, is taken here on every run and
written only when the page itself changed (see tests/browsers.py). Delete the file to take
it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browsers import IMAGES, NewBrowser, chromium, fix_viewport, keep_screenshot, page_size
from tests.real_servers import (
    DEMO_FRAMEWORKS,
    demo_server,
    fingerprint,
    page_shape,
    views_and_greeting,
)

pytestmark = pytest.mark.browser  # on the first Python only: see scripts/test

SCREENSHOT = IMAGES / "demo.png"
SCREEN = {"width": 900, "height": 640}  # CSS pixels, one device pixel each


@pytest.fixture
def new_browser(tmp_path: Path) -> Iterator[NewBrowser]:
    with chromium(tmp_path) as start:
        yield start


@pytest.mark.parametrize("framework", DEMO_FRAMEWORKS)
def test_the_demo_in_chromium(framework: str, tmp_path: Path, new_browser: NewBrowser) -> None:
    with demo_server(framework, f"sqlite:///{tmp_path / 'demo.db'}", tmp_path) as base:
        first = new_browser()
        first.get(base)
        views, greeting = views_and_greeting(first.page_source)
        assert views == 1
        record = fingerprint(first.page_source)
        for expected in (2, 3):
            first.refresh()
            assert views_and_greeting(first.page_source) == (expected, greeting)
            assert fingerprint(first.page_source) == record

        # Another profile is another visitor: a session (and record) of its own.
        second = new_browser()
        second.get(base)
        assert views_and_greeting(second.page_source)[0] == 1
        assert fingerprint(second.page_source) != record

        # Signing in through the form rotates the record and keeps the data.
        first.find_element(By.NAME, "name").send_keys("Ada")
        first.find_element(By.TAG_NAME, "button").click()
        # The POST answers with a redirect: wait for the page it leads to, not a fixed time.
        user = WebDriverWait(first, 30).until(lambda d: d.find_elements(By.ID, "user"))
        assert user[0].text == "Ada"
        assert views_and_greeting(first.page_source) == (4, greeting)
        assert fingerprint(first.page_source) != record
        first.refresh()
        assert views_and_greeting(first.page_source) == (5, greeting)
        assert views_and_greeting(second.page_source)[0] == 1


def test_the_demo_fits_one_screen_and_its_screenshot_is_current(
    tmp_path: Path, new_browser: NewBrowser
) -> None:
    with demo_server("django", "sqlite:///demo.db", tmp_path) as base:
        browser = new_browser()
        fix_viewport(browser, SCREEN)
        for _ in range(3):
            browser.get(base)
        assert views_and_greeting(browser.page_source)[0] == 3
        # The whole page shows at once: nothing below the fold, nothing beside it.
        size = page_size(browser)
        assert size == [SCREEN["width"], SCREEN["height"]], size
        page = hashlib.sha256(page_shape(browser.page_source).encode()).hexdigest()
        png = browser.get_screenshot_as_png()
    keep_screenshot(png, page, SCREENSHOT, SCREEN)
