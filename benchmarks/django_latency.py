"""Django's session API on DynamoDB, against the floor: the simplest boto3 calls on a flat item.

Each request shape is what Django's SessionMiddleware and a view ask of a SessionStore (see
`request`): `SessionStore(cookie)`, the view's reads and writes, then the middleware's
`save()` when the session was modified. It runs through

- cloudsessions' engine (`SESSION_ENGINE = "cloudsessions.django"`) on DynamoDB Local;
- the peer dj-dynamodb-sessions 0.8.3 (boto3's resource layer, one flat item per session);
- the floor: the calls a hand-written engine makes on a flat item of the same data,
  `{id: S, data: S (the session's JSON), ttl: N}`, on a plain boto3 client and a plain
  table: GetItem (ConsistentRead) for a read, PutItem (no condition) for a write, the
  parameters built inline, nothing decoded.

| shape          | cloudsessions              | floor              |
|----------------|----------------------------|--------------------|
| new            | PutItem                    | PutItem            |
| read-only      | GetItem                    | GetItem            |
| modify         | GetItem + UpdateItem       | GetItem + PutItem  |
| unknown cookie | GetItem (no item)          | GetItem (no item)  |

Between the two, three more sets of raw calls on the plain client take cloudsessions' costs
apart, one step each (the second table):

- "flat, indexed table": the floor's calls on a table like ours (the keys-only user index,
  TTL): what the user index costs a write;
- "flat, guarded": a flat layout that keeps our guarantees, on that table: create only if
  absent; a save only while the session is live, and only over the version its request
  read (a flat item cannot merge two requests' keys in the store: a save that meets another
  request's write reads the item again and retries, which this does not time). What a
  flat layout with our guarantees would cost, for comparison only (no store uses it);
- "our calls": the requests cloudsessions sends, with the same parameters (checked against
  its own in `check_layout_calls`), on its own item layout: nested maps, one UpdateItem
  per save. cloudsessions against it is what the library's Python and client settings add.

All run in one process against one DynamoDB Local, interleaved: each round times --block
calls of every (shape, engine) back to back, the engines' order alternating round by round
(a call right after an idle wait is ~3x slower on these VMs: blocks keep each engine in the
same warm state). Reported per shape: the median of each engine's calls, and each ratio as
the median (and quartiles) of its per-round ratios, so that load that shifts during the run
cancels out. Targets (issue 17): read-only, unknown cookie and new at most 1.10x the floor,
modify at most 1.15x, and never slower than the best peer.

Prints the tables, saves benchmarks/results/django_latency{,_parts}.md and
django_latency.png; `--profile SHAPE` prints a cProfile of one engine instead.

    python -m benchmarks.django_latency [--rounds 60] [--block 10] [--profile SHAPE]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, publish, save_figure
from benchmarks.views import configure_django

ROOT = Path(__file__).resolve().parent.parent
REGION = "us-east-1"
OUR_TABLE = "latency_cloudsessions"
PEER_TABLE = "latency_dj_dynamodb_sessions"
FLAT_TABLE = "latency_flat"
INDEXED_TABLE = "latency_flat_indexed"  # provisioned as ours is: user index, TTL
GUARDED_TABLE = "latency_flat_guarded"  # the same
SHAPES = ("new", "read-only", "modify", "unknown cookie")
TARGETS = {"new": 1.10, "read-only": 1.10, "modify": 1.15, "unknown cookie": 1.10}
OURS = "cloudsessions"
PEER = "dj-dynamodb-sessions"
LAYOUT = "raw: our calls"
GUARDED = "raw: flat, guarded"
INDEXED = "raw: flat, indexed table"
FLOOR = "floor: raw, flat item"
ENGINES = (OURS, PEER, LAYOUT, GUARDED, INDEXED, FLOOR)
FLOOR_CALLS = {
    "new": "PutItem",
    "read-only": "GetItem",
    "modify": "GetItem + PutItem",
    "unknown cookie": "GetItem",
}
# Each step from the floor to cloudsessions: (label, engine, the engine before it).
STEPS = (
    ("user index (DynamoDB Local)", INDEXED, FLOOR),
    ("guards (conditions, version)", GUARDED, INDEXED),
    ("nested layout, UpdateItem", LAYOUT, GUARDED),
    ("library (Python, client settings)", OURS, LAYOUT),
)
GREETING, CART = "Hallo Welt", [1, 2, 3]
LIFETIME = 14 * 24 * 3600  # Django's SESSION_COOKIE_AGE
SESSIONS = 50  # live sessions each engine reads and modifies, in turns

Call = Callable[[int], object]  # the i-th call of a shape


# ----------------------------------------------------------------------- Django's side


def request(session: Any, shape: str) -> str | None:
    """One request's session work, as the view and Django's SessionMiddleware do it.

    The view: /new sets two keys, /read and an unknown cookie read one, /modify counts.
    Then process_response: a modified, non-empty session is saved (the expiry asked for
    the cookie first), and the cookie gets its key.
    """
    if shape == "new":
        session["greeting"] = GREETING
        session["cart"] = CART
    elif shape == "modify":
        session["views"] = session.get("views", 0) + 1
    else:
        session.get("greeting")
    if session.modified and not session.is_empty():
        if not session.get_expire_at_browser_close():
            session.get_expiry_age()
        session.save()
        return str(session.session_key)
    return None


def django_calls(engine: type[Any], cookies: list[str], unknown: list[str]) -> dict[str, Call]:
    def new(i: int) -> object:
        key = request(engine(None), "new")
        assert key, "no session was created"
        return key

    def read(i: int) -> object:
        session = engine(cookies[i % len(cookies)])
        request(session, "read-only")
        assert session.get("greeting") == GREETING, "a live session read as empty"
        return session

    def modify(i: int) -> object:
        return request(engine(cookies[i % len(cookies)]), "modify")

    def unknown_cookie(i: int) -> object:
        session = engine(unknown[i])
        request(session, "unknown cookie")
        assert session.session_key is None and not session.modified
        return session

    return {"new": new, "read-only": read, "modify": modify, "unknown cookie": unknown_cookie}


# -------------------------------------------------------------------------- raw calls


def _flat_item(rid: str, data: str, version: int | None) -> dict[str, Any]:
    item = {"id": {"S": rid}, "data": {"S": data}, "ttl": {"N": str(int(time.time()) + LIFETIME)}}
    if version is not None:
        item["v"] = {"N": str(version)}
    return item


def flat_put(client: Any, table: str, rid: str, data: str, guarded: bool) -> object:
    """A new session's flat item; guarded: only if the id is free (and versioned)."""
    if not guarded:
        return client.put_item(TableName=table, Item=_flat_item(rid, data, None))
    return client.put_item(
        TableName=table,
        Item=_flat_item(rid, data, 1),
        ConditionExpression="attribute_not_exists(#p)",
        ExpressionAttributeNames={"#p": "id"},
    )


def flat_calls(
    client: Any,
    table: str,
    guarded: bool,
    rids: list[str],
    fresh: list[str],
    unknown: list[str],
) -> dict[str, Call]:
    """A flat item: the floor's calls, or (guarded) the fewest that keep our guarantees."""
    new_data = json.dumps({"greeting": GREETING, "cart": CART})

    def get(rid: str) -> Any:
        return client.get_item(TableName=table, Key={"id": {"S": rid}}, ConsistentRead=True)

    def modify(i: int) -> object:
        rid = rids[i % len(rids)]
        item = get(rid)["Item"]
        data = json.dumps({"greeting": GREETING, "cart": CART, "views": i})
        if not guarded:
            return client.put_item(TableName=table, Item=_flat_item(rid, data, None))
        # Over the version this request read, and only while the session is live.
        version, now = int(item["v"]["N"]), time.time()
        return client.put_item(
            TableName=table,
            Item=_flat_item(rid, data, version + 1),
            ConditionExpression="#v = :v AND #t > :now",
            ExpressionAttributeNames={"#v": "v", "#t": "ttl"},
            ExpressionAttributeValues={":v": item["v"], ":now": {"N": f"{now:.3f}"}},
        )

    return {
        "new": lambda i: flat_put(client, table, fresh[i], new_data, guarded),
        "read-only": lambda i: get(rids[i % len(rids)])["Item"],
        "modify": modify,
        "unknown cookie": lambda i: get(unknown[i]).get("Item"),
    }


# The session as cloudsessions keeps it: field "k" + key -> compact JSON (cloudsessions.codec).
_FIELDS = {"kgreeting": json.dumps(GREETING), "kcart": json.dumps(CART, separators=(",", ":"))}


def _layout_get(rid: str) -> dict[str, Any]:
    return {"TableName": OUR_TABLE, "ConsistentRead": True, "Key": {"id": {"S": rid}}}


def _layout_put(rid: str, expires_at: float) -> dict[str, Any]:
    return {
        "TableName": OUR_TABLE,
        "Item": {
            "id": {"S": rid},
            "data": {"M": {f: {"S": v} for f, v in _FIELDS.items()}},
            "ttl": {"N": f"{expires_at:.3f}"},
            "key_order": {"M": {f: {"N": str(n)} for n, f in enumerate(_FIELDS)}},
        },
        "ConditionExpression": "attribute_not_exists(#p)",
        "ExpressionAttributeNames": {"#p": "id"},
    }


def _layout_update(rid: str, views: int, now: float) -> dict[str, Any]:
    return {
        "TableName": OUR_TABLE,
        "Key": {"id": {"S": rid}},
        "UpdateExpression": (
            "SET #t = :t, #d.#f0 = :v0, #o.#f0 = if_not_exists(#o.#f0, :o0) REMOVE #u"
        ),
        "ConditionExpression": "attribute_exists(#p) AND #t > :now",
        "ExpressionAttributeNames": {
            "#p": "id",
            "#t": "ttl",
            "#u": "user_id",
            "#d": "data",
            "#o": "key_order",
            "#f0": "kviews",
        },
        "ExpressionAttributeValues": {
            ":t": {"N": f"{now + LIFETIME:.3f}"},
            ":now": {"N": f"{now:.3f}"},
            ":v0": {"S": str(views)},
            ":o0": {"N": str(int(now * 1_000_000))},
        },
    }


def layout_put(client: Any, rid: str) -> object:
    return client.put_item(**_layout_put(rid, time.time() + LIFETIME))


def layout_calls(
    client: Any, rids: list[str], fresh: list[str], unknown: list[str]
) -> dict[str, Call]:
    """The requests cloudsessions sends (the same parameters: see `check_layout_calls`),
    built by hand on a plain boto3 client: its item layout without its Python."""

    def get(rid: str) -> Any:
        return client.get_item(**_layout_get(rid))

    def modify(i: int) -> object:
        rid = rids[i % len(rids)]
        get(rid)
        return client.update_item(**_layout_update(rid, i, time.time()))

    return {
        "new": lambda i: layout_put(client, fresh[i]),
        "read-only": lambda i: get(rids[i % len(rids)])["Item"],
        "modify": modify,
        "unknown cookie": lambda i: get(unknown[i]).get("Item"),
    }


def check_layout_calls(store: Any) -> None:
    """The hand-built requests are exactly the store's own, for the benchmark's session."""
    from cloudsessions import SessionRecord
    from cloudsessions.record import Changes

    requests, rid, now = store._requests, "0" * 64, 1_700_000_000.0
    record = store._encode(SessionRecord({"greeting": GREETING, "cart": CART}, now, None))
    assert record.fields == _FIELDS, record.fields
    assert requests.get(rid) == _layout_get(rid), requests.get(rid)
    assert requests.put(rid, record) == _layout_put(rid, now), requests.put(rid, record)
    changes = Changes({"kviews": "7"})
    (update,) = requests.updates(rid, changes, now + LIFETIME, None, now)
    assert update == _layout_update(rid, 7, now), update


# ----------------------------------------------------------------------- measurement


@dataclass
class Samples:
    """One (shape, engine)'s call times (ms), and each round's median of them."""

    ms: list[float] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.ms)


def measure(
    calls: dict[str, dict[str, Call]], rounds: int, block: int
) -> dict[tuple[str, str], Samples]:
    """Every (shape, engine) in blocks of `block` calls, the engines' order alternating."""
    samples = {(shape, engine): Samples() for shape in SHAPES for engine in calls}
    engines = list(calls)
    warmup = max(rounds // 10, 2)
    for r in range(warmup + rounds):
        for shape in SHAPES:
            for engine in engines if r % 2 == 0 else engines[::-1]:
                call = calls[engine][shape]
                times = []
                for j in range(block):
                    i = r * block + j
                    start = time.perf_counter_ns()
                    call(i)
                    times.append((time.perf_counter_ns() - start) / 1e6)
                if r >= warmup:
                    samples[shape, engine].ms += times
                    samples[shape, engine].rounds.append(statistics.median(times))
    return samples


def profile(calls: dict[str, Call], shape: str, n: int) -> None:
    """cProfile of `n` calls of one shape through one engine, the top 40 by own time."""
    for i in range(20):
        calls[shape](n + i)  # warm
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        calls[shape](i)
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(40)
    stats.sort_stats("cumulative").print_stats(60)


# -------------------------------------------------------------------------- the setup


def _table(client: Any, name: str, key: str) -> None:
    client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)


@contextlib.contextmanager
def engines(rounds: int, block: int) -> Iterator[dict[str, dict[str, Call]]]:
    """Every engine's calls for each shape, on one DynamoDB Local with live sessions."""
    import boto3
    from tests.services.dynamodb_local import dynamodb_local

    from cloudsessions import new_session_id, open_store, record_id

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    with dynamodb_local() as endpoint:
        # dj-dynamodb-sessions reads its settings and LOCAL_DYNAMODB_SERVER on import.
        os.environ["LOCAL_DYNAMODB_SERVER"] = endpoint
        configure_django(
            list,
            CLOUDSESSIONS={"STORE": f"dynamodb://{OUR_TABLE}?region={REGION}&endpoint={endpoint}"},
            DYNAMODB_SESSIONS_TABLE_NAME=PEER_TABLE,
            USE_LOCAL_DYNAMODB_SERVER=True,
            SESSION_COOKIE_AGE=LIFETIME,
        )
        from dynamodb_sessions.backends.dynamodb import SessionStore as PeerStore

        from cloudsessions.django.conf import config
        from cloudsessions.django.engine import SessionStore as OurStore

        store = config().store()
        for table in (OUR_TABLE, INDEXED_TABLE, GUARDED_TABLE):
            url = f"dynamodb://{table}?region={REGION}&endpoint={endpoint}"
            with contextlib.closing(open_store(url)) as provisioning:
                provisioning.provision()
        check_layout_calls(store)
        client = boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint)
        _table(client, PEER_TABLE, "session_key")
        _table(client, FLAT_TABLE, "id")

        calls_per_shape = (rounds + max(rounds // 10, 2)) * block
        fresh = [record_id(new_session_id()) for _ in range(calls_per_shape)]

        def unknown_ids() -> list[str]:
            return [new_session_id() for _ in range(calls_per_shape)]

        def live(engine: type[Any]) -> list[str]:
            return [str(request(engine(None), "new")) for _ in range(SESSIONS)]

        ours, theirs = live(OurStore), live(PeerStore)
        rids = [record_id(new_session_id()) for _ in range(SESSIONS)]
        new_data = json.dumps({"greeting": GREETING, "cart": CART})
        flats = {FLOOR: (FLAT_TABLE, False), INDEXED: (INDEXED_TABLE, False)}
        flats[GUARDED] = (GUARDED_TABLE, True)
        raw = {LAYOUT: layout_calls(client, rids, fresh, unknown_ids())}
        for rid in rids:  # each raw item as the engines' new sessions are
            layout_put(client, rid)
        for engine, (table, guarded) in flats.items():
            raw[engine] = flat_calls(client, table, guarded, rids, fresh, unknown_ids())
            for rid in rids:
                flat_put(client, table, rid, new_data, guarded)
        try:
            yield {
                OURS: django_calls(OurStore, ours, unknown_ids()),
                PEER: django_calls(PeerStore, theirs, unknown_ids()),
                **raw,
            }
        finally:
            client.close()
            store.close()


# ----------------------------------------------------------------------------- report

Measured = dict[tuple[str, str], Samples]


def _ratios(samples: Measured, shape: str, engine: str, base: str = FLOOR) -> list[float]:
    """The per-round ratios of `engine` to `base`, sorted."""
    pairs = zip(samples[shape, engine].rounds, samples[shape, base].rounds, strict=True)
    return sorted(ours / floor for ours, floor in pairs)


def _quartiles(values: list[float]) -> tuple[float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def _ratio(samples: Measured, shape: str, engine: str, base: str = FLOOR) -> float:
    """The median of the per-round ratios: each round's two blocks ran back to back, so a
    change in the machine's load between rounds cancels out (the medians of all calls
    pooled can land in different modes of a load that shifts during the run)."""
    return statistics.median(_ratios(samples, shape, engine, base))


def _added(samples: Measured, shape: str, engine: str, base: str) -> float:
    """µs `engine` adds to `base`: the median of the per-round differences."""
    pairs = zip(samples[shape, engine].rounds, samples[shape, base].rounds, strict=True)
    return statistics.median(ours - floor for ours, floor in pairs) * 1000


def verdict(samples: Measured, shape: str) -> bool:
    return (
        _ratio(samples, shape, OURS) <= TARGETS[shape] and _ratio(samples, shape, OURS, PEER) <= 1
    )


def report(samples: Measured, args: argparse.Namespace, load: tuple[float, float]) -> None:
    command = f"python -m benchmarks.django_latency --rounds {args.rounds} --block {args.block}"
    where = (
        f"medians of {args.rounds * args.block} calls per shape and engine, in interleaved"
        f" blocks of {args.block}; load average {load[0]:.1f} before, {load[1]:.1f} after on"
        f" {os.cpu_count()} CPUs (`{command}`)"
    )
    lines = []
    for shape in SHAPES:
        q1, q3 = _quartiles(_ratios(samples, shape, OURS))
        p1, p3 = _quartiles(_ratios(samples, shape, PEER))
        lines.append(
            f"| {shape} | {FLOOR_CALLS[shape]} | {samples[shape, FLOOR].median:.3f}"
            f" | {samples[shape, OURS].median:.3f}"
            f" | **{_ratio(samples, shape, OURS):.2f}** ({q1:.2f}-{q3:.2f})"
            f" | {samples[shape, PEER].median:.3f}"
            f" | {_ratio(samples, shape, PEER):.2f} ({p1:.2f}-{p3:.2f})"
            f" | {_ratio(samples, shape, OURS, PEER):.2f}"
            f" | <= {TARGETS[shape]:g}, <= peer | {'PASS' if verdict(samples, shape) else 'FAIL'} |"
        )
    publish(
        "django_latency",
        [
            "shape",
            "floor call",
            "floor (ms)",
            "cloudsessions (ms)",
            "vs floor (rounds q1-q3)",
            "dj-dynamodb-sessions (ms)",
            "vs floor (rounds q1-q3)",
            "cloudsessions / peer",
            "target",
            "result",
        ],
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
        lines,
        "Django's session API (SessionStore, as SessionMiddleware and a view use it) on"
        " DynamoDB Local, against the simplest boto3 calls on a flat item of the same data."
        f" Ratios: the median of the {args.rounds} per-round ratios (in brackets their"
        f" quartiles); times: {where}.",
    )
    print()
    lines = []
    for shape in SHAPES:
        cells = [f"{_ratio(samples, shape, step, base):.2f}" for _, step, base in STEPS]
        added = [_added(samples, shape, step, base) for _, step, base in STEPS]
        lines.append(
            f"| {shape} | {' | '.join(cells)} | {_ratio(samples, shape, GUARDED):.2f}"
            f" | {_ratio(samples, shape, OURS, GUARDED):.2f} | {_ratio(samples, shape, OURS):.2f}"
            f" | {' / '.join(f'{a:+.0f}' for a in added)} |"
        )
    publish(
        "django_latency_parts",
        [
            "shape",
            *(label for label, _, _ in STEPS),
            "flat with our guarantees / floor",
            "cloudsessions / flat with our guarantees",
            "cloudsessions / floor",
            "µs added by each step",
        ],
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        lines,
        "From the floor to cloudsessions one step at a time, each the median per-round ratio"
        " of two sets of calls (see the module docstring): the floor's calls on a table with"
        " our user index and TTL; a flat item with our guarantees (conditional writes, a"
        " version); our own requests on our layout; cloudsessions. The product of the steps"
        f" is about cloudsessions / floor; µs: the median of the per-round differences; {where}.",
    )


COLOURS = {OURS: "#3b6ea8", PEER: "#b0b0b0", GUARDED: "#e3b23c"}
STEP_COLOURS = ("#c9c9c9", "#e3b23c", "#9ec1e6", "#3b6ea8")


def plot(samples: Measured, path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [1.25, 1]}
    )
    width = 0.26
    labels = {OURS: OURS, PEER: PEER, GUARDED: "a flat item with our guarantees (raw calls)"}
    for n, engine in enumerate((OURS, PEER, GUARDED)):
        xs = [s + (n - 1) * width for s in range(len(SHAPES))]
        ratios = [_ratio(samples, shape, engine) for shape in SHAPES]
        spread = [_quartiles(_ratios(samples, shape, engine)) for shape in SHAPES]
        errors = [
            [max(r - lo, 0) for r, (lo, _) in zip(ratios, spread, strict=True)],
            [max(hi - r, 0) for r, (_, hi) in zip(ratios, spread, strict=True)],
        ]
        bars = left.bar(xs, ratios, width, color=COLOURS[engine], label=labels[engine])
        left.errorbar(xs, ratios, yerr=errors, fmt="none", ecolor="#333", elinewidth=0.8)
        left.bar_label(bars, fmt="%.2f", fontsize=7, padding=6)
    for s, shape in enumerate(SHAPES):
        colour = "#3a9a5b" if verdict(samples, shape) else "#e08a2e"
        left.hlines(
            TARGETS[shape], s - 1.6 * width, s + 1.6 * width, colors=colour, linestyles="--"
        )
    left.axhline(1.0, color="black", linewidth=0.8)
    left.set_xticks(range(len(SHAPES)), [f"{s}\n(floor: {FLOOR_CALLS[s]})" for s in SHAPES])
    left.tick_params(axis="x", labelsize=8)
    left.set_ylim(0.8, max(1.6, left.get_ylim()[1]))
    left.set_ylabel("median / the floor's median")
    left.set_title(
        "against the floor (dashes: target, green met; whiskers: per-round quartiles)",
        fontsize=9,
        loc="left",
    )
    left.legend(fontsize=8, loc="upper right", frameon=False)

    width = 0.2
    for n, (label, step, base) in enumerate(STEPS):
        xs = [s + (n - 1.5) * width for s in range(len(SHAPES))]
        added = [_added(samples, shape, step, base) for shape in SHAPES]
        bars = right.bar(xs, added, width, color=STEP_COLOURS[n], label=label)
        right.bar_label(bars, fmt="%+.0f", fontsize=6.5, padding=2)
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks(range(len(SHAPES)), list(SHAPES), fontsize=8)
    right.set_ylabel("µs added (median of per-round differences)")
    right.set_title("from the floor to cloudsessions, step by step", fontsize=9, loc="left")
    right.legend(fontsize=7, loc="upper left", frameon=False)
    right.margins(y=0.2)
    fig.text(
        0.01,
        0.005,
        f"{args.rounds} rounds x {args.block} calls per shape and engine, interleaved, on"
        " DynamoDB Local. The floor: GetItem (ConsistentRead) / PutItem of {id, data: S,"
        " ttl: N} on a plain boto3 client and table. Differences of ~2 ms calls are partly"
        " noise.",
        fontsize=7.5,
    )
    save_figure(fig, path, "Django's session API on DynamoDB Local against the raw flat-item floor")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--block", type=int, default=10)
    parser.add_argument(
        "--profile",
        choices=SHAPES,
        help="instead: cProfile this shape through cloudsessions' engine (ENGINE: --engine)",
    )
    parser.add_argument("--engine", choices=ENGINES, default=OURS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # tests.services: DynamoDB Local
    load_before = os.getloadavg()[0]
    with engines(args.rounds, args.block) as calls:
        if args.profile:
            profile(calls[args.engine], args.profile, args.rounds * args.block)
            return 0
        samples = measure(calls, args.rounds, args.block)
    report(samples, args, (load_before, os.getloadavg()[0]))
    plot(samples, RESULTS / "django_latency.png", args)
    print(f"\nsaved {RESULTS}/django_latency.md, django_latency_parts.md, django_latency.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
