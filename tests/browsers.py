"""Headless Chromium for the real-browser tests (Debian's chromium + chromium-driver, driven
by Selenium), and the screenshots they keep in docs/images.

Nothing is downloaded: the browser and driver are the system's (/usr/bin), and Selenium
Manager is told to stay offline. Each browser gets a new, empty profile directory, so two
browsers are two visitors with cookie jars of their own.

A screenshot is taken on every run and written only when the page itself changed (its
markup and CSS as the browser holds them, without what differs between runs): the PNG
carries that page's hash, so a run on another Chromium or with other fonts leaves the
committed image alone. Delete the file to take it again.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
IMAGES = Path(__file__).resolve().parents[1] / "docs" / "images"
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

# A browser factory: start(user_agent=None) -> a new Chromium with a profile of its own.
NewBrowser = Callable[..., webdriver.Chrome]


def missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).exists() or shutil.which(Path(path).name)):
            return f"{path} is not installed (apt-get install -y chromium chromium-driver)"
    return None


@contextlib.contextmanager
def chromium(folder: Path) -> Iterator[NewBrowser]:
    """Start browsers (profiles under `folder`) until the with-block ends, then quit them."""
    problem = missing()
    if problem:
        pytest.fail(problem)  # scripts/test installs them; a missing browser is a failure
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not fetch anything
    drivers: list[webdriver.Chrome] = []

    def start(user_agent: str | None = None) -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        profile = folder / f"profile-{len(drivers)}"
        profile.mkdir()
        flags = [*FLAGS, f"--user-data-dir={profile}"]
        if user_agent:
            flags.append(f"--user-agent={user_agent}")
        for flag in flags:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(30)
        drivers.append(driver)
        return driver

    try:
        yield start
    finally:
        for driver in drivers:
            driver.quit()


def fix_viewport(browser: webdriver.Chrome, screen: dict[str, int]) -> None:
    """A fixed viewport (CSS pixels, one device pixel each) whatever the window: a
    screenshot's size never varies."""
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {**screen, "deviceScaleFactor": 1, "mobile": False}
    )


def page_size(browser: webdriver.Chrome) -> list[int]:
    """The document's scroll size: the viewport's when nothing is below the fold or beside."""
    size: list[int] = browser.execute_script(
        "const e = document.documentElement; return [e.scrollWidth, e.scrollHeight]"
    )
    return size


def keep_screenshot(png: bytes, page: str, path: Path, screen: dict[str, int]) -> None:
    """Write `png` to `path`, tagged with `page` (a hash), unless it shows that page already."""
    from PIL import Image, PngImagePlugin

    image = Image.open(io.BytesIO(png))
    assert image.size == (screen["width"], screen["height"])
    if path.exists() and Image.open(path).text.get(PAGE_HASH) == page:
        return
    info = PngImagePlugin.PngInfo()
    info.add_text(PAGE_HASH, page)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, pnginfo=info, optimize=True)
