"""SDK errors become ours by data: a store lists its `ErrorKind`s, the base applies them.

    error_kinds = (
        ErrorKind(sqlite3.OperationalError, StoreUnavailable),
        ErrorKind(ClientError, ConfigurationError, "run `cloudsessions init`",
                  when=lambda e: code(e) == "ResourceNotFoundException"),
    )

The first kind whose SDK type matches (and whose `when` holds) decides. The message is
"<store>: could not <what>: <SDK's message>[; <hint>]"; the hint may name the store's
attributes as {store.attribute}. SessionTooLarge is built with the store's limit (a write
that other keys grew past the limit). Errors no kind matches propagate unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CloudSessionsError, SessionTooLarge

if TYPE_CHECKING:
    from .contract import Store


@dataclass(frozen=True)
class ErrorKind:
    sdk: type[BaseException] | tuple[type[BaseException], ...]
    ours: type[CloudSessionsError]
    hint: str = ""
    when: Callable[[BaseException], bool] | None = None

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, self.sdk) and (self.when is None or self.when(exc))

    def error(self, store: Store, what: str, exc: BaseException) -> CloudSessionsError:
        if issubclass(self.ours, SessionTooLarge):
            return SessionTooLarge(store.max_record_bytes + 1, store.max_record_bytes, store.kind)
        message = f"{store.describe()}: could not {what}: {str(exc)[:500] or type(exc).__name__}"
        if self.hint:
            message += f"; {self.hint.format(store=store)}"
        return self.ours(message)


@contextlib.contextmanager
def translated(kinds: Sequence[ErrorKind], store: Store, what: str) -> Iterator[None]:
    """Raise the SDK errors of the block as ours (the SDK's error is the __cause__)."""
    try:
        yield
    except CloudSessionsError:
        raise
    except Exception as exc:
        for kind in kinds:
            if kind.matches(exc):
                raise kind.error(store, what, exc) from exc
        raise
