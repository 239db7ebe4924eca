"""Flask-Session 0.8 as a previous backend: its Redis, MongoDB, DynamoDB and filesystem
(cachelib's FileSystemCache) session interfaces, read in their own layouts.

What Flask-Session 0.8 keeps (flask_session/base.py and each backend):
- a session under SESSION_KEY_PREFIX + sid (default "session:"); the sid is
  secrets.token_urlsafe(SESSION_ID_LENGTH); the cookie (Flask's SESSION_COOKIE_NAME,
  "session") holds the sid, or with SESSION_USE_SIGNER the sid signed by itsdangerous
  (Signer(SECRET_KEY, salt="flask-session", key_derivation="hmac"));
- the data as msgpack (SESSION_SERIALIZATION_FORMAT, or "json"); a record it cannot decode
  that way it tries as the other format, then as a pickle (sessions of Flask-Session < 0.7);
- Redis: the bytes under the key, expiring with it (SET EX PERMANENT_SESSION_LIFETIME);
- MongoDB: {id, val, expiration (naive UTC)} in flask_session.sessions, TTL-indexed;
- DynamoDB: {id, val (B), expiration (N, epoch)} in the table "Sessions";
- filesystem: a file named by the SHA-256 (cachelib >= 0.16; MD5 before) of the key: a
  4-byte expiry, then the pickled session dict.

A record past its expiry is not copied. Flask-Session itself reads no expiry: it relies on
the store's sweeper (Redis at once, MongoDB within a minute, DynamoDB never: 0.8's call that
turns the table's TTL on fails, silenced), and a permanent session's cookie expired with
the record. Values are stored as our Flask front door stores them (Flask's tagged JSON),
so a tuple, bytes or a datetime comes back as what Flask-Session returned.
"""

from __future__ import annotations

import hashlib
import pickle
import re
import struct
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .records import (
    Client,
    DynamoDBTable,
    MongoCollection,
    Page,
    RecordSource,
    plain_key,
    user_of,
)
from .source import OldSession, token, untoken

DEFAULT_PREFIX = "session:"  # flask_session.defaults.Defaults.SESSION_KEY_PREFIX
FLASK_LIFETIME = 31 * 24 * 3600  # Flask's PERMANENT_SESSION_LIFETIME default
FLASK_USER_ID_KEY = "_user_id"  # Flask-Login's
SIGNER_SALT = "flask-session"


class FlaskSessionSource(RecordSource):
    """What every Flask-Session backend shares: the key prefix, the signed or plain sid in
    the cookie, the serializer, and Flask's values.

    `secret_key`: the app's SECRET_KEY, needed with `use_signer` (a list: the newest key
    last, older ones still accepted). `lifetime`: the expiry of a copy whose record has none
    (a Redis key without a TTL, a cache file with timeout 0).
    """

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        use_signer: bool = False,
        secret_key: str | bytes | list[str] | list[bytes] | None = None,
        serialization_format: str = "msgpack",
        lifetime: float = FLASK_LIFETIME,
        user_id_key: str | None = FLASK_USER_ID_KEY,
        keep_old: bool = False,
        cookie_name: str | None = None,
    ) -> None:
        super().__init__(user_id_key=user_id_key, keep_old=keep_old, cookie_name=cookie_name)
        if serialization_format not in ("msgpack", "json"):
            raise ConfigurationError(
                f'serialization_format must be "msgpack" or "json" (SESSION_SERIALIZATION_FORMAT),'
                f" got {serialization_format!r}"
            )
        self.prefix = prefix
        self.lifetime = lifetime
        self.serialization_format = serialization_format
        self._signer: Any = None
        if use_signer:
            if not secret_key:
                raise ConfigurationError(
                    "Flask-Session's signed ids (SESSION_USE_SIGNER) need the app's SECRET_KEY:"
                    " pass secret_key="
                )
            from itsdangerous import Signer

            self._signer = Signer(secret_key, salt=SIGNER_SALT, key_derivation="hmac")
        self._decoders: list[Any] | None = None

    def describe(self) -> str:
        return f"{self.name} (prefix {self.prefix!r})"

    # ----------------------------------------------------------- keys and cookies

    def locate(self, key: str) -> str | None:
        sid: str | None = key
        if self._signer is not None:
            from itsdangerous import BadSignature

            try:
                sid = self._signer.unsign(key).decode()
            except (BadSignature, UnicodeError):
                return None
        sid = plain_key(sid) if sid else None
        return None if sid is None else self.prefix + sid

    def key_of(self, ref: str) -> str | None:
        sid = ref[len(self.prefix) :] if ref.startswith(self.prefix) else None
        if sid is None or plain_key(sid) is None:
            return None  # another app's record, or not one of Flask-Session's ids
        return str(self._signer.sign(sid).decode()) if self._signer is not None else sid

    # ----------------------------------------------------------- records

    def old_session(self, data: dict[str, Any] | None, expires_at: float) -> OldSession | str:
        if expires_at <= time.time():
            return "expired"
        if data is None:
            return "undecodable: not Flask-Session's msgpack, JSON or pickle of a dict"
        if not data or data.keys() == {"_permanent"}:
            return "empty"  # Flask-Session's own test for a session worth keeping
        stored = flask_values(data)
        if isinstance(stored, str):
            return stored
        return OldSession(stored, expires_at, user_of(data, self.user_id_key))

    def decode(self, blob: Any) -> dict[str, Any] | None:
        """Flask-Session's MsgSpecSerializer.decode: the format, the other one, a pickle."""
        if isinstance(blob, str):
            blob = blob.encode()
        if not isinstance(blob, bytes | bytearray | memoryview):
            return None
        for decoder in self._msgspec_decoders():
            try:
                data = decoder.decode(blob)
            except Exception:  # noqa: BLE001, S112 - msgspec.DecodeError, or a non-UTF-8 JSON
                continue
            return data if isinstance(data, dict) else None
        try:
            # The format Flask-Session < 0.7 wrote, read back as 0.8 reads it, from the
            # store the old app trusted with exactly that.
            data = pickle.loads(bytes(blob))  # noqa: S301
        except Exception:  # noqa: BLE001 - any unpickling error: not a session
            return None
        return data if isinstance(data, dict) else None

    def _msgspec_decoders(self) -> list[Any]:
        if self._decoders is None:
            try:
                import msgspec
            except ImportError as exc:
                raise ConfigurationError(
                    "reading Flask-Session 0.8's sessions needs msgspec (a dependency of"
                    " Flask-Session): pip install msgspec"
                ) from exc
            found = [msgspec.msgpack.Decoder(), msgspec.json.Decoder()]
            self._decoders = found if self.serialization_format == "msgpack" else found[::-1]
        return self._decoders


def flask_values(data: dict[str, Any]) -> dict[str, Any] | str:
    """The values as our Flask front door stores them (Flask's tagged JSON, as
    FlaskCookieSource copies them), or why they cannot be."""
    from flask.sessions import SecureCookieSessionInterface

    from ..flask import TaggedValues

    values = TaggedValues(SecureCookieSessionInterface.serializer)
    try:
        return {name: values.dump(value) for name, value in data.items()}
    except (TypeError, ValueError) as exc:
        return f"undecodable: a value Flask's tagged JSON cannot hold ({exc})"


# --------------------------------------------------------------------------- Redis


def _glob_escaped(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


END = "end"  # the token after the last batch: Redis cursor 0 would start over


def _found(blob: Any, ttl: Any) -> tuple[bytes, int] | None:
    """GET and PTTL of a key: None if it is gone, or not a string (not Flask-Session's)."""
    if blob is None or isinstance(blob, Exception) or isinstance(ttl, Exception):
        return None
    return blob, ttl


class FlaskSessionRedis(FlaskSessionSource):
    """SESSION_TYPE = "redis": `client` (your SESSION_REDIS, a redis.Redis) or `url`
    (redis://HOST:PORT/DB). A scan is Redis's SCAN over the prefix: every key there for the
    whole scan is visited, and Redis may return one twice if the database shrinks meanwhile
    (the copy of a session twice is one copy: see migrated_id)."""

    name = "Flask-Session's Redis sessions"

    def __init__(self, client: Any = None, *, url: str | None = None, **options: Any) -> None:
        super().__init__(**options)
        if client is None and url is None:
            raise ConfigurationError("FlaskSessionRedis needs client= (a redis.Redis) or url=")
        self.url = url

        def make() -> Any:
            import redis

            assert url is not None  # else a client was given
            return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

        self.client = Client(client, make)

    def read(self, ref: str) -> Any | None:
        pipe = self.client.get().pipeline(transaction=False)
        blob, ttl = pipe.get(ref).pttl(ref).execute(raise_on_error=False)
        return _found(blob, ttl)

    def session(self, record: Any) -> OldSession | str:
        blob, ttl = record
        expires_at = time.time() + (ttl / 1000 if ttl >= 0 else self.lifetime)
        return self.old_session(self.decode(blob), expires_at)

    def delete(self, ref: str) -> None:
        self.client.get().delete(ref)

    def count(self) -> int | None:
        return None  # DBSIZE would count every key of the database, not the prefix's

    def pages(self, resume: str | None, batch_size: int) -> Iterator[Page]:
        if resume and untoken(resume) == END:
            return
        redis = self.client.get()
        cursor = int(untoken(resume)) if resume else 0
        match = _glob_escaped(self.prefix) + "*"
        while True:
            cursor, keys = redis.scan(cursor, match=match, count=batch_size)
            names = [k.decode(errors="replace") if isinstance(k, bytes) else k for k in keys]
            after = token(END if cursor == 0 else str(cursor))
            if names:
                pipe = redis.pipeline(transaction=False)
                for name in names:
                    pipe.get(name).pttl(name)
                answers = pipe.execute(raise_on_error=False)
                found = zip(names, answers[::2], answers[1::2], strict=True)
                rows = [(name, _found(blob, ttl)) for name, blob, ttl in found]
                yield [(name, record) for name, record in rows if record is not None], after
            if cursor == 0:
                return


# ------------------------------------------------------------------------- MongoDB


class FlaskSessionMongoDB(FlaskSessionSource):
    """SESSION_TYPE = "mongodb": `client` (your SESSION_MONGODB) or `uri`, and the
    SESSION_MONGODB_DB and SESSION_MONGODB_COLLECT names."""

    name = "Flask-Session's MongoDB sessions"

    def __init__(
        self,
        client: Any = None,
        *,
        uri: str | None = None,
        database: str = "flask_session",
        collection: str = "sessions",
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if client is None and uri is None:
            raise ConfigurationError("FlaskSessionMongoDB needs client= (a MongoClient) or uri=")
        self.table = MongoCollection(client, uri, database, collection, "id")

    def describe(self) -> str:
        return f"{super().describe()} in {self.table.database}.{self.table.collection}"

    def session(self, record: Any) -> OldSession | str:
        expiration = record.get("expiration")
        if isinstance(expiration, datetime):
            aware = expiration if expiration.tzinfo else expiration.replace(tzinfo=UTC)
            expires_at = aware.timestamp()
        else:
            expires_at = time.time() + self.lifetime
        return self.old_session(self.decode(record.get("val")), expires_at)


# ------------------------------------------------------------------------ DynamoDB


class FlaskSessionDynamoDB(FlaskSessionSource):
    """SESSION_TYPE = "dynamodb": `client` (your SESSION_DYNAMODB, a boto3 resource or
    client) or `region` / `endpoint`, and the SESSION_DYNAMODB_TABLE name.

    `utc_offset`: the UTC offset in seconds of the old app's servers (e.g. -21600 for
    America/Chicago in winter). Flask-Session 0.8 writes `expiration` as utcnow() + lifetime
    read as local time, so unless its servers ran in UTC (0, the default) the stored expiry
    is off by that offset, which the copy corrects.
    """

    name = "Flask-Session's DynamoDB sessions"

    def __init__(
        self,
        client: Any = None,
        *,
        table: str = "Sessions",
        region: str | None = None,
        endpoint: str | None = None,
        utc_offset: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.utc_offset = utc_offset
        self.table = DynamoDBTable(client, table, "id", region, endpoint)

    def describe(self) -> str:
        return f"{super().describe()} in table {self.table.table}"

    def session(self, record: Any) -> OldSession | str:
        value, expiration = record.get("val"), record.get("expiration")
        blob = getattr(value, "value", value)  # boto3's Binary
        if expiration is None:
            expires_at = time.time() + self.lifetime
        else:
            expires_at = float(expiration) + self.utc_offset
        return self.old_session(self.decode(blob), expires_at)


# ---------------------------------------------------------------------- filesystem


HEADER = struct.Struct("I")  # cachelib's: the expiry (epoch seconds, 0: none), native order


class FlaskSessionFiles(FlaskSessionSource):
    """SESSION_TYPE = "filesystem" (SESSION_FILE_DIR), or "cachelib" with a
    cachelib.FileSystemCache: the files of `directory`.

    Files are named by a hash of each session's key, so the ids cannot be read back: there
    is no bulk copy, and the read-through copies each session at its next request.
    `hash_method`: "sha256" (cachelib >= 0.16) or "md5" (before); by default both are tried.
    """

    name = "Flask-Session's session files"

    def __init__(
        self, directory: str | Path, *, hash_method: str | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        self.directory = Path(directory)
        self.hash_methods = [hash_method] if hash_method else ["sha256", "md5"]
        for method in self.hash_methods:
            hashlib.new(method)  # a ValueError now, not at the first request

    def describe(self) -> str:
        return f"{super().describe()} in {self.directory}"

    def _paths(self, ref: str) -> list[Path]:
        names = (hashlib.new(m, ref.encode(), usedforsecurity=False) for m in self.hash_methods)
        return [self.directory / name.hexdigest() for name in names]

    def read(self, ref: str) -> Any | None:
        for path in self._paths(ref):
            try:
                content = path.read_bytes()
            except FileNotFoundError:
                continue
            return content
        return None

    def session(self, record: Any) -> OldSession | str:
        if len(record) < HEADER.size:
            return "undecodable: a truncated cache file"
        (expires,) = HEADER.unpack_from(record)
        expires_at = float(expires) if expires else time.time() + self.lifetime
        try:
            # cachelib's FileSystemSerializer: the pickle the old app wrote and read back.
            data = pickle.loads(record[HEADER.size :])  # noqa: S301
        except Exception:  # noqa: BLE001 - any unpickling error: not a session
            data = None
        return self.old_session(data if isinstance(data, dict) else None, expires_at)

    def delete(self, ref: str) -> None:
        for path in self._paths(ref):
            path.unlink(missing_ok=True)

    def count(self) -> int | None:
        return None  # there is no scan to count for

    def pages(self, resume: str | None, batch_size: int) -> Iterator[Page]:
        raise NotImplementedError(
            f"{self.describe()} are named by a hash of each session id, which cannot be read"
            " back: the read-through copies each session at its next request"
        )
