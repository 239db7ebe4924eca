"""System checks: a wrong CLOUDSESSIONS setting is reported at startup, not on the first request.

Two levels, both tagged "cloudsessions" (``manage.py check --tag cloudsessions``):

- ``check_settings`` runs with every manage.py command and server start, so it stays
  offline: it reads the setting and builds the store without touching it (stores connect on
  first use), and reports every problem at once, each an Error with its fix.
- ``check_store`` is a deployment check: only ``manage.py check --deploy`` runs it. It asks
  the store itself (store.check(), what ``manage.py cloudsessions check`` prints) and reports
  a missing table, missing credentials, TTL not enabled... with the command that fixes them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from ..errors import ConfigurationError, StoreUnavailable
from .conf import read_settings, store_problems

TAG = "cloudsessions"
# One id per key, so that each can be looked up (and, if need be, silenced) on its own.
IDS = {
    None: "cloudsessions.E001",  # the setting as a whole: not a dict, unknown keys
    "STORE": "cloudsessions.E002",
    "OPTIONS": "cloudsessions.E003",
    "CACHE": "cloudsessions.E004",
    "USER_ID_KEY": "cloudsessions.E005",
    "ROTATE_ON_LOGIN": "cloudsessions.E006",
    "RETRY_AFTER": "cloudsessions.E007",
    "METADATA": "cloudsessions.E008",
    "MIGRATE_FROM": "cloudsessions.E009",
}
# Session metadata is on, but no middleware of ours records who makes each request.
NO_CLIENT = "cloudsessions.W002"
MIDDLEWARE = "cloudsessions.django.middleware.SessionMiddleware"
NOT_READY = "cloudsessions.E010"  # a check of the store failed: init creates what is missing
NOT_CHECKED = "cloudsessions.E011"  # the store could not be asked (credentials, network)
STORE_WARNING = "cloudsessions.W010"  # reported, not failed (e.g. a Redis that may evict)
INIT = "python manage.py cloudsessions init"
CHECK = "python manage.py cloudsessions check"


@register(TAG)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if getattr(settings, "SESSION_ENGINE", "") != "cloudsessions.django":
        messages.append(
            Warning(
                "cloudsessions.django is installed but SESSION_ENGINE is not"
                " 'cloudsessions.django'.",
                hint='Set SESSION_ENGINE = "cloudsessions.django".',
                id="cloudsessions.W001",
            )
        )
    read = read_settings()
    for problem in [*read.problems, *store_problems(read)]:
        messages.append(Error(problem.message, hint=problem.hint, id=IDS[problem.key]))
    if read.metadata is not None and _djangos_middleware_only():
        messages.append(
            Warning(
                "session metadata is on, but Django's own SessionMiddleware cannot record the"
                " device and address of a session: the sessions page will show neither.",
                hint=f'Use "{MIDDLEWARE}" in MIDDLEWARE in place of'
                " django.contrib.sessions.middleware.SessionMiddleware (a drop-in), or set"
                ' CLOUDSESSIONS["METADATA"] = False.',
                id=NO_CLIENT,
            )
        )
    return messages


def _djangos_middleware_only() -> bool:
    """Django's own SessionMiddleware serves the sessions (not ours, which records the
    client). No session middleware at all (a worker, a command-only project) is fine."""
    from django.contrib.sessions.middleware import SessionMiddleware as Djangos
    from django.utils.module_loading import import_string

    from .middleware import SessionMiddleware

    kinds = set()
    for path in getattr(settings, "MIDDLEWARE", None) or ():
        try:
            middleware = import_string(path)
        except ImportError:
            continue  # Django's own checks report a middleware that cannot be imported
        if isinstance(middleware, type) and issubclass(middleware, Djangos):
            kinds.add(issubclass(middleware, SessionMiddleware))
    return kinds == {False}


@register(TAG, deploy=True)
def check_store(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``manage.py check --deploy``: is the store ready to serve sessions?

    Never part of the ordinary checks: those run on every command and server start, and must
    not wait on a network or fail because a database is not reachable from a build machine.
    """
    read = read_settings()
    if read.problems or store_problems(read):
        return []  # check_settings reports them: there is no store to ask yet
    where = read.store_url
    try:
        store = read.store()  # the cache tiers' too, if configured (check pings their Redis)
        where = store.describe()
        results = store.check()
    except ConfigurationError as exc:
        # Credentials, permissions, region, a missing extra: the message names what to set.
        hint = f"Fix what it names, then run {CHECK}."
        return [Error(_about(where, exc), hint=hint, id=NOT_CHECKED)]
    except StoreUnavailable as exc:
        hint = f"Is the store running and reachable from here? Then run {CHECK}."
        return [Error(f"did not answer: {_about(where, exc)}", hint=hint, id=NOT_CHECKED)]
    except Exception as exc:  # noqa: BLE001 - a check reports; a crash would hide the others
        message = f"{where} could not be checked: {type(exc).__name__}: {exc}"
        return [Error(message, hint=f"Run {CHECK} to see where it fails.", id=NOT_CHECKED)]
    messages: list[CheckMessage] = []
    for result in results:  # one message per failed line of `manage.py cloudsessions check`
        if result.ok:
            continue
        if result.warning:
            messages.append(
                Warning(
                    f"{where}: {result.name}: {result.detail}",
                    hint=f"{CHECK} shows the whole report.",
                    id=STORE_WARNING,
                )
            )
        else:
            messages.append(
                Error(
                    f"{where}: {result.name} is not ready: {result.detail}",
                    hint=f"Run {INIT} (it creates what is missing and changes nothing else),"
                    f" then {CHECK}.",
                    id=NOT_READY,
                )
            )
    return messages


def _about(where: str, exc: Exception) -> str:
    # A store's own errors already start with its description.
    return str(exc) if str(exc).startswith(where) else f"{where}: {exc}"
