"""The CLOUDSESSIONS setting, read once per process (and again if a test overrides it).

Reading it collects every problem instead of stopping at the first: the system check reports
them all at once (each with its fix), and a request raises them all in one
ConfigurationError. A value at fault is replaced by its default, so the keys after it are
still read and checked.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..errors import ConfigurationError
from ..metadata import MetadataSettings
from ..migration import Migration, Source
from ..migration.django_engines import DjangoEngineSource
from ..outage import DEFAULT_RETRY_AFTER, check_retry_after
from ..registry import checked_cache, configured_store, default_store_url, open_store
from ..store import Store, StoreURL

SETTING = "CLOUDSESSIONS"
KNOWN = {
    "STORE",
    "OPTIONS",
    "CACHE",
    "USER_ID_KEY",
    "ROTATE_ON_LOGIN",
    "RETRY_AFTER",
    "METADATA",
    "MIGRATE_FROM",
}
DEFAULT_USER_ID_KEY = "_auth_user_id"  # django.contrib.auth.SESSION_KEY

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with settings.CLOUDSESSIONS; `key` is None for the setting as a whole."""

    key: str | None
    message: str
    hint: str


def setting_name(key: str | None) -> str:
    return f"settings.{SETTING}" if key is None else f"settings.{SETTING}[{key!r}]"


def anchored(url: str, base_dir: object) -> str:
    """A relative ``sqlite:///`` path made absolute under settings.BASE_DIR.

    Relative to the current directory, ``manage.py cloudsessions check`` run from another
    directory (or a server started elsewhere) would look for, or create, another file.
    Absolute paths, ``:memory:`` and other stores' URLs are returned as they are.
    """
    if not base_dir:
        return url
    parsed = StoreURL.parse(url)
    relative = parsed.path[1:]
    if parsed.scheme != "sqlite" or parsed.netloc or relative in ("", ":memory:"):
        return url
    if Path(relative).is_absolute():
        return url
    path = (Path(str(base_dir)) / relative).as_posix()
    _, mark, query = url.partition("?")
    # StoreURL.parse unquotes the path: quote what a directory name may hold (%, ?, #).
    return f"sqlite:///{quote(path, safe='/:')}{mark}{query}"


class Config:
    """The setting, read: what is usable, and in `problems` everything that is not."""

    def __init__(self, raw: object, *, base_dir: object = None) -> None:
        self.problems: list[Problem] = []
        if not isinstance(raw, Mapping):
            self._problem(
                None,
                f"{setting_name(None)} must be a dict, got {type(raw).__name__}",
                f'{setting_name(None)} = {{"STORE": "sqlite:///sessions.sqlite3"}}',
            )
            raw = {}
        self._unknown_keys(raw)
        store = raw.get("STORE") or default_store_url()
        # A Store object is accepted as is: an app that builds its own (say, around a
        # client it already has) hands it over instead of a URL.
        self.store_object: Store | None = store if isinstance(store, Store) else None
        if self.store_object is None and not isinstance(store, str):
            self._problem(
                "STORE",
                f"{setting_name('STORE')} must be a store URL or a Store, got {store!r}",
                'A URL such as "sqlite:///sessions.sqlite3" or "dynamodb://TABLE?region=REGION".',
            )
            store = default_store_url()
        self.store_url: str = (
            anchored(store, base_dir) if isinstance(store, str) else store.describe()
        )
        options = raw.get("OPTIONS") or {}
        if not isinstance(options, Mapping):
            self._problem(
                "OPTIONS",
                f"{setting_name('OPTIONS')} must be a dict, got {type(options).__name__}",
                'Store options by name, e.g. {"timeout": 10}.',
            )
            options = {}
        self.options: dict[str, Any] = dict(options)
        self.cache = self._checked(
            "CACHE",
            lambda: checked_cache(raw.get("CACHE"), setting_name("CACHE")),
            None,
            'e.g. {"redis": "redis://localhost:6379/0"} or {"max_staleness": 30};'
            " see docs/cache.md.",
        )
        user_id_key = raw.get("USER_ID_KEY", DEFAULT_USER_ID_KEY)
        if user_id_key is not None and not isinstance(user_id_key, str):
            self._problem(
                "USER_ID_KEY",
                f"{setting_name('USER_ID_KEY')} must be a string or None, got {user_id_key!r}",
                f"The session key holding the user id ({DEFAULT_USER_ID_KEY!r} for Django's"
                " auth), or None to record none.",
            )
            user_id_key = DEFAULT_USER_ID_KEY
        self.user_id_key: str | None = user_id_key
        rotate = raw.get("ROTATE_ON_LOGIN", True)
        if not isinstance(rotate, bool):
            self._problem(
                "ROTATE_ON_LOGIN",
                f"{setting_name('ROTATE_ON_LOGIN')} must be True or False, got {rotate!r}",
                "True (the default) moves the session to a new id when its user changes.",
            )
            rotate = True
        self.rotate_on_login: bool = rotate
        metadata: MetadataSettings | None = MetadataSettings()
        self.metadata = self._checked(
            "METADATA",
            lambda: MetadataSettings.parse(raw.get("METADATA", True), setting_name("METADATA")),
            metadata,
            "True (the default), False, or a dict such as"
            ' {"ip": False} or {"truncate_ip": False}; see docs/signed-in.md.',
        )
        retry_after: int | None = DEFAULT_RETRY_AFTER
        self.retry_after = self._checked(
            "RETRY_AFTER",
            lambda: check_retry_after(
                raw.get("RETRY_AFTER", DEFAULT_RETRY_AFTER), setting_name("RETRY_AFTER")
            ),
            retry_after,
            "Whole seconds for the 503's Retry-After header, or None for no header.",
        )
        migration: Migration | None = None
        self.migration = self._checked(
            "MIGRATE_FROM",
            lambda: engine_migration(raw.get("MIGRATE_FROM")),
            migration,
            'The SESSION_ENGINE you are leaving, e.g. "django.contrib.sessions.backends.db",'
            " or a cloudsessions.migration.Source; see docs/migrating.md.",
        )
        self._store: Store | None = None

    def _problem(self, key: str | None, message: str, hint: str) -> None:
        self.problems.append(Problem(key, message, hint))

    def _unknown_keys(self, raw: Mapping[Any, Any]) -> None:
        unknown = sorted(str(k) for k in set(raw) - KNOWN)
        if not unknown:
            return
        guesses = [
            f"{close[0]} (not {name})"
            for name in unknown
            if (close := difflib.get_close_matches(name.upper(), KNOWN, n=1))
        ]
        self._problem(
            None,
            f"{setting_name(None)} has unknown key(s) {', '.join(unknown)}",
            (f"Did you mean {', '.join(guesses)}? " if guesses else "")
            + f"Known keys: {', '.join(sorted(KNOWN))}.",
        )

    def _checked(self, key: str, read: Callable[[], T], default: T, hint: str) -> T:
        # The shared validators raise; here their message becomes one problem among others.
        try:
            return read()
        except ConfigurationError as exc:
            self._problem(key, str(exc), hint)
            return default

    def store(self) -> Store:
        # Looked up once: every request asks, and the answer holds until settings change.
        if self._store is None:
            self._store = configured_store(
                self.store_object or self.store_url, self.options, self.cache
            )
        return self._store


def store_problems(read: Config) -> list[Problem]:
    """STORE and OPTIONS, checked by building the store (which touches nothing until used).

    The URL is built alone first, so that a bad URL and a bad option are two problems; the
    options are then tried on the URL without its ?query, when that much of it is valid.
    """
    if read.store_object is not None:
        return []  # built by the application: it checked its own arguments
    problems: list[Problem] = []
    url_error = _build_error(read.store_url)
    bare_url = read.store_url.partition("?")[0]
    options_checkable = url_error is None or _build_error(bare_url) is None
    if url_error is not None:
        unchecked = read.options and not options_checkable
        later = " OPTIONS are checked once STORE is valid." if unchecked else ""
        problems.append(
            Problem(
                "STORE",
                url_error,
                f"Fix {setting_name('STORE')}, e.g. sqlite:///sessions.sqlite3 or"
                f" dynamodb://TABLE?region=REGION.{later}",
            )
        )
    if read.options and options_checkable:
        on_url = read.store_url if url_error is None else bare_url
        options_error = _build_error(on_url, read.options)
        if options_error is not None:
            problems.append(
                Problem(
                    "OPTIONS",
                    f"{setting_name('OPTIONS')}: {options_error}",
                    f"Fix {setting_name('OPTIONS')}; its options override the URL's ?query.",
                )
            )
    return problems


def _build_error(url: str, options: dict[str, Any] | None = None) -> str | None:
    try:
        open_store(url, **(options or {})).close()
    except ConfigurationError as exc:
        return str(exc)
    return None


def problems_error(problems: list[Problem]) -> ConfigurationError:
    """Every problem in one error, for the request that finds the setting wrong."""
    if len(problems) == 1:
        return ConfigurationError(problems[0].message)
    listed = "; ".join(p.message for p in problems)
    return ConfigurationError(f"{len(problems)} problems: {listed}")


def read_settings() -> Config:
    """settings.CLOUDSESSIONS read now, problems and all (the system checks' view)."""
    return Config(getattr(settings, SETTING, {}), base_dir=getattr(settings, "BASE_DIR", None))


_config: Config | None = None


def engine_migration(value: object) -> Migration | None:
    """The read-through MIGRATE_FROM names: a Source, or a SESSION_ENGINE path."""
    if value is None:
        return None
    if isinstance(value, Source):
        return Migration(value)
    if not isinstance(value, str) or not value:
        raise ConfigurationError(
            f"{setting_name('MIGRATE_FROM')} must be a session engine path or a Source,"
            f" got {value!r}"
        )
    if value.split(".")[0] == "cloudsessions":
        raise ConfigurationError(
            f"{setting_name('MIGRATE_FROM')} names cloudsessions itself: name the engine"
            " the sessions come from"
        )
    try:
        importlib.import_module(value).SessionStore  # noqa: B018 - the engine's class
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(
            f"{setting_name('MIGRATE_FROM')} = {value!r} is not a session engine: {exc}"
        ) from exc
    return Migration(DjangoEngineSource(value))


def config() -> Config:
    """The setting as the engine uses it; a wrong setting raises, naming every problem."""
    global _config
    if _config is None:
        read = read_settings()
        if read.problems:
            # With the URL's and the options' (found by building the store): the request
            # names them all. A right setting skips this; a wrong URL alone is raised by
            # building the store, as usual.
            raise problems_error(read.problems + store_problems(read))
        _config = read
    return _config


@receiver(setting_changed)
def _forget_config(*, setting: str, **kwargs: Any) -> None:
    global _config
    if setting in (SETTING, "BASE_DIR"):
        _config = None
