"""The DynamoDB store's options: each written once with its default, checked together."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from ...errors import ConfigurationError
from ...store import StoreOptions

_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")  # DynamoDB's rule for table and index names
_RETRY_MODES = ("standard", "adaptive", "legacy")
_BILLING_MODES = ("PAY_PER_REQUEST", "PROVISIONED")

EventHooks = Mapping[str, Callable[..., Any]]


def check_name(what: str, name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"DynamoDB {what} name {name!r} must be 3-255 characters of [A-Za-z0-9_.-]"
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class DynamoDBOptions(StoreOptions):
    """See docs/stores/dynamodb.md for what each option does."""

    # The client: where it connects and how long it tries (botocore's Config).
    region: str | None = None
    endpoint: str | None = None
    profile: str | None = None
    consistent_read: bool = True
    connect_timeout: float = 2.0
    read_timeout: float = 3.0
    # The first try included (botocore's total_max_attempts); the request deadline ends
    # them sooner (cloudsessions.deadline).
    max_attempts: int = 8
    retry_mode: str = "standard"
    # Connections per client: one per concurrent request (botocore's default, 10, queues
    # the 11th: under 64 concurrent requests, a p99 4x worse than with enough).
    max_pool_connections: int = 64
    # The table's layout, so that an existing table can be used.
    partition_key: str = "id"
    sort_key: str | None = None
    sort_key_value: str | None = None  # the fixed sort key value of session items
    data_attribute: str = "data"
    order_attribute: str | None = "key_order"  # empty: no map keeping the keys' order
    ttl_attribute: str = "ttl"
    user_attribute: str = "user_id"
    meta_attribute: str = "meta"  # a signed-in session's metadata (cloudsessions.metadata)
    user_index: str | None = None  # None: "<user_attribute>-index"
    # What provision() creates.
    billing_mode: str = "PAY_PER_REQUEST"
    read_capacity: int = 5
    write_capacity: int = 5
    # Objects handed over in settings, never in a URL.
    client: Any = None  # a boto3 DynamoDB client, used as given and never closed
    session: Any = None  # a boto3 Session to make the client from
    event_hooks: EventHooks | None = None  # botocore event name -> handler, on every client

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retry_mode not in _RETRY_MODES:
            raise ConfigurationError(
                f"dynamodb option retry_mode must be one of {', '.join(_RETRY_MODES)}"
            )
        object.__setattr__(self, "billing_mode", self.billing_mode.upper())
        if self.billing_mode not in _BILLING_MODES:
            raise ConfigurationError(
                f"dynamodb option billing_mode must be one of {', '.join(_BILLING_MODES)}"
            )
        if self.max_attempts < 1:
            raise ConfigurationError("dynamodb option max_attempts must be at least 1")
        if bool(self.sort_key) != (self.sort_key_value is not None):
            raise ConfigurationError(
                "dynamodb options sort_key and sort_key_value go together: a table with a"
                " sort key needs the fixed value cloudsessions writes into it"
            )
        names = [
            self.partition_key,
            self.data_attribute,
            self.ttl_attribute,
            self.user_attribute,
            self.meta_attribute,
        ]
        names += [name for name in (self.sort_key, self.order_attribute) if name]
        if not all(names) or len(set(names)) != len(names):
            raise ConfigurationError(
                "dynamodb attribute names (partition_key, sort_key, data_attribute,"
                " order_attribute, ttl_attribute, user_attribute, meta_attribute) must be"
                f" distinct and non-empty, got {names}"
            )
        object.__setattr__(self, "user_index", self.user_index or f"{self.user_attribute}-index")
        check_name("index", str(self.user_index))
        if self.event_hooks is not None and not isinstance(self.event_hooks, Mapping):
            raise ConfigurationError(
                "dynamodb option event_hooks must be a mapping of botocore event name -> handler"
            )
