"""The demo in a real browser: headless Chromium (Debian's chromium + chromium-driver),
driven by Selenium, against `cloudsessions demo` on every framework.

Nothing is downloaded: the browser and driver are the system's (/usr/bin), and Selenium
Manager is told to stay offline. Each browser gets a new, empty profile directory.

The README's screenshot of the demo, docs/images/demo.png, is taken here on every run and
written only when the page itself changed (its markup and CSS, as the browser holds them,
without what differs between visitors): the PNG carries that page's hash, so a run on
another Chromium or with other fonts leaves the committed image alone. Delete the file to
take it again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.real_servers import (
    DEMO_FRAMEWORKS,
    demo_server,
    fingerprint,
    page_shape,
    views_and_greeting,
)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "images" / "demo.png"
SCREEN = {"width": 900, "height": 640}  # CSS pixels, one device pixel each
PAGE_HASH = "cloudsessions-page-sha256"  # the PNG text chunk naming the page it shows
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers give /dev/shm 64 MB; Chromium then crashes
]


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is not installed (apt-get install -y chromium chromium-driver)"
    return None


@pytest.fixture
def new_browser(tmp_path: Path) -> Iterator[Callable[[], webdriver.Chrome]]:
    problem = _missing()
    if problem:
        pytest.fail(problem)  # scripts/test installs them; a missing browser is a failure
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    drivers: list[webdriver.Chrome] = []

    def start() -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        profile = tmp_path / f"profile-{len(drivers)}"
        profile.mkdir()
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    yield start
    for driver in drivers:
        driver.quit()


@pytest.mark.parametrize("framework", DEMO_FRAMEWORKS)
def test_the_demo_in_chromium(
    framework: str, tmp_path: Path, new_browser: Callable[[], webdriver.Chrome]
) -> None:
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
    tmp_path: Path, new_browser: Callable[[], webdriver.Chrome]
) -> None:
    with demo_server("django", "sqlite:///demo.db", tmp_path) as base:
        browser = new_browser()
        # A fixed viewport whatever the window: the screenshot's size never varies.
        browser.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {**SCREEN, "deviceScaleFactor": 1, "mobile": False},
        )
        for _ in range(3):
            browser.get(base)
        assert views_and_greeting(browser.page_source)[0] == 3
        # The whole page shows at once: nothing below the fold, nothing beside it.
        size = browser.execute_script(
            "const e = document.documentElement; return [e.scrollWidth, e.scrollHeight]"
        )
        assert size == [SCREEN["width"], SCREEN["height"]], size
        page = hashlib.sha256(page_shape(browser.page_source).encode()).hexdigest()
        png = browser.get_screenshot_as_png()
    _keep_screenshot(png, page)


def _keep_screenshot(png: bytes, page: str) -> None:
    """Write `png` as SCREENSHOT, tagged with `page`, unless it shows the page already."""
    import io

    from PIL import Image, PngImagePlugin

    image = Image.open(io.BytesIO(png))
    assert image.size == (SCREEN["width"], SCREEN["height"])
    if SCREENSHOT.exists() and Image.open(SCREENSHOT).text.get(PAGE_HASH) == page:
        return
    info = PngImagePlugin.PngInfo()
    info.add_text(PAGE_HASH, page)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    image.save(SCREENSHOT, pnginfo=info, optimize=True)
