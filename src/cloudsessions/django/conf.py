"""The CLOUDSESSIONS setting, read once per process (and again if a test overrides it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from ..errors import ConfigurationError
from ..outage import DEFAULT_RETRY_AFTER, check_retry_after
from ..registry import checked_cache, configured_store, default_store_url
from ..store import Store

SETTING = "CLOUDSESSIONS"
KNOWN = {"STORE", "OPTIONS", "CACHE", "USER_ID_KEY", "ROTATE_ON_LOGIN", "RETRY_AFTER"}
DEFAULT_USER_ID_KEY = "_auth_user_id"  # django.contrib.auth.SESSION_KEY


class Config:
    def __init__(self, raw: Mapping[str, Any]) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"settings.{SETTING} must be a dict, got {type(raw).__name__}")
        unknown = set(raw) - KNOWN
        if unknown:
            raise ConfigurationError(
                f"settings.{SETTING} has unknown key(s) {', '.join(sorted(unknown))};"
                f" known: {', '.join(sorted(KNOWN))}"
            )
        store = raw.get("STORE") or default_store_url()
        # A Store object is accepted as is: an app that builds its own (say, around a
        # client it already has) hands it over instead of a URL.
        self.store_object: Store | None = store if isinstance(store, Store) else None
        if self.store_object is None and not isinstance(store, str):
            raise ConfigurationError(
                f"settings.{SETTING}['STORE'] must be a store URL or a Store, got {store!r}"
            )
        self.store_url: str = store if isinstance(store, str) else store.describe()
        options = raw.get("OPTIONS") or {}
        if not isinstance(options, Mapping):
            raise ConfigurationError(f"settings.{SETTING}['OPTIONS'] must be a dict")
        self.options: dict[str, Any] = dict(options)
        self.cache = checked_cache(raw.get("CACHE"), f"settings.{SETTING}['CACHE']")
        self._store: Store | None = None
        self.user_id_key: str = raw.get("USER_ID_KEY", DEFAULT_USER_ID_KEY)
        rotate = raw.get("ROTATE_ON_LOGIN", True)
        if not isinstance(rotate, bool):
            raise ConfigurationError(f"settings.{SETTING}['ROTATE_ON_LOGIN'] must be True or False")
        self.rotate_on_login: bool = rotate
        self.retry_after: int | None = check_retry_after(
            raw.get("RETRY_AFTER", DEFAULT_RETRY_AFTER), f"settings.{SETTING}['RETRY_AFTER']"
        )

    def store(self) -> Store:
        # Looked up once: every request asks, and the answer holds until settings change.
        if self._store is None:
            self._store = configured_store(
                self.store_object or self.store_url, self.options, self.cache
            )
        return self._store


_config: Config | None = None


def config() -> Config:
    global _config
    if _config is None:
        _config = Config(getattr(settings, SETTING, {}))
    return _config


@receiver(setting_changed)
def _forget_config(*, setting: str, **kwargs: Any) -> None:
    global _config
    if setting == SETTING:
        _config = None
