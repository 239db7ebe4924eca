"""The demo command's own error handling. The demo on every framework is in
tests/test_demo_frameworks.py, and in a real browser in tests/test_browser.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
