"""The `cloudsessions` command, run as a user runs it: a real process."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from cloudsessions import SessionRecord, new_session_id, open_store


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cloudsessions.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_init_check_purge_destroy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    done = cli("init", "--store", url)
    assert done.returncode == 0, done.stderr
    assert "created sqlite file" in done.stdout and "ok   table" in done.stdout

    again = cli("init", "--store", url)
    assert "already set up, nothing changed" in again.stdout

    store = open_store(url)
    for _ in range(5):
        store.create(new_session_id(), SessionRecord({}, 1.0))
    live = new_session_id()
    store.create(live, SessionRecord({"x": 1}, time.time() + 60))
    purged = cli("purge", "--store", url, "--batch-size", "2")
    assert purged.returncode == 0
    assert purged.stdout.splitlines()[-1].startswith("removed 5 expired session(s)")
    assert "removed 2 expired session(s) so far" in purged.stdout
    assert store.load(live) is not None

    refused = cli("destroy", "--store", url, stdin="no\n")
    assert refused.returncode == 1 and "nothing deleted" in refused.stdout
    assert store.load(live) is not None

    confirmed = cli("destroy", "--store", url, stdin="yes\n")
    assert confirmed.returncode == 0 and "deleted sqlite file" in confirmed.stdout
    failed = cli("check", "--store", url)
    assert failed.returncode == 1 and "FAIL table" in failed.stdout


def test_a_bad_store_url_is_a_clear_error() -> None:
    done = cli("check", "--store", "sqlite://nowhere")
    assert done.returncode == 2
    assert "error: sqlite store URL" in done.stderr
    assert "Traceback" not in done.stderr
