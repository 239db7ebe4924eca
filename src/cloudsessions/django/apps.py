from __future__ import annotations

from django.apps import AppConfig


class CloudSessionsConfig(AppConfig):
    name = "cloudsessions.django"
    label = "cloudsessions"
    verbose_name = "cloudsessions"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
