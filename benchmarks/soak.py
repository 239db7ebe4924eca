"""Soak and load: 64 browsers at once against real servers on every store, for a minute each,
with and without faults between the app and its store.

Servers (each a process of its own, on loopback):
- asgi: the ASGI demo (cloudsessions.demo) under uvicorn, one process, with one read-only
  page added (benchmarks/soak_apps.py says why);
- django: Django's ASGI handler with cloudsessions' session middleware and the async view of
  benchmarks/django_async.py, under uvicorn, one process;
- flask: Flask with cloudsessions' session interface under gunicorn, 4 worker processes of 4
  threads (the SQLite multi-process run only).
The stores are the test suites' servers (tests/stores.py), started here, stopped at the end.

Load: CLIENTS browsers (64), each a closed loop (its next request when the last is
answered) with its own keep-alive connection and session cookie, through the request mix of
benchmarks/django_async.py (80% read-only, 15% modify, 3% new visitor, 1% login, 1% logout,
each logout followed by a new visitor). On the demo, "modify" is its home page (an atomic
increment of the view count) and a login follows the demo's redirect to the home page.
A warm-up (every browser gets a session, then --warmup seconds of the mix, 1/3 of the run;
under faults, --fault-warmup, as long as the run: a client's memory under faults is not its
memory without them, and a Firestore client's takes about a minute of faults to level)
comes first. Then the server's memory in use is read every IN_USE_EVERY (5) seconds and at
the end: the soak apps are asked to collect Python's cyclic garbage and have glibc hand back the
free memory it keeps (soak_apps.trimmable), then RSS is read. Target: the median of the last
third of those readings within 5 MB of the median of the first third. RSS alone, sampled
every second, swings by 10-25 MB under faults without growing: Django's ASGI handler leaves
each request's objects in a reference cycle (its disconnect listener's RequestAborted),
which a request slowed by a fault lets reach the oldest generation, freed only by a full
collection every few seconds; and glibc keeps what gRPC's threads freed in their arenas.
What is in use still moves by a few MB with what is in flight at the moment (100.5-106.6 MB
over 360 s of faults on Firestore/Django, with no trend), so one reading at each end is not
enough either. The RSS range is printed beside it.

Errors, by kind: "503" (the store unavailable, as the front doors answer it), "other" (any
other status, a reset connection, no answer within 30 s) and "logout" (a silent logout:
a browser whose session vanished without its logging out: its view count went back, its
greeting is gone, or a request other than a login answered with a new session id).

Runs:
- clean: every store x app;
- faults: the same through tests/services/proxy.py's FaultProxy, FAULT_RATE (5%) of the store
  requests meeting a fault (a latency spike, a reset, a throttling error); target: errors
  are 503s only (never a 500, never a silent logout);
- DynamoDB modes: the ASGI demo on DynamoDB Local with the native asyncio client
  (aiobotocore) and in thread mode (the sync boto3 client in anyio's worker threads), each
  with max_pool_connections 10 (the old default) and 64; target: native p99 no worse than
  thread mode's, at higher throughput;
- SQLite workers: the Flask app under gunicorn (4 processes) on one SQLite file; target: no
  "database is locked" (in the server's log or any answer) and no 5xx.

Prints the tables, saves benchmarks/results/soak.{md,png}.

    python -m benchmarks.soak [--stores sqlite,dynamodb,firestore,mongodb,redis]
        [--apps asgi,django] [--seconds 60] [--clients 64] [--fault-rate 0.05]
        [--runs clean,faults,dynamodb,sqlite-workers]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote

from benchmarks.django_async import request_mix, store_urls
from benchmarks.harness import RESULTS, publish, save_figure
from benchmarks.soak_apps import OPTIONS_VARIABLE, TRIM_PATH, URL_VARIABLE

ROOT = Path(__file__).resolve().parent.parent
STORES = ["sqlite", "dynamodb", "firestore", "mongodb", "redis"]
RUNS = ["clean", "faults", "dynamodb", "sqlite-workers"]
HOST = "127.0.0.1"
REQUEST_TIMEOUT = 30.0  # seconds: a request unanswered by then is an error ("other")
RSS_FLAT_MB = 5.0  # the target: memory in use at the end within 5 MB of the start
IN_USE_EVERY = 5  # seconds between readings of the memory in use
# The wire protocol FaultProxy speaks to each store's server (sqlite has none).
PROTOCOLS = {"dynamodb": "http", "firestore": "grpc", "mongodb": "mongo", "redis": "redis"}
FAULT_KINDS = ("latency", "reset", "throttling")
DYNAMODB_MODES = {  # name -> store options
    "native, pool 10": {"max_pool_connections": 10},
    "native, pool 64": {"max_pool_connections": 64},
    "threads, pool 10": {"max_pool_connections": 10, "thread_mode": True},
    "threads, pool 64": {"max_pool_connections": 64, "thread_mode": True},
}


@dataclass(frozen=True)
class App:
    """A served app: how to start its server and how a browser uses it."""

    name: str
    argv: tuple[str, ...]  # `python -m` these, {port} filled in
    cookie: str  # the session cookie's name
    single_process: bool  # the server is one process (its RSS is the app's)


def _uvicorn(factory: str) -> tuple[str, ...]:
    return (
        "uvicorn", "--factory", "--workers", "1", "--host", HOST, "--port", "{port}",
        "--no-access-log", "--log-level", "warning", "--timeout-keep-alive", "60", factory,
    )  # fmt: skip


def _gunicorn(factory: str, workers: int) -> tuple[str, ...]:
    from tests.real_servers import GUNICORN

    argv = list(GUNICORN)
    argv[argv.index("--workers") + 1] = str(workers)
    return (*argv, "--graceful-timeout", "1", "--keep-alive", "60", factory)


APPS = {
    "asgi": App("asgi", _uvicorn("benchmarks.soak_apps:asgi_app"), "session", True),
    "django": App("django", _uvicorn("benchmarks.soak_apps:django_app"), "sessionid", True),
}


def flask_workers(workers: int = 4) -> App:
    return App("flask", _gunicorn("benchmarks.soak_apps:flask_app()", workers), "session", False)


# ----------------------------------------------------------------------------- the server


@dataclass
class Server:
    port: int
    pid: int
    log: Path

    def rss_mb(self) -> float:
        """The resident set of the server process, in MB (VmRSS)."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        assert match is not None
        return int(match.group(1)) / 1024

    def cpu_seconds(self) -> float:
        """CPU time the server process has used (user + system, every thread)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def in_use_mb(self) -> float:
        """The RSS once Python's cyclic garbage is collected and glibc has handed back the
        free memory it keeps (soak_apps.trimmable): the memory the server still uses."""
        connection = Connection(self.port)
        try:
            answer = await connection.request("POST", TRIM_PATH, {}, "")
        finally:
            connection.close()
        assert answer.status == 200, answer
        return self.rss_mb()


@contextlib.contextmanager
def serving(app: App, url: str, options: dict[str, Any], tag: str) -> Iterator[Server]:
    """`app` served on the store at `url` (with `options`) until the with-block ends."""
    from tests.services._process import cache_dir, free_port, run_server

    port = free_port()
    argv = [sys.executable, "-m", *(arg.format(port=port) for arg in app.argv)]
    env = {**os.environ, URL_VARIABLE: url, OPTIONS_VARIABLE: json.dumps(options)}
    name = f"soak-{tag}"
    with run_server(name, argv, port, cwd=ROOT, env=env, timeout=90) as proc:
        yield Server(port, proc.pid, cache_dir() / "logs" / f"{name}-{port}.log")


# ----------------------------------------------------------------------------- HTTP


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: str


class Connection:
    """One browser's keep-alive HTTP/1.1 connection (a new one after any failure)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: str) -> Answer:
        reused = self.streams is not None
        try:
            return await self._exchange(method, path, headers, body)
        except (ConnectionError, asyncio.IncompleteReadError, EOFError):
            self.close()
            if not reused:
                raise
        # The server closed the idle connection as we reused it: once more, on a new one.
        try:
            return await self._exchange(method, path, headers, body)
        except (ConnectionError, asyncio.IncompleteReadError, EOFError):
            self.close()
            raise

    async def _exchange(self, method: str, path: str, headers: dict[str, str], body: str) -> Answer:
        if self.streams is None:
            self.streams = await asyncio.open_connection(HOST, self.port)
        reader, writer = self.streams
        data = body.encode()
        lines = [f"{method} {path} HTTP/1.1", "Host: testserver", f"Content-Length: {len(data)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + data)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise EOFError("the server closed the connection")
        status = int(status_line.split()[1])
        answer_headers: list[tuple[str, str]] = []
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            answer_headers.append((name.strip().lower(), value.strip()))
        found = dict(answer_headers)
        if found.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while size := int((await reader.readline()).split(b";")[0], 16):
                chunks.append(await reader.readexactly(size))
                await reader.readline()
            await reader.readline()
            payload = b"".join(chunks)
        else:
            payload = await reader.readexactly(int(found.get("content-length", 0)))
        if found.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, answer_headers, payload.decode("utf-8", "replace"))

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


# ----------------------------------------------------------------------------- browsers


class Failed(Exception):
    """A request that failed: its kind ("503", "other", "logout") and what was seen."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@dataclass
class Measured:
    """One run's requests: latencies (s) of every answered request, errors by kind."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)  # the first of each kind
    wall: float = 0.0
    rss: list[tuple[float, float]] = field(default_factory=list)  # (s since start, MB)
    # (s since start, MB in use): RSS once Python's cyclic garbage is collected and glibc
    # handed back its free memory (Server.in_use_mb), every IN_USE_EVERY s and at the end.
    in_use: list[tuple[float, float]] = field(default_factory=list)
    locked: int = 0  # "database is locked" seen (answers and the server's log)
    cpu: float = 0.0  # CPU seconds of the server process (single-process servers)
    # Silent logouts by the browser's previous request and how it ended ("login: 503").
    logouts_after: Counter[str] = field(default_factory=Counter)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def cpu_per_request(self) -> float:
        return self.cpu / self.requests if self.requests else math.nan

    @property
    def throughput(self) -> float:
        return self.requests / self.wall if self.wall else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return math.nan
        return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


class Browser:
    """One visitor: a connection, a session cookie, and what it knows of its session."""

    def __init__(self, number: int, position: int, app: App, port: int) -> None:
        self.number = number
        self.position = position
        self.app = app
        self.connection = Connection(port)
        self.cookie: str | None = None
        self.views = 0  # the least view count its session must show (0: no session)
        self.csrf: str | None = None
        self.logins = 0
        self.last = "new: ok"  # the previous request shape and how it ended (for reports)
        self.into = Measured()

    async def fetch(self, method: str, path: str, form: dict[str, str] | None = None) -> Answer:
        """One request with the browser's cookie; keeps the cookie the answer sets. Raises
        Failed for anything but a 200 or a 303."""
        headers = {}
        if self.cookie:
            headers["Cookie"] = f"{self.app.cookie}={self.cookie}"
        body = ""
        if form is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = "&".join(f"{k}={quote(v)}" for k, v in form.items())
        started = time.perf_counter()
        try:
            answer = await asyncio.wait_for(
                self.connection.request(method, path, headers, body), REQUEST_TIMEOUT
            )
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError) as exc:
            self.connection.close()
            self.into.latencies.append(time.perf_counter() - started)
            raise Failed("other", f"{method} {path}: {type(exc).__name__}: {exc}") from None
        self.into.latencies.append(time.perf_counter() - started)
        if "database is locked" in answer.body:
            self.into.locked += 1
        if answer.status == 503:
            raise Failed("503", f"{method} {path}: 503")
        if answer.status not in (200, 303):
            raise Failed("other", f"{method} {path}: {answer.status} {answer.body[:200]!r}")
        for name, value in answer.headers:
            if name == "set-cookie" and value.startswith(self.app.cookie + "="):
                morsel = SimpleCookie(value)[self.app.cookie]
                # "" deletes it, as does an expiry in the past (Starlette's "null").
                gone = "1970" in morsel["expires"] or morsel["max-age"] == "0"
                new = None if gone else morsel.value or None
                if (
                    new
                    and self.cookie
                    and new != self.cookie
                    and path != "/login"
                    and ("shape=login" not in path)
                ):
                    self.cookie = new
                    raise Failed("logout", f"{method} {path}: a new session id, not a login")
                self.cookie = new
        return answer

    def expect_views(self, seen: int, path: str) -> None:
        """The session shows `seen` views: fewer than it had means it was lost."""
        if seen < self.views:
            raise Failed("logout", f"{path}: {seen} views, the session had {self.views}")

    async def visit(self, shape: str) -> None:
        if self.app.name != "django":  # its view takes the mix's names as they are
            shape = "read" if shape == "read-only" else shape
        try:
            if self.app.name == "asgi":
                await self._demo(shape)
            elif self.app.name == "django":
                await self._django(shape)
            else:
                await self._flask(shape)
        except Failed as failure:
            self.into.errors[failure.kind] += 1
            self.into.examples.setdefault(failure.kind, f"{failure} (after {self.last})")
            self.into.logouts_after[self.last] += failure.kind == "logout"
            self.last = f"{shape}: {failure.kind}"
            if failure.kind == "logout":  # counted once: the browser starts over
                self.cookie, self.views = None, 0
        else:
            self.last = f"{shape}: ok"

    # The ASGI demo: / counts a view (and renders the page), /read reads, /login and
    # /logout post the page's form with its CSRF token.
    async def _demo(self, shape: str) -> None:
        if shape == "new":
            self.cookie, self.views = None, 0
        if shape == "read":
            views, _, csrf = (await self.fetch("GET", "/read")).body.partition(" ")
            self.expect_views(int(views), "/read")
            self.csrf = csrf
            return
        if shape == "login":
            self.logins += 1
            name = f"user{self.number}.{self.logins}"  # a new user id: the session moves
            await self.fetch(
                "POST", "/login", {"csrfmiddlewaretoken": self.csrf or "", "name": name}
            )
        elif shape == "logout":
            await self.fetch("POST", "/logout", {"csrfmiddlewaretoken": self.csrf or ""})
            if self.cookie is not None:
                raise Failed("other", "the session cookie outlived the logout")
            self.views = 0
            return  # the mix's next request is a new visitor's
        page = (await self.fetch("GET", "/")).body
        shown = re.search(r'<b id="views">(\d+) views?</b>', page)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if shown is None or token is None:
            raise Failed("other", f"GET /: not the demo page: {page[:200]!r}")
        self.expect_views(int(shown.group(1)) - 1, "GET /")
        self.views, self.csrf = int(shown.group(1)), token.group(1)

    # Django: one view, every shape by ?shape=, answering the views before this request.
    async def _django(self, shape: str) -> None:
        if shape == "new":
            self.cookie, self.views = None, 0
        path = f"/?shape={shape}&user={self.number}"
        answer = await self.fetch("GET", path)
        match = re.fullmatch(r"views: (\d+)", answer.body)
        if match is None:
            raise Failed("other", f"{path}: {answer.body[:200]!r}")
        self.expect_views(int(match.group(1)), path)
        if shape in ("modify", "new"):
            self.views = int(match.group(1)) + 1
        elif shape == "logout":
            if self.cookie is not None:
                raise Failed("other", "the session cookie outlived the logout")
            self.views = 0

    # Flask (benchmarks/views.py): /new writes a greeting that /read must find again.
    async def _flask(self, shape: str) -> None:
        if shape == "new":
            self.cookie = None
        answer = await self.fetch("GET", f"/{shape}")
        if shape == "new":
            self.views = 1  # has a session
        elif shape == "read" and self.views and answer.body != "Hallo Welt":
            raise Failed("logout", f"/read: {answer.body[:100]!r}, the session had a greeting")
        elif shape == "logout":
            self.views = 0


async def drive(
    app: App, server: Server, clients: int, warmup: float, seconds: float, faults: Any = None
) -> Measured:
    """Warm up, read RSS, run the mix for `seconds` (faults on, if any), read RSS again."""
    mix = request_mix()
    browsers = [Browser(n, n * len(mix) // clients, app, server.port) for n in range(clients)]

    async def browse(browser: Browser, until: float) -> None:
        while time.perf_counter() < until:
            shape = mix[browser.position % len(mix)]
            browser.position += 1
            await browser.visit(shape)

    await asyncio.gather(*(b.visit("new") for b in browsers))
    if faults is not None:
        faults()
    await asyncio.gather(*(browse(b, time.perf_counter() + warmup) for b in browsers))
    for b in browsers:
        b.into = Measured()
    measured = Measured()
    started = time.perf_counter()

    async def sample() -> None:
        for second in itertools.count():
            if app.single_process:
                if second % IN_USE_EVERY == 0:
                    in_use = await server.in_use_mb()
                    measured.in_use.append((time.perf_counter() - started, in_use))
                measured.rss.append((time.perf_counter() - started, server.rss_mb()))
            await asyncio.sleep(1.0)

    cpu = server.cpu_seconds() if app.single_process else 0.0
    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(browse(b, started + seconds) for b in browsers))
    measured.wall = time.perf_counter() - started
    sampler.cancel()
    if app.single_process:
        measured.rss.append((measured.wall, server.rss_mb()))
        measured.cpu = server.cpu_seconds() - cpu
        measured.in_use.append((measured.wall, await server.in_use_mb()))
    for b in browsers:
        measured.latencies += b.into.latencies
        measured.errors.update(b.into.errors)
        measured.locked += b.into.locked
        measured.logouts_after.update(b.into.logouts_after)
        for kind, text in b.into.examples.items():
            measured.examples.setdefault(kind, text)
        b.connection.close()
    return measured


# ----------------------------------------------------------------------------- runs


@dataclass
class Row:
    run: str  # clean, faults, dynamodb, sqlite-workers
    store: str
    app: str
    mode: str
    measured: Measured
    # The invocation that measured it and the load average around it (--merge keeps rows).
    command: str = ""

    def _in_use_third(self, last: bool) -> float:
        """The median of the first (or last) third of the readings of memory in use."""
        readings = [mb for _, mb in self.measured.in_use]
        if not readings:
            return math.nan
        third = max(1, len(readings) // 3)
        return statistics.median(readings[-third:] if last else readings[:third])

    @property
    def in_use_start(self) -> float:
        """MB in use after the warm-up."""
        return self._in_use_third(last=False)

    @property
    def in_use_end(self) -> float:
        """MB in use at the end."""
        return self._in_use_third(last=True)

    @property
    def growth(self) -> float:
        """MB more in use at the end than after the warm-up (the target: at most 5)."""
        return self.in_use_end - self.in_use_start

    @property
    def rss_range(self) -> str:
        """The lowest and highest RSS sampled during the run, in MB."""
        values = [mb for _, mb in self.measured.rss]
        return f"{min(values):.1f}-{max(values):.1f}" if values else "-"


def proxied(url: str, port: int) -> str:
    """`url` with the store server's loopback port replaced by the proxy's."""
    return re.sub(rf"{re.escape(HOST)}:\d+", f"{HOST}:{port}", url, count=1)


def store_port(url: str) -> int:
    match = re.search(rf"{re.escape(HOST)}:(\d+)", url)
    assert match is not None, url
    return int(match.group(1))


def one_run(
    app: App,
    url: str,
    options: dict[str, Any],
    args: argparse.Namespace,
    tag: str,
    fault_rate: float = 0.0,
    protocol: str = "raw",
) -> Measured:
    """`app` on `url` for args.seconds; through a FaultProxy when fault_rate is set."""
    with contextlib.ExitStack() as stack:
        proxy = None
        if fault_rate:
            from tests.services.proxy import FaultProxy

            proxy = stack.enter_context(FaultProxy(store_port(url), protocol=protocol))
            url = proxied(url, proxy.port)
        server = stack.enter_context(serving(app, url, options, tag))

        def faults_on() -> None:
            if proxy is not None:
                proxy.fault_rate(fault_rate, kinds=FAULT_KINDS)

        measured = asyncio.run(
            drive(
                app,
                server,
                args.clients,
                args.fault_warmup if fault_rate else args.warmup,
                args.seconds,
                faults_on,
            )
        )
        if proxy is not None:
            seen = proxy.stats
            measured.examples["proxy"] = (
                f"{seen.attempts} store requests; injected {dict(seen.injected)},"
                f" {seen.resets} resets, {seen.cuts} cuts, {seen.delayed} delayed"
            )
        log = server.log.read_text(errors="replace") if server.log.exists() else ""
    measured.locked += log.count("database is locked")
    return measured


def say(row: Row) -> None:
    m = row.measured
    errors = ", ".join(f"{k} {v}" for k, v in sorted(m.errors.items())) or "none"
    rss = (
        f"; in use {row.in_use_start:.1f} -> {row.in_use_end:.1f} MB"
        f" ({', '.join(f'{mb:.1f}' for _, mb in m.in_use)}), RSS {row.rss_range} MB"
        if m.rss
        else ""
    )
    print(
        f"{row.run:>14} {row.store:>9} {row.app:>6} {row.mode:<18} {m.requests:>7} requests,"
        f" {m.throughput:6.0f}/s, p50 {m.percentile(50) * 1000:7.1f} ms,"
        f" p99 {m.percentile(99) * 1000:7.1f} ms; errors: {errors}{rss}"
        + (f"; server CPU {m.cpu_per_request * 1000:.2f} ms/request" if m.cpu else "")
        + (f"; locked {m.locked}" if m.locked else ""),
        flush=True,
    )
    for kind, text in m.examples.items():
        print(f"{'':>16}{kind}: {text[:300]}", flush=True)
    if +m.logouts_after:
        after = ", ".join(f"{k} {v}" for k, v in (+m.logouts_after).most_common())
        print(f"{'':>16}silent logouts after: {after}", flush=True)


def saved_rows() -> Path:
    """Where each run's figures are kept, for --merge (the cache folder, not results/)."""
    from tests.services._process import cache_dir

    return cache_dir() / "soak-rows.json"


def keep(rows: list[Row]) -> None:
    data = [{**vars(r), "measured": {**vars(r.measured)}} for r in rows]
    saved_rows().write_text(json.dumps(data))


def load_rows() -> list[Row]:
    if not saved_rows().exists():
        return []
    rows = []
    for item in json.loads(saved_rows().read_text()):
        m = item.pop("measured")
        m["errors"] = Counter(m["errors"])
        m["rss"] = [tuple(pair) for pair in m["rss"]]
        m["in_use"] = [tuple(pair) for pair in m.get("in_use", [])]
        for old in ("rss_in_use", "in_use_start", "in_use_end"):  # rows saved by earlier runs
            m.pop(old, None)
        m["logouts_after"] = Counter(m.get("logouts_after", {}))
        rows.append(Row(**item, measured=Measured(**m)))
    return rows


def run_all(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    if args.merge:  # the runs of the last invocation that this one does not redo
        runs = set(args.runs.split(","))
        rows = [r for r in load_rows() if r.run not in runs]
    stores = args.stores.split(",")
    apps = [APPS[a] for a in args.apps.split(",")]
    runs = args.runs.split(",")
    if not set(runs) & set(RUNS):
        return rows  # nothing to run: report what --merge kept
    names = list(stores)
    if "sqlite-workers" in runs and "sqlite" not in names:
        names.append("sqlite")
    with store_urls(names) as urls:
        for kind in ("clean", "faults"):
            if kind not in runs or (kind == "faults" and not args.fault_rate):
                continue
            for store in stores:
                for app in apps:
                    if kind == "faults" and store not in PROTOCOLS:
                        continue  # SQLite has no wire to put faults on
                    rate = args.fault_rate if kind == "faults" else 0.0
                    mode = f"{rate:.0%} faults" if rate else "default"
                    tag = f"{kind}-{store}-{app.name}"
                    m = one_run(app, urls[store], {}, args, tag, rate, PROTOCOLS.get(store, "raw"))
                    rows.append(Row(kind, store, app.name, mode, m))
                    say(rows[-1])
                    keep(rows)
        if "dynamodb" in runs and "dynamodb" in stores:
            for mode, options in DYNAMODB_MODES.items():
                tag = "dynamodb-" + mode.replace(", ", "-").replace(" ", "")
                m = one_run(APPS["asgi"], urls["dynamodb"], options, args, tag)
                rows.append(Row("dynamodb", "dynamodb", "asgi", mode, m))
                say(rows[-1])
                keep(rows)
        if "sqlite-workers" in runs:
            m = one_run(flask_workers(4), urls["sqlite"], {}, args, "sqlite-gunicorn")
            rows.append(Row("sqlite-workers", "sqlite", "flask", "gunicorn 4x4", m))
            say(rows[-1])
            keep(rows)
    return rows


# ----------------------------------------------------------------------------- report


def verdicts(rows: list[Row]) -> dict[str, tuple[bool, str]]:
    """Each target: (holds, the figures that say so)."""
    out: dict[str, tuple[bool, str]] = {}
    flat = [r for r in rows if r.run in ("clean", "faults") and r.measured.rss]
    if flat:
        worst = max(flat, key=lambda r: r.growth)
        out["memory in use flat within 5 MB"] = (
            all(r.growth <= RSS_FLAT_MB for r in flat),
            f"largest growth {worst.growth:+.1f} MB ({worst.store}/{worst.app}, {worst.mode})",
        )
    clean = [r for r in rows if r.run == "clean"]
    if clean:
        bad = sum(sum(r.measured.errors.values()) for r in clean)
        out["no errors without faults"] = (bad == 0, f"{bad} errors")
    faulty = [r for r in rows if r.run == "faults"]
    if faulty:
        other = sum(r.measured.errors["other"] + r.measured.errors["logout"] for r in faulty)
        n503 = sum(r.measured.errors["503"] for r in faulty)
        out["only 503s under faults"] = (other == 0, f"{n503} 503s, {other} other or logout")
    workers = [r for r in rows if r.run == "sqlite-workers"]
    if workers:
        m = workers[0].measured
        fives = m.errors["503"] + m.errors["other"]
        out["SQLite, 4 processes: 0 locked, no 5xx"] = (
            m.locked == 0 and fives == 0 and not m.errors["logout"],
            f"{m.locked} 'database is locked', {fives} errors ({dict(m.errors) or 'none'})",
        )
    modes = {r.mode: r.measured for r in rows if r.run == "dynamodb"}
    for pool in ("10", "64"):
        native, threads = modes.get(f"native, pool {pool}"), modes.get(f"threads, pool {pool}")
        if native and threads:
            ok = (
                native.percentile(99) <= threads.percentile(99)
                and native.throughput > threads.throughput
            )
            out[f"DynamoDB pool {pool}: native p99 <= threads', higher throughput"] = (
                ok,
                f"p99 {native.percentile(99) * 1000:.0f} vs {threads.percentile(99) * 1000:.0f}"
                f" ms, {native.throughput:.0f} vs {threads.throughput:.0f} req/s",
            )
    return out


def command_line(args: argparse.Namespace) -> str:
    return (
        f"python -m benchmarks.soak --stores {args.stores} --apps {args.apps}"
        f" --seconds {args.seconds:g} --clients {args.clients} --fault-rate {args.fault_rate:g}"
        f" --runs {args.runs}" + (" --merge" if args.merge else "")
    )


def report(rows: list[Row], args: argparse.Namespace, load: tuple[float, float]) -> str:
    lines = []
    this = f"`{command_line(args)}`, load average {load[0]:.1f} before, {load[1]:.1f} after"
    for r in rows:
        r.command = r.command or this
    keep(rows)
    for r in rows:
        m = r.measured
        rss = (
            f"{r.in_use_start:.1f} | {r.in_use_end:.1f} | {r.growth:+.1f} | {r.rss_range}"
            if m.rss
            else "- | - | - | -"
        )
        locked = str(m.locked) if r.store == "sqlite" else "-"
        cpu = f"{m.cpu_per_request * 1000:.2f}" if m.cpu else "-"
        lines.append(
            f"| {r.run} | {r.store} | {r.app} | {r.mode} | {m.requests} | {m.throughput:.0f}"
            f" | {m.percentile(50) * 1000:.1f} | {m.percentile(99) * 1000:.1f} | {cpu}"
            f" | {m.errors['503']} | {m.errors['other']} | {m.errors['logout']} | {locked}"
            f" | {rss} |"
        )
    commands = "; ".join(dict.fromkeys(r.command for r in rows))
    targets = "\n".join(
        f"- {'PASS' if ok else 'FAIL'}: {name}: {detail}"
        for name, (ok, detail) in verdicts(rows).items()
    )
    note = (
        f"{args.clients} browsers at once, each a closed loop with its own session, for"
        f" {args.seconds:g} s per run after {args.warmup:g} s of warm-up"
        f" ({args.fault_warmup:g} s under faults), through the mix"
        " 80% read-only, 15% modify, 3% new visitor, 1% login, 1% logout; servers on loopback"
        " (uvicorn, one process; gunicorn with 4 processes of 4 threads for the SQLite"
        " workers run). Memory in use by the server process: its RSS once Python's cyclic"
        " garbage is collected and glibc has handed back the free memory it keeps"
        f" (gc.collect, malloc_trim), read every {IN_USE_EVERY} s and at the end; after the"
        " warm-up and at the end are the medians of the first and the last third of those"
        " readings. The range of its RSS, sampled every second."
        " Faults, from the start of the warm-up:"
        f" FaultProxy between the server and its store, {args.fault_rate:.0%} of store"
        f" requests meeting one of {', '.join(FAULT_KINDS)}. {os.cpu_count()} CPUs shared by"
        f" the load, the servers, the stores and whatever else ran. Measured by {commands}."
        f"\n\nTargets:\n{targets}"
    )
    return publish(
        "soak",
        ["run", "store", "app", "mode", "requests", "req/s", "p50 (ms)", "p99 (ms)",
         "server CPU per request (ms)", "503",
         "other errors", "silent logouts", "database is locked", "in use after warm-up (MB)",
         "in use at the end (MB)", "change (MB)", "RSS range (MB)"],
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        lines,
        note,
    )  # fmt: skip


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(14, 9))
    matrix = [r for r in rows if r.run in ("clean", "faults")]
    labels = list(dict.fromkeys(f"{r.store}\n{r.app}" for r in matrix))
    width = 0.4
    panels: list[tuple[str, Callable[[Measured], float]]] = [
        ("throughput (requests/s)", lambda m: m.throughput),
        ("p99 latency (ms)", lambda m: m.percentile(99) * 1000),
    ]
    for ax, (title, value) in zip(axes[0], panels, strict=True):
        for n, (run, colour) in enumerate([("clean", "#1f77b4"), ("faults", "#d62728")]):
            xs, ys = [], []
            for i, label in enumerate(labels):
                for r in matrix:
                    if r.run == run and f"{r.store}\n{r.app}" == label:
                        xs.append(i + (n - 0.5) * width)
                        ys.append(value(r.measured))
            if xs:
                name = "no faults" if run == "clean" else f"{rows_rate(rows)} store faults"
                bars = ax.bar(xs, ys, width, color=colour, label=name)
                ax.bar_label(bars, fmt="%.0f", fontsize=7)
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.margins(y=0.15)
    ax = axes[1][0]
    for r in matrix:
        if r.measured.rss:
            start = r.in_use_start
            (line,) = ax.plot(
                [t for t, _ in r.measured.rss],
                [mb - start for _, mb in r.measured.rss],
                linestyle="-" if r.run == "clean" else "--",
                label=f"{r.store}/{r.app}" + (" (faults)" if r.run == "faults" else ""),
            )
            # The memory in use (garbage collected, glibc's free memory handed back): dots,
            # what the target is about.
            ax.plot(
                [t for t, _ in r.measured.in_use],
                [mb - start for _, mb in r.measured.in_use],
                "o",
                markersize=3,
                color=line.get_color(),
            )
    ax.axhspan(-RSS_FLAT_MB, RSS_FLAT_MB, color="green", alpha=0.08)
    ax.set_title(
        "server RSS against its memory in use after warm-up (MB; dots: in use;"
        " band: the 5 MB target)",
        fontsize=9,
    )
    ax.set_xlabel("seconds")
    ax.legend(fontsize=6, ncol=3)
    ax = axes[1][1]
    modes = [r for r in rows if r.run == "dynamodb"]
    if modes:
        xs = list(range(len(modes)))
        colours = ["#1f77b4" if "native" in r.mode else "#b0b0b0" for r in modes]
        bars = ax.bar(xs, [r.measured.percentile(99) * 1000 for r in modes], 0.6, color=colours)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
        names = [f"{r.mode}\n{r.measured.throughput:.0f} req/s" for r in modes]
        ax.set_xticks(xs, names, fontsize=8)
        ax.set_title("DynamoDB Local, ASGI demo: p99 (ms), native asyncio vs threads", fontsize=10)
        ax.margins(y=0.15)
    else:
        ax.axis("off")
    save_figure(fig, path, "soak: 64 browsers per server, real servers on loopback")


def rows_rate(rows: list[Row]) -> str:
    return next((r.mode.split()[0] for r in rows if r.run == "faults"), "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--apps", default="asgi,django")
    parser.add_argument("--seconds", type=float, default=60.0, help="per run")
    parser.add_argument(
        "--warmup", type=float, help="seconds before RSS is read (default: 1/3 of --seconds)"
    )
    parser.add_argument(
        "--fault-warmup", type=float, help="the same, under faults (default: --seconds)"
    )
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--runs", default=",".join(RUNS), help=f"some of {','.join(RUNS)}")
    parser.add_argument(
        "--merge", action="store_true", help="report the last invocation's other runs too"
    )
    args = parser.parse_args(argv)
    if args.warmup is None:
        args.warmup = max(2.0, args.seconds / 3)
    if args.fault_warmup is None:
        args.fault_warmup = args.seconds
    sys.path.insert(0, str(ROOT))  # tests: the stores' servers, FaultProxy
    load_before = os.getloadavg()[0]
    rows = sorted(run_all(args), key=lambda r: RUNS.index(r.run))
    report(rows, args, (load_before, os.getloadavg()[0]))
    plot(rows, RESULTS / "soak.png")
    print(f"\nsaved {RESULTS / 'soak.md'} and {RESULTS / 'soak.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
