"""An async Django view under Django's ASGI handler: cloudsessions' session middleware against
Django's own, both on the cloudsessions engine and the same store.

Django's own `django.contrib.sessions.middleware.SessionMiddleware` runs on an async request
by sending its process_request and process_response through asgiref's sync_to_async: two
waits per request for the request's one executor thread, and the save blocks that thread.
`cloudsessions.django.middleware.SessionMiddleware` does the same work on the event loop,
through the session's async API (the store's native asyncio client). Nothing else differs:
one settings module, one async view (which uses the session's async API, as Django asks of
async views), one store, one event loop; two `django.core.handlers.asgi.ASGIHandler`s, one
per middleware, each called directly with ASGI messages (no server, no sockets: what is left
is Django's request handling and the store's round trips).

Load: CONCURRENCY visitors (64) at a time, each a closed loop (its next request when the
last is answered), each with its own session, through the issue's request mix: 80%
read-only, 15% modify, 3% new visitor, 1% login (cycle_key + user id), 1% logout (each
logout followed by a new visitor's request). The two middlewares take turns, a round of
requests each, the first one alternating round by round, so both meet the same machine
load. Reported per middleware: throughput (requests over the wall time of its rounds), the
p50 and p99 of the request latency and the process's CPU time per request (every thread);
the ratios are cloudsessions' over Django's (target: throughput at least 1.1x), and the
throughput ratio of each pair of rounds run back to back (median and range), which shows
how far other load on the machine moved the whole run's ratio.

Django's ASGIHandler itself starts a thread per request (asgiref's ThreadSensitiveContext,
for the request_started signal and response.close) and another to join it: both
middlewares pay that, so it dilutes the ratio, more so on a busy machine.

Servers are the test suites' (tests/stores.py), started here and stopped at the end.
Prints a table, saves benchmarks/results/django_async.{md,png}.

    python -m benchmarks.django_async [--stores redis,mongodb] [--requests 8192]
                                      [--rounds 32] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from benchmarks import views
from benchmarks.harness import RESULTS, publish, save_figure

ROOT = Path(__file__).resolve().parent.parent
MIDDLEWARES = {
    "cloudsessions": "cloudsessions.django.middleware.SessionMiddleware",
    "Django's": "django.contrib.sessions.middleware.SessionMiddleware",
}
TARGET = 1.1  # the issue's: cloudsessions' throughput over Django's
MIX = {"read-only": 80, "modify": 15, "new": 3, "login": 1, "logout": 1}
COOKIE = "sessionid"


def request_mix(seed: int = 17) -> list[str]:
    """100 request shapes in a fixed shuffled order, each logout followed by a new visitor
    (a logged-out browser has no session left to read)."""
    counts = dict(MIX)
    counts["logout"] -= 1
    counts["new"] -= 1
    shapes = [shape for shape, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(shapes)
    at = len(shapes) // 2
    return [*shapes[:at], "logout", "new", *shapes[at:]]


# ----------------------------------------------------------------------------- the app


async def view(request: Any) -> Any:
    """One async view, every shape by ?shape=, through the session's async API."""
    from django.http import HttpResponse

    shape = request.GET["shape"]
    session = request.session
    views = await session.aget("views", 0)
    if shape in ("modify", "new"):
        await session.aset("views", views + 1)
    elif shape == "login":
        await session.acycle_key()
        await session.aset("_auth_user_id", request.GET["user"])
    elif shape == "logout":
        await session.aflush()
    return HttpResponse(f"views: {views}")


def configure_django() -> None:
    from django.urls import path

    views.configure_django(
        lambda: [path("", view)], SESSION_ENGINE="cloudsessions.django", MIDDLEWARE=[]
    )


def handler(middleware: str) -> Any:
    """An ASGIHandler whose only middleware is `middleware` (it loads it when built)."""
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=[middleware]):
        return ASGIHandler()


# ----------------------------------------------------------------------------- the load


@dataclass
class Visitor:
    """One browser: its session cookie and where it is in the request mix."""

    number: int
    position: int
    cookie: str | None = None


async def call(app: Any, visitor: Visitor, shape: str) -> float:
    """One request through the ASGI handler, as a server would pass it; its latency (s)."""
    query = f"shape={shape}&user={visitor.number}"
    headers = [(b"host", b"testserver")]
    if shape == "new":
        visitor.cookie = None
    if visitor.cookie:
        headers.append((b"cookie", f"{COOKIE}={visitor.cookie}".encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": query.encode(),
        "headers": headers,
        "client": ("127.0.0.1", 40000 + visitor.number),
        "server": ("testserver", 80),
    }
    body_sent = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal body_sent
        if not body_sent:
            body_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        # The client stays connected: Django cancels this wait once it has answered.
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    started = time.perf_counter()
    await app(scope, receive, send)
    elapsed = time.perf_counter() - started
    start = messages[0]
    assert start["status"] == 200, (shape, start)
    for name, value in start["headers"]:
        if name.lower() == b"set-cookie":
            cookie = SimpleCookie(value.decode())
            visitor.cookie = cookie[COOKIE].value or None  # "" deletes it
    if shape in ("new", "login"):
        assert visitor.cookie, f"no session cookie after a {shape} request"
    elif shape == "logout":
        assert visitor.cookie is None, "the cookie outlived the logout"
    return elapsed


@dataclass
class Measured:
    """One middleware's requests on one store: latencies (s) and the wall time they took."""

    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0  # seconds of CPU, every thread of the process
    rounds: list[float] = field(default_factory=list)  # each round's throughput

    @property
    def cpu_per_request(self) -> float:
        return self.cpu / len(self.latencies)

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        # Nearest rank: p99 of 4,000 latencies is the 3,960th smallest.
        return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


async def run_round(
    app: Any, visitors: list[Visitor], mix: list[str], requests: int, into: Measured
) -> None:
    """`requests` requests, `len(visitors)` in flight: each visitor a closed loop."""
    share, extra = divmod(requests, len(visitors))

    async def browse(visitor: Visitor, count: int) -> None:
        for _ in range(count):
            shape = mix[visitor.position % len(mix)]
            visitor.position += 1
            into.latencies.append(await call(app, visitor, shape))

    gc.collect()  # a collection the previous round left pending is not this round's
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(browse(v, share + (i < extra)) for i, v in enumerate(visitors)))
    wall = time.perf_counter() - started
    into.wall += wall
    into.cpu += time.process_time() - cpu
    into.rounds.append(requests / wall)


async def measure(
    apps: dict[str, Any], requests: int, rounds: int, concurrency: int
) -> dict[str, Measured]:
    mix = request_mix()
    results = {name: Measured() for name in apps}
    visitors = {
        name: [Visitor(n, n * len(mix) // concurrency) for n in range(concurrency)] for name in apps
    }
    # Warm-up: every visitor gets a session; clients connect, pools fill.
    for name, app in apps.items():
        await asyncio.gather(*(call(app, v, "new") for v in visitors[name]))
        await run_round(app, visitors[name], mix, concurrency * 4, Measured())
    names = list(apps)
    per_round = max(1, requests // rounds)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            await run_round(apps[name], visitors[name], mix, per_round, results[name])
    return results


# ----------------------------------------------------------------------------- a store


@contextlib.contextmanager
def store_urls(names: list[str]) -> Iterator[dict[str, str]]:
    """A fresh, provisioned store of each kind; the servers stopped at the end."""
    from tests import stores

    from cloudsessions import open_store

    try:
        with tempfile.TemporaryDirectory() as folder:
            urls = {name: stores.store_url(name, Path(folder)) for name in names}
            for url in urls.values():
                with contextlib.closing(open_store(url)) as store:
                    store.provision()
            yield urls
    finally:
        stores.stop_services()


def bench_store(url: str, requests: int, rounds: int, concurrency: int) -> dict[str, Measured]:
    from django.test import override_settings

    from cloudsessions.django.conf import config

    with override_settings(CLOUDSESSIONS={"STORE": url}):
        store = config().store()
        apps = {name: handler(path) for name, path in MIDDLEWARES.items()}

        async def run() -> dict[str, Measured]:
            try:
                return await measure(apps, requests, rounds, concurrency)
            finally:
                await store.aclose()

        try:
            return asyncio.run(run())
        finally:
            store.close()


# ----------------------------------------------------------------------------- report


@dataclass
class Row:
    store: str
    middleware: str
    measured: Measured
    reference: Measured

    @property
    def ratio(self) -> float:
        return self.measured.throughput / self.reference.throughput

    @property
    def round_ratios(self) -> list[float]:
        """Throughput ratio of each pair of rounds (the two middlewares back to back): their
        spread shows how much the machine's other load moved the whole run's ratio."""
        pairs = zip(self.measured.rounds, self.reference.rounds, strict=True)
        return sorted(ours / theirs for ours, theirs in pairs)


def report(
    rows: list[Row], args: argparse.Namespace, django_version: str, load: tuple[float, float]
) -> None:
    lines = []
    for r in rows:
        m, ref = r.measured, r.reference
        ours = r.middleware == "cloudsessions"
        verdict = ("PASS" if r.ratio >= TARGET else "FAIL") if ours else "-"
        pairs = r.round_ratios
        spread = f"{statistics.median(pairs):.2f} ({pairs[0]:.2f}-{pairs[-1]:.2f})" if ours else "-"
        lines.append(
            f"| {r.store} | {r.middleware} | {len(m.latencies)} | {m.throughput:.0f}"
            f" | {m.percentile(50) * 1000:.1f} | {m.percentile(99) * 1000:.1f}"
            f" | {m.cpu_per_request * 1000:.2f}"
            f" | {r.ratio:.2f} | {spread}"
            f" | {m.percentile(50) / ref.percentile(50):.2f}"
            f" | {m.percentile(99) / ref.percentile(99):.2f}"
            f" | {m.cpu_per_request / ref.cpu_per_request:.2f}"
            f" | {f'>= {TARGET}' if ours else '-'} | {verdict} |"
        )
    command = (
        f"python -m benchmarks.django_async --stores {args.stores} --requests {args.requests}"
        f" --rounds {args.rounds} --concurrency {args.concurrency}"
    )
    publish(
        "django_async",
        [
            "store",
            "session middleware",
            "requests",
            "throughput (req/s)",
            "p50 (ms)",
            "p99 (ms)",
            "CPU per request (ms)",
            "throughput vs Django's",
            "round pairs: median (range)",
            "p50 vs Django's",
            "p99 vs Django's",
            "CPU vs Django's",
            "target (throughput)",
            "result",
        ],
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
        lines,
        f"An async view under Django {django_version}'s ASGIHandler, {args.concurrency} requests"
        f" in flight, the mix {MIX}, both middlewares on the cloudsessions engine and the same"
        f" store, in alternating rounds; CPU = the process's CPU time (all threads) per"
        f" request; load average {load[0]:.1f} before, {load[1]:.1f} after on"
        f" {os.cpu_count()} CPUs (`{command}`).",
    )


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store_names = list(dict.fromkeys(r.store for r in rows))
    panels: list[tuple[str, str, Callable[[Measured], float]]] = [
        ("throughput (requests/s)", "%.0f", lambda m: m.throughput),
        ("CPU per request (ms)", "%.2f", lambda m: m.cpu_per_request * 1000),
        ("p50 latency (ms)", "%.1f", lambda m: m.percentile(50) * 1000),
        ("p99 latency (ms)", "%.1f", lambda m: m.percentile(99) * 1000),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4))
    width = 0.38
    colours = {"cloudsessions": "#1f77b4", "Django's": "#b0b0b0"}
    for ax, (label, fmt, value) in zip(axes, panels, strict=True):
        for n, middleware in enumerate(MIDDLEWARES):
            xs = [i + (n - 0.5) * width for i in range(len(store_names))]
            ys = [
                value(r.measured)
                for s in store_names
                for r in rows
                if r.store == s and r.middleware == middleware
            ]
            name = f"{middleware} middleware"
            bars = ax.bar(xs, ys, width, label=name, color=colours[middleware])
            ax.bar_label(bars, fmt=fmt, fontsize=8)
        ax.set_xticks(range(len(store_names)), store_names)
        ax.set_title(label, fontsize=10)
        ax.margins(y=0.15)
    axes[0].legend(fontsize=8, loc="lower right")
    labels = []
    for s in store_names:
        ours = next(r for r in rows if r.store == s and r.middleware == "cloudsessions")
        labels.append(f"{s} {ours.ratio:.2f}x")
    ok = all(r.ratio >= TARGET for r in rows if r.middleware == "cloudsessions")
    axes[0].set_xlabel(
        f"throughput ratio: {', '.join(labels)} (target {TARGET}x)",
        color="green" if ok else "darkorange",
        fontsize=9,
    )
    save_figure(fig, path, "async Django view: cloudsessions' session middleware against Django's")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="redis,mongodb")
    parser.add_argument("--requests", type=int, default=8192, help="per middleware and store")
    parser.add_argument("--rounds", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # tests.stores: the servers
    configure_django()
    import django

    rows: list[Row] = []
    load_before = os.getloadavg()[0]
    with store_urls(args.stores.split(",")) as urls:
        for name, url in urls.items():
            measured = bench_store(url, args.requests, args.rounds, args.concurrency)
            reference = measured["Django's"]
            rows += [Row(name, mw, m, reference) for mw, m in measured.items()]
            row = rows[-2]
            pairs = row.round_ratios
            print(
                f"{name}: {row.ratio:.2f}x the throughput of Django's middleware (round pairs:"
                f" median {statistics.median(pairs):.2f}x, {pairs[0]:.2f}-{pairs[-1]:.2f});"
                f" CPU per request {row.measured.cpu_per_request * 1000:.3f} ms against"
                f" {reference.cpu_per_request * 1000:.3f} ms"
            )
    report(rows, args, django.get_version(), (load_before, os.getloadavg()[0]))
    plot(rows, RESULTS / "django_async.png")
    print(f"\nsaved {RESULTS / 'django_async.md'} and {RESULTS / 'django_async.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
