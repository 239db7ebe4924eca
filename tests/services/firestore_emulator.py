"""Google's Firestore emulator, run through `gcloud emulators firestore start`."""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.request
from collections.abc import Iterator

from ._process import HOST, cache_dir, free_port, run_server


def _says_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        body: bytes = response.read()
    return body.strip() == b"Ok"


def wipe_firestore(host: str, project: str) -> None:
    """Delete every document of `project`'s (default) database on the emulator at `host`.

    `host` is the FIRESTORE_EMULATOR_HOST value ("127.0.0.1:PORT"). Much faster
    than restarting the emulator between tests.
    """
    url = f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents"
    with urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10):
        pass


@contextlib.contextmanager
def firestore_emulator(timeout: float = 90.0) -> Iterator[str]:
    """Run the Firestore emulator; yield "127.0.0.1:PORT" for FIRESTORE_EMULATOR_HOST."""
    gcloud = shutil.which("gcloud") or "/usr/bin/gcloud"
    port = free_port()
    host = f"{HOST}:{port}"
    env = dict(os.environ)
    # No prompts (CI has no stdin), and gcloud's own config/log files go to
    # the cache instead of the user's home.
    env["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
    env.setdefault("CLOUDSDK_CONFIG", str(cache_dir() / "gcloud-config"))
    argv = [gcloud, "emulators", "firestore", "start", f"--host-port={host}"]
    # gcloud runs the emulator as a java child: run_server stops the whole group.
    with run_server(
        "firestore-emulator",
        argv,
        port,
        env=env,
        ready=lambda: _says_ok(f"http://{host}/"),
        timeout=timeout,
    ):
        yield host
