"""Reading store options that may come as strings (URL query) or typed values (settings)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Options:
    """The options of one store; unknown names are an error, so typos do not pass silently."""

    def __init__(self, kind: str, values: Mapping[str, Any], known: set[str]) -> None:
        unknown = set(values) - known
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) for the {kind} store: {', '.join(sorted(unknown))};"
                f" known: {', '.join(sorted(known))}"
            )
        self.kind = kind
        self.values = dict(values)

    def _fail(self, name: str, expected: str) -> ConfigurationError:
        return ConfigurationError(
            f"option {name!r} of the {self.kind} store must be {expected},"
            f" got {self.values[name]!r}"
        )

    def get(self, name: str, default: Any = None) -> Any:
        return self.values.get(name, default)

    def text(self, name: str, default: str) -> str:
        return str(self.values.get(name, default))

    def number(self, name: str, default: float) -> float:
        if name not in self.values:
            return default
        try:
            value = float(self.values[name])
        except (TypeError, ValueError):
            raise self._fail(name, "a number") from None
        if value < 0:
            raise self._fail(name, "a number >= 0")
        return value

    def integer(self, name: str, default: int) -> int:
        if name not in self.values:
            return default
        try:
            value = int(self.values[name])
        except (TypeError, ValueError):
            raise self._fail(name, "an integer") from None
        if value < 0:
            raise self._fail(name, "an integer >= 0")
        return value

    def flag(self, name: str, default: bool) -> bool:
        if name not in self.values:
            return default
        value = self.values[name]
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise self._fail(name, "true or false")
