"""SecantusDB, a MongoDB-wire-compatible server from PyPI (test-only, GPL).

Install it in the test environment: pip install secantusdb==0.7.0b3
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._process import HOST, cache_dir, free_port, run_server

_RUNNER = Path(__file__).with_name("_secantus_server.py")


def _secantusd() -> Path:
    """secantusd-py from this interpreter's environment, else from PATH."""
    local = Path(sys.executable).parent / "secantusd-py"
    if local.is_file():
        return local
    found = shutil.which("secantusd-py")
    if found is None:
        raise RuntimeError(
            "secantusd-py not found: pip install secantusdb==0.7.0b3 into the test environment"
        )
    return Path(found)


def _python_for(exe: Path) -> str:
    """An interpreter that can import secantus: ours, else secantusd-py's own."""
    if importlib.util.find_spec("secantus") is not None:
        return sys.executable
    shebang = exe.read_bytes().split(b"\n", 1)[0]
    if shebang.startswith(b"#!"):
        candidate = Path(shebang[2:].decode().strip())
        if candidate.is_file():
            return str(candidate)
    return sys.executable


def _pings(uri: str) -> bool:
    try:
        import pymongo
    except ImportError:  # TCP connect (checked by run_server) has to do
        return True
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=1000, connectTimeoutMS=1000
    )
    with client:
        client.admin.command("ping")
    return True


@contextlib.contextmanager
def secantus(ttl_sweep_seconds: float | None = 1.0, timeout: float = 60.0) -> Iterator[str]:
    """Run an in-memory SecantusDB; yield "mongodb://127.0.0.1:PORT".

    ttl_sweep_seconds: how often TTL indexes are swept (mongod: 60 s). None
    runs the stock `secantusd-py` daemon, whose sweep is fixed at 60 s; a
    number runs the same server through _secantus_server.py with that sweep.
    """
    exe = _secantusd()
    port = free_port()
    uri = f"mongodb://{HOST}:{port}"
    if ttl_sweep_seconds is None:
        argv = [str(exe), "--host", HOST, "--port", str(port), "--storage-path", ":memory:"]
    else:
        # -P: keep this folder off sys.path, or secantus.py here would shadow
        # the secantus package.
        argv = [_python_for(exe), "-P", str(_RUNNER), HOST, str(port), str(ttl_sweep_seconds)]
    # ":memory:" still makes a temp dir, removed only on a clean shutdown; a
    # private TMPDIR gets rid of it even after a SIGKILL.
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="secantus-tmp-") as tmp:
        env = {**os.environ, "TMPDIR": tmp}
        with run_server(
            "secantus", argv, port, env=env, ready=lambda: _pings(uri), timeout=timeout
        ):
            yield uri


@contextlib.contextmanager
def dedicated_secantus(port: int) -> Iterator[Any]:
    """A SecantusDB of the caller's own on `port`, so it can be stopped and paused (SIGSTOP).

    Yields the server's process; its data lives in memory and goes with it.
    """
    argv = [_python_for(_secantusd()), "-P", str(_RUNNER), HOST, str(port), "1"]
    uri = f"mongodb://{HOST}:{port}"
    with run_server("secantus-outage", argv, port, ready=lambda: _pings(uri), timeout=60) as proc:
        yield proc
