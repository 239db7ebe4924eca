"""The MongoDB store's configuration: the URL, our options and PyMongo's.

A store URL is a MongoDB connection string plus our options (MongoDBOptions). Every other
option, in the URL or given separately, is PyMongo's (replicaSet, w, readPreference,
serverSelectionTimeoutMS, tls, ...): checked against PyMongo's list, then handed to the
client we create. Without hosts in the URL, the store uses an application's client.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from pymongo import MongoClient, common
from pymongo.database import Database
from pymongo.errors import ConfigurationError as PyMongoConfigurationError

from ...errors import ConfigurationError
from ...store import StoreOptions, StoreURL
from .requests import Document

T = TypeVar("T")

_DB_NAME = re.compile(r'[^/\\. "$*<>:|?\x00]{1,63}')
_COLLECTION_NAME = re.compile(r"[^$\x00]{1,120}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class MongoDBOptions(StoreOptions):
    """cloudsessions' own options; any other option is PyMongo's."""

    collection: str = "cloudsessions"
    # A database name (over the URL's path); or a pymongo Database, or the dotted path of
    # one ("project.mongo.db"): then the store uses the application's client. A database
    # name cannot hold a '.', so a string with one is a dotted path.
    database: Database[Document] | str | None = None
    # A pymongo MongoClient, or the dotted path of one ("project.mongo.client").
    client: MongoClient[Document] | str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        name = self.collection
        if not _COLLECTION_NAME.fullmatch(name) or name.startswith("system."):
            raise ConfigurationError(f"MongoDB collection name {name!r} is not valid")
        for option, value in (("client", self.client), ("database", self.database)):
            if value is not None and not isinstance(value, str | MongoClient | Database):
                raise ConfigurationError(
                    f"option {option!r} of the mongodb store must be a name, a dotted path or"
                    f" a pymongo {'MongoClient' if option == 'client' else 'Database'},"
                    f" got {type(value).__name__}"
                )

    @property
    def database_name(self) -> str | None:
        return (
            self.database if isinstance(self.database, str) and "." not in self.database else None
        )

    @property
    def application_client(self) -> bool:
        """Whether the store uses an application's client (or Database) instead of a URL's."""
        return self.client is not None or (self.database is not None and self.database_name is None)


OWN_OPTIONS = frozenset(f.name for f in dataclasses.fields(MongoDBOptions))

# Applied to clients we create unless the URL or the options set them: bounded waits, so a
# store that is down or stops answering gives StoreUnavailable in seconds instead of
# PyMongo's 30 s server selection and unbounded socket reads; majority writes, so a session
# written on one web server survives a primary failover.
CLIENT_DEFAULTS: dict[str, Any] = {
    # The whole operation, server selection and the driver's retries included.
    "timeoutMS": 5000,
    "serverSelectionTimeoutMS": 3000,
    "connectTimeoutMS": 3000,
    "socketTimeoutMS": 5000,
    "w": "majority",
    "retryWrites": True,
    "retryReads": True,
    "appname": "cloudsessions",
}


def location(url: StoreURL, options: MongoDBOptions) -> tuple[str | None, str | None]:
    """The URI for the client we create (None: the application's) and the database name."""
    if url.netloc and options.application_client:
        raise ConfigurationError(
            f"{_redact(url.raw)} names hosts and the 'client'/'database' option names an"
            " application's client: give one, as mongodb:///DB?collection=NAME with the"
            " option, or the full URL without it"
        )
    if not url.netloc and not options.application_client:
        raise ConfigurationError(
            f"store URL {_redact(url.raw)} names no host: use"
            " mongodb://HOST:PORT/DB?collection=NAME (or mongodb+srv://), or give the"
            " 'client' or 'database' option"
        )
    database = options.database_name or url.path.strip("/") or None
    if database is not None and not _DB_NAME.fullmatch(database):
        raise ConfigurationError(f"MongoDB database name {database!r} is not valid")
    return (_strip_options(url.raw, OWN_OPTIONS) if url.netloc else None), database


def checked_pymongo_options(url: StoreURL, given: Mapping[str, Any]) -> dict[str, Any]:
    """PyMongo's options among `given`, checked, without those the URL itself carries.

    Those stay in the URI PyMongo parses (it handles repeated ones such as
    readPreferenceTags); only options given separately become keyword arguments.
    """
    for name, value in given.items():
        try:
            common.validate(name, value)
        except (PyMongoConfigurationError, ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"option {name!r} of the mongodb store: {exc} (cloudsessions' own options:"
                f" {', '.join(sorted(OWN_OPTIONS))}; any other is PyMongo's)"
            ) from None
    return {k: v for k, v in given.items() if url.query.get(k) != v}


def client_kwargs(uri: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of the clients we create for `uri`: CLIENT_DEFAULTS under `given`."""
    # URI option names are case-insensitive; a default never overrides what the URL says.
    in_uri = parse_qsl(urlsplit(uri).query.replace(";", "&"), keep_blank_values=True)
    if any(k.lower() == "w" and str(v) == "0" for k, v in [*in_uri, *given.items()]):
        raise ConfigurationError(
            "the mongodb store needs acknowledged writes: w=0 cannot tell whether a"
            " create found an existing session or a save found none"
        )
    named = {k.lower() for k, _ in in_uri} | {k.lower() for k in given}
    kwargs = {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() not in named}
    kwargs.update(given)
    kwargs["tz_aware"] = True
    return kwargs


def hosts(uri: str) -> str:
    """The scheme and hosts of `uri`, without credentials."""
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def resolve(source: object, expected: type[T], option: str) -> T:
    """The object `source` is, or names by its dotted path; it must be an `expected`."""
    value = _import_path(source, option) if isinstance(source, str) else source
    if not isinstance(value, expected):
        raise ConfigurationError(
            f"option {option!r} of the mongodb store must be a pymongo {expected.__name__}"
            f" (or its dotted path), got {type(value).__name__}"
        )
    return value


def _import_path(path: str, option: str) -> Any:
    parts = path.split(".")
    for split in range(len(parts) - 1, 0, -1):
        try:
            value: Any = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attr in parts[split:]:
                value = getattr(value, attr)
        except AttributeError:
            break
        return value
    raise ConfigurationError(f"option {option!r} of the mongodb store: cannot import {path!r}")


def _strip_options(raw: str, names: frozenset[str]) -> str:
    """The URL without our options, every other byte as given (PyMongo parses the rest)."""
    base, sep, query = raw.partition("?")
    if not sep:
        return raw
    kept = [p for p in re.split("[&;]", query) if p and p.split("=", 1)[0] not in names]
    return f"{base}?{'&'.join(kept)}" if kept else base


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
