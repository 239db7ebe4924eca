"""A full request through cloudsessions and through the usual Redis session engines, on one Redis.

Flask: cloudsessions' `CloudSessions(app)` against Flask-Session 0.8's Redis backend
(`SESSION_TYPE = "redis"`, its defaults otherwise). Django: cloudsessions' engine (and its
middleware) against Django's cache engine (`django.contrib.sessions.backends.cache`) on
`django.core.cache.backends.redis.RedisCache`. Each framework's two apps serve the same
views, through the framework's in-process test client, against the same redis-server (started
here, tests/services/redis.py), interleaved request by request (the order alternating).

Per request shape it reports the median latency of the whole request and the Redis commands
the request sent, counted at the client: each library's redis-py connections are a subclass
that records every command as it is sent (cloudsessions' through its `on_command` option,
the same hook), so a script call (EVALSHA) is one command, as it is one round trip.
Connection set-up (HELLO, CLIENT, SELECT) is left out. Prints a table, saves
benchmarks/results/peers.{md,png}.

    python -m benchmarks.peers [--requests 200]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, publish, save_figure
from benchmarks.views import configure_django, django_urlpatterns, flask_views

SHAPES = ("new visitor write", "read-only", "change", "logout")
SETUP = frozenset({"HELLO", "AUTH", "CLIENT", "SELECT", "PING", "SCRIPT"})
READS = frozenset({"GET", "EXISTS", "HGETALL", "HMGET", "ZRANGE", "TTL", "PTTL"})
WRITES = frozenset(
    {"SET", "SETEX", "DEL", "UNLINK", "EXPIRE", "PEXPIRE", "PEXPIREAT", "EVALSHA", "EVAL"}
)


@dataclass
class Commands:
    """The commands one engine sent, by verb, while `counting`."""

    counting: bool = False
    sent: list[str] = field(default_factory=list)

    def __call__(self, args: tuple[Any, ...]) -> None:
        verb = str(args[0].decode() if isinstance(args[0], bytes) else args[0])
        verb = verb.split(" ", 1)[0].upper()
        if verb in SETUP or not self.counting:
            return
        if verb not in READS | WRITES:
            raise AssertionError(f"unclassified Redis command {args[:2]!r}")
        self.sent.append(verb)


def counting_connection(commands: Commands) -> type[Any]:
    """A redis-py connection class that tells `commands` of each command it sends."""
    import redis.connection

    class Counting(redis.connection.Connection):
        def send_command(self, *args: Any, **kwargs: Any) -> None:
            commands(args)
            super().send_command(*args, **kwargs)

    return Counting


# --------------------------------------------------------------------- the views


@dataclass
class Engine:
    """One app: `request(shape)` makes one request of that shape; `prepare(shape)` what it needs
    first (not counted, not timed)."""

    framework: str
    name: str
    commands: Commands
    request: Callable[[str], None]
    prepare: Callable[[str], None]


def _path(shape: str) -> str:
    return {
        "new visitor write": "/new",
        "read-only": "/read",
        "change": "/modify",
        "logout": "/logout",
    }[shape]


def _check(status: int, shape: str, engine: str) -> None:
    if status != 200:
        raise RuntimeError(f"{engine}: {shape} answered {status}")


# ------------------------------------------------------------------------- Flask


def flask_app(configure: Callable[[Any], None]) -> Any:
    import flask

    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "benchmark-not-secret"
    configure(app)
    flask_views(app)
    return app


def flask_engine(name: str, configure: Callable[[Any], None], commands: Commands) -> Engine:
    app = flask_app(configure)
    browsers = [app.test_client()]

    def get(path: str, shape: str) -> None:
        _check(browsers[0].get(path).status_code, shape, name)

    def prepare(shape: str) -> None:
        browsers[0] = app.test_client()  # a new visitor: no cookie
        if shape != "new visitor write":
            get("/new", "prepare")

    def request(shape: str) -> None:
        get(_path(shape), shape)

    return Engine("flask", name, commands, request, prepare)


def flask_engines(server: str) -> list[Engine]:
    import redis
    from flask_session import Session

    ours, theirs = Commands(), Commands()

    def cloudsessions(app: Any) -> None:
        from cloudsessions.flask import CloudSessions

        app.config["CLOUDSESSIONS_STORE"] = f"{server}/0?prefix=bench-flask:"
        app.config["CLOUDSESSIONS_OPTIONS"] = {"on_command": ours}
        CloudSessions(app)

    def flask_session(app: Any) -> None:
        pool = redis.ConnectionPool.from_url(
            f"{server}/0", connection_class=counting_connection(theirs)
        )
        app.config["SESSION_TYPE"] = "redis"
        app.config["SESSION_REDIS"] = redis.Redis(connection_pool=pool)
        Session(app)

    return [
        flask_engine("cloudsessions", cloudsessions, ours),
        flask_engine("Flask-Session 0.8 (redis)", flask_session, theirs),
    ]


# ------------------------------------------------------------------------ Django


def django_engines(server: str) -> list[Engine]:
    ours, theirs = Commands(), Commands()
    configure_django(
        django_urlpatterns,
        CACHES={
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"{server}/0",
                "OPTIONS": {"connection_class": counting_connection(theirs)},
            }
        },
        CLOUDSESSIONS={
            "STORE": f"{server}/0?prefix=bench-django:",
            "OPTIONS": {"on_command": ours},
        },
    )
    return [
        django_engine(
            "cloudsessions",
            "cloudsessions.django",
            "cloudsessions.django.middleware.SessionMiddleware",
            ours,
        ),
        django_engine(
            "Django cache engine (RedisCache)",
            "django.contrib.sessions.backends.cache",
            "django.contrib.sessions.middleware.SessionMiddleware",
            theirs,
        ),
    ]


def django_engine(name: str, engine: str, middleware: str, commands: Commands) -> Engine:
    from django.test import Client, override_settings

    browser = Client()
    # The middleware reads SESSION_ENGINE once, when it is made: each client's handler gets
    # its own, so both engines serve side by side in one process.
    with override_settings(SESSION_ENGINE=engine, MIDDLEWARE=[middleware]):
        browser.handler.load_middleware()

    def get(path: str, shape: str) -> None:
        _check(browser.get(path).status_code, shape, name)

    def prepare(shape: str) -> None:
        browser.cookies.clear()
        if shape != "new visitor write":
            get("/new", "prepare")

    def request(shape: str) -> None:
        get(_path(shape), shape)

    return Engine("django", name, commands, request, prepare)


# ------------------------------------------------------------------------ measure


@dataclass
class Row:
    framework: str
    engine: str
    shape: str
    ms: float
    commands: float
    writes: float
    verbs: str


def _verbs(sent: list[str], requests: int) -> str:
    counts: dict[str, int] = {}
    for verb in sent:
        counts[verb] = counts.get(verb, 0) + 1
    return " + ".join(
        f"{n // requests if n % requests == 0 else round(n / requests, 2)} {verb}"
        for verb, n in counts.items()
    )


def measure(engines: list[Engine], requests: int) -> list[Row]:
    """Each shape's requests through every engine, interleaved, after a warm-up."""
    rows = []
    warmup = max(requests // 10, 5)
    for shape in SHAPES:
        times: dict[str, list[int]] = {e.name: [] for e in engines}
        for engine in engines:
            engine.commands.sent.clear()
        for i in range(warmup + requests):
            order = engines if i % 2 == 0 else engines[::-1]
            for engine in order:
                # Read-only and change requests go to one session, prepared once.
                if shape in ("new visitor write", "logout") or i == 0:
                    engine.prepare(shape)
                engine.commands.counting = i >= warmup
                start = time.perf_counter_ns()
                engine.request(shape)
                elapsed = time.perf_counter_ns() - start
                engine.commands.counting = False
                if i >= warmup:
                    times[engine.name].append(elapsed)
        for engine in engines:
            sent = engine.commands.sent
            writes = sum(verb in WRITES for verb in sent)
            rows.append(
                Row(
                    engine.framework,
                    engine.name,
                    shape,
                    statistics.median(times[engine.name]) / 1e6,
                    len(sent) / requests,
                    writes / requests,
                    _verbs(sent, requests) or "none",
                )
            )
    return rows


@contextlib.contextmanager
def _server() -> Iterator[str]:
    from tests.services.redis import redis_server

    with redis_server() as url:
        yield url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    with _server() as server:
        import redis

        from cloudsessions import open_store

        version = redis.Redis.from_url(server).info("server")["redis_version"]
        with contextlib.closing(open_store(f"{server}/0")) as store:
            store.provision()  # `cloudsessions init`: the scripts, loaded once per server
        rows = measure(flask_engines(server), args.requests)
        rows += measure(django_engines(server), args.requests)

    publish(
        "peers",
        ["framework", "engine", "request", "median (ms)", "commands", "writes", "which"],
        "|---|---|---|---:|---:|---:|---|",
        [
            f"| {r.framework} | {r.engine} | {r.shape} | {r.ms:.3f} | {r.commands:g}"
            f" | {r.writes:g} | {r.verbs} |"
            for r in rows
        ],
        f"Median of {args.requests} interleaved requests per shape, commands per request"
        f" (redis {version}; `python -m benchmarks.peers --requests {args.requests}`).",
    )
    _plot(rows, RESULTS / "peers.png")
    print(f"\nsaved {RESULTS / 'peers.md'} and {RESULTS / 'peers.png'}")
    return 0


def _plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frameworks = list(dict.fromkeys(r.framework for r in rows))
    fig, axes = plt.subplots(2, len(frameworks), figsize=(6 * len(frameworks), 7), squeeze=False)
    for column, framework in enumerate(frameworks):
        mine = [r for r in rows if r.framework == framework]
        engines = list(dict.fromkeys(r.engine for r in mine))
        width = 0.8 / len(engines)
        for metric, (ax, label) in enumerate(
            zip(axes[:, column], ("commands per request", "median request (ms)"), strict=True)
        ):
            for n, engine in enumerate(engines):
                values = [
                    (r.commands if metric == 0 else r.ms)
                    for shape in SHAPES
                    for r in mine
                    if r.engine == engine and r.shape == shape
                ]
                positions = [i + (n - (len(engines) - 1) / 2) * width for i in range(len(SHAPES))]
                ax.bar(positions, values, width, label=engine)
            ax.set_xticks(range(len(SHAPES)), SHAPES, fontsize=8)
            ax.set_ylabel(label)
            ax.set_title(f"{framework}: {label}")
            ax.legend(fontsize=8)
    save_figure(fig, path, "a full request against the same Redis (same run)")


if __name__ == "__main__":
    raise SystemExit(main())
