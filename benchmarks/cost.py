"""What each request shape costs on each store, through cloudsessions and the peers that run.

Every request goes through a framework's session API, as an application's does: ours through
Django (cloudsessions.django.engine with the SessionMiddleware, in Django's test client),
the peers through their own Django engine or Flask session interface (cost_peers.py), each
on the same local server: DynamoDB Local, the Firestore emulator, SecantusDB (MongoDB) and
redis-server, started here. Each shape's request starts from a browser prepared for it
(not counted); the store work of the request itself is counted exactly by the meters in
benchmarks/targets/meters.py: DynamoDB's own ConsumedCapacity (ReturnConsumedCapacity on
every request), Firestore's billed documents per RPC, MongoDB's RPU/WPU by Atlas's model,
Redis commands. Billed units are the same on every run (no timing involved). After each
request the session is read back (not counted): an engine that did not leave what the view
asked for is reported as wrong, not priced.

Dollars per million requests of a mix (MIX: 80% read-only, 15% modify, 3% new, 1% login,
1% logout), for logged-in sessions (reads and changes of a logged-in session) and anonymous
ones, at the LIST PRICES below. Prints the units per shape, the mix per engine and ours
against the best peer; saves benchmarks/results/cost.{md,png}.

    python -m benchmarks.cost [--stores dynamodb,firestore,mongodb,redis] [--requests 3]
                              [--population 1000] [--no-peers]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import views
from benchmarks.harness import RESULTS, publish, save_figure
from benchmarks.targets.meters import (
    Bill,
    DynamoDBMeter,
    FirestoreMeter,
    Meter,
    MongoMeter,
    RedisMeter,
    metered_firestore_store,
)
from benchmarks.views import GREETING, USER

# ------------------------------------------------------------------------ list prices
# List prices at 2026-11, US dollars, from the pages named; no free tier, no volume
# discount, no storage or data transfer. Re-check the pages before quoting a bill.


@dataclass(frozen=True)
class Prices:
    """Dollars per billed unit, and how the units are defined."""

    read: float
    write: float
    delete: float  # Firestore bills deletes apart; elsewhere a delete is a write
    short: str  # for the plot
    model: str  # for the table's note


PRICES: dict[str, Prices] = {
    # DynamoDB on-demand, Standard table class, us-east-1: $0.125 per million read request
    # units, $0.625 per million write request units (a strongly consistent read of up to
    # 4 KB is 1 RRU, eventually consistent 0.5; a write of up to 1 KB is 1 WRU, plus its
    # writes to each global secondary index).
    # Source (2026-11): https://aws.amazon.com/dynamodb/pricing/on-demand/
    "dynamodb": Prices(
        0.125e-6,
        0.625e-6,
        0.625e-6,
        "on-demand RRU/WRU, us-east-1",
        "on-demand, Standard table class, us-east-1: $0.125 per million read request units,"
        " $0.625 per million write request units",
    ),
    # Firestore Standard edition, nam5 (United States multi-region): $0.06 per 100,000
    # document reads, $0.18 per 100,000 writes, $0.02 per 100,000 deletes.
    # Source (2026-11): https://cloud.google.com/firestore/pricing
    "firestore": Prices(
        0.06e-5,
        0.18e-5,
        0.02e-5,
        "document reads/writes/deletes, nam5",
        "Standard edition, nam5: $0.06 per 100,000 document reads, $0.18 per 100,000 writes,"
        " $0.02 per 100,000 deletes",
    ),
    # MongoDB Atlas, the per-operation model of Serverless instances, AWS us-east-1: $0.10
    # per million RPU (the first tier, up to 50 million a day), $1.00 per million WPU.
    # Atlas's Flex and dedicated clusters are billed per hour instead (zero marginal cost
    # per request within their capacity); RPU/WPU is its yardstick of a request's work.
    # Source (2026-11): https://www.mongodb.com/docs/atlas/billing/serverless-instance-costs/
    "mongodb": Prices(
        0.10e-6,
        1.00e-6,
        1.00e-6,
        "Atlas RPU/WPU, AWS us-east-1",
        "Atlas's per-operation model (Serverless instances), AWS us-east-1: $0.10 per million"
        " RPU, $1.00 per million WPU (RPU: a document read per 4 KB, an index entry read per"
        " 256 bytes; WPU: a document with the index entries written, per KB)",
    ),
    # Redis (ElastiCache, Memorystore, a VM): billed per node-hour and memory, not per
    # command. Priced here at zero marginal cost per request; the commands are counted.
    "redis": Prices(
        0.0,
        0.0,
        0.0,
        "per node-hour: $0 per request",
        "billed per node-hour and memory, not per command: $0 marginal per request (the"
        " commands are counted; a serverless Redis bills per command)",
    ),
}

# ------------------------------------------------------------------- request shapes

SHAPES = (
    "new",
    "read-only",
    "read-only, logged in",
    "modify",
    "modify, logged in",
    "login",
    "logout",
    "unknown cookie",
)
# The shape's view, and what the browser has before it (not counted).
PATHS = {
    "new": "/new",
    "read-only": "/read",
    "read-only, logged in": "/read",
    "modify": "/modify",
    "modify, logged in": "/modify",
    "login": "/login",
    "logout": "/logout",
    "unknown cookie": "/read",
}
BEFORE = {
    "new": (),
    "read-only": ("/new",),
    "read-only, logged in": ("/new", "/login"),
    "modify": ("/new",),
    "modify, logged in": ("/new", "/login"),
    "login": ("/new",),
    "logout": ("/new", "/login"),
    "unknown cookie": (),  # a well-formed id the store never saw
}
MIX = {"read-only": 0.80, "modify": 0.15, "new": 0.03, "login": 0.01, "logout": 0.01}
# A logged-in site reads and changes logged-in sessions; an anonymous one, anonymous ones.
SESSIONS = {
    "logged-in": {"read-only": "read-only, logged in", "modify": "modify, logged in"},
    "anonymous": {},
}


@dataclass
class Engine:
    """One app on one store, seen as one browser: `visit(path)` makes a request and returns
    the body; `reset(cookie)` forgets the cookies (planting `cookie` as the session id if
    given); `cookie()` is the session id the browser holds."""

    store: str
    name: str
    meter: Meter
    visit: Callable[[str], str]
    reset: Callable[[str | None], None]
    cookie: Callable[[], str | None]
    ours: bool = False
    note: str = ""
    missing: str = ""  # why the engine cannot run here (a peer not installed)


def _has(data: dict[str, Any], *keys: str) -> bool:
    return all(key in data for key in keys)


def _user(data: dict[str, Any]) -> bool:
    return USER in (data.get("_auth_user_id"), data.get("_user_id"))  # Django's, Flask-Login's


# What the session holds after each shape's request (read back by /dump, not counted), and
# whether the id changed: an engine that loses or keeps the wrong data costs nothing to beat.
EXPECTED: dict[str, Callable[[dict[str, Any], bool], bool]] = {
    "new": lambda d, moved: d.get("greeting") == GREETING,
    "read-only": lambda d, moved: d.get("greeting") == GREETING and not moved,
    "read-only, logged in": lambda d, moved: _has(d, "greeting") and _user(d) and not moved,
    "modify": lambda d, moved: d.get("views") == 1 and _has(d, "greeting"),
    "modify, logged in": lambda d, moved: d.get("views") == 1 and _user(d),
    "login": lambda d, moved: _user(d) and _has(d, "greeting") and moved,
    "logout": lambda d, moved: not _has(d, "greeting") and not _user(d),
    "unknown cookie": lambda d, moved: not _has(d, "greeting"),
}


@dataclass
class Row:
    store: str
    engine: str
    shape: str
    bill: Bill
    requests: int
    error: str = ""
    ours: bool = False

    def per_request(self, units: float) -> float:
        return units / self.requests

    @property
    def dollars(self) -> float:
        """Dollars for one request of this shape."""
        p, b = PRICES[self.store], self.bill
        return (b.reads * p.read + b.writes * p.write + b.deletes * p.delete) / self.requests


def measure(engine: Engine, requests: int) -> list[Row]:
    from cloudsessions import new_session_id

    if engine.missing:
        return [Row(engine.store, engine.name, "all", Bill(), requests, engine.missing)]
    rows = []
    for shape in SHAPES:
        total, error = Bill(), ""
        for _ in range(requests):
            try:
                engine.reset(new_session_id() if shape == "unknown cookie" else None)
                for path in BEFORE[shape]:
                    engine.visit(path)
                before = engine.cookie()
                engine.meter.take()
                engine.meter.counting = True
                try:
                    engine.visit(PATHS[shape])
                finally:
                    engine.meter.counting = False
                total.add(engine.meter.take())
                after = engine.cookie()
                data = json.loads(engine.visit("/dump"))
            except Exception as exc:
                error = f"fails: {type(exc).__name__}: {str(exc)[:80]}"
                break
            if not EXPECTED[shape](data, bool(before and after and before != after)):
                keys = ("greeting", "views", "_auth_user_id", "_user_id")
                shown = {k: v for k, v in data.items() if k in keys}
                error = f"wrong session after it: {json.dumps(shown)}"
                break
            engine.meter.take()
        rows.append(Row(engine.store, engine.name, shape, total, requests, error, engine.ours))
    return rows


# ------------------------------------------------------------------------ Django


def configure_django(extra: dict[str, Any]) -> None:
    views.configure_django(views.django_urlpatterns, **extra)


def django_engine(
    store: str,
    name: str,
    engine: str,
    meter: Meter,
    overrides: dict[str, Any] | None = None,
    *,
    ours: bool = False,
) -> Engine:
    """A browser on a Django app whose SessionMiddleware uses the session engine `engine`
    (ours: cloudsessions' middleware, Django's on a sync request); `overrides` are settings
    in force during its requests (our store, say)."""
    from django.test import Client, override_settings

    browser = Client()
    package = "cloudsessions.django" if ours else "django.contrib.sessions"
    middleware = f"{package}.middleware.SessionMiddleware"
    # The middleware reads SESSION_ENGINE when it is made: each browser's handler has its own.
    with override_settings(SESSION_ENGINE=engine, MIDDLEWARE=[middleware]):
        browser.handler.load_middleware()

    def visit(path: str) -> str:
        with override_settings(**(overrides or {})):
            response = browser.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
        return response.content.decode()

    def reset(cookie: str | None) -> None:
        browser.cookies.clear()
        if cookie is not None:
            browser.cookies["sessionid"] = cookie

    def cookie() -> str | None:
        morsel = browser.cookies.get("sessionid")
        return morsel.value if morsel is not None else None

    return Engine(store, name, meter, visit, reset, cookie, ours)


# --------------------------------------------------------------------- our stores


@dataclass
class Servers:
    """Where each started server answers (peers reuse them)."""

    dynamodb: str | None = None
    firestore: str | None = None
    mongodb: str | None = None
    redis: str | None = None
    population: int = 0
    closing: list[Callable[[], None]] = field(default_factory=list)


def start(stores: list[str], services: contextlib.ExitStack, servers: Servers) -> None:
    if "dynamodb" in stores:
        from tests.backends.dynamodb import fake_credentials
        from tests.services.dynamodb_local import dynamodb_local

        fake_credentials()
        servers.dynamodb = services.enter_context(dynamodb_local())
    if "firestore" in stores:
        from tests.backends.firestore import emulator_host

        servers.firestore = emulator_host(services)
    if "mongodb" in stores:
        from pymongo import MongoClient
        from tests.services.secantus import secantus

        servers.mongodb = os.environ.get("MONGODB_URI") or services.enter_context(secantus())
        # Our own database, fresh each run and dropped after it (on a real server too).
        admin: Any = MongoClient(servers.mongodb)
        admin.drop_database(MONGO_DATABASE)
        services.callback(admin.close)
        services.callback(admin.drop_database, MONGO_DATABASE)
    if "redis" in stores:
        from tests.services.redis import redis_server

        servers.redis = services.enter_context(redis_server())


MONGO_DATABASE = "cloudsessions_cost"


def seed(collection: Any, documents: Callable[[int], dict[str, Any]], n: int) -> None:
    """Other sessions in a MongoDB collection, so a scan reads what it would in production."""
    if n:
        collection.insert_many([documents(i) for i in range(n)])


def our_engines(stores: list[str], servers: Servers) -> list[Engine]:
    from cloudsessions import open_store

    name, engine = "cloudsessions", "cloudsessions.django"
    engines = []

    def ours(store_name: str, store: Any, meter: Meter, variant: str = "") -> None:
        store.provision()
        servers.closing.append(store.close)
        overrides = {"CLOUDSESSIONS": {"STORE": store}}
        engines.append(
            django_engine(store_name, name + variant, engine, meter, overrides, ours=True)
        )

    if servers.dynamodb:
        url = f"dynamodb://cost_cloudsessions?region=us-east-1&endpoint={servers.dynamodb}"
        for consistent in (True, False):
            dynamo = DynamoDBMeter()
            store = open_store(url, event_hooks=dynamo.hooks, consistent_read=consistent)
            ours("dynamodb", store, dynamo, "" if consistent else ", consistent_read=false")
    if servers.firestore:
        from tests.backends.firestore import PROJECT

        fire = FirestoreMeter()
        url = f"firestore://{PROJECT}/cost_cloudsessions?emulator_host={servers.firestore}"
        ours("firestore", metered_firestore_store(url, fire), fire)
    if servers.mongodb:
        from pymongo import MongoClient
        from tests.backends.mongodb import url_for

        inspect: Any = MongoClient(servers.mongodb)
        servers.closing.append(inspect.close)
        mongo = MongoMeter(inspect[MONGO_DATABASE])
        url = url_for(servers.mongodb, MONGO_DATABASE, "cloudsessions")
        ours("mongodb", open_store(url, event_listeners=[mongo.listener()]), mongo)
        seed(inspect[MONGO_DATABASE]["cloudsessions"], _filler, servers.population)
    if servers.redis:
        commands = RedisMeter()
        url = f"{servers.redis}/0?prefix=cost:"
        ours("redis", open_store(url, on_command=commands), commands)
    return engines


def _filler(i: int) -> dict[str, Any]:
    return {"_id": f"filler{i:08d}", "d": {"kgreeting": json.dumps(GREETING)}}


# ------------------------------------------------------------------------- output


def mix_dollars(rows: list[Row], sessions: str) -> float | None:
    """Dollars per million requests of MIX, or None if a shape in it failed."""
    by_shape = {r.shape: r for r in rows}
    total = 0.0
    for shape, weight in MIX.items():
        row = by_shape.get(SESSIONS[sessions].get(shape, shape))
        if row is None or row.error:
            return None
        total += weight * row.dollars
    return total * 1e6


def _dollars(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.2f}"


def _units(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _which(row: Row) -> str:
    counts: dict[str, int] = {}
    for call in row.bill.calls:
        counts[call] = counts.get(call, 0) + 1
    parts = []
    for call, n in counts.items():
        each = n / row.requests
        parts.append(f"{_units(each)} {call}")
    return " + ".join(parts) or "none"


def unit_rows(rows: list[Row]) -> list[str]:
    lines = []
    for r in rows:
        if r.error:
            lines.append(f"| {r.store} | {r.engine} | {r.shape} | {r.error} | | | | | |")
            continue
        b = r.bill
        writes = _units(r.per_request(b.writes))
        if b.index_writes:
            writes += f" ({_units(r.per_request(b.index_writes))} index)"
        deletes = _units(r.per_request(b.deletes)) if r.store == "firestore" else "-"
        flags = "; ".join(sorted(b.flags))
        lines.append(
            f"| {r.store} | {r.engine} | {r.shape} | {_units(len(b.calls) / r.requests)}"
            f" | {_units(r.per_request(b.reads))} | {writes} | {deletes}"
            f" | {_dollars(r.dollars * 1e6)} | {_which(r)}{' (' + flags + ')' if flags else ''} |"
        )
    return lines


@dataclass
class Mix:
    store: str
    engine: str
    ours: bool
    dollars: dict[str, float | None]
    note: str
    error: str
    eventual: bool  # reads eventually consistent: cheaper, may show a session just ended

    def money(self, sessions: str) -> str:
        value = self.dollars[sessions]
        return (self.error or "fails") if value is None else _dollars(value)


def mixes(rows: list[Row], engines: list[Engine]) -> list[Mix]:
    notes = {(e.store, e.name): e.note for e in engines}
    found = []
    for key in dict.fromkeys((r.store, r.engine) for r in rows):
        mine = [r for r in rows if (r.store, r.engine) == key]
        dollars = {s: mix_dollars(mine, s) for s in SESSIONS}
        errors = [r.error.split(" ", 1)[0] for r in mine if r.error]
        error = "not installed" if "not" in errors else ("wrong" if "wrong" in errors else "")
        eventual = any("eventually consistent reads" in r.bill.flags for r in mine)
        note = notes.get(key, "")
        found.append(Mix(key[0], key[1], mine[0].ours, dollars, note, error, eventual))
    return found


def _ratio(value: float) -> str:
    return f"{value:.3f}" if value >= 0.1 else f"{value:.1g}"


def summary_rows(found: list[Mix]) -> list[str]:
    """Each of our engines against the cheapest peer that keeps its guarantees: a peer
    reading eventually consistent is compared only with ours reading so too."""
    lines = []
    for ours in (m for m in found if m.ours):
        peers = [m for m in found if m.store == ours.store and not m.ours]
        if not ours.eventual:
            peers = [p for p in peers if not p.eventual]
        for sessions in SESSIONS:
            mine = ours.dollars[sessions]
            start = f"| {ours.store} | {ours.engine} | {sessions} | {ours.money(sessions)}"
            priced = [p for p in peers if p.dollars[sessions] is not None]
            best = min(priced, key=lambda p: p.dollars[sessions] or 0.0, default=None)
            if best is None:
                lines.append(f"{start} | no working peer here | | |")
                continue
            theirs = best.dollars[sessions] or 0.0
            ratio = "-" if mine is None or not theirs else _ratio(mine / theirs)
            lines.append(f"{start} | {best.engine} | {best.money(sessions)} | {ratio} |")
    return lines


def report(rows: list[Row], engines: list[Engine], command: str, servers: Servers) -> None:
    price_lines = "\n".join(f"- {store}: {p.model}" for store, p in PRICES.items())
    note = (
        "Billed units per request (the mean of the requests run per shape) through each"
        " engine's framework session API, counted at the SDK: DynamoDB Local's"
        " ConsumedCapacity (ReturnConsumedCapacity=INDEXES), Firestore documents per RPC,"
        " MongoDB RPU/WPU by Atlas's per-operation model (with"
        f" {servers.population} other sessions in each collection), Redis commands."
        " Dollars are at the providers' LIST PRICES as of 2026-11 (sources in"
        f" benchmarks/cost.py), without free tiers:\n{price_lines}\n\n`{command}`"
    )
    print(note, end="\n\n")
    header = ["store", "engine", "request", "calls", "read units", "write units"]
    header += ["deletes", "$ per million", "which"]
    publish("cost", header, "|---|---|---|---:|---:|---:|---:|---:|---|", unit_rows(rows), note)

    found = mixes(rows, engines)
    mix_text = ", ".join(f"{int(w * 100)}% {s}" for s, w in MIX.items())
    tables = [
        (
            f"Dollars per million requests of the mix ({mix_text}); logged-in: the reads"
            " and changes are of logged-in sessions.",
            "| store | engine | logged-in ($/M) | anonymous ($/M) | note |"
            "\n|---|---|---:|---:|---|",
            [
                f"| {m.store} | {m.engine} | {m.money('logged-in')}"
                f" | {m.money('anonymous')} | {m.note} |"
                for m in found
            ],
        ),
        (
            "cloudsessions against the cheapest peer on the same store that reads as"
            " consistently (a peer reading eventually consistent, at half the read price and"
            " able to show a session just logged out, against ours configured so);"
            " ratio < 1: we cost less.",
            "| store | ours | sessions | ours ($/M) | best peer | best peer ($/M) | ours / peer |"
            "\n|---|---|---|---:|---|---:|---:|",
            summary_rows(found),
        ),
    ]
    with (RESULTS / "cost.md").open("a") as out:
        for title, head, lines in tables:
            text = "\n".join([head, *lines])
            print(f"\n{title}\n\n{text}")
            out.write(f"\n{title}\n\n{text}\n")


# -------------------------------------------------------------------------- plot

READ_COLOUR, WRITE_COLOUR, DELETE_COLOUR = "#8fb3d9", "#2f5f98", "#c9772f"
COLOURS = (READ_COLOUR, WRITE_COLOUR, DELETE_COLOUR)


def plot(rows: list[Row], engines: list[Engine], path: Path) -> None:
    """Top: each store's billed units per shape and engine (stacked reads, writes, deletes),
    the axis cut above our largest so the peers' outliers do not flatten the rest (their
    value is printed at the cut). Bottom: dollars per million requests of the mix."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    stores = list(dict.fromkeys(r.store for r in rows))
    fig, axes = plt.subplots(
        2,
        len(stores),
        figsize=(max(7.5, 5.4 * len(stores)), 11),
        squeeze=False,
        height_ratios=[3, 2],
    )
    found = mixes(rows, engines)
    for column, store in enumerate(stores):
        names = list(dict.fromkeys(r.engine for r in rows if r.store == store))
        _plot_units(axes[0][column], store, [r for r in rows if r.store == store], names)
        _plot_mix(axes[1][column], store, [m for m in found if m.store == store])
    handles = [
        Patch(color=c, label=k)
        for c, k in zip(COLOURS, ("reads", "writes", "deletes"), strict=True)
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=7)
    save_figure(
        fig,
        path,
        "Billed units per request (ours outlined) and $ per million requests of the mix"
        " at list prices of 2026-11 (same run)",
    )


def _plot_units(ax: Any, store: str, mine: list[Row], names: list[str]) -> None:
    def total(row: Row) -> float:
        return (row.bill.reads + row.bill.writes + row.bill.deletes) / row.requests

    ours = [total(r) for r in mine if r.ours and not r.error]
    cut = max(4.0, 1.4 * max(ours, default=4.0))
    width = 0.8 / len(names)
    for n, name in enumerate(names):
        for s, shape in enumerate(SHAPES):
            row = next((r for r in mine if r.engine == name and r.shape == shape), None)
            if row is None or row.error:
                continue
            x = s + (n - (len(names) - 1) / 2) * width
            bottom = 0.0
            for value, colour in zip(
                (row.bill.reads, row.bill.writes, row.bill.deletes), COLOURS, strict=True
            ):
                height = min(value / row.requests, cut - bottom)
                ax.bar(
                    x,
                    height,
                    width * 0.92,
                    bottom=bottom,
                    color=colour,
                    edgecolor="black" if row.ours else "none",
                    linewidth=0.8,
                )
                bottom += height
            label = str(n + 1) if total(row) <= cut else f"{n + 1}: {_units(total(row))}"
            ax.text(
                x,
                bottom,
                label,
                ha="center",
                va="bottom",
                fontsize=6,
                rotation=0 if total(row) <= cut else 90,
            )
    ax.set_ylim(0, cut * 1.3)
    ax.set_xticks(range(len(SHAPES)), SHAPES, rotation=40, ha="right", fontsize=7)
    ax.set_ylabel("commands per request" if store == "redis" else "billed units per request")
    ax.set_title(f"{store} ({PRICES[store].short})", fontsize=8)


def _plot_mix(ax: Any, store: str, store_mix: list[Mix]) -> None:
    values = [m.dollars[s] for m in store_mix for s in SESSIONS]
    priced = [v for v in values if v]
    if priced and max(priced) / min(priced) > 20:
        ax.set_yscale("log")
    for k, sessions in enumerate(SESSIONS):
        xs = [i + (k - 0.5) * 0.4 for i in range(len(store_mix))]
        heights = [m.dollars[sessions] or 0.0 for m in store_mix]
        bars = ax.bar(
            xs,
            heights,
            0.38,
            label=f"{sessions} sessions",
            color=WRITE_COLOUR if k == 0 else READ_COLOUR,
        )
        ax.bar_label(bars, [m.money(sessions) for m in store_mix], fontsize=6)
    ax.set_xticks(range(len(store_mix)), [str(n + 1) for n in range(len(store_mix))])
    names = "\n".join(f"{n + 1}: {m.engine}" for n, m in enumerate(store_mix))
    ax.set_xlabel(names, fontsize=7, loc="left", linespacing=1.4)
    ax.set_ylabel("$ per million requests of the mix")
    if not priced:
        ax.text(0.5, 0.5, "priced at $0 per request", transform=ax.transAxes, ha="center")
    ax.legend(fontsize=7, loc="best")


# -------------------------------------------------------------------------- main

ALL_STORES = ("dynamodb", "firestore", "mongodb", "redis")


@contextlib.contextmanager
def _servers(stores: list[str], population: int) -> Iterator[Servers]:
    servers = Servers(population=population)
    with contextlib.ExitStack() as services:
        try:
            start(stores, services, servers)
            yield servers
        finally:
            for close in reversed(servers.closing):
                with contextlib.suppress(Exception):
                    close()
            from tests.stores import stop_services

            stop_services()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(ALL_STORES))
    parser.add_argument("--requests", type=int, default=3, help="requests per shape")
    parser.add_argument(
        "--population", type=int, default=1000, help="other sessions in each MongoDB collection"
    )
    parser.add_argument("--no-peers", action="store_true")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    stores = [s for s in args.stores.split(",") if s]
    if unknown := set(stores) - set(ALL_STORES):
        parser.error(f"unknown stores {sorted(unknown)}: choose from {', '.join(ALL_STORES)}")

    from benchmarks import cost_peers

    with _servers(stores, args.population) as servers:
        configure_django(cost_peers.django_settings(servers))
        engines = our_engines(stores, servers)
        if not args.no_peers:
            engines += cost_peers.engines(servers)
        rows = [row for engine in engines for row in measure(engine, args.requests)]
    rows.sort(key=lambda r: (ALL_STORES.index(r.store), not r.ours))
    command = "python -m benchmarks.cost " + " ".join(argv if argv is not None else sys.argv[1:])
    report(rows, engines, command.strip(), servers)
    plot(rows, engines, RESULTS / "cost.png")
    print(f"\nsaved {RESULTS / 'cost.md'} and {RESULTS / 'cost.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
