"""The demo in a real browser: headless Chromium (Debian's chromium + chromium-driver),
driven by Selenium, against `cloudsessions demo` on every framework.

Nothing is downloaded: the browser and driver are the system's (/usr/bin), and Selenium
Manager is told to stay offline. Each browser gets a new, empty profile directory.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.real_servers import DEMO_FRAMEWORKS, demo_server, fingerprint, views_and_greeting

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
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
