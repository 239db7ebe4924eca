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


SIGNED_IN = "Where you're signed in"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def test_the_django_sessions_page_and_admin_as_printed(
    venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    """The printed urls.py and admin.py in a project with Django's auth and admin."""
    (tmp_path / "settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "readme-test-not-secret"
            ROOT_URLCONF = "urls"
            USE_TZ = True
            ALLOWED_HOSTS = ["testserver"]
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
            INSTALLED_APPS = [
                "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
                "django.contrib.messages", "cloudsessions.django", "site_admin",
            ]
            SESSION_ENGINE = "cloudsessions.django"
            CLOUDSESSIONS = {"STORE": "sqlite:///sessions.sqlite3"}
            MIDDLEWARE = [
                "cloudsessions.django.middleware.SessionMiddleware",
                "django.middleware.csrf.CsrfViewMiddleware",
                "django.contrib.auth.middleware.AuthenticationMiddleware",
                "django.contrib.messages.middleware.MessageMiddleware",
            ]
            TEMPLATES = [{
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {"context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]},
            }]
            """
        )
    )
    urls = code(SIGNED_IN, "python", 0)
    (tmp_path / "urls.py").write_text(
        urls + "\nfrom django.contrib import admin\n"
        "urlpatterns.append(path('admin/', admin.site.urls))\n"
    )
    (tmp_path / "site_admin").mkdir()
    (tmp_path / "site_admin" / "__init__.py").write_text("")
    (tmp_path / "site_admin" / "admin.py").write_text(code(SIGNED_IN, "python", 1))
    driver = textwrap.dedent(
        """
        import os, django
        os.environ["DJANGO_SETTINGS_MODULE"] = "settings"
        django.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
        call_command("cloudsessions", "init", verbosity=0, stdout=open(os.devnull, "w"))
        from django.contrib.auth.models import User
        from django.test import Client
        ada = User.objects.create_superuser("ada", "ada@example.com", "pw")
        phone, laptop = Client(HTTP_USER_AGENT="curl/8.5.0"), Client(HTTP_USER_AGENT=FIREFOX_UA)
        for browser in (phone, laptop):  # signed in through the middleware, as people are
            form = {"username": "ada", "password": "pw", "next": "/admin/"}
            assert browser.post("/admin/login/", form).status_code == 302
        page = laptop.get("/account/sessions/").content.decode()
        admin = laptop.get(f"/admin/auth/user/{ada.pk}/sessions/")
        print("Firefox 133" in page, "curl 8" in page, admin.status_code)
        """
    ).replace("FIREFOX_UA", repr(FIREFOX))
    out = run([python(venv), "-c", driver], tmp_path, venv[1]).split()
    assert out == ["True", "True", "200"]


def test_the_flask_sessions_page_as_printed(
    venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    (tmp_path / "flask_site.py").write_text(code(SIGNED_IN, "python", 2))
    driver = textwrap.dedent(
        """
        import flask
        from flask_site import app

        @app.get("/login")
        def login():
            flask.session["_user_id"] = "ada"
            return "ok"

        browser = app.test_client()
        browser.get("/login", headers={"User-Agent": FIREFOX_UA})
        page = browser.get("/account/sessions/", headers={"User-Agent": FIREFOX_UA}).text
        anonymous = app.test_client().get("/account/sessions/")
        print("Firefox 133" in page, anonymous.status_code, anonymous.location)
        """
    ).replace("FIREFOX_UA", repr(FIREFOX))
    out = run([python(venv), "-c", driver], tmp_path, venv[1]).split()
    assert out[:2] == ["True", "302"] and out[2].startswith("/login")


def test_the_starlette_sessions_page_as_printed_behind_uvicorn(
    venv: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    (tmp_path / "starlette_site.py").write_text(code(SIGNED_IN, "python", 3))
    (tmp_path / "served.py").write_text(
        textwrap.dedent(
            """
            from starlette.responses import PlainTextResponse
            from starlette.routing import Route
            from starlette_site import app

            async def sign_in(request):
                request.session["_user_id"] = "ada"
                return PlainTextResponse("signed in")

            app.router.routes.append(Route("/login", sign_in))
            """
        )
    )
    port = free_port()
    argv = [python(venv), "-m", "uvicorn", "served:app", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with run_server("readme-starlette-page", argv, port, cwd=tmp_path, env=venv[1], timeout=60):
        jar = http.cookiejar.CookieJar()
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        browser.addheaders = [("User-Agent", FIREFOX)]
        browser.open(f"{base}/login", timeout=10).read()
        page = browser.open(f"{base}/account/sessions/", timeout=10).read().decode()
        anonymous = urllib.request.urlopen(f"{base}/account/sessions/", timeout=10)
        landed = (anonymous.geturl(), anonymous.read().decode())
    assert "Where you" in page and "Firefox 133 on Linux" in page
    assert landed[0].startswith(f"{base}/login") and landed[1] == "signed in"
