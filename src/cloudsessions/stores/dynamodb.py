"""Amazon DynamoDB: one item per session, changed one key at a time with UpdateItem.

Item layout (every name configurable, so an existing table can be used):

    id          S   the record id (a hash of the session id), partition key
    [sort key]  S   a fixed value, for tables that have a sort key
    data        M   session field -> JSON text (S), or a counter (N, see Store.increment)
    key_order   M   session field -> ordinal (N): DynamoDB maps are unordered, and a
                    session's keys come back in the order they were first set
    ttl         N   expiry, epoch seconds: the table's TTL attribute
    user_id     S   owner, absent for anonymous sessions; key of a sparse GSI

A save is one conditional UpdateItem: SET data.#field = :json for each changed key and
REMOVE data.#field for each removed one, so two requests that change different keys of
one session both keep their change. Its condition (the item exists and has not expired)
is what turns a save of a logged-out session into SessionGone instead of resurrecting it.
DynamoDB's TTL deletes items up to days late, so expiry is also checked on every read
(the base class does it) and in that condition.

One boto3 client per store object, made lazily and shared by threads (clients are
thread-safe, boto3 sessions are not). The async twins use aiobotocore: one client per
running event loop. Timeouts and retries are botocore's own (Config), bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ..errors import (
    ConfigurationError,
    SessionExists,
    SessionGone,
    SessionTooLarge,
    StoreUnavailable,
)
from ..options import Options
from ..record import Changes, CheckResult, SessionInfo, StoredRecord
from ..store import Progress, Store
from ..urls import StoreURL

_TABLE_NAME = re.compile(r"[A-Za-z0-9_.-]{3,255}")
_INDEX_NAME = _TABLE_NAME
_RETRY_MODES = ("standard", "adaptive", "legacy")
_BILLING_MODES = ("PAY_PER_REQUEST", "PROVISIONED")

# DynamoDB caps each expression string at 4 KB; a save of very many keys is split.
_MAX_EXPRESSION = 4096
_BATCH_WRITE_MAX = 25  # items per BatchWriteItem request
_UNPROCESSED_RETRIES = 8
# An increment meets a plain value at most once; more rounds mean a writer keeps flipping it.
_INCREMENT_ROUNDS = 4
# An ordinal a save gives a new key: microseconds since the epoch (16-17 digits), which
# DynamoDB counts as (digits + 1) // 2 + 1 bytes.
_SAVE_ORDINAL_BYTES = 10
_RECORD_ID_BYTES = 64  # hex SHA-256

SESSION_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:BatchWriteItem",
    "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive",
)
ADMIN_ACTIONS = (
    "dynamodb:CreateTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
)

_OPTIONS = {
    "region",
    "endpoint",
    "profile",
    "consistent_read",
    "connect_timeout",
    "read_timeout",
    "max_attempts",
    "retry_mode",
    "max_pool_connections",
    "partition_key",
    "sort_key",
    "sort_key_value",
    "data_attribute",
    "order_attribute",
    "ttl_attribute",
    "user_attribute",
    "user_index",
    "billing_mode",
    "read_capacity",
    "write_capacity",
    "max_record_bytes",
    "client",
    "session",
    "event_hooks",
}

EventHooks = Mapping[str, Callable[..., Any]]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _number(value: float) -> dict[str, str]:
    # Millisecond precision keeps the exact expiry without DynamoDB's 38-digit limit.
    return {"N": f"{value:.3f}"}


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def _number_size(text: str) -> int:
    """Bytes DynamoDB counts for a Number: one per two significant digits, plus one."""
    digits = text.lstrip("-").replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


@dataclass
class _LoopClient:
    """The aiobotocore client of one event loop."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    client: Any = None
    closer: AsyncGenerator[None, None] | None = None


async def _close_at_loop_shutdown(stack: contextlib.AsyncExitStack) -> AsyncGenerator[None, None]:
    # An event loop finalizes the async generators still open when it shuts down
    # (asyncio.run, asyncio.Runner, asgiref): that closes the loop's client with it.
    try:
        yield
    finally:
        await stack.aclose()


class DynamoDBStore(Store):
    kind = "dynamodb"
    default_max_record_bytes = 400 * 1024

    def __init__(
        self,
        table: str,
        *,
        region: str | None = None,
        endpoint: str | None = None,
        profile: str | None = None,
        consistent_read: bool = True,
        connect_timeout: float = 2.0,
        read_timeout: float = 3.0,
        max_attempts: int = 3,
        retry_mode: str = "standard",
        max_pool_connections: int = 10,
        partition_key: str = "id",
        sort_key: str | None = None,
        sort_key_value: str | None = None,
        data_attribute: str = "data",
        order_attribute: str = "key_order",
        ttl_attribute: str = "ttl",
        user_attribute: str = "user_id",
        user_index: str | None = None,
        billing_mode: str = "PAY_PER_REQUEST",
        read_capacity: int = 5,
        write_capacity: int = 5,
        max_record_bytes: int | None = None,
        client: Any = None,
        session: Any = None,
        event_hooks: EventHooks | None = None,
    ) -> None:
        super().__init__(max_record_bytes=max_record_bytes)
        if not _TABLE_NAME.fullmatch(table):
            raise ConfigurationError(
                f"DynamoDB table name {table!r} must be 3-255 characters of [A-Za-z0-9_.-]"
            )
        if retry_mode not in _RETRY_MODES:
            raise ConfigurationError(
                f"dynamodb option retry_mode must be one of {', '.join(_RETRY_MODES)}"
            )
        billing_mode = billing_mode.upper()
        if billing_mode not in _BILLING_MODES:
            raise ConfigurationError(
                f"dynamodb option billing_mode must be one of {', '.join(_BILLING_MODES)}"
            )
        if max_attempts < 1:
            raise ConfigurationError("dynamodb option max_attempts must be at least 1")
        if bool(sort_key) != (sort_key_value is not None):
            raise ConfigurationError(
                "dynamodb options sort_key and sort_key_value go together: a table with a"
                " sort key needs the fixed value cloudsessions writes into it"
            )
        names = [partition_key, data_attribute, ttl_attribute, user_attribute]
        if sort_key:
            names.append(sort_key)
        if order_attribute:
            names.append(order_attribute)
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ConfigurationError(
                "dynamodb attribute names (partition_key, sort_key, data_attribute,"
                " order_attribute, ttl_attribute, user_attribute) must be distinct and"
                f" non-empty, got {names}"
            )
        user_index = user_index or f"{user_attribute}-index"
        if not _INDEX_NAME.fullmatch(user_index):
            raise ConfigurationError(
                f"DynamoDB index name {user_index!r} must be 3-255 characters of [A-Za-z0-9_.-]"
            )
        self.table = table
        self.url: str | None = None  # set by from_url, for messages
        self.region = region
        self.endpoint = endpoint
        self.profile = profile
        self.consistent_read = consistent_read
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_attempts = max_attempts
        self.retry_mode = retry_mode
        self.max_pool_connections = max_pool_connections
        self.partition_key = partition_key
        self.sort_key = sort_key or None
        self.sort_key_value = sort_key_value
        self.data_attribute = data_attribute
        self.order_attribute = order_attribute or None
        self.ttl_attribute = ttl_attribute
        self.user_attribute = user_attribute
        self.user_index = user_index
        self.billing_mode = billing_mode
        self.read_capacity = read_capacity
        self.write_capacity = write_capacity
        self.event_hooks = dict(event_hooks or {})
        self._given_client = client
        self._given_session = session
        self._client: Any = client
        self._client_pid = os.getpid()
        self._lock = threading.Lock()
        self._loop_clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}
        self._aiobotocore: bool | None = None
        if client is not None:
            self._register_hooks(client)
        self._prepare_requests()

    @classmethod
    def from_url(cls, url: StoreURL, options: dict[str, Any]) -> DynamoDBStore:
        opts = Options(cls.kind, options, _OPTIONS)
        table = url.netloc
        if not table or url.path not in ("", "/"):
            raise ConfigurationError(
                f"dynamodb store URL {url.raw!r} must look like"
                " dynamodb://TABLE?region=REGION[&endpoint=URL]"
            )
        sort_key_value = opts.get("sort_key_value")
        hooks = opts.get("event_hooks")
        if hooks is not None and not isinstance(hooks, Mapping):
            raise ConfigurationError(
                "dynamodb option event_hooks must be a mapping of botocore event name -> handler"
            )
        store = cls(
            table,
            region=opts.get("region") or None,
            endpoint=opts.get("endpoint") or None,
            profile=opts.get("profile") or None,
            consistent_read=opts.flag("consistent_read", True),
            connect_timeout=opts.number("connect_timeout", 2.0),
            read_timeout=opts.number("read_timeout", 3.0),
            max_attempts=opts.integer("max_attempts", 3),
            retry_mode=opts.text("retry_mode", "standard"),
            max_pool_connections=opts.integer("max_pool_connections", 10),
            partition_key=opts.text("partition_key", "id"),
            sort_key=opts.get("sort_key") or None,
            sort_key_value=None if sort_key_value is None else str(sort_key_value),
            data_attribute=opts.text("data_attribute", "data"),
            order_attribute=opts.text("order_attribute", "key_order"),
            ttl_attribute=opts.text("ttl_attribute", "ttl"),
            user_attribute=opts.text("user_attribute", "user_id"),
            user_index=opts.get("user_index") or None,
            billing_mode=opts.text("billing_mode", "PAY_PER_REQUEST"),
            read_capacity=opts.integer("read_capacity", 5),
            write_capacity=opts.integer("write_capacity", 5),
            max_record_bytes=opts.integer("max_record_bytes", 0) or None,
            client=opts.get("client"),
            session=opts.get("session"),
            event_hooks=hooks,
        )
        store.url = url.raw
        return store

    def describe(self) -> str:
        where = self.endpoint or (f"region {self.region}" if self.region else "the default region")
        return f"dynamodb table {self.table} ({where})"

    def _init_hint(self) -> str:
        # DynamoDB URLs carry no secrets (credentials never go in them), so it can be shown.
        return f"run `cloudsessions init --store '{self.url or f'dynamodb://{self.table}'}'`"

    # ---------------------------------------------------------------------- clients

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client of this store, made on first use and shared by threads."""
        client = self._client
        if client is None or (self._given_client is None and self._client_pid != os.getpid()):
            with self._lock:
                client = self._client
                # A client must not cross into a forked child: its connection pool would be
                # shared with the parent.
                if client is None or (
                    self._given_client is None and self._client_pid != os.getpid()
                ):
                    client = self._client = self._make_client()
                    self._client_pid = os.getpid()
        return client

    def _botocore_config(self, config_class: type[Config] = Config) -> Config:
        return config_class(
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            # total_max_attempts counts the first try; botocore's max_attempts does not.
            retries={"mode": self.retry_mode, "total_max_attempts": self.max_attempts},
            max_pool_connections=self.max_pool_connections,
            user_agent_extra="cloudsessions",
        )

    def _make_client(self) -> Any:
        with self._errors("create the boto3 client"):
            session = self._given_session or boto3.session.Session(profile_name=self.profile)
            client = session.client(
                "dynamodb",
                region_name=self.region,
                endpoint_url=self.endpoint,
                config=self._botocore_config(),
            )
        self._register_hooks(client)
        return client

    def _register_hooks(self, client: Any) -> None:
        for event, handler in self.event_hooks.items():
            client.meta.events.register(event, handler)

    def _native_async(self) -> bool:
        # A handed-over boto3 client or session cannot be turned into an aiobotocore one
        # (their credentials may come from anywhere): async calls then use it in a thread,
        # as they do when aiobotocore is not installed.
        if self._aiobotocore is None:
            self._aiobotocore = importlib.util.find_spec("aiobotocore") is not None
        return self._aiobotocore and self._given_client is None and self._given_session is None

    async def _aclient(self) -> Any:
        loop = asyncio.get_running_loop()
        slot = self._loop_clients.get(loop)
        if slot is None:
            with self._lock:
                # Drop clients of loops that have ended; their connections died with them.
                for old in [lp for lp in self._loop_clients if lp.is_closed()]:
                    del self._loop_clients[old]
                slot = self._loop_clients.setdefault(loop, _LoopClient())
        if slot.client is None:
            async with slot.lock:
                if slot.client is None:
                    client, stack = await self._make_aclient()
                    slot.closer = _close_at_loop_shutdown(stack)
                    await anext(slot.closer)
                    slot.client = client
        return slot.client

    async def _make_aclient(self) -> tuple[Any, contextlib.AsyncExitStack]:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession

        stack = contextlib.AsyncExitStack()
        with self._errors("create the aiobotocore client"):
            session = AioSession(profile=self.profile)
            client = await stack.enter_async_context(
                session.create_client(
                    "dynamodb",
                    region_name=self.region,
                    endpoint_url=self.endpoint,
                    config=self._botocore_config(AioConfig),
                )
            )
        self._register_hooks(client)
        return client, stack

    async def aclose(self) -> None:
        """Close the async client of the running event loop (e.g. at ASGI shutdown)."""
        slot = self._loop_clients.pop(asyncio.get_running_loop(), None)
        if slot is not None and slot.closer is not None:
            await slot.closer.aclose()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, self._given_client
            slots, self._loop_clients = self._loop_clients, {}
        if client is not None and client is not self._given_client:
            client.close()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, slot in slots.items():
            if slot.closer is None or loop.is_closed():
                continue
            if loop.is_running():
                # Owned by another thread (or this one): let that loop close its own client.
                loop.call_soon_threadsafe(loop.create_task, slot.closer.aclose())
            elif current is None:
                loop.run_until_complete(slot.closer.aclose())
            # else: a loop cannot be run from inside another; its shutdown closes the client.

    # ----------------------------------------------------------------------- errors

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            raise self._client_error(what, exc) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise ConfigurationError(
                f"{self.describe()}: no AWS credentials found to {what}: set"
                " AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE (or the profile= option),"
                " or give the process a role"
            ) from exc
        except NoRegionError as exc:
            raise ConfigurationError(
                f"{self.describe()}: no AWS region: put region= in the store URL"
                " (dynamodb://TABLE?region=eu-west-1) or set AWS_DEFAULT_REGION"
            ) from exc
        except ProfileNotFound as exc:
            raise ConfigurationError(
                f"{self.describe()}: {exc}; check the profile= option"
            ) from exc
        except ParamValidationError as exc:
            raise ConfigurationError(
                f"{self.describe()}: DynamoDB refused the {what} request: {exc};"
                " check the table, key and attribute options"
            ) from exc
        except BotoCoreError as exc:
            # Connection refused or reset, timeouts: botocore has already retried.
            raise StoreUnavailable(f"{self.describe()}: could not {what}: {exc}") from exc

    def _client_error(self, what: str, exc: ClientError) -> Exception:
        code = _code(exc)
        message = exc.response.get("Error", {}).get("Message", "")
        if code == "ResourceNotFoundException":
            return ConfigurationError(
                f"{self.describe()} (or its index {self.user_index}) does not exist:"
                f" {self._init_hint()}"
            )
        if code in ("AccessDeniedException", "UnrecognizedClientException"):
            return ConfigurationError(
                f"{self.describe()}: AWS refused to {what} ({code}): the credentials need"
                f" {', '.join(SESSION_ACTIONS)} on the table and its indexes"
                f" (init/destroy also {', '.join(ADMIN_ACTIONS)})"
            )
        if code == "ValidationException" and "item size" in message.lower():
            # Keys written by other requests grew the item past 400 KB: our size check
            # only sees this request's copy of the session.
            return SessionTooLarge(self.max_record_bytes + 1, self.max_record_bytes, self.kind)
        if code == "ValidationException":
            return ConfigurationError(
                f"{self.describe()}: DynamoDB refused to {what}: {message};"
                " check the partition_key, sort_key and attribute options against the table"
            )
        # Throttling and server errors arrive here after botocore's retries.
        return StoreUnavailable(f"{self.describe()}: could not {what}: {code} {message}")

    # ------------------------------------------------------------- request building

    def _prepare_requests(self) -> None:
        # Parts of every request, built once: the hot paths only add the record's values.
        self._key_names = {"#p": self.partition_key}
        self._sort_item: dict[str, Any] = {}
        if self.sort_key:
            self._sort_item = {self.sort_key: {"S": self.sort_key_value}}
        get_names = {"#d": self.data_attribute, "#t": self.ttl_attribute, "#u": self.user_attribute}
        if self.order_attribute:
            get_names["#o"] = self.order_attribute
        self._get_base: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": self.consistent_read,
            "ProjectionExpression": ", ".join(get_names),
            "ExpressionAttributeNames": get_names,
        }
        self._put_names = {"#p": self.partition_key}

    def _key(self, rid: str) -> dict[str, Any]:
        return {self.partition_key: {"S": rid}, **self._sort_item}

    def _get_params(self, rid: str) -> dict[str, Any]:
        return {**self._get_base, "Key": self._key(rid)}

    def _put_params(self, rid: str, record: StoredRecord) -> dict[str, Any]:
        item: dict[str, Any] = {
            self.partition_key: {"S": rid},
            **self._sort_item,
            self.data_attribute: {"M": {f: {"S": v} for f, v in record.fields.items()}},
            self.ttl_attribute: _number(record.expires_at),
        }
        if self.order_attribute:
            item[self.order_attribute] = {
                "M": {f: {"N": str(i)} for i, f in enumerate(record.fields)}
            }
        if record.user_id is not None:
            item[self.user_attribute] = {"S": record.user_id}
        return {
            "TableName": self.table,
            "Item": item,
            "ConditionExpression": "attribute_not_exists(#p)",
            "ExpressionAttributeNames": self._put_names,
        }

    def _update_params(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> list[dict[str, Any]]:
        """One UpdateItem, or a few if the changed keys overflow DynamoDB's 4 KB expression."""
        sets = ["#t = :t"]
        removes: list[str] = []
        names = {"#p": self.partition_key, "#t": self.ttl_attribute, "#u": self.user_attribute}
        values: dict[str, Any] = {":t": _number(expires_at), ":now": _number(now)}
        if user_id is None:
            removes.append("#u")
        else:
            sets.append("#u = :u")
            values[":u"] = {"S": user_id}
        requests = []
        size = 0
        ordered = self.order_attribute is not None
        # New keys go after every existing one (created with ordinals 0, 1, ...); a key
        # that exists keeps its ordinal, hence its place, through if_not_exists.
        first_ordinal = int(now * 1_000_000)
        pending: list[tuple[str, str | None]] = list(changes.set_fields.items())
        pending += [(f, None) for f in changes.removed_fields]
        for n, (field_name, value) in enumerate(pending):
            t = f"{n:x}"
            if value is None:
                parts = [f"#d.#f{t}"] + ([f"#o.#f{t}"] if ordered else [])
            else:
                parts = [f"#d.#f{t} = :v{t}"]
                if ordered:
                    parts.append(f"#o.#f{t} = if_not_exists(#o.#f{t}, :o{t})")
            length = sum(len(part) + 2 for part in parts)
            # 64: room for "SET ", " REMOVE " and the expiry and user parts.
            if size + length + 64 > _MAX_EXPRESSION:
                requests.append(self._update_request(rid, sets, removes, names, values))
                sets, removes, size = [], [], 0
                names = {"#p": self.partition_key, "#t": self.ttl_attribute}
                values = {":now": values[":now"]}
            names["#d"] = self.data_attribute
            if ordered:
                names["#o"] = self.order_attribute  # type: ignore[assignment]
            names[f"#f{t}"] = field_name
            if value is None:
                removes += parts
            else:
                sets += parts
                values[f":v{t}"] = {"S": value}
                if ordered:
                    values[f":o{t}"] = {"N": str(first_ordinal + n)}
            size += length
        requests.append(self._update_request(rid, sets, removes, names, values))
        return requests

    def _update_request(
        self,
        rid: str,
        sets: list[str],
        removes: list[str],
        names: dict[str, str],
        values: dict[str, Any],
    ) -> dict[str, Any]:
        expression = []
        if sets:
            expression.append("SET " + ", ".join(sets))
        if removes:
            expression.append("REMOVE " + ", ".join(removes))
        return {
            "TableName": self.table,
            "Key": self._key(rid),
            "UpdateExpression": " ".join(expression),
            "ConditionExpression": "attribute_exists(#p) AND #t > :now",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }

    def _delete_params(self, rid: str) -> dict[str, Any]:
        return {"TableName": self.table, "Key": self._key(rid)}

    def _record_from_item(self, item: Mapping[str, Any] | None) -> StoredRecord | None:
        if item is None:
            return None
        try:
            data = item[self.data_attribute]["M"]
            expires_at = float(item[self.ttl_attribute]["N"])
            order = item.get(self.order_attribute, {}).get("M") if self.order_attribute else None
            if order:
                ordinals = {f: int(n["N"]) for f, n in order.items()}
                data = {f: data[f] for f in sorted(data, key=lambda f: ordinals.get(f, 0))}
            fields: dict[str, str] = {}
            counters: dict[str, int] = {}
            for name, value in data.items():
                text = value.get("S")
                if text is not None:
                    fields[name] = text
                else:
                    counters[name] = int(value["N"])
        except (KeyError, TypeError, AttributeError, ValueError):
            # Not a cloudsessions item (e.g. left by another session engine): no session.
            return None
        user = item.get(self.user_attribute)
        return StoredRecord(fields, expires_at, user.get("S") if user else None, counters)

    def _increment_params(
        self,
        rid: str,
        field: str,
        delta: int,
        base: int,
        expires_at: float,
        now: float,
        plain: bool,
    ) -> dict[str, Any]:
        """Add to a counter (absent counts as base), or, if `plain`, replace a plain value."""
        names = {
            "#p": self.partition_key,
            "#t": self.ttl_attribute,
            "#d": self.data_attribute,
            "#f": field,
        }
        values: dict[str, Any] = {":t": _number(expires_at), ":now": _number(now)}
        condition = "attribute_exists(#p) AND #t > :now AND "
        if plain:
            update = "SET #t = :t, #d.#f = :sum"
            condition += "attribute_type(#d.#f, :S)"
            values.update({":sum": {"N": str(base + delta)}, ":S": {"S": "S"}})
        else:
            update = "SET #t = :t, #d.#f = if_not_exists(#d.#f, :base) + :delta"
            condition += "(attribute_not_exists(#d.#f) OR attribute_type(#d.#f, :N))"
            values.update(
                {":base": {"N": str(base)}, ":delta": {"N": str(delta)}, ":N": {"S": "N"}}
            )
        if self.order_attribute:
            update += ", #o.#f = if_not_exists(#o.#f, :o)"
            names["#o"] = self.order_attribute
            values[":o"] = {"N": str(int(now * 1_000_000))}
        return {
            "TableName": self.table,
            "Key": self._key(rid),
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ReturnValues": "UPDATED_NEW",
            # Tells a deleted or expired session from a field that holds a plain value.
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _counter_value(self, response: Mapping[str, Any], field: str) -> int:
        return int(response["Attributes"][self.data_attribute]["M"][field]["N"])

    def _holds_plain_value(self, exc: ClientError, field: str, now: float) -> bool:
        """After a failed increment: True to retry as a conversion, False to retry as is.

        Raises SessionGone if the session is no longer there to increment.
        """
        if _code(exc) != "ConditionalCheckFailedException":
            raise exc
        item = exc.response.get("Item")
        record = self._record_from_item(item)
        if record is None or record.expires_at <= now:
            raise SessionGone("the session was deleted or has expired") from None
        return field in record.fields

    def _increment_contended(self) -> StoreUnavailable:
        return StoreUnavailable(
            f"{self.describe()}: a counter kept changing type under concurrent writes"
        )

    # --------------------------------------------------------------------- contract

    def _load(self, rid: str) -> StoredRecord | None:
        with self._errors("load a session"):
            response = self.client.get_item(**self._get_params(rid))
        return self._record_from_item(response.get("Item"))

    def _create(self, rid: str, record: StoredRecord) -> None:
        with self._errors("create a session"):
            try:
                self.client.put_item(**self._put_params(rid, record))
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    raise SessionExists("a session with this id exists") from None
                raise

    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        client = self.client
        with self._errors("save a session"):
            for params in self._update_params(rid, changes, expires_at, user_id, now):
                try:
                    client.update_item(**params)
                except ClientError as exc:
                    if _code(exc) == "ConditionalCheckFailedException":
                        raise SessionGone("the session was deleted or has expired") from None
                    raise

    def _delete(self, rid: str) -> None:
        with self._errors("delete a session"):
            self.client.delete_item(**self._delete_params(rid))

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        # One conditional UpdateItem; a second only the first time a plain value becomes
        # a counter (DynamoDB cannot add to a string, nor branch on a type in one update).
        plain = False
        client = self.client
        with self._errors("increment a counter"):
            for _ in range(_INCREMENT_ROUNDS):
                params = self._increment_params(rid, field, delta, base, expires_at, now, plain)
                try:
                    return self._counter_value(client.update_item(**params), field)
                except ClientError as exc:
                    plain = self._holds_plain_value(exc, field, now)
        raise self._increment_contended()

    async def _aload(self, rid: str) -> StoredRecord | None:
        if not self._native_async():
            return await super()._aload(rid)
        client = await self._aclient()
        with self._errors("load a session"):
            response = await client.get_item(**self._get_params(rid))
        return self._record_from_item(response.get("Item"))

    async def _acreate(self, rid: str, record: StoredRecord) -> None:
        if not self._native_async():
            return await super()._acreate(rid, record)
        client = await self._aclient()
        with self._errors("create a session"):
            try:
                await client.put_item(**self._put_params(rid, record))
            except ClientError as exc:
                if _code(exc) == "ConditionalCheckFailedException":
                    raise SessionExists("a session with this id exists") from None
                raise

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        if not self._native_async():
            return await super()._asave(rid, changes, expires_at, user_id, now)
        client = await self._aclient()
        with self._errors("save a session"):
            for params in self._update_params(rid, changes, expires_at, user_id, now):
                try:
                    await client.update_item(**params)
                except ClientError as exc:
                    if _code(exc) == "ConditionalCheckFailedException":
                        raise SessionGone("the session was deleted or has expired") from None
                    raise

    async def _adelete(self, rid: str) -> None:
        if not self._native_async():
            return await super()._adelete(rid)
        client = await self._aclient()
        with self._errors("delete a session"):
            await client.delete_item(**self._delete_params(rid))

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        if not self._native_async():
            return await super()._aincrement(rid, field, delta, base, expires_at, now)
        plain = False
        client = await self._aclient()
        with self._errors("increment a counter"):
            for _ in range(_INCREMENT_ROUNDS):
                params = self._increment_params(rid, field, delta, base, expires_at, now, plain)
                try:
                    return self._counter_value(await client.update_item(**params), field)
                except ClientError as exc:
                    plain = self._holds_plain_value(exc, field, now)
        raise self._increment_contended()

    # ------------------------------------------------------------- users and purge

    def _user_items(self, user_id: str) -> Iterator[dict[str, Any]]:
        names = {"#u": self.user_attribute, "#p": self.partition_key, "#t": self.ttl_attribute}
        params: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": self.user_index,
            "KeyConditionExpression": "#u = :u",
            "ProjectionExpression": "#p, #t",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":u": {"S": user_id}},
        }
        if self.sort_key:
            names["#s"] = self.sort_key
            params["FilterExpression"] = "#s = :s"
            params["ExpressionAttributeValues"][":s"] = {"S": self.sort_key_value}
        with self._errors("query the sessions of a user"):
            for page in self.client.get_paginator("query").paginate(**params):
                yield from page.get("Items", [])

    def _for_user(self, user_id: str) -> list[SessionInfo]:
        found = []
        for item in self._user_items(user_id):
            try:
                expires_at = float(item[self.ttl_attribute]["N"])
            except (KeyError, ValueError):
                continue
            found.append(SessionInfo(item[self.partition_key]["S"], expires_at, user_id))
        return found

    def _delete_for_user(self, user_id: str, keep_rid: str | None) -> int:
        doomed = [
            item[self.partition_key]["S"]
            for item in self._user_items(user_id)
            if item[self.partition_key]["S"] != keep_rid
        ]
        self._batch_delete(doomed)
        return len(doomed)

    def _batch_delete(self, rids: list[str]) -> None:
        client = self.client
        for start in range(0, len(rids), _BATCH_WRITE_MAX):
            requests = [
                {"DeleteRequest": {"Key": self._key(rid)}}
                for rid in rids[start : start + _BATCH_WRITE_MAX]
            ]
            pending: dict[str, Any] = {self.table: requests}
            # botocore retries a throttled request, but a batch that is accepted with
            # some items left unprocessed has to be resent by the caller.
            for attempt in range(_UNPROCESSED_RETRIES):
                with self._errors("delete sessions in a batch"):
                    response = client.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(min(0.05 * 2**attempt, 2.0))
            else:
                raise StoreUnavailable(
                    f"{self.describe()}: DynamoDB left deletes unprocessed after"
                    f" {_UNPROCESSED_RETRIES} attempts (throughput exceeded)"
                )

    def ttl_enabled(self) -> bool:
        """True if the table's TTL deletes expired sessions (enabled on our TTL attribute)."""
        with self._errors("describe the table's time to live"):
            description = self.client.describe_time_to_live(TableName=self.table)
        ttl = description.get("TimeToLiveDescription", {})
        return bool(
            ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
            and ttl.get("AttributeName") == self.ttl_attribute
        )

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        if self.ttl_enabled():
            return 0  # DynamoDB's TTL removes them; reads ignore them until it does.
        names = {"#p": self.partition_key, "#t": self.ttl_attribute, "#d": self.data_attribute}
        params: dict[str, Any] = {
            "TableName": self.table,
            "ConsistentRead": self.consistent_read,
            "ProjectionExpression": "#p",
            "FilterExpression": "#t <= :now AND attribute_exists(#d)",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": {":now": _number(now)},
        }
        if self.sort_key:
            names["#s"] = self.sort_key
            params["FilterExpression"] += " AND #s = :s"
            params["ExpressionAttributeValues"][":s"] = {"S": self.sort_key_value}
        batch_size = max(batch_size, 1)
        removed = 0
        pending: list[str] = []

        def flush(rids: list[str]) -> None:
            nonlocal removed
            self._batch_delete(rids)
            removed += len(rids)
            if progress is not None:
                progress(removed)

        with self._errors("scan for expired sessions"):
            for page in self.client.get_paginator("scan").paginate(**params):
                pending += [item[self.partition_key]["S"] for item in page.get("Items", [])]
                while len(pending) >= batch_size:
                    flush(pending[:batch_size])
                    del pending[:batch_size]
        if pending:
            flush(pending)
        return removed

    # -------------------------------------------------------------------- operations

    def _describe_table(self) -> dict[str, Any] | None:
        with self._errors("describe the table"):
            try:
                table: dict[str, Any] = self.client.describe_table(TableName=self.table)["Table"]
            except ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return None
                raise
        return table

    def _throughput(self) -> dict[str, Any]:
        if self.billing_mode == "PROVISIONED":
            return {
                "ProvisionedThroughput": {
                    "ReadCapacityUnits": self.read_capacity,
                    "WriteCapacityUnits": self.write_capacity,
                }
            }
        return {}

    def _index_spec(self) -> dict[str, Any]:
        return {
            "IndexName": self.user_index,
            "KeySchema": [{"AttributeName": self.user_attribute, "KeyType": "HASH"}],
            # Keys are always projected; the expiry lets for_user skip expired sessions.
            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": [self.ttl_attribute]},
            **self._throughput(),
        }

    def provision(self, *, fix: bool = False) -> list[str]:
        done: list[str] = []
        table = self._describe_table()
        if table is None:
            attributes = [
                {"AttributeName": self.partition_key, "AttributeType": "S"},
                {"AttributeName": self.user_attribute, "AttributeType": "S"},
            ]
            schema = [{"AttributeName": self.partition_key, "KeyType": "HASH"}]
            if self.sort_key:
                attributes.append({"AttributeName": self.sort_key, "AttributeType": "S"})
                schema.append({"AttributeName": self.sort_key, "KeyType": "RANGE"})
            with self._errors("create the table"):
                self.client.create_table(
                    TableName=self.table,
                    AttributeDefinitions=attributes,
                    KeySchema=schema,
                    BillingMode=self.billing_mode,
                    GlobalSecondaryIndexes=[self._index_spec()],
                    **self._throughput(),
                )
                self.client.get_waiter("table_exists").wait(
                    TableName=self.table, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
                )
            done.append(
                f"created {self.describe()} ({self.billing_mode}) with index {self.user_index}"
            )
            table = self._describe_table() or {}
        problem = self._key_schema_problem(table)
        if problem:
            raise ConfigurationError(f"{self.describe()}: {problem}")
        if self._index(table) is None:
            with self._errors("add the user index"):
                self.client.update_table(
                    TableName=self.table,
                    AttributeDefinitions=[
                        {"AttributeName": self.user_attribute, "AttributeType": "S"}
                    ],
                    GlobalSecondaryIndexUpdates=[{"Create": self._index_spec()}],
                )
            self._wait_for_index()
            done.append(f"created index {self.user_index} on {self.user_attribute}")
        with self._errors("describe the table's time to live"):
            ttl = self.client.describe_time_to_live(TableName=self.table)["TimeToLiveDescription"]
        status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
        if status in ("ENABLED", "ENABLING") and attribute != self.ttl_attribute:
            raise ConfigurationError(
                f"{self.describe()}: TTL is on for attribute {attribute!r}, not"
                f" {self.ttl_attribute!r}: set ttl_attribute={attribute} or change the table"
            )
        if status == "DISABLED":
            with self._errors("enable time to live"):
                self.client.update_time_to_live(
                    TableName=self.table,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": self.ttl_attribute},
                )
            done.append(f"enabled TTL on attribute {self.ttl_attribute}")
        return done

    def _wait_for_index(self, timeout: float = 1800.0) -> None:
        # Building an index on a full table takes minutes; botocore has no waiter for it.
        deadline = time.monotonic() + timeout
        pause = 0.25
        while True:
            index = self._index(self._describe_table() or {})
            if index is not None and index.get("IndexStatus", "ACTIVE") == "ACTIVE":
                return
            if time.monotonic() > deadline:
                raise StoreUnavailable(
                    f"{self.describe()}: index {self.user_index} not ACTIVE after {timeout:.0f} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 10.0)

    def _index(self, table: Mapping[str, Any]) -> dict[str, Any] | None:
        for index in table.get("GlobalSecondaryIndexes", []):
            if index.get("IndexName") == self.user_index:
                found: dict[str, Any] = index
                return found
        return None

    def _key_schema_problem(self, table: Mapping[str, Any]) -> str:
        schema = {k["KeyType"]: k["AttributeName"] for k in table.get("KeySchema", [])}
        types = {
            a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])
        }
        wanted = {"HASH": self.partition_key}
        if self.sort_key:
            wanted["RANGE"] = self.sort_key
        if schema != wanted:
            found = ", ".join(f"{t} {n}" for t, n in schema.items())
            return (
                f"the table's key is ({found}) but the store is configured for"
                f" partition_key={self.partition_key}"
                + (f", sort_key={self.sort_key}" if self.sort_key else " and no sort key")
            )
        bad = [n for n in wanted.values() if types.get(n) != "S"]
        if bad:
            return f"key attribute(s) {', '.join(bad)} must be of type S (string)"
        return ""

    def drop(self) -> None:
        with self._errors("delete the table"):
            try:
                self.client.delete_table(TableName=self.table)
            except ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return
                raise
            self.client.get_waiter("table_not_exists").wait(
                TableName=self.table, WaiterConfig={"Delay": 2, "MaxAttempts": 150}
            )

    def check(self) -> list[CheckResult]:
        table = self._describe_table()
        if table is None:
            return [
                CheckResult("table", False, f"{self.describe()} not found: {self._init_hint()}")
            ]
        status = table.get("TableStatus", "?")
        billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        results = [
            CheckResult(
                "table",
                status == "ACTIVE",
                f"{self.table}: {status}, {billing}, about {table.get('ItemCount', 0)} items",
            )
        ]
        problem = self._key_schema_problem(table)
        key = f"partition key {self.partition_key} (S)"
        if self.sort_key:
            key += f", sort key {self.sort_key} = {self.sort_key_value!r}"
        results.append(CheckResult("key schema", not problem, problem or key))
        index = self._index(table)
        if index is None:
            results.append(
                CheckResult("user index", False, f"{self.user_index} missing: {self._init_hint()}")
            )
        else:
            projection = index.get("Projection", {})
            projected = projection.get("ProjectionType") == "ALL" or (
                self.ttl_attribute in projection.get("NonKeyAttributes", [])
            )
            index_key = [k["AttributeName"] for k in index.get("KeySchema", [])][:1]
            ok = index_key == [self.user_attribute] and projected
            detail = (
                f"{self.user_index} on {self.user_attribute}: {index.get('IndexStatus', '?')}"
                + ("" if projected else f"; it must project {self.ttl_attribute}")
            )
            results.append(
                CheckResult("user index", ok and index.get("IndexStatus") == "ACTIVE", detail)
            )
        with self._errors("describe the table's time to live"):
            ttl = self.client.describe_time_to_live(TableName=self.table)["TimeToLiveDescription"]
        ttl_status, ttl_attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
        ttl_ok = ttl_status in ("ENABLED", "ENABLING") and ttl_attribute == self.ttl_attribute
        results.append(
            CheckResult(
                "time to live",
                ttl_ok,
                f"{ttl_status} on {ttl_attribute}"
                if ttl_ok
                else f"{ttl_status} (on {ttl_attribute or 'no attribute'}): expired sessions stay"
                f" until `cloudsessions purge` scans them; {self._init_hint()} to enable TTL"
                f" on {self.ttl_attribute}",
            )
        )
        results.append(
            CheckResult(
                "IAM actions",
                True,
                f"sessions: {', '.join(SESSION_ACTIONS)}; init/destroy also:"
                f" {', '.join(ADMIN_ACTIONS)}",
            )
        )
        return results

    # ----------------------------------------------------------------------- limits

    def record_size(self, record: StoredRecord) -> int:
        """DynamoDB's own item size: attribute names plus values, 3 + 1 per entry for a map."""
        size = _utf8(self.partition_key) + _RECORD_ID_BYTES
        if self.sort_key and self.sort_key_value is not None:
            size += _utf8(self.sort_key) + _utf8(self.sort_key_value)
        size += _utf8(self.data_attribute) + 3
        size += sum(_utf8(f) + _utf8(v) + 1 for f, v in record.fields.items())
        if self.order_attribute:
            size += _utf8(self.order_attribute) + 3
            size += sum(_utf8(f) + _SAVE_ORDINAL_BYTES + 1 for f in record.fields)
        size += _utf8(self.ttl_attribute) + _number_size(_number(record.expires_at)["N"])
        if record.user_id is not None:
            size += _utf8(self.user_attribute) + _utf8(record.user_id)
        return size
