"""The Django side of configuration: system checks (every problem at once; the store itself
under --deploy, against real stores), relative SQLite paths under BASE_DIR, and Django's
common options anywhere on a `manage.py cloudsessions` line, through call_command and a real
manage.py process."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core import checks, management
from django.core.management import CommandError
from django.test import override_settings

from cloudsessions import ConfigurationError, open_store
from cloudsessions.django.conf import anchored, config
from cloudsessions.django.engine import SessionStore
from cloudsessions.django.management.commands.cloudsessions import Command
from tests import stores
from tests.stores import unique_name

dynamodb = stores.backend("dynamodb")


def ours(*, deploy: bool = False) -> dict[str, Any]:
    """The cloudsessions messages of the system checks, by id (the last one of each id)."""
    found = checks.run_checks(include_deployment_checks=deploy, tags=["cloudsessions"])
    return {m.id: m for m in found if (m.id or "").startswith("cloudsessions.")}


def messages(*, deploy: bool = False) -> list[str]:
    found = checks.run_checks(include_deployment_checks=deploy, tags=["cloudsessions"])
    return [f"{m.id} {m.msg}" for m in found]


# ------------------------------------------------------------ every problem at once


def test_every_configuration_problem_is_reported_at_once_each_with_its_fix() -> None:
    wrong = {
        "STORES": "sqlite:///x.db",
        "STORE": "sqlite:///x.db?timeout=soon",
        "OPTIONS": {"timout": 3},
        "CACHE": {"max_stalenes": 30},
        "ROTATE_ON_LOGIN": "yes",
    }
    with override_settings(CLOUDSESSIONS=wrong):
        found = ours()
        with pytest.raises(ConfigurationError, match="5 problems") as raised:
            SessionStore()
    expected = {
        "cloudsessions.E001": "unknown key(s) STORES",
        "cloudsessions.E002": "option 'timeout' of the sqlite store must be a number",
        "cloudsessions.E003": "unknown option(s) for the sqlite store: timout",
        "cloudsessions.E004": "max_stalenes",
        "cloudsessions.E006": "ROTATE_ON_LOGIN'] must be True or False",
    }
    assert set(found) == set(expected)
    for check_id, fragment in expected.items():
        assert fragment in found[check_id].msg
        assert found[check_id].hint, f"{check_id} has a hint"
        assert fragment in str(raised.value), "a request names every problem too"
    assert "STORE (not STORES)" in found["cloudsessions.E001"].hint


def test_metadata_without_our_middleware_is_a_warning_and_a_wrong_value_an_error() -> None:
    assert "cloudsessions.W002" not in ours()  # the test settings use our middleware
    djangos = ["django.contrib.sessions.middleware.SessionMiddleware"]
    with override_settings(MIDDLEWARE=djangos):
        warned = ours()["cloudsessions.W002"]
        assert "cannot record the device and address" in warned.msg
        assert "cloudsessions.django.middleware.SessionMiddleware" in warned.hint
        with override_settings(CLOUDSESSIONS={"METADATA": False}):
            assert "cloudsessions.W002" not in ours()
    with override_settings(CLOUDSESSIONS={"METADATA": {"address": True}}):
        wrong = ours()["cloudsessions.E008"]
    assert "unknown key(s) address" in wrong.msg and "truncate_ip" in wrong.msg


def test_options_are_checked_once_the_url_can_be(tmp_path: Path) -> None:
    with override_settings(CLOUDSESSIONS={"STORE": "postgres://db", "OPTIONS": {"timout": 3}}):
        found = ours()
    assert set(found) == {"cloudsessions.E002"}
    assert "unknown store URL scheme" in found["cloudsessions.E002"].msg
    assert "OPTIONS are checked once STORE is valid" in found["cloudsessions.E002"].hint


def test_a_wrong_setting_is_one_line_from_the_command_not_a_traceback() -> None:
    wrong = override_settings(CLOUDSESSIONS={"STORE": "postgres://db"})
    with wrong, pytest.raises(CommandError, match="unknown store URL scheme"):
        management.call_command("cloudsessions", "check", stdout=StringIO())
    with pytest.raises(CommandError, match="must look like sqlite:///"):
        management.call_command("cloudsessions", "check", "--store", "sqlite://host/x.db")


# ------------------------------------------------------------ the store, under --deploy


def test_a_missing_table_is_an_error_under_deploy_and_init_fixes_it(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    sqlite3.connect(path).close()  # the file exists, the table does not
    with override_settings(CLOUDSESSIONS={"STORE": f"sqlite:///{path}"}):
        assert ours() == {}, "ordinary checks never ask the store"
        found = ours(deploy=True)
        assert set(found) == {"cloudsessions.E010"}
        assert "manage.py cloudsessions init" in found["cloudsessions.E010"].hint
        assert "cloudsessions.E010 sqlite file" in messages(deploy=True)[0]
        assert any("table is not ready" in m for m in messages(deploy=True))
        management.call_command("cloudsessions", "init", stdout=StringIO())
        assert ours(deploy=True) == {}


def test_ordinary_checks_stay_offline(tmp_path: Path) -> None:
    """A store that cannot answer delays no command: only --deploy asks it."""
    dynamodb.fake_credentials()
    url = dynamodb.table_url(unique_name(), "http://127.0.0.1:9")  # nothing listens there
    path = tmp_path / "never.sqlite3"
    for store in (f"{url}&max_attempts=1", f"sqlite:///{path}"):
        with override_settings(CLOUDSESSIONS={"STORE": store}):
            started = time.monotonic()
            assert ours() == {}
            assert time.monotonic() - started < 1
    assert not path.exists()
    with override_settings(CLOUDSESSIONS={"STORE": f"{url}&max_attempts=1"}):
        found = ours(deploy=True)
    assert set(found) == {"cloudsessions.E011"}
    assert "did not answer" in found["cloudsessions.E011"].msg


@pytest.fixture
def dynamodb_endpoint() -> str:
    return str(dynamodb.endpoint(stores.services()))


@pytest.fixture
def new_table(dynamodb_endpoint: str) -> Iterator[str]:
    """The URL of a DynamoDB Local table that does not exist yet; dropped afterwards."""
    url = dynamodb.table_url(unique_name("checked"), dynamodb_endpoint)
    yield url
    store = open_store(url)
    store.drop()
    store.close()


def test_a_missing_dynamodb_table_is_an_error_under_deploy(new_table: str) -> None:
    with override_settings(CLOUDSESSIONS={"STORE": new_table}):
        found = ours(deploy=True)
        assert set(found) == {"cloudsessions.E010"}
        assert "not found" in found["cloudsessions.E010"].msg
        management.call_command("cloudsessions", "init", stdout=StringIO())
        assert ours(deploy=True) == {}


def test_ttl_not_enabled_is_an_error_under_deploy(new_table: str, dynamodb_endpoint: str) -> None:
    # As another tool makes it: the key, no user index, no TTL.
    raw = boto3.client("dynamodb", endpoint_url=dynamodb_endpoint, region_name=dynamodb.REGION)
    raw.create_table(
        TableName=new_table.split("://")[1].split("?")[0],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with override_settings(CLOUDSESSIONS={"STORE": new_table}):
        errors = messages(deploy=True)
    ttl = [m for m in errors if "time to live is not ready" in m]
    assert len(ttl) == 1 and "DISABLED" in ttl[0] and ttl[0].startswith("cloudsessions.E010")
    assert any("user index is not ready" in m for m in errors)


def test_missing_credentials_are_an_error_under_deploy(
    new_table: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with override_settings(CLOUDSESSIONS={"STORE": new_table}):
        found = ours(deploy=True)
    assert set(found) == {"cloudsessions.E011"}
    assert "AWS_ACCESS_KEY_ID" in found["cloudsessions.E011"].msg


# ------------------------------------------------------------ SQLite paths and BASE_DIR


def test_a_relative_sqlite_path_is_under_base_dir(tmp_path: Path) -> None:
    with override_settings(BASE_DIR=tmp_path, CLOUDSESSIONS={"STORE": "sqlite:///s.sqlite3"}):
        assert config().store_url == f"sqlite:///{tmp_path}/s.sqlite3"
        assert str(tmp_path / "s.sqlite3") in SessionStore.get_store().describe()
    with override_settings(CLOUDSESSIONS={"STORE": "sqlite:///s.sqlite3"}):
        assert config().store_url == "sqlite:///s.sqlite3", "no BASE_DIR: as given"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///db/s.sqlite3?timeout=3", "sqlite:////base%20dir/db/s.sqlite3?timeout=3"),
        ("sqlite:////abs/s.sqlite3", "sqlite:////abs/s.sqlite3"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("dynamodb://sessions?region=eu-west-1", "dynamodb://sessions?region=eu-west-1"),
    ],
)
def test_only_relative_sqlite_paths_move(url: str, expected: str) -> None:
    assert anchored(url, Path("/base dir")) == expected


# ------------------------------------------------------------ Django's options anywhere


def test_djangos_options_are_accepted_after_the_operation(tmp_path: Path) -> None:
    parser = Command().create_parser("manage.py", "cloudsessions")
    assert parser.parse_args(["check", "-v", "3"]).verbosity == 3
    assert parser.parse_args(["-v", "2", "check"]).verbosity == 2, "not reset by the operation"
    assert parser.parse_args(["check"]).verbosity == 1
    with override_settings(CLOUDSESSIONS={"STORE": f"sqlite:///{tmp_path / 'o.db'}"}):
        out = StringIO()
        management.call_command(
            "cloudsessions", "init", "--verbosity", "2", "--skip-checks", "--no-color", stdout=out
        )
        assert "ok   table" in out.getvalue()


def test_manage_py_with_settings_after_the_operation_from_any_directory(tmp_path: Path) -> None:
    """A real project: `--settings` and `--pythonpath` after the operation, and commands run
    from two other directories find one SQLite file, under BASE_DIR."""
    project, first, second = tmp_path / "project", tmp_path / "one", tmp_path / "two"
    for folder in (project, first, second):
        folder.mkdir()
    (project / "site_settings.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            BASE_DIR = Path(__file__).resolve().parent
            SECRET_KEY = "not-secret"
            INSTALLED_APPS = ["cloudsessions.django"]
            SESSION_ENGINE = "cloudsessions.django"
            CLOUDSESSIONS = {"STORE": "sqlite:///sessions.sqlite3"}
            """
        )
    )
    (project / "manage.py").write_text(
        "import sys\nfrom django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
        )

    init = run(
        first, "-m", "django", "cloudsessions", "init", "--pythonpath", str(project),
        "--settings", "site_settings", "--verbosity", "2", "--skip-checks", "--no-color",
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    assert (project / "sessions.sqlite3").exists() and not list(first.iterdir())
    check = run(
        second, str(project / "manage.py"), "cloudsessions", "check",
        "--settings=site_settings", "--traceback", "--force-color",
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok   table" in check.stdout and not list(second.iterdir())


def test_manage_py_help_cloudsessions_reads_like_the_clis_manual() -> None:
    from cloudsessions.django.management.commands.cloudsessions import Command

    text = Command().create_parser("manage.py", "cloudsessions").format_help()
    for part in ("the store:", "exit status:", "examples:", "settings.CLOUDSESSIONS"):
        assert part in text
    assert "  2    a wrong setting or --store URL" in text, "the blocks keep their layout"
