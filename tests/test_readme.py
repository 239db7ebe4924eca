"""The README's install lines and quick starts, run exactly as printed.

A copy of the checkout stands in for the user's: every `pip install` line of the Install
section and the quick starts runs there, into one fresh virtualenv (so each quick start has
only what the lines before it installed), then each quick start's code runs in that
virtualenv: the Flask app through its test client, the FastAPI app behind uvicorn over
real HTTP, the Django settings in a project of their own with the printed `manage.py`
commands and the printed `for_user` snippet.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services._process import free_port, run_server

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(heading: str) -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README section `## heading`."""
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return FENCE.findall(text[start : end if end != -1 else None])


def code(heading: str, language: str, index: int = 0) -> str:
    return [body for lang, body in blocks(heading) if lang == language][index]


def shell_lines(heading: str) -> list[str]:
    """The commands of the section's sh blocks, comments and blank lines dropped."""
    found = []
    for lang, body in blocks(heading):
        if lang == "sh":
            for line in body.splitlines():
                command = line.split("  #", 1)[0].strip()
                if command and not command.startswith("#"):
                    found.append(command)
    return found


def run(argv: list[str] | str, cwd: Path, env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        shell=isinstance(argv, str),
        capture_output=True,
        text=True,
        timeout=timeout,
        executable="/bin/bash" if isinstance(argv, str) else None,
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _checkout_copy(to: Path) -> Path:
    """The files git tracks (as they are in the working tree): what a clone holds."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A fresh virtualenv holding what the README's pip lines install, run as printed."""
    top = tmp_path_factory.mktemp("readme")
    checkout = _checkout_copy(top / "cloudsessions")
    env_dir = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    env = {**os.environ, "PATH": f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    lines = [
        *shell_lines("Install"),
        *(line for line in shell_lines("Django quick start") if line.startswith("pip ")),
        *shell_lines("Flask quick start"),
        *shell_lines("FastAPI / Starlette quick start"),
    ]
    assert sum(line.startswith("pip install") for line in lines) == 5, lines
    for line in lines:
        run(line, checkout, env)
    yield env_dir, env


def python(venv: tuple[Path, dict[str, str]]) -> str:
    return str(venv[0] / "bin" / "python")


def test_the_install_lines_install_each_extra_and_nothing_else(
    venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    script = "import importlib.util as u; print(sorted(n for n in NAMES if u.find_spec(n)))"
    names = ["django", "flask", "fastapi", "uvicorn", "boto3", "pymongo", "redis", "google"]
    found = run([python(venv), "-c", script.replace("NAMES", repr(names))], tmp_path, venv[1])
    # The quick starts' extras, and the wheel line's dynamodb; no other store's SDK.
    assert found.strip() == str(["boto3", "django", "fastapi", "flask", "uvicorn"])


def test_the_flask_quick_start_counts_views(
    venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    (tmp_path / "app.py").write_text(code("Flask quick start", "python"))
    driver = textwrap.dedent(
        """
        from app import app
        client = app.test_client()
        print(client.get("/").text, "|", client.get("/").text)
        """
    )
    assert run([python(venv), "-c", driver], tmp_path, venv[1]).strip() == "views: 1 | views: 2"
    assert (tmp_path / "sessions.sqlite3").is_file()


def test_the_fastapi_quick_start_counts_views_behind_uvicorn(
    venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    (tmp_path / "main.py").write_text(code("FastAPI / Starlette quick start", "python"))
    port = free_port()
    argv = [python(venv), "-m", "uvicorn", "main:app", "--port", str(port)]
    with run_server("readme-fastapi", argv, port, cwd=tmp_path, env=venv[1], timeout=60):
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        seen = [json.load(opener.open(f"http://127.0.0.1:{port}/", timeout=10)) for _ in "ab"]
    assert seen == [{"views": 1}, {"views": 2}]


def test_the_django_quick_start_settings_commands_and_snippet(
    venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    # The printed settings, with their "..." (the project's own entries) dropped.
    settings = "\n".join(
        [
            "from pathlib import Path",
            "BASE_DIR = Path(__file__).resolve().parent",
            "SECRET_KEY = 'readme-test-not-secret'",
            "ROOT_URLCONF = 'urls'",
            "USE_TZ = True",
            code("Django quick start", "python", 0),
            "INSTALLED_APPS = [app for app in INSTALLED_APPS if app is not ...]",
            "MIDDLEWARE = [name for name in MIDDLEWARE if name is not ...]",
        ]
    )
    (tmp_path / "settings.py").write_text(settings)
    (tmp_path / "urls.py").write_text("urlpatterns = []\n")
    (tmp_path / "manage.py").write_text(
        "import os, sys\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'settings')\n"
        "from django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    commands = [c for c in shell_lines("Django quick start") if c.startswith("python manage.py")]
    assert [c.split()[2:4] for c in commands] == [
        ["cloudsessions", "init"],
        ["cloudsessions", "check"],
    ]
    for command in commands:  # each exits 0: the store is set up, then ready
        run([python(venv), *shlex.split(command)[1:]], tmp_path, venv[1])
    assert (tmp_path / "sessions.sqlite3").is_file()

    # The printed for_user snippet, with a user who has two sessions, one of them current.
    driver = textwrap.dedent(
        """
        import os, types, django
        os.environ["DJANGO_SETTINGS_MODULE"] = "settings"
        django.setup()
        from cloudsessions.django.engine import SessionStore as Engine
        sessions = []
        for _ in range(2):
            s = Engine(); s["_auth_user_id"] = "7"; s.save(); sessions.append(s)
        user = types.SimpleNamespace(pk=7)
        request = types.SimpleNamespace(session=sessions[0])
        exec(SNIPPET)
        left = Engine.get_store().for_user(7)
        print(len(left), Engine().exists(sessions[0].session_key))
        """
    ).replace("SNIPPET", repr(code("Django quick start", "python", 1)))
    assert run([python(venv), "-c", driver], tmp_path, venv[1]).strip() == "1 True"
