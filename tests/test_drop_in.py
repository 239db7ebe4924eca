"""The drop-in promise, checked by the frameworks' own tests rather than by ours.

Starlette's tests/middleware/test_session.py, with only its import line changed to
cloudsessions.asgi, must pass on asyncio and on trio; Flask's session tests must pass with
CloudSessions(app) installed on their `app` fixture. Both come from the sdists of the
installed versions and run in a subprocess pytest (tests/framework_suites.py), on SQLite and
on one network store, handed over as CLOUDSESSIONS_STORE: neither test file names a store.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import stores
from tests.framework_suites import junit_key, run_flask, run_starlette

# Starlette 1.10.0: 14 tests through the test client, each on asyncio and on trio, and
# test_session_tracks_modification, which needs no event loop. A count, not a list of
# names, is enough here: the whole file runs, and a test added upstream changes the count.
STARLETTE_TESTS = 29

# Every Flask test (3.1.3) that reads or writes a session through the app's own session
# interface, named one by one so that a test added upstream cannot change what passes
# unnoticed. Left out: tests that install a session interface of their own
# (test_reqctx.py::test_session_error_pops_context, ::test_session_dynamic_cookie_name,
# test_session_interface.py), and test_reqctx.py::TestGreenletContextCopying, which Flask
# itself skips unless greenlet is installed, which it is not here.
FLASK_SESSION_TESTS = [
    "tests/test_basic.py::test_session_accessed",
    "tests/test_basic.py::test_session_path",
    "tests/test_basic.py::test_session_using_application_root",
    "tests/test_basic.py::test_session_using_session_settings",
    "tests/test_basic.py::test_session_using_samesite_attribute",
    "tests/test_basic.py::test_session_expiration",
    "tests/test_basic.py::test_session_stored_last",
    "tests/test_basic.py::test_session_special_types",
    "tests/test_basic.py::test_session_cookie_setting",
    "tests/test_basic.py::test_session_vary_cookie",
    "tests/test_basic.py::test_session_refresh_vary",
    "tests/test_basic.py::test_flashes",
    "tests/test_basic.py::test_extended_flashing",
    "tests/test_converters.py::test_context_available",
    "tests/test_helpers.py::TestStreaming::test_stream_keeps_session",
    "tests/test_helpers.py::TestStreaming::test_async_view",
    "tests/test_signals.py::test_flash_signal",
    "tests/test_templating.py::test_standard_context",
    "tests/test_testing.py::test_redirect_session",
    "tests/test_testing.py::test_session_transactions",
    "tests/test_testing.py::test_session_transactions_keep_context",
    "tests/test_testing.py::test_session_transaction_needs_cookies",
]

# The only Flask session tests that do not apply: each is about Flask signing its cookie
# with SECRET_KEY. They still run, as skips carrying these reasons, so that a rename
# upstream fails here instead of silently dropping one.
FLASK_NOT_APPLICABLE = {
    "tests/test_basic.py::test_missing_session": (
        "with SECRET_KEY unset, Flask's signed cookie cannot be made, so Flask opens a"
        " NullSession that refuses writes; cloudsessions ids are random and unsigned,"
        " so sessions work without SECRET_KEY"
    ),
    "tests/test_basic.py::test_session_secret_key_fallbacks": (
        "rotates SECRET_KEY and SECRET_KEY_FALLBACKS and expects a cookie signed with a"
        " retired key to load as an empty session; the cloudsessions cookie is an"
        " unsigned random id that no key rotation invalidates"
    ),
    "tests/test_testing.py::test_session_transactions_no_null_sessions": (
        "expects session_transaction to fail on the NullSession Flask opens when"
        " SECRET_KEY is missing; cloudsessions needs no key and never opens a NullSession"
    ),
}


def _drop_in_stores() -> list[str]:
    """SQLite and one network store (MongoDB if it is in use), of the stores in use."""
    network = [n for n in stores.STORE_NAMES if n != "sqlite"]
    if "mongodb" in network:
        network = ["mongodb"]
    return [n for n in stores.STORE_NAMES if n == "sqlite"] + network[:1]


@pytest.fixture(params=_drop_in_stores())
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """CLOUDSESSIONS_STORE naming a fresh store; its server, if any, runs in this process."""
    folder = tmp_path / "store"
    folder.mkdir()
    return {"CLOUDSESSIONS_STORE": stores.store_url(request.param, folder)}


def test_starlette_session_tests(store_env: dict[str, str], tmp_path: Path) -> None:
    run = run_starlette(tmp_path, store_env)
    assert run.returncode == 0, run.summary()
    assert (run.failed, run.errors, run.skipped) == ([], [], {}), run.summary()
    assert len(run.passed) == STARLETTE_TESTS, run.summary()


def test_flask_session_tests(store_env: dict[str, str], tmp_path: Path) -> None:
    run = run_flask(tmp_path, store_env, FLASK_SESSION_TESTS, FLASK_NOT_APPLICABLE)
    assert run.returncode == 0, run.summary()
    assert (run.failed, run.errors) == ([], []), run.summary()
    assert sorted(run.passed) == sorted(map(junit_key, FLASK_SESSION_TESTS)), run.summary()
    assert run.skipped == {
        junit_key(test): f"not applicable: {reason}"
        for test, reason in FLASK_NOT_APPLICABLE.items()
    }, run.summary()
