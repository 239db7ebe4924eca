"""The seed engines' layouts as previous backends, read with the SDKs our stores use
(boto3, pymongo, google-cloud-firestore), not through the engines: those read their
settings at import, make clients per request and tables in constructors, and none can
list its sessions.

- `DynamoDBEngineSource`: the "Django DynamoDB Sessions Engine" (a dynamodb_session.py
  copied into the site): an item per session, {id, session_data, ttl}, named by its settings
  DYNAMODB_SESSIONS_ATTR_ID / _SESSION_DATA / _TTL (its example settings: these); ttl is
  the expiry in epoch seconds. `DynamoDBEngineSource.dj_dynamodb_sessions()` reads PyPI's
  dj-dynamodb-sessions (DYNAMODB_SESSIONS_TABLE_NAME, items {session_key, data, ttl}).
- `DysessionSource`: django-dysession 1.x: an item per session keyed "PK" (its
  PARTITION_KEY_NAME), each session value an attribute of its own in DynamoDB's types.
- `FirestoreEngineSource`: the Django-Firestore-Session-Engine: a document per session,
  named by the key, {session_key, session_data, expire_date (ISO 8601 text)}.
- `MongoSessionsSource`: django-mongo-sessions: {session_key, session_data, creation_date}
  in test.mongo_sessions; a session lives MONGO_SESSIONS_TTL seconds after its last save.
- `FirestoreTutorialSource`: Google's "Handling sessions with Firestore" Flask tutorial: a
  document per session in "sessions", named by the `session_id` cookie, the values its
  fields; no expiry.

The Django engines keep SessionBase.encode's text: Django's signing, with the salt of a
class named SessionStore (all of them), SECRET_KEY (or SECRET_KEY_FALLBACKS) and
SESSION_SERIALIZER; they need Django's settings, or `secret_key=` (JSON then).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..errors import ConfigurationError
from .django_engines import DJANGO_USER_ID_KEY
from .flask_session import FLASK_LIFETIME, FLASK_USER_ID_KEY, flask_values
from .records import (
    DynamoDBTable,
    FirestoreCollection,
    MongoCollection,
    RecordSource,
    plain_key,
    user_of,
)
from .source import OldSession

DJANGO_SALT = "django.contrib.sessions.SessionStore"  # SessionBase.key_salt of a SessionStore
DJANGO_COOKIE_AGE = 14 * 24 * 3600  # Django's SESSION_COOKIE_AGE default
DJANGO_KEY_MIN = 8  # SessionBase._validate_session_key


def django_cookie_age() -> int:
    from django.conf import settings

    return int(settings.SESSION_COOKIE_AGE) if settings.configured else DJANGO_COOKIE_AGE


class DjangoEncoding:
    """SessionBase.decode for a site's engine, without the engine."""

    def __init__(
        self,
        secret_key: str | None = None,
        fallback_keys: list[str] | None = None,
        salt: str = DJANGO_SALT,
    ) -> None:
        self.secret_key, self.fallback_keys, self.salt = secret_key, fallback_keys, salt

    def decode(self, text: object) -> dict[str, Any] | str:
        """The session dict, or why there is none."""
        from django.core import signing

        if not isinstance(text, str):
            return "undecodable: no session data text"
        fallbacks: list[str | bytes] | None = None
        if self.secret_key is None:
            from django.conf import settings
            from django.utils.module_loading import import_string

            if not settings.configured:
                raise ConfigurationError(
                    "a Django engine's sessions are signed with the site's SECRET_KEY: run with"
                    " Django's settings (DJANGO_SETTINGS_MODULE), or pass secret_key="
                )
            key = None
            serializer: Any = import_string(settings.SESSION_SERIALIZER)
        else:
            key = self.secret_key
            fallbacks = list(self.fallback_keys or [])
            serializer = signing.JSONSerializer
        try:
            data = signing.loads(
                text, key=key, salt=self.salt, serializer=serializer, fallback_keys=fallbacks
            )
        except signing.BadSignature:
            return "undecodable: bad signature (another SECRET_KEY?)"
        except Exception as exc:  # noqa: BLE001 - as SessionBase.decode: not a session
            return f"undecodable: {type(exc).__name__}"
        return data if isinstance(data, dict) else "undecodable: not a dict"


class DjangoRecordSource(RecordSource):
    """A Django engine's record: its session key, Django's encoding, an expiry."""

    def __init__(
        self,
        *,
        secret_key: str | None = None,
        fallback_keys: list[str] | None = None,
        user_id_key: str | None = DJANGO_USER_ID_KEY,
        keep_old: bool = False,
        cookie_name: str | None = None,
    ) -> None:
        super().__init__(user_id_key=user_id_key, keep_old=keep_old, cookie_name=cookie_name)
        self.encoding = DjangoEncoding(secret_key, fallback_keys)

    def locate(self, key: str) -> str | None:
        return plain_key(key, DJANGO_KEY_MIN)

    def django_session(self, text: object, expires_at: float | None) -> OldSession | str:
        if expires_at is None:
            return "undecodable: no expiry"
        if expires_at <= time.time():
            return "expired"
        data = self.encoding.decode(text)
        if isinstance(data, str):
            return data
        if not data:
            return "empty"
        return OldSession(data, expires_at, user_of(data, self.user_id_key))


class DynamoDBEngineSource(DjangoRecordSource):
    """A Django engine's DynamoDB table: {key, data, ttl} attributes (see the module)."""

    name = "the Django DynamoDB engine's sessions"

    def __init__(
        self,
        table: str,
        *,
        client: Any = None,
        region: str | None = None,
        endpoint: str | None = None,
        key_attribute: str = "id",
        data_attribute: str = "session_data",
        ttl_attribute: str = "ttl",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.table = DynamoDBTable(client, table, key_attribute, region, endpoint)
        self.data_attribute, self.ttl_attribute = data_attribute, ttl_attribute

    @classmethod
    def dj_dynamodb_sessions(cls, table: str = "sessions", **options: Any) -> DynamoDBEngineSource:
        """PyPI's dj-dynamodb-sessions (dynamodb_sessions.backends.dynamodb)."""
        source = cls(table, key_attribute="session_key", data_attribute="data", **options)
        source.name = "dj-dynamodb-sessions' sessions"  # type: ignore[misc]
        return source

    def describe(self) -> str:
        return f"{self.name} in table {self.table.table}"

    def session(self, record: Any) -> OldSession | str:
        ttl = record.get(self.ttl_attribute)
        expires_at = float(ttl) if isinstance(ttl, Decimal | int | float) else None
        return self.django_session(record.get(self.data_attribute), expires_at)


class DysessionSource(RecordSource):
    """django-dysession's table: values as attributes; the expiry is the `ttl_attribute`
    if the item has one (1.1.1 writes none, and keeps a session until it is deleted), else
    `lifetime` seconds from the copy (default: SESSION_COOKIE_AGE)."""

    name = "django-dysession's sessions"

    def __init__(
        self,
        table: str = "sessions",
        *,
        client: Any = None,
        region: str | None = None,
        endpoint: str | None = None,
        partition_key: str = "PK",
        sort_key: str = "SK",
        ttl_attribute: str = "ttl",
        lifetime: float | None = None,
        user_id_key: str | None = DJANGO_USER_ID_KEY,
        keep_old: bool = False,
        cookie_name: str | None = None,
    ) -> None:
        super().__init__(user_id_key=user_id_key, keep_old=keep_old, cookie_name=cookie_name)
        self.table = DynamoDBTable(client, table, partition_key, region, endpoint)
        # Not values: its keys, and _session_expiry, which dysession reads as False always.
        self.not_values = {partition_key, sort_key, ttl_attribute, "_session_expiry"}
        self.ttl_attribute, self.lifetime = ttl_attribute, lifetime

    def describe(self) -> str:
        return f"{self.name} in table {self.table.table}"

    def locate(self, key: str) -> str | None:
        return plain_key(key, DJANGO_KEY_MIN)

    def session(self, record: Any) -> OldSession | str:
        ttl = record.get(self.ttl_attribute)
        if isinstance(ttl, Decimal) and ttl < int(time.time()):  # dysession's own test
            return "expired"
        lifetime = self.lifetime if self.lifetime is not None else django_cookie_age()
        expires_at = float(ttl) if isinstance(ttl, Decimal) else time.time() + lifetime
        try:
            data = {k: _json(v) for k, v in record.items() if k not in self.not_values}
        except TypeError as exc:
            return f"undecodable: {exc}"
        if not data:
            return "empty"
        return OldSession(data, expires_at, user_of(data, self.user_id_key))


def _json(value: Any) -> Any:
    """A DynamoDB value as the JSON value Django's session held before boto3 stored it."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_json(v) for v in value)
    if value is None or isinstance(value, str | bool):
        return value
    raise TypeError(f"a {type(value).__name__} value, which a Django session cannot hold")


class FirestoreEngineSource(DjangoRecordSource):
    """The Django Firestore engine's collection (the engine's __SESSION_COL__)."""

    name = "the Django Firestore engine's sessions"

    def __init__(
        self,
        collection: str,
        *,
        project: str | None = None,
        client: Any = None,
        emulator_host: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.table = FirestoreCollection(client, project, emulator_host, collection)

    def describe(self) -> str:
        return f"{self.name} in collection {self.table.path}"

    def locate(self, key: str) -> str | None:
        ref = super().locate(key)
        return ref if ref is not None and self.table.valid(ref) else None

    def session(self, record: Any) -> OldSession | str:
        try:
            # get_expiry_date().isoformat(): aware with USE_TZ, else local time, as
            # Django's process has it (Django sets TZ to TIME_ZONE).
            expires_at = datetime.fromisoformat(record.get("expire_date")).timestamp()
        except (TypeError, ValueError):
            return "undecodable: no expire_date"
        return self.django_session(record.get("session_data"), expires_at)


class MongoSessionsSource(DjangoRecordSource):
    """django-mongo-sessions' collection. `ttl`: MONGO_SESSIONS_TTL; by default the
    expireAfterSeconds of the engine's creation_date index, else SESSION_COOKIE_AGE."""

    name = "django-mongo-sessions' sessions"

    def __init__(
        self,
        client: Any = None,
        *,
        uri: str | None = None,
        database: str = "test",
        collection: str = "mongo_sessions",
        ttl: float | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if client is None and uri is None:
            raise ConfigurationError("MongoSessionsSource needs client= (a MongoClient) or uri=")
        self.table = MongoCollection(client, uri, database, collection, "session_key")
        self.ttl = ttl

    def describe(self) -> str:
        return f"{self.name} in {self.table.database}.{self.table.collection}"

    def _ttl(self) -> float:
        if self.ttl is None:
            found = self.table.expire_after("creation_date_1")  # the engine's TTL index
            self.ttl = found if found is not None else float(django_cookie_age())
        return self.ttl

    def session(self, record: Any) -> OldSession | str:
        created = record.get("creation_date")
        if not isinstance(created, datetime):
            return "undecodable: no creation_date"
        aware = created if created.tzinfo else created.replace(tzinfo=UTC)  # pymongo's UTC
        return self.django_session(record.get("session_data"), aware.timestamp() + self._ttl())


class FirestoreTutorialSource(RecordSource):
    """Google's Flask-on-Firestore tutorial: the `session_id` cookie names a document whose
    fields are the session's values (stored as our Flask front door stores values). It
    keeps no expiry: a copy lives `lifetime` seconds (Flask's PERMANENT_SESSION_LIFETIME
    default)."""

    name = "the Firestore tutorial's sessions"

    def __init__(
        self,
        collection: str = "sessions",
        *,
        project: str | None = None,
        client: Any = None,
        emulator_host: str | None = None,
        lifetime: float = FLASK_LIFETIME,
        user_id_key: str | None = FLASK_USER_ID_KEY,
        keep_old: bool = False,
        cookie_name: str | None = "session_id",
    ) -> None:
        super().__init__(user_id_key=user_id_key, keep_old=keep_old, cookie_name=cookie_name)
        self.table = FirestoreCollection(client, project, emulator_host, collection)
        self.lifetime = lifetime

    def describe(self) -> str:
        return f"{self.name} in collection {self.table.path}"

    def locate(self, key: str) -> str | None:
        ref = plain_key(key)
        return ref if ref is not None and self.table.valid(ref) else None

    def session(self, record: Any) -> OldSession | str:
        if not record:
            return "empty"
        stored = flask_values(record)
        if isinstance(stored, str):
            return stored
        return OldSession(stored, time.time() + self.lifetime, user_of(record, self.user_id_key))
