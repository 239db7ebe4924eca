"""Django session engine: ``SESSION_ENGINE = "cloudsessions.django"``.

Add ``"cloudsessions.django"`` to INSTALLED_APPS for the system checks and the
``manage.py cloudsessions`` command. The engine class is imported lazily, so naming this
package in settings imports nothing from Django's session machinery until it is used.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "SessionStore":
        from .engine import SessionStore

        return SessionStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
