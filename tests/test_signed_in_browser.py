""" "Where you're signed in" in real browsers: two headless Chromiums (tests/browsers.py), each
with a User-Agent and a profile of its own, against `cloudsessions demo` on every framework.

Both sign in as the same user through the demo's form; the first lists two sessions with
their devices (itself marked), signs the other out with its button, and the other's very
next request is anonymous, while the first stays signed in.

The README's screenshot of the page, docs/images/signed-in.png, is taken here and written
only when the page itself changed (see tests/browsers.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from cloudsessions.demo.page import SIGNED_IN_PAGE
from cloudsessions.pages import MESSAGES
from tests.browsers import IMAGES, NewBrowser, chromium, fix_viewport, keep_screenshot, page_size
from tests.real_servers import DEMO_FRAMEWORKS, demo_server

pytestmark = pytest.mark.browser  # on the first Python only: see scripts/test

SCREENSHOT = IMAGES / "signed-in.png"
SCREEN = {"width": 900, "height": 400}  # CSS pixels, one device pixel each
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
LAPTOP, PHONE = "Firefox 133 on Linux", "Mobile Safari 17 on iPhone"
WAIT = 30  # seconds at most for the page a click leads to


@pytest.fixture
def new_browser(tmp_path: Path) -> Iterator[NewBrowser]:
    with chromium(tmp_path) as start:
        yield start


def sign_in(browser: webdriver.Chrome, base: str, name: str) -> None:
    """Sign in through the demo's form, and wait for the page that says so."""
    browser.get(base)
    browser.find_element(By.NAME, "name").send_keys(name)
    browser.find_element(By.TAG_NAME, "button").click()
    user = WebDriverWait(browser, WAIT).until(lambda d: d.find_elements(By.ID, "user"))
    assert user[0].text == name


def signed_in_as(browser: webdriver.Chrome) -> str | None:
    """Who the demo's home page (just loaded) says is signed in."""
    user = browser.find_elements(By.ID, "user")
    if user:
        return user[0].text
    assert browser.find_elements(By.NAME, "name"), "an anonymous page offers to sign in"
    return None


def listed(browser: webdriver.Chrome) -> list[tuple[str, bool]]:
    """The sessions the signed-in page shows: (device, this browser's)."""
    rows = browser.find_elements(By.CSS_SELECTOR, "li.session")
    return [
        (
            row.find_element(By.CLASS_NAME, "label").text,
            "current" in (row.get_attribute("class") or "").split(),
        )
        for row in rows
    ]


@pytest.mark.parametrize("framework", DEMO_FRAMEWORKS)
def test_one_browser_signs_the_other_out_from_the_page(
    framework: str, tmp_path: Path, new_browser: NewBrowser
) -> None:
    with demo_server(framework, f"sqlite:///{tmp_path / 'demo.db'}", tmp_path) as base:
        laptop, phone = new_browser(FIREFOX), new_browser(IPHONE)
        sign_in(laptop, base, "Ada")
        sign_in(phone, base, "Ada")

        # The demo's link leads to the page; it lists both browsers, this one first.
        laptop.find_element(By.ID, "signed-in").click()
        WebDriverWait(laptop, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.session"))
        assert laptop.current_url == base + SIGNED_IN_PAGE
        assert listed(laptop) == [(LAPTOP, True), (PHONE, False)]
        assert listed_on(phone, base) == [(PHONE, True), (LAPTOP, False)]

        laptop.find_element(By.CSS_SELECTOR, f'button[aria-label="Sign out {PHONE}"]').click()
        message = WebDriverWait(laptop, WAIT).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "p.message")
        )
        assert message[0].text == MESSAGES["revoked"]
        assert listed(laptop) == [(LAPTOP, True)]

        # The phone's very next request is anonymous: no wait, no retry.
        phone.refresh()
        assert signed_in_as(phone) is None
        phone.get(base + SIGNED_IN_PAGE)  # the page sends it to sign in (the demo's home)
        assert phone.current_url.startswith(base + "/?next=")
        assert signed_in_as(phone) is None
        laptop.get(base)
        assert signed_in_as(laptop) == "Ada"
        laptop.find_element(By.ID, "signed-in").click()
        WebDriverWait(laptop, WAIT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "li.session"))
        assert listed(laptop) == [(LAPTOP, True)]


def listed_on(browser: webdriver.Chrome, base: str) -> list[tuple[str, bool]]:
    browser.get(base + SIGNED_IN_PAGE)
    return listed(browser)


def test_the_signed_in_page_fits_one_screen_and_its_screenshot_is_current(
    tmp_path: Path, new_browser: NewBrowser
) -> None:
    with demo_server("django", "sqlite:///demo.db", tmp_path) as base:
        laptop, phone = new_browser(FIREFOX), new_browser(IPHONE)
        sign_in(phone, base, "Ada")
        sign_in(laptop, base, "Ada")
        fix_viewport(laptop, SCREEN)
        laptop.get(base + SIGNED_IN_PAGE)
        assert listed(laptop) == [(LAPTOP, True), (PHONE, False)]
        # The whole page shows at once: nothing below the fold, nothing beside it.
        size = page_size(laptop)
        assert size == [SCREEN["width"], SCREEN["height"]], size
        page = hashlib.sha256(page_shape(laptop.page_source).encode()).hexdigest()
        png = laptop.get_screenshot_as_png()
    keep_screenshot(png, page, SCREENSHOT, SCREEN)


def page_shape(page: str) -> str:
    """The page without what differs between runs: handles, form tokens, times."""
    for pattern, replacement in (
        (r'(name="handle" value=")[^"]+', r"\1..."),
        (r'(name="csrfmiddlewaretoken" value=")[^"]+', r"\1..."),
        (r"<time [^>]*>[^<]*</time>", "<time>...</time>"),
    ):
        page = re.sub(pattern, replacement, page)
    return page
