"""The `cloudsessions` command, run as a user runs it: a real process.

Each test names what a newcomer or an operator relies on: help that reads like a manual,
the store it falls back to, exit statuses and messages that tell the truth (one line, with
the fix), a progress bar on a terminal only; on SQLite, DynamoDB Local and Redis.
"""

from __future__ import annotations

import argparse
import fcntl
import importlib.metadata
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from cloudsessions import Metadata, SessionRecord, new_session_id, open_store, record_id
from cloudsessions.cli import build_parser
from cloudsessions.stores.dynamodb import ADMIN_ACTIONS, SESSION_ACTIONS
from tests import stores

COMMAND = [sys.executable, "-m", "cloudsessions.cli"]


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    # The developer's own $CLOUDSESSIONS_STORE must not leak into a test.
    environment = {k: v for k, v in os.environ.items() if k != "CLOUDSESSIONS_STORE"}
    return {**environment, **(env or {})}


def cli(
    *args: str, stdin: str = "", cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=_environment(env),
    )


def on_a_terminal(*args: str) -> tuple[int, str, str]:
    """Run the command with stderr on a pseudo-terminal of 100 columns, stdout on a pipe:
    (exit status, stdout, what the terminal showed)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    process = subprocess.Popen(
        [*COMMAND, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=_environment(None),
    )
    os.close(terminal)
    shown = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the process has closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    return process.wait(timeout=60), out, shown.decode()


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single `error: ...` line a failure prints on stderr, never a traceback."""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def expired_sessions(url: str, count: int) -> None:
    store = open_store(url)
    for _ in range(count):
        store.create(new_session_id(), SessionRecord({}, 1.0))
    store.close()


# ------------------------------------------------------------------- the manual


def test_version_is_the_installed_package_version() -> None:
    done = cli("--version")
    assert done.returncode == 0
    assert done.stdout == f"cloudsessions {importlib.metadata.version('cloudsessions')}\n"


def test_help_reads_like_a_manual() -> None:
    top = cli("--help")
    assert top.returncode == 0
    for command in ("demo", "init", "check", "purge", "destroy"):
        assert re.search(rf"^    {command} +\w", top.stdout, re.MULTILINE), command
    # The exit statuses, documented as the command returns them (tested below).
    assert re.search(r"^exit status:\n  0 +done", top.stdout, re.MULTILINE)
    assert re.search(r"^  1 +the operation failed, a check failed", top.stdout, re.MULTILINE)
    assert re.search(r"^  2 +usage or configuration error", top.stdout, re.MULTILINE)
    assert "$CLOUDSESSIONS_STORE, else sqlite:///cloudsessions.sqlite3" in top.stdout

    demo = cli("demo", "--help")
    assert demo.returncode == 0
    assert "Serve the greeting demo" in demo.stdout
    flat = " ".join(demo.stdout.split())
    assert (
        "--framework {django,flask,asgi} the web framework serving the page (default: django)"
        in flat
    )
    assert "--port PORT the port to listen on (default: 8000)" in flat


def test_every_command_and_option_has_a_description_and_a_default() -> None:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in commands.choices.items():
        assert parser.description and len(parser.description) > 80, name
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if not action.option_strings:  # an argument that must be given has no default
                assert action.required and action.help, (name, action.dest)
                continue
            assert action.help and "(default: " in action.help, (name, action.dest)


# ------------------------------------------------------------- the store it uses


def test_the_store_is_given_else_from_the_environment_else_the_sqlite_default(
    tmp_path: Path,
) -> None:
    default = cli("init", cwd=tmp_path)
    assert default.returncode == 0, default.stderr
    assert (tmp_path / "cloudsessions.sqlite3").is_file()
    assert default.stdout.startswith(
        "store: sqlite file cloudsessions.sqlite3 (table cloudsessions) (the default;"
        " choose another with --store or $CLOUDSESSIONS_STORE)\n"
    )

    env = {"CLOUDSESSIONS_STORE": "sqlite:///from-env.db"}
    from_env = cli("init", cwd=tmp_path, env=env)
    assert from_env.returncode == 0 and (tmp_path / "from-env.db").is_file()
    assert from_env.stdout.startswith(
        "store: sqlite file from-env.db (table cloudsessions) (from $CLOUDSESSIONS_STORE)\n"
    )

    given = cli("check", "--store", "sqlite:///given.db", cwd=tmp_path, env=env)
    assert given.returncode == 1, "given.db does not exist yet"
    assert given.stdout.startswith(
        "store: sqlite file given.db (table cloudsessions) (from --store)"
    )
    assert not (tmp_path / "given.db").exists(), "check creates nothing"


# ------------------------------------------------ operations that tell the truth


def test_init_check_purge_destroy_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    url = f"sqlite:///{path}"
    done = cli("init", "--store", url)
    assert done.returncode == 0, done.stderr
    assert "created sqlite file" in done.stdout and "ok   table" in done.stdout

    again = cli("init", "--store", url)
    assert "already set up, nothing changed" in again.stdout

    expired_sessions(url, 5)
    store = open_store(url)
    live = new_session_id()
    store.create(live, SessionRecord({"x": 1}, time.time() + 60))
    purged = cli("purge", "--store", url, "--batch-size", "2")
    assert purged.returncode == 0
    # Off a terminal: no progress, only the result.
    assert purged.stdout.splitlines()[1:] == [
        f"removed 5 expired session(s) from sqlite file {path} (table cloudsessions)"
    ]
    assert purged.stderr == ""
    assert store.load(live) is not None

    refused = cli("destroy", "--store", url, stdin="no\n")
    assert refused.returncode == 1 and "nothing deleted" in refused.stdout
    assert store.load(live) is not None

    confirmed = cli("destroy", "--store", url, stdin="yes\n")
    assert confirmed.returncode == 0
    assert confirmed.stdout.endswith(
        f"deleted table cloudsessions (1 session(s)) in sqlite file {path}"
        " (the file itself is kept)\n"
    )
    assert path.is_file()

    failed = cli("check", "--store", url)
    assert failed.returncode == 1 and "FAIL table" in failed.stdout
    assert f"cloudsessions missing: run `cloudsessions init --store '{url}'`" in failed.stdout

    nothing = cli("destroy", "--store", url, "--yes")
    assert nothing.returncode == 1
    assert one_error_line(nothing) == (
        f"error: nothing to delete: sqlite file {path} has no table cloudsessions"
    )
    nowhere = cli("destroy", "--store", f"sqlite:///{tmp_path / 'none.db'}", "--yes")
    assert nowhere.returncode == 1 and "does not exist" in one_error_line(nowhere)
    assert not (tmp_path / "none.db").exists(), "destroy creates no file"


def test_sessions_lists_a_users_sessions_and_signs_them_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'who.db'}"
    store = open_store(url)
    firefox = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    ids = [new_session_id() for _ in range(3)]
    for n, (session_id, agent) in enumerate(zip(ids, [firefox, "curl/8.5.0", None], strict=True)):
        meta = Metadata(1_764_000_000.0 + n, 1_764_400_000.0 + n, "203.0.113.0", agent)
        store.create(session_id, SessionRecord({}, time.time() + 3600, "42", meta=meta))
    handles = [record_id(s) for s in ids]

    listed = cli("sessions", "42", "--store", url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[1] == "3 session(s) of user 42"
    assert lines[2].split() == [
        "HANDLE",
        "DEVICE",
        "ADDRESS",
        "SIGNED",
        "IN",
        "LAST",
        "SEEN",
        "EXPIRES",
    ]
    assert lines[3].startswith(f"  {handles[2][:12]}  Unknown browser")  # last seen first
    assert f"{handles[0][:12]}  Firefox 133 on Ubuntu" in lines[5]
    assert "203.0.113.0  2025-11-24 16:00 UTC  2025-11-29 07:06 UTC" in lines[5]
    assert all(s not in listed.stdout for s in ids), "never a session id"

    revoked = cli(
        "sessions", "42", "--store", url, "--revoke", handles[1][:12], "--revoke", "0" * 12
    )
    assert revoked.returncode == 1, "one handle named nothing"
    assert revoked.stdout.splitlines()[1:] == [
        f"{handles[1][:12]}: signed out (curl 8)",
        f"{'0' * 12}: names no session of user 42; nothing signed out",
    ]
    assert store.load(ids[1]) is None and store.load(ids[0]) is not None
    short = cli("sessions", "42", "--store", url, "--revoke", handles[0][:6])
    assert short.returncode == 1 and "is too short" in short.stdout

    # On a terminal, a bar counts the sessions signed out (no total: none is cheap).
    status, out, shown = on_a_terminal("sessions", "42", "--store", url, "--all")
    assert status == 0
    assert out.splitlines()[1:] == ["signed out 2 session(s) of user 42"]
    assert re.search(r"signing out: 2 sessions \[\d\d:\d\d, +[\d.]+ sessions/s\]", shown), shown
    assert cli("sessions", "42", "--store", url).stdout.splitlines()[1:] == [
        "0 session(s) of user 42"
    ]
    nothing = cli("sessions", "42", "--store", url, "--all")
    assert nothing.stdout.splitlines()[1:] == ["signed out 0 session(s) of user 42"]
    assert nothing.stderr == "", "off a terminal: no bar"


def test_a_file_that_is_not_sqlite_is_reported_in_one_line_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "notdb.db"
    path.write_text("these are my notes, not a database\n" * 50)
    url = f"sqlite:///{path}"
    checked = cli("check", "--store", url)
    assert checked.returncode == 1 and checked.stderr == ""
    assert "FAIL database file" in checked.stdout
    assert f"{path} is not a SQLite database" in checked.stdout
    assert "give the store URL another file" in checked.stdout
    for operation in (["init"], ["purge"], ["destroy", "--yes"]):
        done = cli(*operation, "--store", url)
        assert done.returncode == 2, "a configuration error"
        assert "is not a SQLite database" in one_error_line(done), operation
    assert path.read_text().startswith("these are my notes"), "left as it was"


def test_exit_statuses_are_honest(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    usage = cli("purge", "--store", url, "--batch-size", "0")
    assert usage.returncode == 2 and "must be a positive whole number" in usage.stderr
    bad_url = cli("check", "--store", "sqlite://nowhere")
    assert bad_url.returncode == 2
    assert one_error_line(bad_url).startswith("error: sqlite store URL")
    assert cli("init", "--store", url).returncode == 0
    assert cli("check", "--store", url).returncode == 0
    assert cli("destroy", "--store", url, "--yes").returncode == 0
    assert cli("check", "--store", url).returncode == 1, "a failed check"
    assert cli("destroy", "--store", url, "--yes").returncode == 1, "nothing to delete"


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    # A third-party store, registered the way a package registers one (an entry point),
    # with a bug the command cannot know of.
    (tmp_path / "brokenstore.py").write_text(
        "class BrokenStore:\n"
        "    @classmethod\n"
        "    def from_url(cls, url, options):\n"
        "        raise RuntimeError('a bug in a third-party store')\n"
    )
    info = tmp_path / "brokenstore-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenstore\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[cloudsessions.stores]\nbroken = brokenstore:BrokenStore\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}

    done = cli("check", "--store", "broken://x", env=env)
    assert done.returncode == 1
    assert one_error_line(done) == (
        "error: unexpected RuntimeError: a bug in a third-party store"
        " (run with --debug for the traceback)"
    )
    for debug in (["--debug", "check"], ["check", "--debug"]):
        traced = cli(*debug, "--store", "broken://x", env=env)
        assert traced.returncode == 1
        assert traced.stderr.startswith("Traceback (most recent call last):"), debug
        assert traced.stderr.splitlines()[-1] == (
            "error: unexpected RuntimeError: a bug in a third-party store"
        )


# ------------------------------------------------------------------- progress


def test_purge_shows_count_rate_and_eta_on_a_terminal_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    assert cli("init", "--store", url).returncode == 0
    expired_sessions(url, 2000)
    status, out, shown = on_a_terminal("purge", "--store", url, "--batch-size", "100")
    assert status == 0
    assert out.splitlines()[-1].startswith("removed 2000 expired session(s)")
    # tqdm's line: the count of the total, elapsed<remaining (the ETA) and the rate.
    assert re.search(
        r"purging expired sessions: 100%\|[^|]*\| 2000/2000 \[\d\d:\d\d<\d\d:\d\d,"
        r" +[\d.]+ sessions/s\]",
        shown,
    ), shown

    expired_sessions(url, 300)
    quiet = cli("purge", "--store", url, "--batch-size", "100")
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert len(quiet.stdout.splitlines()) == 2, "the store, then the result"


def test_destroy_shows_its_progress_on_a_terminal(tmp_path: Path) -> None:
    # Redis deletes a store's keys batch by batch, reporting each batch.
    url = stores.store_url("redis", tmp_path)
    store = open_store(url)
    for user in range(3):
        store.create(new_session_id(), SessionRecord({}, time.time() + 60, user_id=str(user)))
    store.close()
    status, out, shown = on_a_terminal("destroy", "--store", url, "--yes")
    assert status == 0
    # Three sessions and their three users' indexes.
    assert out.splitlines()[-1].endswith("and every session in it (6 record(s) removed)")
    assert re.search(r"deleting: 6 records \[\d\d:\d\d, +[\d.]+ records/s\]", shown), shown


# ------------------------------------------------------------ DynamoDB (Local)


def test_dynamodb_operations_report_what_they_did(tmp_path: Path) -> None:
    url = stores.store_url("dynamodb", tmp_path)  # a fresh table on DynamoDB Local

    checked = cli("check", "--store", url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Each action the sessions need was probed, by a request that changes nothing.
    for action in SESSION_ACTIONS:
        assert re.search(rf"^ +allowed +{action} \(", checked.stdout, re.MULTILINE), action
    for action in ADMIN_ACTIONS:
        assert re.search(rf"^ +not verifiable +{action} \(", checked.stdout, re.MULTILINE)
    assert "an emulator may allow anything" in checked.stdout

    purged = cli("purge", "--store", url)
    assert purged.returncode == 0
    assert "removed 0 expired session(s)" in purged.stdout
    assert "DynamoDB deletes expired sessions itself" in purged.stdout

    # DynamoDB Local refuses an access key id of other characters than letters and digits
    # as AWS refuses an unknown one: UnrecognizedClientException, before any IAM policy.
    bad_key = cli("check", "--store", url, env={"AWS_ACCESS_KEY_ID": "not-a-key_id"})
    assert bad_key.returncode == 2
    line = one_error_line(bad_key)
    assert "AWS did not accept the access key: check AWS_ACCESS_KEY_ID" in line
    assert "IAM policy must allow" not in line

    destroyed = cli("destroy", "--store", url, "--yes")
    assert destroyed.returncode == 0
    assert re.search(
        r"^deleted dynamodb table \S+ \(.*\) with about 0 item\(s\)$",
        destroyed.stdout,
        re.MULTILINE,
    )
    again = cli("destroy", "--store", url, "--yes")
    assert again.returncode == 1
    assert "nothing to delete" in one_error_line(again) and "does not exist" in again.stderr


# ------------------------------------------------------ MongoDB, Firestore, Redis


def test_mongodb_destroy_says_what_it_deleted_and_when_nothing_was_there(tmp_path: Path) -> None:
    url = stores.store_url("mongodb", tmp_path)  # a fresh collection, with its indexes
    expired_sessions(url, 2)
    destroyed = cli("destroy", "--store", url, "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert re.search(
        r"^deleted mongodb collection \S+ .* with about 2 session\(s\)$",
        destroyed.stdout,
        re.MULTILINE,
    )
    again = cli("destroy", "--store", url, "--yes")
    assert again.returncode == 1
    assert "nothing to delete" in one_error_line(again) and "does not exist" in again.stderr


def test_firestore_destroy_counts_the_documents_it_deletes(tmp_path: Path) -> None:
    url = stores.store_url("firestore", tmp_path)  # a collection of no document yet
    empty = cli("destroy", "--store", url, "--yes")
    assert empty.returncode == 1 and "holds no documents" in one_error_line(empty)
    expired_sessions(url, 3)
    destroyed = cli("destroy", "--store", url, "--yes")
    assert destroyed.returncode == 0, destroyed.stderr
    assert destroyed.stdout.endswith("with its 3 document(s) (3 record(s) removed)\n")


def test_redis_purge_says_that_redis_expires_sessions_itself(tmp_path: Path) -> None:
    purged = cli("purge", "--store", stores.store_url("redis", tmp_path))
    assert purged.returncode == 0
    assert purged.stdout.splitlines()[-1] == (
        "Redis deletes expired sessions itself: each session's keys expire with it,"
        " so there is nothing to purge"
    )
