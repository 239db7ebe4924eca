"""The peers of the cost benchmark (benchmarks/cost.py), each at its own defaults.

- dj-dynamodb-sessions 0.8.3: a Django engine on DynamoDB (one item per session).
- django-dysession 1.1.1: a Django engine on DynamoDB (the session's keys as attributes).
- Flask-Session 0.8 on DynamoDB and on MongoDB; at its defaults every request refreshes the
  stored session (SESSION_REFRESH_EACH_REQUEST), so it also runs with that turned off.

Each serves the same views as ours through its framework's session API, on the same
server, counted by the same meters. A peer whose package is absent is reported as not
installed; the packages (PyPI): dj-dynamodb-sessions==0.8.3, django-dysession==1.1.1,
flask-session==0.8.0 with mypy-boto3-dynamodb (its DynamoDB module imports it).
"""

from __future__ import annotations

import importlib.util
import os
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.cost import (
    MONGO_DATABASE,
    Engine,
    Servers,
    django_engine,
    seed,
)
from benchmarks.targets.meters import DynamoDBMeter, Meter, MongoMeter
from benchmarks.views import flask_views

REGION = "us-east-1"
DJ_DYNAMODB_TABLE = "cost_dj_dynamodb_sessions"
DYSESSION_TABLE = "cost_dysession"

# peer -> (the module it needs, what to install)
PACKAGES = {
    "dj-dynamodb-sessions": ("dynamodb_sessions", "dj-dynamodb-sessions==0.8.3"),
    "django-dysession": ("dysession", "django-dysession==1.1.1"),
    "Flask-Session 0.8 (dynamodb)": (
        "mypy_boto3_dynamodb",
        "flask-session==0.8.0 mypy-boto3-dynamodb",
    ),
    "Flask-Session 0.8 (mongodb)": ("flask_session", "flask-session==0.8.0"),
}


def _missing(peer: str) -> str | None:
    module, install = PACKAGES[peer]
    if importlib.util.find_spec(module) is None or importlib.util.find_spec("flask") is None:
        return f"not installed (pip install {install})"
    return None


def django_settings(servers: Servers) -> dict[str, Any]:
    """The peers' Django settings: dj-dynamodb-sessions reads its own at import time."""
    if servers.dynamodb is None:
        return {}
    # Both Django peers make their boto3 clients from the default session, with no endpoint
    # of their own: these point them at DynamoDB Local.
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = servers.dynamodb
    os.environ["LOCAL_DYNAMODB_SERVER"] = servers.dynamodb
    return {
        "DYNAMODB_SESSIONS_TABLE_NAME": DJ_DYNAMODB_TABLE,
        "USE_LOCAL_DYNAMODB_SERVER": True,
        "DYSESSION": {"DYNAMODB_TABLENAME": DYSESSION_TABLE, "DYNAMODB_REGION": REGION},
    }


def engines(servers: Servers) -> list[Engine]:
    found: list[Engine] = []
    if servers.dynamodb:
        found += _dynamodb_peers(servers.dynamodb)
    if servers.mongodb:
        found += _mongodb_peers(servers)
    return found


def _absent(store: str, peer: str, reason: str) -> Engine:
    def refuse(*_: Any) -> Any:
        raise RuntimeError(reason)

    return Engine(store, peer, Meter(), refuse, refuse, lambda: None, note=reason, missing=reason)


# ----------------------------------------------------------------------- DynamoDB


def _table(endpoint: str, name: str, key: str) -> None:
    import boto3

    client = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
    client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    client.close()


def _dynamodb_peers(endpoint: str) -> list[Engine]:
    import boto3

    found = []
    # The Django peers' clients come from boto3's default session (dysession makes a new
    # client per call): hooks registered on the session reach every one of them. Each meter
    # counts only while its own engine's request runs.
    boto3.setup_default_session(region_name=REGION)
    events = boto3.DEFAULT_SESSION.events
    django_peers = (
        ("dj-dynamodb-sessions", "dynamodb_sessions.backends.dynamodb", DJ_DYNAMODB_TABLE,
         "session_key"),
        ("django-dysession", "dysession.backends.db", DYSESSION_TABLE, "PK"),
    )  # fmt: skip
    for peer, engine, table, key in django_peers:
        reason = _missing(peer)
        if reason:
            found.append(_absent("dynamodb", peer, reason))
            continue
        _table(endpoint, table, key)
        meter = DynamoDBMeter()
        meter.register(events)
        found.append(django_engine("dynamodb", peer, engine, meter))
        if peer == "django-dysession":
            # Read in its source (1.1.1): is_empty() is inverted, so Django's middleware
            # never saves a new session; the rows say what the requests got.
            found[-1].note = "keeps no new session: its is_empty() is inverted"

    peer = "Flask-Session 0.8 (dynamodb)"
    reason = _missing(peer)
    for refresh in (True, False):
        name = peer if refresh else f"{peer}, no refresh"
        if reason:
            found.append(_absent("dynamodb", name, reason))
            continue
        meter = DynamoDBMeter()
        resource = boto3.session.Session().resource(
            "dynamodb", region_name=REGION, endpoint_url=endpoint
        )
        meter.register(resource.meta.client.meta.events)
        config = {
            "SESSION_TYPE": "dynamodb",
            "SESSION_DYNAMODB": resource,
            "SESSION_DYNAMODB_TABLE": f"cost_flask_session_{'refresh' if refresh else 'once'}",
            "SESSION_REFRESH_EACH_REQUEST": refresh,
        }
        found.append(flask_engine("dynamodb", name, meter, config, refresh))
    return found


# ------------------------------------------------------------------------ MongoDB


def _flask_filler(i: int) -> dict[str, Any]:
    expires = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=1)
    return {"id": f"session:filler{i:08d}", "val": b"\x81\xa1a\x01", "expiration": expires}


def _mongodb_peers(servers: Servers) -> list[Engine]:
    """At its defaults, without the refresh, and so with the unique index on `id` that
    Flask-Session does not make (its lookups by `id` otherwise scan the collection)."""
    peer = "Flask-Session 0.8 (mongodb)"
    reason = _missing(peer)
    found = []
    variants = (
        (peer, True, False),
        (f"{peer}, no refresh", False, False),
        (f"{peer}, no refresh, id indexed", False, True),
    )
    for name, refresh, indexed in variants:
        if reason:
            found.append(_absent("mongodb", name, reason))
            continue
        from pymongo import MongoClient

        inspect: Any = MongoClient(servers.mongodb)
        meter = MongoMeter(inspect[MONGO_DATABASE])
        client: Any = MongoClient(servers.mongodb, event_listeners=[meter.listener()])
        servers.closing += [client.close, inspect.close]
        collection = f"flask_session_{len(found)}"
        seed(inspect[MONGO_DATABASE][collection], _flask_filler, servers.population)
        if indexed:
            inspect[MONGO_DATABASE][collection].create_index("id", unique=True)
        config = {
            "SESSION_TYPE": "mongodb",
            "SESSION_MONGODB": client,
            "SESSION_MONGODB_DB": MONGO_DATABASE,
            "SESSION_MONGODB_COLLECT": collection,
            "SESSION_REFRESH_EACH_REQUEST": refresh,
        }
        engine = flask_engine("mongodb", name, meter, config, refresh)
        if indexed:
            engine.note += "; a unique index on id added by hand"
        found.append(engine)
    return found


# -------------------------------------------------------------------------- Flask


def flask_engine(
    store: str, name: str, meter: Meter, config: dict[str, Any], refresh: bool
) -> Engine:
    """A browser on a Flask app with Flask-Session configured by `config`: the same views,
    login as Flask-Login's login_user() after a new id (Flask-Session's regenerate())."""
    import flask
    from flask_session import Session

    app = flask.Flask(f"cost-{name}")
    app.config["SECRET_KEY"] = "benchmark-not-secret"
    app.config.update(config)
    Session(app)
    flask_views(app, app.session_interface.regenerate)  # type: ignore[attr-defined]

    browsers = [app.test_client()]

    def visit(path: str) -> str:
        response = browsers[0].get(path)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
        return response.get_data(as_text=True)

    def reset(cookie: str | None) -> None:
        browsers[0] = app.test_client()
        if cookie is not None:
            browsers[0].set_cookie(app.config["SESSION_COOKIE_NAME"], cookie)

    def cookie() -> str | None:
        found = browsers[0].get_cookie(app.config["SESSION_COOKIE_NAME"])
        return None if found is None else found.value

    note = "its default: every request writes" if refresh else "SESSION_REFRESH_EACH_REQUEST off"
    return Engine(store, name, meter, visit, reset, cookie, note=note)
