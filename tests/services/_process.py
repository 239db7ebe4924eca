"""Start a server subprocess on a loopback port, wait until it is ready, stop it.

Shared by the per-store launchers in this package. Failures raise
RuntimeError with the tail of the server's log: a server that cannot start is
a test failure, never a skip.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

HOST = "127.0.0.1"
POLL_INTERVAL = 0.1  # seconds between readiness checks
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


def cache_dir() -> Path:
    """Where downloads and server logs live: $CLOUDSESSIONS_CACHE or <repo>/.cache."""
    env = os.environ.get("CLOUDSESSIONS_CACHE")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / ".cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    """A loopback port that was free a moment ago.

    The port is released before the server binds it, so another process could
    take it in between; the server then fails to start, which is reported.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = HOST) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(path: Path, max_chars: int = 4000) -> str:
    """The end of a log file, for error messages."""
    try:
        data = path.read_bytes()
    except OSError:
        return "<no log>"
    return data[-max_chars:].decode("utf-8", "replace")


def _group_alive(pgid: int) -> bool:
    """True while a process of group `pgid` still runs.

    Zombies do not count: children that outlive the leader (gcloud's java) are
    reparented to init, which may take seconds to reap them.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: the signal check above has to do
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ..."; comm may contain spaces.
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # the process went away while we looked
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def stop_process(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
    """SIGTERM the process group we started, SIGKILL what is left after `grace` s.

    The group id is the child's pid (start_new_session=True), so this reaches
    its children too (gcloud runs the emulator as a java child) and nothing
    else on the machine.
    """
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    # Wait for the leader and for any children that outlive it.
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(POLL_INTERVAL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait(timeout=grace)


@contextlib.contextmanager
def run_server(
    name: str,
    argv: Sequence[str],
    port: int,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    ready: Callable[[], bool] | None = None,
    timeout: float = 90.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `argv` until the with-block ends; yield once it serves on `port`.

    Ready means: TCP connect to 127.0.0.1:port succeeds and then `ready()`
    returns True (an exception from `ready` counts as "not yet"). Output goes
    to <cache>/logs/<name>-<port>.log.
    """
    log_dir = cache_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=subprocess.DEVNULL,  # CI has no stdin; never let a prompt block
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group, so we can stop all of it
            )
        except OSError as exc:
            raise RuntimeError(f"{name}: cannot run {argv[0]!r}: {exc}") from exc
    try:
        deadline = started + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with code {proc.returncode} before it was ready; "
                    f"log {log_path}:\n{log_tail(log_path)}"
                )
            if port_open(port) and (ready is None or _probe(ready)):
                # Our process must still be the one serving (not a port thief).
                if proc.poll() is None:
                    break
                continue
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name} not ready on {HOST}:{port} after {timeout:.0f} s; "
                    f"log {log_path}:\n{log_tail(log_path)}"
                )
            time.sleep(POLL_INTERVAL)
        yield proc
    finally:
        stop_process(proc)


def _probe(ready: Callable[[], bool]) -> bool:
    try:
        return bool(ready())
    except Exception:  # any failure of a probe only means "not ready yet"
        return False
