"""A store's options as a typed, frozen dataclass: each option and its default written once.

Options arrive as strings (a URL's query) or typed values (settings, keyword arguments);
`parse_options` converts each by the field's type and refuses unknown names, so a typo
never passes silently. Checks that span options go in the dataclass's __post_init__.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..deadline import DEFAULT as DEFAULT_DEADLINE
from ..errors import ConfigurationError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoreOptions:
    """Options every store takes; a store's own options subclass this."""

    # Lower than the store's own item limit (never higher): 0 or None means that limit.
    max_record_bytes: int | None = None
    # Seconds of store time one request may spend, retries included (cloudsessions.deadline).
    deadline: float = DEFAULT_DEADLINE

    def __post_init__(self) -> None:
        if not self.deadline > 0:
            raise ConfigurationError(
                f"option deadline must be a number of seconds > 0, got {self.deadline!r}"
            )


Opts = TypeVar("Opts", bound="DataclassInstance")  # a store's options, or the cache's


def parse_options(options_type: type[Opts], kind: str, values: Mapping[str, Any]) -> Opts:
    """`options_type` built from `values`, each converted by its field's annotation."""
    hints = typing.get_type_hints(options_type)
    known = {f.name for f in dataclasses.fields(options_type) if f.init}
    unknown = set(values) - known
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) for the {kind} store: {', '.join(sorted(unknown))};"
            f" known: {', '.join(sorted(known))}"
        )
    converted = {name: _convert(kind, name, value, hints[name]) for name, value in values.items()}
    return options_type(**converted)


def _convert(kind: str, name: str, value: Any, hint: Any) -> Any:
    optional = typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(hint)
    )
    if optional:
        if value is None or value == "":
            return None
        others = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = others[0] if len(others) == 1 else Any
    if hint is bool:
        return _flag(kind, name, value)
    if hint in (int, float):
        return _number(kind, name, value, hint)
    if hint is str:
        return str(value)
    return value  # objects handed over in settings (clients, callables) pass as given


def _fail(kind: str, name: str, value: Any, expected: str) -> ConfigurationError:
    return ConfigurationError(
        f"option {name!r} of the {kind} store must be {expected}, got {value!r}"
    )


def _number(kind: str, name: str, value: Any, hint: type[int] | type[float]) -> int | float:
    expected = "an integer" if hint is int else "a number"
    if isinstance(value, bool):
        raise _fail(kind, name, value, expected)
    try:
        number = hint(value)
    except (TypeError, ValueError):
        raise _fail(kind, name, value, expected) from None
    if number < 0:
        raise _fail(kind, name, value, f"{expected} >= 0")
    return number


def _flag(kind: str, name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _fail(kind, name, value, "true or false")
