"""The DynamoDB store: its clients, its errors and the contract's operations.

One boto3 client per process, made on first use and shared by threads (clients are
thread-safe, boto3 sessions are not). The async twins use aiobotocore: one client per
running event loop. A client or session handed over in the options is used as given: an
aiobotocore client cannot be derived from it (its credentials may come from anywhere), so
async calls then run the sync client in a worker thread, as they do without aiobotocore.
Timeouts and retries are botocore's own (Config), bounded.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import inspect
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ... import deadline, retries
from ...errors import (
    CloudSessionsError,
    ConfigurationError,
    SessionExists,
    SessionGone,
    SessionTooLarge,
    StoreUnavailable,
)
from ...store import (
    Changes,
    CheckResult,
    EncodedRecord,
    ErrorKind,
    PerLoop,
    PerProcess,
    Progress,
    SessionInfo,
    Store,
    StoreURL,
    parse_options,
)
from . import admin
from .admin import ADMIN_ACTIONS, INIT_HINT, KEY_ERRORS, SESSION_ACTIONS
from .options import DynamoDBOptions, check_name
from .requests import Requests, code, message

_UNPROCESSED_RETRIES = 8
# An increment meets a plain value at most once; more rounds mean a writer keeps flipping it.
_INCREMENT_ROUNDS = 4
_EXISTS = "a session with this id exists"
_GONE = "the session was deleted or has expired"


def _code_is(*codes: str) -> Callable[[BaseException], bool]:
    return lambda exc: isinstance(exc, ClientError) and code(exc) in codes


def _no_user_index(exc: BaseException) -> bool:
    # DynamoDB's answer to a Query on an index that is missing, or still being built.
    return (
        isinstance(exc, ClientError)
        and code(exc) == "ValidationException"
        and ("specified index" in message(exc) or "backfilling" in message(exc))
    )


def _item_too_large(exc: BaseException) -> bool:
    return (
        isinstance(exc, ClientError)
        and code(exc) == "ValidationException"
        and "item size" in message(exc).lower()
    )


@contextlib.contextmanager
def _failed_condition_means(error: type[CloudSessionsError], text: str) -> Iterator[None]:
    """A write's ConditionExpression did not hold: the record exists, or is gone."""
    try:
        yield
    except ClientError as exc:
        if code(exc) == "ConditionalCheckFailedException":
            raise error(text) from None
        raise


def _bound_attempt(read_timeout: float, request: Any, **_: Any) -> None:
    """No attempt starts past the deadline, and none reads for longer than is left
    (botocore takes a per-request read timeout from the request's context)."""
    request.context["read_timeout"] = deadline.capped(read_timeout, "answer")


def _cut_short(http_response: Any) -> bool:
    """DynamoDB sends every answer with its CRC32 (x-amz-crc32; botocore checks it when it
    is there). A 200 without it was cut short on the way: http.client takes a head cut in
    the middle for an empty 200, which a load would read as "no such session"."""
    return bool(
        http_response.status_code == 200 and http_response.headers.get("x-amz-crc32") is None
    )


def _complete_answer(http_response: Any, **_: Any) -> None:
    """A cut answer that retries did not replace (_seen_as_cut) is an unavailable store,
    never a silent logout."""
    if _cut_short(http_response):
        raise StoreUnavailable("the DynamoDB answer was cut short on the way (no x-amz-crc32)")


def _seen_as_cut(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What botocore's retry handler is told of an attempt: an answer cut short
    (_cut_short) as the closed connection it is, which the handler retries like any other
    (an increment's never: the server may have counted it). Without this it would take
    the cut answer for a success, and the request would be a 503 for want of a retry."""
    response = kwargs.get("response")
    if response is None or not _cut_short(response[0]):
        return kwargs
    closed = ConnectionClosedError(endpoint_url=kwargs["request_dict"]["url"])
    return {**kwargs, "response": None, "caught_exception": closed}


# botocore's standard backoff is full jitter on a 1 s base (a random 0-1 s, then 0-2 s,
# ...), made for control-plane calls; DynamoDB's own base is 50 ms (botocore's DynamoDB
# setting in its legacy mode), which absorbs a throttling burst in a request's time.
_BACKOFF_SCALE = 0.05

# Failures after which the server cannot have run the call (it was never sent).
_NOT_SENT = (EndpointConnectionError, ConnectTimeoutError)


def _bound_backoff(client: Any) -> None:
    """botocore's retry handler (standard or adaptive mode: which errors, how many tries,
    the retry quota), its jittered backoff scaled to DynamoDB's 50 ms base, giving up
    instead of sleeping past the request deadline, and never repeating an increment the
    server may have run (cloudsessions.retries).

    The handler is botocore's own, found by the id it registers under; a botocore that keeps
    it elsewhere leaves it as it is (the before-send check still stops the next attempt,
    after the sleep; the async twins are also cancelled at the deadline).
    """
    events, name = client.meta.events, "needs-retry.dynamodb"
    uid = "retry-config-dynamodb"
    emitter = getattr(events, "_emitter", events)
    entry = getattr(emitter, "_unique_id_handlers", {}).get(uid)
    if entry is None:
        return
    retry = entry["handler"]

    def decided(delay: float | None, caught_exception: Any) -> float | None:
        if delay is None:
            return None
        sent = caught_exception is not None and not isinstance(caught_exception, _NOT_SENT)
        if sent and retries.increment_running() is not None:
            return None  # the request went out: the server may have counted it
        return deadline.afford(delay * _BACKOFF_SCALE)

    if inspect.iscoroutinefunction(retry):  # aiobotocore's

        async def awithin_deadline(**kwargs: Any) -> float | None:
            kwargs = _seen_as_cut(kwargs)
            return decided(await retry(**kwargs), kwargs.get("caught_exception"))

        handler: Callable[..., Any] = awithin_deadline
    else:

        def within_deadline(**kwargs: Any) -> float | None:
            kwargs = _seen_as_cut(kwargs)
            return decided(retry(**kwargs), kwargs.get("caught_exception"))

        handler = within_deadline
    events.unregister(name, unique_id=uid)
    events.register(name, handler, unique_id=uid)


@functools.cache
def _aiobotocore_installed() -> bool:
    return importlib.util.find_spec("aiobotocore") is not None


@functools.cache
def _user_agent() -> str:
    # The SDK's classic User-Agent (botocore adds its own name and version, then the extra).
    return (
        f"Boto3/{boto3.__version__} Python/{platform.python_version()}"
        f" {platform.system()}/{platform.release()}"
    )


class DynamoDBStore(Store):
    kind = "dynamodb"
    default_max_record_bytes = 400 * 1024
    error_kinds = (
        ErrorKind(
            ClientError,
            ConfigurationError,
            "the table or its index {store.options.user_index} does not exist: " + INIT_HINT,
            when=_code_is("ResourceNotFoundException"),
        ),
        ErrorKind(
            ClientError,
            ConfigurationError,
            f"the credentials' IAM policy must allow {', '.join(SESSION_ACTIONS)} on the"
            f" table and its indexes (init/destroy also {', '.join(ADMIN_ACTIONS)});"
            " `cloudsessions check` probes each",
            when=_code_is("AccessDeniedException"),
        ),
        ErrorKind(
            ClientError,
            ConfigurationError,
            "AWS did not accept the access key: check AWS_ACCESS_KEY_ID and"
            " AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN for temporary credentials), or"
            " the profile= option, and renew expired credentials (not an IAM permission issue)",
            when=_code_is(*KEY_ERRORS),
        ),
        ErrorKind(
            ClientError,
            ConfigurationError,
            "the user index {store.options.user_index} is missing or not ACTIVE yet (being"
            " built, or rebuilt by `cloudsessions init --fix`): " + INIT_HINT,
            when=_no_user_index,
        ),
        # Keys written by other requests grew the item past 400 KB: the size check before
        # a write only sees this request's copy of the session.
        ErrorKind(ClientError, SessionTooLarge, when=_item_too_large),
        ErrorKind(
            ClientError,
            ConfigurationError,
            "check the partition_key, sort_key and attribute options against the table",
            when=_code_is("ValidationException"),
        ),
        # Throttling and server errors, after botocore's retries.
        ErrorKind(ClientError, StoreUnavailable),
        ErrorKind(
            (NoCredentialsError, PartialCredentialsError),
            ConfigurationError,
            "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE (or the profile= option),"
            " or give the process a role",
        ),
        ErrorKind(
            NoRegionError,
            ConfigurationError,
            "put region= in the store URL (dynamodb://TABLE?region=eu-west-1)"
            " or set AWS_DEFAULT_REGION",
        ),
        ErrorKind(ProfileNotFound, ConfigurationError, "check the profile= option"),
        ErrorKind(
            ParamValidationError, ConfigurationError, "check the table, key and attribute options"
        ),
        # botocore's check of endpoint=, when the client is made.
        ErrorKind(
            ValueError,
            ConfigurationError,
            "endpoint= must be a URL such as http://localhost:8000",
            when=lambda exc: "endpoint" in str(exc).lower(),
        ),
        ErrorKind(
            EndpointConnectionError,
            StoreUnavailable,
            "check region=, endpoint= and that this machine reaches DynamoDB",
        ),
        # Connection refused or reset, timeouts: botocore has already retried.
        ErrorKind(BotoCoreError, StoreUnavailable),
    )

    def __init__(self, table: str, options: DynamoDBOptions) -> None:
        super().__init__(max_record_bytes=options.max_record_bytes, deadline=options.deadline)
        check_name("table", table)
        self.table = table
        self.options = options
        # Shown in hints to run `cloudsessions init`; from_url gives the whole URL (it
        # carries no secrets: credentials never go in it).
        self.url = f"dynamodb://{table}"
        self._requests = Requests(table, options)
        self._clients = PerProcess(self._make_client, lambda client: client.close())
        self._aclients = PerLoop(self._make_aclient)
        if options.client is not None:
            self._register_hooks(options.client)

    @classmethod
    def from_url(cls, url: StoreURL, options: Mapping[str, Any]) -> DynamoDBStore:
        if not url.netloc or url.path not in ("", "/"):
            raise ConfigurationError(
                f"dynamodb store URL {url.raw!r} must look like"
                " dynamodb://TABLE?region=REGION[&endpoint=URL]"
            )
        store = cls(url.netloc, parse_options(DynamoDBOptions, cls.kind, options))
        store.url = url.raw
        return store

    def describe(self) -> str:
        o = self.options
        where = o.endpoint or (f"region {o.region}" if o.region else "the default region")
        return f"dynamodb table {self.table} ({where})"

    # ---------------------------------------------------------------------- clients

    @property
    def client(self) -> Any:
        """The boto3 DynamoDB client: the one given in the options, else this process's."""
        return self._clients.get() if self.options.client is None else self.options.client

    def _make_client(self) -> Any:
        with self._errors("create the boto3 client"):
            session = self.options.session or boto3.session.Session(
                profile_name=self.options.profile
            )
            client = session.client("dynamodb", **self._client_arguments(Config))
        self._register_hooks(client)
        return client

    async def _make_aclient(self, stack: contextlib.AsyncExitStack) -> Any:
        from aiobotocore.config import AioConfig
        from aiobotocore.session import AioSession

        with self._errors("create the aiobotocore client"):
            session = AioSession(profile=self.options.profile)
            client = await stack.enter_async_context(
                session.create_client("dynamodb", **self._client_arguments(AioConfig))
            )
        self._register_hooks(client)
        return client

    def _client_arguments(self, config_class: type[Config]) -> dict[str, Any]:
        o = self.options
        config = config_class(
            connect_timeout=min(o.connect_timeout, o.deadline),
            read_timeout=min(o.read_timeout, o.deadline),
            # total_max_attempts counts the first try; botocore's max_attempts does not.
            retries={"mode": o.retry_mode, "total_max_attempts": o.max_attempts},
            max_pool_connections=o.max_pool_connections,
            # Per-call work botocore does by default, left out (benchmarks/django_latency.py
            # measures each request against the raw call): every request is built by
            # requests.py, never from user input, so checking it against the service model
            # on each call (about 30 µs) finds nothing; and a User-Agent given here is used as
            # is, where botocore otherwise assembles its own from a dozen parts twice per
            # request (about 60 µs).
            parameter_validation=False,
            user_agent=_user_agent(),
            user_agent_extra="cloudsessions",
        )
        return {"region_name": o.region, "endpoint_url": o.endpoint, "config": config}

    def _register_hooks(self, client: Any) -> None:
        # The request deadline (cloudsessions.deadline) on each attempt botocore makes.
        # (A function of the timeout, not a method: the client must not keep the store.)
        bound = functools.partial(_bound_attempt, self.options.read_timeout)
        client.meta.events.register("before-send.dynamodb", bound)
        _bound_backoff(client)
        client.meta.events.register("after-call.dynamodb", _complete_answer)
        for event, handler in (self.options.event_hooks or {}).items():
            client.meta.events.register(event, handler)

    def native_async(self) -> bool:
        o = self.options
        return o.client is None and o.session is None and _aiobotocore_installed()

    def close(self) -> None:
        self._clients.close()
        self._aclients.close()

    async def aclose(self) -> None:
        await self._aclients.aclose()

    # --------------------------------------------------------------------- contract
    # Each operation once for the sync client, once for the running loop's async one.

    def _load(self, rid: str) -> EncodedRecord | None:
        with self._errors("load a session"):
            response = self.client.get_item(**self._requests.get(rid))
        return self._requests.record(response.get("Item"))

    async def _aload(self, rid: str) -> EncodedRecord | None:
        client = await self._aclients.get()
        with self._errors("load a session"):
            response = await client.get_item(**self._requests.get(rid))
        return self._requests.record(response.get("Item"))

    def _create(self, rid: str, record: EncodedRecord) -> None:
        with self._errors("create a session"), _failed_condition_means(SessionExists, _EXISTS):
            self.client.put_item(**self._requests.put(rid, record))

    async def _acreate(self, rid: str, record: EncodedRecord) -> None:
        client = await self._aclients.get()
        with self._errors("create a session"), _failed_condition_means(SessionExists, _EXISTS):
            await client.put_item(**self._requests.put(rid, record))

    def _save(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        updates = self._requests.updates(rid, changes, expires_at, user_id, now)
        with self._errors("save a session"), _failed_condition_means(SessionGone, _GONE):
            for params in updates:
                self.client.update_item(**params)

    async def _asave(
        self, rid: str, changes: Changes, expires_at: float, user_id: str | None, now: float
    ) -> None:
        client = await self._aclients.get()
        updates = self._requests.updates(rid, changes, expires_at, user_id, now)
        with self._errors("save a session"), _failed_condition_means(SessionGone, _GONE):
            for params in updates:
                await client.update_item(**params)

    def _delete(self, rid: str) -> None:
        with self._errors("delete a session"):
            self.client.delete_item(**self._requests.delete(rid))

    async def _adelete(self, rid: str) -> None:
        client = await self._aclients.get()
        with self._errors("delete a session"):
            await client.delete_item(**self._requests.delete(rid))

    # One conditional UpdateItem; a second only the first time a plain value becomes a
    # counter (DynamoDB cannot add to a string, nor branch on a type in one update).

    def _increment(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        plain = False
        with self._errors("increment a counter"):
            for _ in range(_INCREMENT_ROUNDS):
                params = self._requests.increment(rid, field, delta, base, expires_at, now, plain)
                try:
                    return self._requests.counter(self.client.update_item(**params), field)
                except ClientError as exc:
                    plain = self._requests.holds_plain_value(exc, field, now)
        raise self._contended()

    async def _aincrement(
        self, rid: str, field: str, delta: int, base: int, expires_at: float, now: float
    ) -> int:
        client = await self._aclients.get()
        plain = False
        with self._errors("increment a counter"):
            for _ in range(_INCREMENT_ROUNDS):
                params = self._requests.increment(rid, field, delta, base, expires_at, now, plain)
                try:
                    return self._requests.counter(await client.update_item(**params), field)
                except ClientError as exc:
                    plain = self._requests.holds_plain_value(exc, field, now)
        raise self._contended()

    def _contended(self) -> StoreUnavailable:
        return StoreUnavailable(
            f"{self.describe()}: a counter kept changing type under concurrent writes"
        )

    # ------------------------------------------------------------------------ users

    # The user index holds keys only (see admin._index_spec): a listing reads the records
    # it names in one BatchGetItem per 100; a delete needs no more than the keys.

    def _user_rids(self, user_id: str) -> list[str]:
        with self._errors("query the sessions of a user"):
            pages = self.client.get_paginator("query").paginate(
                **self._requests.user_query(user_id)
            )
            return [
                self._requests.record_id(item) for page in pages for item in page.get("Items", [])
            ]

    def _for_user(self, user_id: str) -> list[SessionInfo]:
        batches = self._requests.batch_gets(self._user_rids(user_id))
        what = "read the sessions of a user"
        responses = self._batched(self.client.batch_get_item, batches, "UnprocessedKeys", what)
        items = [item for r in responses for item in r.get("Responses", {}).get(self.table, [])]
        found = (self._requests.session_info(item, user_id) for item in items)
        return [info for info in found if info is not None]

    def _delete_for_user(
        self, user_id: str, keep_rid: str | None, progress: Progress | None = None
    ) -> list[str]:
        doomed = [rid for rid in self._user_rids(user_id) if rid != keep_rid]
        self.delete_records(doomed, progress)
        return doomed

    def _revoke(self, user_id: str, rid: str) -> bool:
        # One DeleteItem whose condition is the owner: no index query first.
        with self._errors("revoke a session"):
            try:
                self.client.delete_item(**self._requests.revoke(rid, user_id))
            except ClientError as exc:
                if code(exc) == "ConditionalCheckFailedException":
                    return False  # gone already, or another user's
                raise
        return True

    def delete_records(self, rids: list[str], progress: Progress | None = None) -> None:
        """BatchWriteItem, 25 records a call; `progress` gets the running count after each
        batch is done (what DynamoDB left unprocessed resent)."""
        write, what = self.client.batch_write_item, "delete sessions in a batch"
        deleted = 0
        for batch in self._requests.batch_deletes(rids):
            for _ in self._batched(write, [batch], "UnprocessedItems", what):
                pass
            deleted += len(batch[self.table])
            if progress is not None:
                progress(deleted)

    def _batched(
        self, call: Callable[..., Any], batches: Iterable[Any], leftover: str, what: str
    ) -> Iterator[Mapping[str, Any]]:
        """Each response of `call` (BatchGetItem or BatchWriteItem) for each batch, the
        batch resent with what DynamoDB left in `leftover` until nothing is left."""
        for batch in batches:
            pending = batch
            # botocore retries a throttled request, but a batch that is accepted with
            # some items left unprocessed has to be resent by the caller.
            for attempt in range(_UNPROCESSED_RETRIES):
                if attempt:
                    time.sleep(min(0.05 * 2 ** (attempt - 1), 2.0))
                with self._errors(what):
                    response = call(RequestItems=pending)
                yield response
                pending = response.get(leftover) or {}
                if not pending:
                    break
            else:
                raise StoreUnavailable(
                    f"{self.describe()}: DynamoDB left requests unprocessed after"
                    f" {_UNPROCESSED_RETRIES} attempts (throughput exceeded); could not {what}"
                )

    # ------------------------------------------------- operations (see admin.py)

    def _purge_expired(self, now: float, batch_size: int, progress: Progress | None) -> int:
        return admin.purge_expired(self, now, batch_size, progress)

    def ttl_enabled(self) -> bool:
        """True if the table's TTL deletes expired sessions (enabled on our TTL attribute)."""
        return admin.ttl_enabled(self)

    def provision(self, *, fix: bool = False) -> list[str]:
        return admin.provision(self, fix=fix)

    def drop(self, *, progress: Progress | None = None) -> None:
        admin.drop(self)

    def drop_target(self) -> tuple[bool, str]:
        """What drop() deletes, or why there is nothing to (see cloudsessions.admin)."""
        return admin.drop_target(self)

    def purge_note(self) -> str | None:
        """Why purge_expired leaves expired sessions: the table's TTL deletes them."""
        return admin.purge_note(self)

    def check(self) -> list[CheckResult]:
        return admin.check(self)

    def record_size(self, record: EncodedRecord) -> int:
        return self._requests.record_size(record)
