"""Each operation's median latency through cloudsessions against the same raw SDK call.

Both run in one process, against the same server and table, interleaved call by call (the
order alternating), so drift in the machine or the server affects both sides alike.
Prints a table, saves benchmarks/results/operations.{md,png}.

    python -m benchmarks.operations [--stores sqlite,dynamodb,...] [--rounds 300]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import RESULTS, Target, publish, save_figure
from cloudsessions import SessionRecord, new_session_id, record_id
from cloudsessions.record import Changes, EncodedRecord

OPERATIONS = ("load", "create", "save", "delete")
ALL_STORES = ("sqlite", "dynamodb", "firestore", "mongodb", "redis")
SESSION = {"greeting": "Hallo Welt", "views": 3, "_auth_user_id": "42", "cart": [1, 2, 3]}


def _pair(ours: Callable[[], object], raw: Callable[[], object], first: bool) -> tuple[int, int]:
    calls = (ours, raw) if first else (raw, ours)
    timings = []
    for call in calls:
        start = time.perf_counter_ns()
        call()
        timings.append(time.perf_counter_ns() - start)
    return (timings[0], timings[1]) if first else (timings[1], timings[0])


Call = Callable[[], object]


def _calls(
    target: Target,
    record: SessionRecord,
    stored: EncodedRecord,
    i: int,
    key: str,
    rid: str,
    doomed_key: str,
    doomed_rid: str,
) -> dict[str, tuple[Call, Call]]:
    """Round i's (ours, raw) pair for each operation, on records seeded beforehand."""
    store = target.store
    changed = SessionRecord({**record.data, "views": i}, record.expires_at, record.user_id)
    return {
        "load": (lambda: store.load(key), lambda: target.raw_load(rid)),
        "create": (
            lambda: store.create(new_session_id(), record),
            lambda: target.raw_create(record_id(new_session_id()), stored),
        ),
        "save": (
            lambda: store.save(key, changed, ["views"]),
            lambda: target.raw_save(
                rid, Changes({"kviews": str(i)}), record.expires_at, record.user_id, time.time()
            ),
        ),
        "delete": (lambda: store.delete(doomed_key), lambda: target.raw_delete(doomed_rid)),
    }


def measure(target: Target, rounds: int) -> dict[str, tuple[float, float]]:
    store = target.store
    expires = time.time() + 3600
    record = SessionRecord(dict(SESSION), expires, "42")
    stored = EncodedRecord(store._encode(record).fields, expires, "42")
    results: dict[str, tuple[float, float]] = {}

    def seeded(n: int) -> list[str]:
        made = [new_session_id() for _ in range(n)]
        for key in made:
            store.create(key, record)
        return made

    samples: dict[str, tuple[list[int], list[int]]] = {op: ([], []) for op in OPERATIONS}
    warmup = max(rounds // 10, 5)
    ours_keys, raw_keys = seeded(rounds + warmup), seeded(rounds + warmup)
    doomed_ours, doomed_raw = seeded(rounds + warmup), seeded(rounds + warmup)
    for i in range(rounds + warmup):
        pairs = _calls(
            target,
            record,
            stored,
            i,
            ours_keys[i],
            record_id(raw_keys[i]),
            doomed_ours[i],
            record_id(doomed_raw[i]),
        )
        for op in OPERATIONS:
            ours_ns, raw_ns = _pair(*pairs[op], first=i % 2 == 0)
            if i >= warmup:
                samples[op][0].append(ours_ns)
                samples[op][1].append(raw_ns)
    for op, (ours, raw) in samples.items():
        results[op] = (statistics.median(ours) / 1e6, statistics.median(raw) / 1e6)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(ALL_STORES))
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

    rows: list[tuple[str, str, float, float]] = []
    for name in args.stores.split(","):
        module = importlib.import_module(f"benchmarks.targets.{name}")
        with contextlib.ExitStack() as services, module.target(services) as target:
            for op, (ours, raw) in measure(target, args.rounds).items():
                rows.append((name, op, ours, raw))

    publish(
        "operations",
        ["store", "operation", "cloudsessions (ms)", "raw SDK (ms)", "ratio"],
        "|---|---|---:|---:|---:|",
        [f"| {s} | {op} | {o:.3f} | {r:.3f} | {o / r:.2f} |" for s, op, o, r in rows],
        f"Median of {args.rounds} interleaved calls per operation"
        f" (`python -m benchmarks.operations --stores {args.stores}`).",
    )
    _plot(rows, RESULTS / "operations.png")
    print(f"\nsaved {RESULTS / 'operations.md'} and {RESULTS / 'operations.png'}")
    return 0


def _plot(rows: list[tuple[str, str, float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{s}\n{op}" for s, op, _, _ in rows]
    ratios = [o / r for _, _, o, r in rows]
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 0.9), 4.5))
    ax.tick_params(axis="x", labelsize=8)
    ax.bar(labels, ratios, color=["#2b7" if r <= 1.15 else "#c33" for r in ratios])
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.axhline(1.15, color="#c33", linestyle="--", linewidth=0.8, label="target 1.15")
    ax.set_ylabel("median latency: cloudsessions / raw SDK")
    ax.set_title("cloudsessions overhead per operation (same run, same server)")
    ax.legend()
    save_figure(fig, path)


if __name__ == "__main__":
    raise SystemExit(main())
