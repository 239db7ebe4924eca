"""Django's own session tests, fetched from the sdist of the installed Django version.

The mixin lives in tests/sessions_tests/tests.py of Django's source distribution, not in
the wheel. It is downloaded once into the cache folder and never committed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CLOUDSESSIONS_CACHE", REPO / ".cache"))


def django_tests_path() -> Path:
    """A folder holding the `sessions_tests` package of this Django version."""
    version = django.__version__
    target = CACHE / f"django-{version}-tests"
    if (target / "sessions_tests" / "tests.py").exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as scratch:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"django=={version}",
                "--dest",
                scratch,
            ],
            check=True,
        )
        (sdist,) = Path(scratch).glob("*.tar.gz")
        prefix = f"{sdist.name.removesuffix('.tar.gz')}/tests/sessions_tests/"
        staging = Path(scratch) / "staging"
        with tarfile.open(sdist) as tar:
            members = [m for m in tar.getmembers() if m.name.lower().startswith(prefix.lower())]
            for member in members:
                member.name = "sessions_tests/" + member.name[len(prefix) :]
            tar.extractall(staging, members=members, filter="data")
        if not (staging / "sessions_tests" / "tests.py").exists():
            raise RuntimeError(f"{sdist.name} has no tests/sessions_tests/tests.py")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target
