"""Django's own session tests, fetched from the sdist of the installed Django version.

The mixin lives in tests/sessions_tests/tests.py of Django's source distribution, not in
the wheel. It is downloaded once into the cache folder and never committed.
"""

from __future__ import annotations

from pathlib import Path

from tests.framework_suites import sdist_files


def django_tests_path() -> Path:
    """A folder holding the `sessions_tests` package of this Django version."""
    return sdist_files("django", ["tests/sessions_tests/"], strip="tests/")
