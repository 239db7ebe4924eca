"""Housekeeping at scale: purge_expired and delete_for_user, their memory and speed.

On each store whose own TTL does not remove expired sessions (SQLite always; DynamoDB
with TTL off; Firestore without a TTL policy, which the emulator lacks; MongoDB, whose
TTL monitor passes only once a minute), N expired sessions are written straight in the
store's own layout (the store's encoding, written in bulk: BatchWriteItem, batch commits,
insert_many, one SQLite transaction), beside 100 live ones. A child process then runs
`purge_expired` with a progress callback; the kernel reports its peak RSS (wait4's
VmHWM), which must stay flat as N grows: the purge holds one batch at a time. The
baseline is the same child on a store with nothing to purge (imports, the client).
Afterwards the parent checks the counts: N removed, nothing expired left, every live
session still there.

Likewise `delete_for_user` of one user with 10,000 sessions (made through the store's
create, which keeps the user index), with a progress callback, beside another user's 100
that must stay; on Redis too (it expires sessions itself, so its purge has nothing to do
and is not run).

MongoDB runs on SecantusDB with its TTL monitor set to an hour, so the monitor cannot
take records from under the purge and the count is exact (mongod's passes every 60 s).
The emulators' speeds are not the services': the figures compare sizes, not stores.
Prints a table, saves benchmarks/results/housekeeping.{md,png}.

    python -m benchmarks.housekeeping [--stores sqlite,dynamodb,firestore,mongodb,redis]
        [--counts 10000,30000,100000] [--batch-size 500] [--user-sessions 10000]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, publish, save_figure
from cloudsessions import SessionRecord, new_session_id, open_store, record_id
from cloudsessions.record import EncodedRecord
from cloudsessions.store import Store

ALL_STORES = ("sqlite", "dynamodb", "firestore", "mongodb", "redis")
PURGES = ("sqlite", "dynamodb", "firestore", "mongodb")  # Redis expires keys itself
DATA = {"greeting": "Hallo Welt", "cart": ["apple", "pear"], "views": 7}
LIVE = 100  # live sessions beside the expired ones, and the other user's beside the user's
USER, OTHER = "user-with-many-sessions", "another-user"
REGION = "us-east-1"

# ------------------------------------------------------------------------ the child


def child(operation: str, url: str, batch_size: int) -> None:
    """Run one operation on `url` and print what it did as one JSON line."""
    store = open_store(url)
    calls: list[int] = []
    error = ""
    start = time.perf_counter()
    try:
        if operation == "purge":
            count = store.purge_expired(batch_size=batch_size, progress=calls.append)
        else:
            count = store.delete_for_user(USER, progress=calls.append)
    except Exception as exc:
        count, error = -1, f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    store.close()
    growing = all(a < b for a, b in itertools.pairwise(calls))
    print(
        json.dumps(
            {
                "count": count,
                "seconds": seconds,
                "calls": len(calls),
                "last": calls[-1] if calls else None,
                "growing": growing,
                "error": error,
                "peak_kb": _high_water_kb(),
            }
        )
    )


def _high_water_kb() -> int:
    """This process's peak RSS as the kernel counts it (VmHWM), in kB.

    Not the parent's wait4 ru_maxrss: that starts from the RSS of the process that forked
    the child (this benchmark's parent, with every SDK loaded and the records it seeded).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


@dataclass
class Run:
    store: str
    operation: str  # "purge" or "delete_for_user"
    records: int
    seconds: float
    peak_mb: float
    calls: int
    check: str


def run_child(operation: str, url: str, batch_size: int) -> tuple[dict[str, Any], float]:
    """The child's report and its peak RSS in MB."""
    command = [sys.executable, "-m", "benchmarks.housekeeping", "--child", operation]
    command += ["--url", url, "--batch-size", str(batch_size)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the {operation} child failed:\n{done.stdout}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report, report["peak_kb"] / 1024


# ---------------------------------------------------------------------- the stores


@dataclass
class Kind:
    """How to get a fresh store of one kind, ready as an application without TTL has it,
    and how to write expired records straight into its layout."""

    fresh: Callable[[], tuple[str, Callable[[], None]]]  # (url, cleanup)
    seed: Callable[[Store, Iterator[tuple[str, EncodedRecord]]], None] | None


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _parallel(work: Callable[[list[Any]], None], chunks: Iterator[list[Any]], n: int) -> None:
    with ThreadPoolExecutor(n) as pool:
        for _ in pool.map(work, chunks):
            pass


def sqlite_kind(folder: Path) -> Kind:
    def fresh() -> tuple[str, Callable[[], None]]:
        path = folder / f"purge_{time.monotonic_ns()}.db"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)

    def seed(store: Store, records: Iterator[tuple[str, EncodedRecord]]) -> None:
        store.provision()  # the file, WAL mode, the table and its indexes
        conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
        table = store.table  # type: ignore[attr-defined]
        with conn:  # one transaction
            conn.executemany(
                f"INSERT INTO {table} (id, data, expires_at, user_id, meta) VALUES (?, ?, ?, ?, ?)",
                (
                    (
                        rid,
                        json.dumps(r.fields, separators=(",", ":")),
                        r.expires_at,
                        r.user_id,
                        None,
                    )
                    for rid, r in records
                ),
            )
        conn.close()

    return Kind(fresh, seed)


def dynamodb_kind(services: contextlib.ExitStack) -> Kind:
    from tests.services.dynamodb_local import dynamodb_local

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    endpoint = services.enter_context(dynamodb_local())

    def fresh() -> tuple[str, Callable[[], None]]:
        url = f"dynamodb://purge_{time.monotonic_ns()}?region={REGION}&endpoint={endpoint}"
        url += "&read_timeout=30"  # DynamoDB Local on 2 shared cores: a Scan page can take > 3 s
        store = open_store(url)
        store.provision()  # the table and its user index, then TTL off: purge scans
        store.client.update_time_to_live(  # type: ignore[attr-defined]
            TableName=store.table,  # type: ignore[attr-defined]
            TimeToLiveSpecification={"Enabled": False, "AttributeName": "ttl"},
        )
        assert not store.ttl_enabled()  # type: ignore[attr-defined]
        store.close()
        return url, lambda: _dropped(url)

    def seed(store: Store, records: Iterator[tuple[str, EncodedRecord]]) -> None:
        client, table, build = store.client, store.table, store._requests  # type: ignore[attr-defined]

        def write(chunk: list[tuple[str, EncodedRecord]]) -> None:
            items = [{"PutRequest": {"Item": build.put(rid, r)["Item"]}} for rid, r in chunk]
            pending: dict[str, Any] = {table: items}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems")

        _parallel(write, _chunks(records, 25), 8)

    return Kind(fresh, seed)


def firestore_kind(services: contextlib.ExitStack) -> Kind:
    from tests.backends.firestore import PROJECT, emulator_host

    from cloudsessions.stores.firestore import documents

    host = emulator_host(services)

    def fresh() -> tuple[str, Callable[[], None]]:
        url = f"firestore://{PROJECT}/purge_{time.monotonic_ns()}?emulator_host={host}"
        # The emulator answers each query by going through the whole collection (Firestore
        # uses its index): at 100,000 documents a page's query takes more than the 5 s default.
        url += "&timeout=60&retry_deadline=60"
        return url, lambda: _dropped(url)

    def seed(store: Store, records: Iterator[tuple[str, EncodedRecord]]) -> None:
        client = store._sync.get()  # type: ignore[attr-defined]
        collection = client.collection(*store.path)  # type: ignore[attr-defined]

        def write(chunk: list[tuple[str, EncodedRecord]]) -> None:
            batch = client.batch()
            for rid, r in chunk:
                batch.create(collection.document(rid), documents.document(r))
            batch.commit()

        _parallel(write, _chunks(records, documents.MAX_BATCH), 4)

    return Kind(fresh, seed)


def mongodb_kind(services: contextlib.ExitStack) -> Kind:
    from tests.backends.mongodb import url_for
    from tests.services.secantus import secantus

    from cloudsessions.stores.mongodb import requests

    server = os.environ.get("MONGODB_URI") or services.enter_context(
        secantus(ttl_sweep_seconds=3600.0)
    )

    def fresh() -> tuple[str, Callable[[], None]]:
        url = url_for(server, "cloudsessions_bench", f"purge_{time.monotonic_ns()}")
        # SecantusDB is written in Python: at 100,000 documents some commands take more
        # than the 5 s default.
        url += "&timeoutMS=60000"
        store = open_store(url)
        store.provision()  # the TTL index on expires_at (which the purge queries) and users'
        store.close()
        return url, lambda: _dropped(url)

    def seed(store: Store, records: Iterator[tuple[str, EncodedRecord]]) -> None:
        collection = store._collection()  # type: ignore[attr-defined]

        def write(chunk: list[tuple[str, EncodedRecord]]) -> None:
            collection.insert_many([requests.document(rid, r) for rid, r in chunk], ordered=False)

        _parallel(write, _chunks(records, 1000), 2)

    return Kind(fresh, seed)


def redis_kind(services: contextlib.ExitStack) -> Kind:
    from tests.services.redis import redis_server

    server = services.enter_context(redis_server())

    def fresh() -> tuple[str, Callable[[], None]]:
        url = f"{server}/0?prefix=purge{time.monotonic_ns()}:"
        return url, lambda: _dropped(url)

    return Kind(fresh, None)


def _dropped(url: str) -> None:
    store = open_store(url)
    try:
        store.drop()
    except Exception as exc:  # the next run uses another table or collection anyway
        print(f"  (could not drop {store.describe()}: {exc})")
    store.close()


def kinds(names: list[str], services: contextlib.ExitStack, folder: Path) -> dict[str, Kind]:
    makers: dict[str, Callable[[], Kind]] = {
        "sqlite": lambda: sqlite_kind(folder),
        "dynamodb": lambda: dynamodb_kind(services),
        "firestore": lambda: firestore_kind(services),
        "mongodb": lambda: mongodb_kind(services),
        "redis": lambda: redis_kind(services),
    }
    return {name: makers[name]() for name in names}


# -------------------------------------------------------------------- measurements


def _records(store: Store, count: int, expires_at: float) -> Iterator[tuple[str, EncodedRecord]]:
    encoded = store._encode(SessionRecord(dict(DATA), expires_at))
    for _ in range(count):
        yield record_id(new_session_id()), encoded


def _created(store: Store, count: int, user: str) -> list[str]:
    """`count` live sessions of `user`, made through the store's create."""
    keys = [new_session_id() for _ in range(count)]
    record = SessionRecord(dict(DATA), time.time() + 3600, user)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: store.create(key, record), keys))
    return keys


def _progress_problems(report: dict[str, Any], count: int) -> list[str]:
    """What is wrong with the child's progress calls: with records to remove, a growing
    running count that ends at the count returned."""
    if count and not (report["growing"] and report["last"] == report["count"]):
        return [f"progress {report['calls']} calls, last {report['last']}"]
    return []


def purge(name: str, kind: Kind, count: int, batch_size: int) -> Run:
    url, cleanup = kind.fresh()
    try:
        store = open_store(url)
        assert kind.seed is not None
        kind.seed(store, _records(store, count, time.time() - 3600))
        live = _created(store, LIVE, OTHER)
        report, peak = run_child("purge", url, batch_size)
        problems = [report["error"]] if report["error"] else []
        if report["count"] != count:
            problems.append(f"removed {report['count']} of {count}")
        problems += _progress_problems(report, count)
        left = store.purge_expired(batch_size=batch_size)
        if left:
            problems.append(f"{left} expired left")
        kept = sum(store.load(key) is not None for key in live)
        if kept != LIVE:
            problems.append(f"{LIVE - kept} live sessions gone")
        store.close()
        check = "; ".join(problems) or f"ok: {count:,} removed, 0 left, {kept} live kept"
        return Run(name, "purge", count, report["seconds"], peak, report["calls"], check)
    finally:
        cleanup()


def delete_for_user(name: str, kind: Kind, count: int, batch_size: int) -> Run:
    url, cleanup = kind.fresh()
    try:
        store = open_store(url)
        _created(store, count, USER)
        others = _created(store, LIVE, OTHER)
        report, peak = run_child("delete_for_user", url, batch_size)
        problems = [report["error"]] if report["error"] else []
        if report["count"] != count:
            problems.append(f"deleted {report['count']} of {count}")
        problems += _progress_problems(report, count)
        listed = len(store.for_user(USER))
        if listed:
            problems.append(f"{listed} of the user's sessions left")
        kept = sum(store.load(key) is not None for key in others)
        if kept != LIVE:
            problems.append(f"{LIVE - kept} of another user's sessions gone")
        store.close()
        check = "; ".join(problems) or f"ok: {count:,} deleted, 0 left, {kept} of another kept"
        return Run(name, "delete_for_user", count, report["seconds"], peak, report["calls"], check)
    finally:
        cleanup()


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(ALL_STORES))
    parser.add_argument("--counts", default="10000,30000,100000")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--user-sessions", type=int, default=10_000)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the saved rows of the stores not run this time (results/housekeeping.json)",
    )
    parser.add_argument("--child", choices=("purge", "delete_for_user"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.url, args.batch_size)
        return 0
    names = [n.strip() for n in args.stores.split(",") if n.strip()]
    unknown = set(names) - set(ALL_STORES)
    if unknown:
        parser.error(f"unknown stores: {', '.join(sorted(unknown))}")
    counts = [int(n) for n in args.counts.split(",")]
    runs: list[Run] = []
    with (
        tempfile.TemporaryDirectory(prefix="cloudsessions-housekeeping-") as scratch,
        contextlib.ExitStack() as services,
    ):
        for name, kind in kinds(names, services, Path(scratch)).items():
            if name in PURGES:
                for count in [0, *counts]:
                    runs.append(_measured(purge, name, kind, count, args.batch_size))
            else:
                print(f"{name}: purge skipped: Redis expires each session's keys itself")
            runs.append(_measured(delete_for_user, name, kind, args.user_sessions, args.batch_size))
    saved = RESULTS / "housekeeping.json"
    if args.merge and saved.exists():
        kept = [Run(**row) for row in json.loads(saved.read_text()) if row["store"] not in names]
        runs = kept + runs
        names = list(dict.fromkeys([r.store for r in runs]))
    RESULTS.mkdir(exist_ok=True)
    saved.write_text(json.dumps([dataclasses.asdict(r) for r in runs], indent=1))
    _publish(runs, args, names, counts)
    _plot(runs, counts)
    print(f"\nsaved {RESULTS / 'housekeeping.md'} and {RESULTS / 'housekeeping.png'}")
    return 0 if all(r.check.startswith("ok") for r in runs) else 1


def _measured(
    how: Callable[[str, Kind, int, int], Run], name: str, kind: Kind, count: int, batch: int
) -> Run:
    """One run, shown; a failure (a server that gave up) is a row that says so."""
    try:
        run = how(name, kind, count, batch)
    except Exception as exc:
        operation = "purge" if how is purge else "delete_for_user"
        run = Run(name, operation, count, float("nan"), float("nan"), 0, f"FAILED: {exc}")
    _show(run)
    return run


def _rate(run: Run) -> str:
    ok = run.records and run.check.startswith("ok")
    return f"{run.records / run.seconds:,.0f}" if ok else "-"


def _show(run: Run) -> None:
    print(
        f"{run.store:>9} {run.operation:<15} {run.records:>7,}: {run.seconds:7.2f} s,"
        f" {_rate(run):>7}/s, peak RSS {run.peak_mb:6.1f} MB, {run.calls} progress calls"
        f"  ({run.check})"
    )


def _growth(runs: list[Run], name: str) -> str | None:
    """How a store's purge's peak RSS grew from its smallest to its largest count."""
    peaks = {
        r.records: r.peak_mb
        for r in runs
        if r.store == name and r.operation == "purge" and r.check.startswith("ok")
    }
    measured = sorted(n for n in peaks if n)
    if 0 not in peaks or len(measured) < 2:
        return None
    low, high = measured[0], measured[-1]
    return (
        f"{name} {peaks[high] - peaks[low]:+.1f} MB from {low:,} to {high:,}"
        f" (baseline {peaks[0]:.1f} MB)"
    )


def _publish(
    runs: list[Run], args: argparse.Namespace, names: list[str], counts: list[int]
) -> None:
    rows = [
        f"| {r.store} | {r.operation} | {r.records:,} | {r.seconds:.2f} | {_rate(r)} |"
        f" {r.calls} | {r.peak_mb:.1f} | {r.check} |"
        for r in runs
    ]
    flat = [g for g in (_growth(runs, name) for name in names) if g is not None]
    note = (
        f"`python -m benchmarks.housekeeping --stores {','.join(names)} --counts {args.counts}"
        f" --batch-size {args.batch_size} --user-sessions {args.user_sessions}`:"
        " peak RSS of the process running the operation (0 records: the baseline, nothing"
        " to purge); progress calls: the operation's progress callback, each with a growing"
        f" total. Peak RSS of the purge: {'; '.join(flat) or '-'}."
        " Local servers and emulators on one 2-core machine: compare sizes, not stores."
        " Redis expires sessions itself (no purge)."
    )
    if args.merge:
        note += " Rows of the stores this run left out come from an earlier run (--merge)."
    print()
    publish(
        "housekeeping",
        [
            "store",
            "operation",
            "records",
            "seconds",
            "records/s",
            "progress calls",
            "peak RSS (MB)",
            "check",
        ],
        "|---|---|---:|---:|---:|---:|---:|---|",
        rows,
        note,
    )
    print(note)


def _plot(runs: list[Run], counts: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (memory, speed) = plt.subplots(1, 2, figsize=(11, 4))
    purged = [r for r in runs if r.operation == "purge"]
    stores = list(dict.fromkeys(r.store for r in purged))
    for name in stores:
        mine = [r for r in purged if r.store == name]
        line = memory.plot(
            [r.records for r in mine if r.records],
            [r.peak_mb for r in mine if r.records],
            marker="o",
            label=name,
        )[0]
        base = [r.peak_mb for r in mine if not r.records]
        if base:
            memory.axhline(base[0], color=line.get_color(), linestyle=":", linewidth=1)
    memory.set_xlabel("expired sessions purged")
    memory.set_ylabel("peak RSS of the purging process (MB)")
    memory.set_ylim(bottom=0)
    memory.set_title("memory (dotted: the same process with nothing to purge)", fontsize=9)
    memory.legend(fontsize=8)
    width = 0.8 / max(len(counts), 1)
    for i, count in enumerate(counts):
        rates = []
        for name in stores:
            found = [r for r in purged if r.store == name and r.records == count]
            rates.append(found[0].records / found[0].seconds if found else 0)
        speed.bar(
            [s + (i - (len(counts) - 1) / 2) * width for s in range(len(stores))],
            rates,
            width,
            label=f"{count:,}",
        )
    users = [r for r in runs if r.operation == "delete_for_user"]
    labels = list(stores)
    for r in users:
        if r.store not in labels:
            labels.append(r.store)
    speed.scatter(
        [labels.index(r.store) for r in users],
        [r.records / r.seconds for r in users],
        marker="D",
        color="black",
        zorder=3,
        label="delete_for_user (one user)" if users else None,
    )
    speed.set_xticks(range(len(labels)), labels)
    speed.set_ylabel("records per second")
    speed.set_yscale("log")
    speed.set_title("throughput, by expired sessions purged", fontsize=9)
    speed.legend(fontsize=8)
    save_figure(fig, RESULTS / "housekeeping.png", "Housekeeping at scale: memory stays flat")


if __name__ == "__main__":
    raise SystemExit(main())
