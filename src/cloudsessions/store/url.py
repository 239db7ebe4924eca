"""A parsed store URL, e.g. ``sqlite:///sessions.db`` or ``dynamodb://TABLE?region=X``."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit


@dataclass(frozen=True, slots=True)
class StoreURL:
    """`path` keeps its leading slash; `query` holds the ?options (strings)."""

    raw: str
    scheme: str
    netloc: str
    path: str
    query: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return cls(url, parts.scheme.lower(), parts.netloc, unquote(parts.path), query)
