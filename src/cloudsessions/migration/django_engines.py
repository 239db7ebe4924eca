"""Django's session engines as a previous backend: any SESSION_ENGINE path, through Django's
own API (db, cached_db, cache, file, signed_cookies, and third-party engines such as the
seed engines on DynamoDB, Firestore and MongoDB).

Each lookup is the engine's own read, without its side effects: Django's file engine
creates a fresh session file when it finds an expired one, so that engine is read from its
file directly. The expiry copied is the old one where the engine keeps it (db and cached_db:
the row's expire_date; file: the file's age; signed_cookies: the cookie's signing time), and
for other engines (cache, third-party) the one Django computes, `get_expiry_date()`: the
session's own expiry if it set one, else SESSION_COOKIE_AGE from now.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from .source import Found, OldSession, Source

DJANGO_USER_ID_KEY = "_auth_user_id"  # django.contrib.auth.SESSION_KEY


class DjangoEngineSource(Source):
    """The sessions of a Django session engine, named by its SESSION_ENGINE path."""

    def __init__(
        self,
        engine: str = "django.contrib.sessions.backends.db",
        *,
        user_id_key: str | None = DJANGO_USER_ID_KEY,
        keep_old: bool = False,
        cookie_name: str | None = None,
    ) -> None:
        super().__init__(keep_old=keep_old, cookie_name=cookie_name)
        self.engine = engine
        self.user_id_key = user_id_key
        self.name = engine  # type: ignore[misc]  # instances name their engine

    def _store_class(self) -> Any:
        return importlib.import_module(self.engine).SessionStore

    def fetch(self, key: str) -> OldSession | None:
        store = self._store_class()(key)
        if store.session_key is None:  # Django refused the key's shape
            return None
        found = self._read(store)
        if found is None:
            return None
        data, expires = found
        if expires <= datetime.now(expires.tzinfo):
            return None
        user = data.get(self.user_id_key) if self.user_id_key else None
        return OldSession(data, expires.timestamp(), None if user is None else str(user))

    def _read(self, store: Any) -> tuple[dict[str, Any], datetime] | None:
        """The session's data and expiry, read as the engine reads it, or None."""
        from django.contrib.sessions.backends.file import SessionStore as FileStore
        from django.contrib.sessions.backends.signed_cookies import SessionStore as SignedStore

        if hasattr(store, "_get_session_from_db"):  # db, cached_db: the row, one query
            row = store._get_session_from_db()
            return (store.decode(row.session_data), row.expire_date) if row else None
        if isinstance(store, FileStore):
            return self._read_file(store)
        data = store.load()
        if not data:
            return None
        if isinstance(store, SignedStore):
            return data, self._signed_expiry(store, data)
        return data, store.get_expiry_date(expiry=data.get("_session_expiry"))

    @staticmethod
    def _read_file(store: Any) -> tuple[dict[str, Any], datetime] | None:
        from django.core.exceptions import SuspiciousOperation

        try:
            with open(store._key_to_file(), encoding="ascii") as file:
                text = file.read()
        except (OSError, SuspiciousOperation):  # no such session, or a key Django refuses
            return None
        data = store.decode(text) if text else {}
        return (data, store._expiry_date(data)) if data else None

    @staticmethod
    def _signed_expiry(store: Any, data: dict[str, Any]) -> datetime:
        from django.core import signing
        from django.utils import timezone

        if data.get("_session_expiry") is not None:
            return store.get_expiry_date(expiry=data["_session_expiry"])  # type: ignore[no-any-return]
        # The value is "payload:timestamp:signature"; load() checked the signature.
        signed_at = signing.b62_decode(store.session_key.rsplit(":", 2)[1])
        age = timedelta(seconds=store.get_session_cookie_age())
        return datetime.fromtimestamp(signed_at, timezone.get_current_timezone()) + age

    def discard(self, key: str) -> None:
        self._store_class()(key).delete(key)

    def discard_many(self, keys: list[str]) -> None:
        """db and cached_db: one DELETE for the batch (and cached_db's cache entries)."""
        store_class = self._store_class()
        if not hasattr(store_class, "get_model_class"):
            super().discard_many(keys)
            return
        store_class.get_model_class().objects.filter(session_key__in=keys).delete()
        if hasattr(store_class, "cache_key_prefix"):  # cached_db keeps a copy in the cache
            cache = store_class()._cache  # SESSION_CACHE_ALIAS's, as the engine picks it
            cache.delete_many([store_class.cache_key_prefix + key for key in keys])

    def scan(self, resume: str | None, batch_size: int) -> Iterator[tuple[list[Found], str]]:
        """db and cached_db: the session table in key order, resumable after any key."""
        store_class = self._store_class()
        model = store_class.get_model_class() if hasattr(store_class, "get_model_class") else None
        if model is None:
            raise NotImplementedError(
                f"{self.engine} cannot list its sessions; the read-through copies each at"
                " its next request"
            )
        from django.utils import timezone

        after = resume or ""
        while True:
            rows = list(
                model.objects.filter(session_key__gt=after)
                .order_by("session_key")
                .values_list("session_key", "session_data", "expire_date")[:batch_size]
            )
            if not rows:
                return
            decoder = store_class()
            now, batch = timezone.now(), []
            for key, text, expires in rows:
                if expires <= now:
                    batch.append(Found(key, None, "expired"))
                    continue
                data = decoder.decode(text)
                if not data:
                    batch.append(Found(key, None, "undecodable or empty"))
                    continue
                user = data.get(self.user_id_key) if self.user_id_key else None
                session = OldSession(data, expires.timestamp(), None if user is None else str(user))
                batch.append(Found(key, session))
            after = rows[-1][0]
            yield batch, after

    def count(self) -> int | None:
        store_class = self._store_class()
        if not hasattr(store_class, "get_model_class"):
            return None
        return int(store_class.get_model_class().objects.count())
