"""System checks: a wrong CLOUDSESSIONS setting is reported at startup, not on the first request.

They validate configuration only and never call the store (checks run on every manage.py
command); `manage.py cloudsessions check` is the one that talks to the store.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from ..errors import ConfigurationError
from ..registry import open_store
from .conf import SETTING, Config


@register()
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
    try:
        config = Config(getattr(settings, SETTING, {}))
        if config.store_object is None:
            # Stores touch nothing until first used, so building one here is safe and
            # validates the URL and every option.
            open_store(config.store_url, **config.options).close()
    except ConfigurationError as exc:
        messages.append(Error(str(exc), hint=f"Fix settings.{SETTING}.", id="cloudsessions.E001"))
    return messages
