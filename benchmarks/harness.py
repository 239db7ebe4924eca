"""What a benchmark target provides: our store and the same raw SDK calls it makes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cloudsessions.record import Changes, EncodedRecord
from cloudsessions.store import Store


@dataclass
class Target:
    """`store` and, for each operation, the raw SDK call the store makes for it.

    The raw calls take what the store's own primitives take (record id, encoded fields),
    so the ratio measures exactly what cloudsessions adds: id checks and hashing, value
    encoding, the size check, error mapping, and decoding.
    """

    store: Store
    raw_load: Callable[[str], object]
    raw_create: Callable[[str, EncodedRecord], object]
    raw_save: Callable[[str, Changes, float, str | None, float], object]
    raw_delete: Callable[[str], object]
