"""MongoDB: SecantusDB (a MongoDB-wire-compatible server) unless MONGODB_URI names a real one.

With MONGODB_URI set (say mongodb://127.0.0.1:27017), nothing is started: every fresh store
is a new collection in a database of this test process (or in the URI's own database, if
it names one), dropped when the test process ends. Round trips are counted by a PyMongo
command listener, so they are the commands the driver sends, as a server sees them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pymongo import MongoClient, monitoring

from cloudsessions import open_store
from cloudsessions.store import Store
from tests.services.secantus import secantus
from tests.stores import RoundTrips, unique_name

# revoke(): one delete_one({_id, user_id}).
REVOKE_TRIPS = (0, 1)

READS = {"find", "aggregate", "count", "distinct", "getMore"}
WRITES = {"insert", "update", "delete", "findAndModify"}

_server: dict[str, Any] = {}


def real_uri() -> str | None:
    """The real MongoDB to test against, if the environment names one."""
    return os.environ.get("MONGODB_URI") or None


def server_uri(services: contextlib.ExitStack) -> str:
    """mongodb://HOST:PORT[/DB][?options] of the server under test, started once."""
    if "uri" not in _server:
        uri = real_uri()
        if uri is None:
            uri = services.enter_context(secantus())
        _server["uri"] = uri
        _server["database"] = urlsplit(uri).path.strip("/") or unique_name("cloudsessions_test")
        _server["collections"] = []
        services.callback(_drop_test_data)
    return str(_server["uri"])


def url(folder: Path, services: contextlib.ExitStack) -> str:
    return url_for(server_uri(services), _server["database"], new_collection())


def new_collection() -> str:
    name = unique_name()
    _server["collections"].append(name)
    return name


def url_for(uri: str, database: str, collection: str) -> str:
    """`uri` pointed at database/collection, keeping its hosts, credentials and options."""
    parts = urlsplit(uri)
    query = "&".join(p for p in (parts.query, f"collection={collection}") if p)
    return parts._replace(path=f"/{database}", query=query).geturl()


def instrument(url: str, trips: RoundTrips) -> Store:
    return open_store(url, event_listeners=[CommandCounter(trips)])


class CommandCounter(monitoring.CommandListener):
    """Counts each command sent to the server (not the driver's own handshakes)."""

    def __init__(self, trips: RoundTrips) -> None:
        self.trips = trips

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        name = event.command_name
        if name in READS:
            self.trips.reads.append(name)
        elif name in WRITES:
            self.trips.writes.append(name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def _drop_test_data() -> None:
    uri = _server.pop("uri")
    if real_uri() is None:
        return  # the in-memory SecantusDB goes away with its process
    client: MongoClient[dict[str, Any]] = MongoClient(uri, serverSelectionTimeoutMS=5000)
    with client:
        db = client[_server["database"]]
        if urlsplit(uri).path.strip("/"):
            for name in _server["collections"]:
                db.drop_collection(name)
        else:
            client.drop_database(db)
