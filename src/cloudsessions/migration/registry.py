"""Previous backends named by URL, for `cloudsessions migrate --from URL`.

    flask-session+redis://HOST:PORT/DB          Flask-Session's Redis (also +rediss://)
    flask-session+mongodb://HOST/DB             Flask-Session's MongoDB (DB: flask_session;
                                                also +mongodb+srv://)
    flask-session+dynamodb://TABLE              Flask-Session's DynamoDB (TABLE: Sessions)
    flask-session+filesystem:///DIRECTORY       Flask-Session's files (read-through only)
    dynamodb-engine://TABLE                     the Django DynamoDB engine ({id, session_data, ttl})
    dj-dynamodb-sessions://TABLE                dj-dynamodb-sessions ({session_key, data, ttl})
    dysession://TABLE                           django-dysession (TABLE: sessions)
    firestore-engine://PROJECT/COLLECTION       the Django Firestore engine
    mongo-sessions://HOST/DB                    django-mongo-sessions (DB: test)
    firestore-tutorial://PROJECT/COLLECTION     Google's Flask-on-Firestore tutorial (sessions)
    django:ENGINE.PATH                          any Django engine, through Django (configured)

The query options are the source's own keyword arguments (e.g. ?prefix=myapp:&use_signer=1
for Flask-Session, ?region=eu-west-1&endpoint=http://localhost:8000 for DynamoDB,
?collection=...); `options` given in Python override them (a client=, a secret_key=). The
old app's secret is never written in the URL (it would end up in shell histories and
logs): ?secret_key_env=VAR reads it from the environment variable VAR. Flask's and
Starlette's signed cookies cannot be named here: their sessions live in the browsers, and
only the read-through copies them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..errors import ConfigurationError
from ..store import StoreURL
from .source import Source

# (the URL, the options given in Python, the client given in Python) -> the source
Builder = Callable[[StoreURL, dict[str, Any], Any], Source]

COMMON = ("keep_old", "cookie_name", "user_id_key")
SECRET = ("secret_key", "secret_key_env")  # the key, or the environment variable holding it
FLASK_SESSION = (*COMMON, *SECRET, "prefix", "use_signer", "serialization_format", "lifetime")
DJANGO = (*COMMON, *SECRET)
DYNAMODB = ("region", "endpoint")
BOOLEANS = {"keep_old", "use_signer"}
NUMBERS = {"lifetime", "ttl", "utc_offset"}
NULLABLE = {"cookie_name", "user_id_key"}  # an empty value: None
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
# Flask's and Starlette's cookies: the front door's own setting names them.
READ_THROUGH_ONLY = {
    "flask": 'CLOUDSESSIONS_MIGRATE_FROM = "flask" in the Flask app',
    "starlette": 'migrate_from="starlette" on the ASGI middleware',
}


def _typed(name: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # given in Python: as is
    if name in BOOLEANS:
        if value.lower() not in TRUE | FALSE:
            raise ConfigurationError(f"option {name} must be true or false, got {value!r}")
        return value.lower() in TRUE
    if name in NUMBERS:
        try:
            return float(value)
        except ValueError:
            raise ConfigurationError(f"option {name} must be a number, got {value!r}") from None
    if name in NULLABLE and value == "":
        return None
    return value


def _options(
    url: StoreURL, given: dict[str, Any], known: tuple[str, ...], *, server: bool = False
) -> dict[str, Any]:
    """The source's keyword arguments: the URL's query, then `given`, checked and typed.
    `server`: the URL's other query options are the server's (see _server)."""
    if "secret_key" in url.query:
        raise ConfigurationError(
            f"{url.scheme}://: keep the secret out of the URL: ?secret_key_env=VARIABLE names"
            " the environment variable that holds it"
        )
    merged = {**{k: v for k, v in url.query.items() if k in known}, **given}
    unknown = sorted(set(given).union(() if server else url.query) - set(known))
    if unknown:
        raise ConfigurationError(
            f"{url.scheme}:// takes no option {', '.join(unknown)}; its options:"
            f" {', '.join(known)} (and client= in Python)"
        )
    options = {name: _typed(name, value) for name, value in merged.items()}
    variable = options.pop("secret_key_env", None)
    if variable is not None and "secret_key" not in options:
        if not os.environ.get(variable):
            raise ConfigurationError(f"secret_key_env={variable}: ${variable} is not set")
        options["secret_key"] = os.environ[variable]
    return options


def _server(url: StoreURL, scheme: str, known: tuple[str, ...]) -> str:
    """The URL for the SDK: `scheme`, the URL's host and path, its own query options."""
    theirs = {k: v for k, v in url.query.items() if k not in known}
    query = f"?{urlencode(theirs)}" if theirs else ""
    return f"{scheme}://{url.netloc}{url.path}{query}"


def _flask_session_redis(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .flask_session import FlaskSessionRedis

    options = _options(url, given, FLASK_SESSION, server=True)
    server = _server(url, url.scheme.partition("+")[2], FLASK_SESSION)
    return FlaskSessionRedis(client, url=server, **options)


def _flask_session_mongodb(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .flask_session import FlaskSessionMongoDB

    known = (*FLASK_SESSION, "collection")
    uri = _server(url, url.scheme.partition("+")[2], known)
    database = url.path.strip("/") or "flask_session"
    options = _options(url, given, known, server=True)
    return FlaskSessionMongoDB(client, uri=uri, database=database, **options)


def _flask_session_dynamodb(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .flask_session import FlaskSessionDynamoDB

    options = _options(url, given, (*FLASK_SESSION, *DYNAMODB, "utc_offset"))
    return FlaskSessionDynamoDB(client, table=url.netloc or "Sessions", **options)


def _flask_session_files(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .flask_session import FlaskSessionFiles

    if url.netloc or not url.path:
        raise ConfigurationError(
            f"{url.raw!r}: write the directory as flask-session+filesystem:///ABSOLUTE/PATH"
        )
    if client is not None:
        raise ConfigurationError("flask-session+filesystem:/// takes no client")
    return FlaskSessionFiles(url.path, **_options(url, given, (*FLASK_SESSION, "hash_method")))


def _dynamodb_engine(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .seeds import DynamoDBEngineSource

    known = (*DJANGO, *DYNAMODB, "key_attribute", "data_attribute", "ttl_attribute")
    return DynamoDBEngineSource(_table(url), client=client, **_options(url, given, known))


def _dj_dynamodb_sessions(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .seeds import DynamoDBEngineSource

    options = _options(url, given, (*DJANGO, *DYNAMODB))
    table = url.netloc or "sessions"
    return DynamoDBEngineSource.dj_dynamodb_sessions(table, client=client, **options)


def _dysession(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .seeds import DysessionSource

    known = (*COMMON, *DYNAMODB, "partition_key", "sort_key", "ttl_attribute", "lifetime")
    table = url.netloc or "sessions"
    return DysessionSource(table, client=client, **_options(url, given, known))


def _firestore(url: StoreURL) -> tuple[str | None, str | None]:
    return url.netloc or None, url.path.strip("/") or None


def _firestore_engine(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .seeds import FirestoreEngineSource

    project, collection = _firestore(url)
    if collection is None:
        raise ConfigurationError(f"{url.raw!r}: write firestore-engine://PROJECT/COLLECTION")
    options = _options(url, given, (*DJANGO, "emulator_host"))
    return FirestoreEngineSource(collection, project=project, client=client, **options)


def _firestore_tutorial(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .seeds import FirestoreTutorialSource

    project, collection = _firestore(url)
    options = _options(url, given, (*COMMON, "emulator_host", "lifetime"))
    return FirestoreTutorialSource(
        collection or "sessions", project=project, client=client, **options
    )


def _mongo_sessions(url: StoreURL, given: dict[str, Any], client: Any) -> Source:
    from .seeds import MongoSessionsSource

    known = (*DJANGO, "collection", "ttl")
    uri = _server(url, "mongodb", known)
    database = url.path.strip("/") or "test"
    options = _options(url, given, known, server=True)
    return MongoSessionsSource(client, uri=uri, database=database, **options)


def _table(url: StoreURL) -> str:
    if not url.netloc:
        raise ConfigurationError(f"{url.raw!r}: name the table, {url.scheme}://TABLE")
    return url.netloc


SCHEMES: dict[str, Builder] = {
    "flask-session+redis": _flask_session_redis,
    "flask-session+rediss": _flask_session_redis,
    "flask-session+mongodb": _flask_session_mongodb,
    "flask-session+mongodb+srv": _flask_session_mongodb,
    "flask-session+dynamodb": _flask_session_dynamodb,
    "flask-session+filesystem": _flask_session_files,
    "dynamodb-engine": _dynamodb_engine,
    "dj-dynamodb-sessions": _dj_dynamodb_sessions,
    "dysession": _dysession,
    "firestore-engine": _firestore_engine,
    "mongo-sessions": _mongo_sessions,
    "firestore-tutorial": _firestore_tutorial,
}


def source_from_url(url: str, **options: Any) -> Source:
    """The previous backend `url` names (see the module docstring); `options` override the
    URL's query options."""
    scheme = urlsplit(url).scheme.lower()
    if url.strip().lower() in READ_THROUGH_ONLY or scheme in READ_THROUGH_ONLY:
        name = url.strip().lower().partition(":")[0]
        raise ConfigurationError(
            f"{name!r} sessions live in the browsers' signed cookies: there is nothing to"
            f" copy in bulk. Set {READ_THROUGH_ONLY[name]} instead: the read-through copies"
            " each session at its next request"
        )
    client = options.pop("client", None)
    if scheme == "django":
        return _django(url.partition(":")[2], options)
    builder = SCHEMES.get(scheme)
    if builder is None:
        known = ", ".join([*(f"{s}://" for s in SCHEMES), "django:ENGINE.PATH"])
        raise ConfigurationError(
            f"unknown previous session backend {url!r}: expected one of {known}"
        )
    return builder(StoreURL.parse(url), options, client)


def _django(engine: str, options: dict[str, Any]) -> Source:
    from .django_engines import DjangoEngineSource

    try:
        from django.conf import settings
    except ImportError:
        raise ConfigurationError(f"django:{engine} needs Django: pip install django") from None
    if not settings.configured:
        raise ConfigurationError(
            f"django:{engine} reads the sessions through Django: run with the site's settings"
            " (DJANGO_SETTINGS_MODULE=..., or `manage.py cloudsessions_migrate`)"
        )
    if engine.startswith("cloudsessions"):
        raise ConfigurationError(f"django:{engine} names cloudsessions itself")
    try:
        importlib.import_module(engine).SessionStore  # noqa: B018 - that it is an engine
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"django:{engine} is not a session engine: {exc}") from exc
    url = StoreURL("django:" + engine, "django", "", engine, {})
    known = ("user_id_key", "keep_old", "cookie_name")
    return DjangoEngineSource(engine, **_options(url, options, known))
