"""The operations behind `cloudsessions init|destroy|check|purge` and `manage.py cloudsessions`.

One implementation, two front doors: the CLI passes the store named by --store, the Django
management command the store of settings.CLOUDSESSIONS unless --store is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, Protocol

from .errors import CloudSessionsError
from .registry import open_store
from .store import Store

Confirm = Callable[[str], bool]


class Writer(Protocol):
    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


COMMANDS = {
    "init": "create the table/collection, indexes and TTL the store needs (idempotent)",
    "check": "report whether the store is ready, without changing anything",
    "purge": "remove expired sessions in batches (a no-op where the store's TTL does it)",
    "destroy": "delete the table/collection and every session in it",
}


def add_parsers(sub: argparse._SubParsersAction[Any], *, store_required: bool) -> None:
    """The operations' subcommands, shared by the CLI and the Django management command."""
    for name, help_text in COMMANDS.items():
        op = sub.add_parser(name, help=help_text, description=help_text)
        op.add_argument(
            "--store",
            required=store_required,
            help="store URL, e.g. sqlite:///sessions.db or dynamodb://TABLE?region=eu-west-1",
        )
        op.add_argument(
            "--cache",
            metavar="REDIS_URL",
            help="the Redis of a shared cache in front of the store: init loads its scripts,"
            " check pings it, destroy empties it (Django: with --store; else the settings')",
        )
        if name == "init":
            op.add_argument(
                "--fix",
                action="store_true",
                help="change what exists with other settings (e.g. an index's TTL) to ours",
            )
        if name == "purge":
            op.add_argument("--batch-size", type=int, default=500, help="records per batch")
        if name == "destroy":
            op.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def opened(url: str, cache: str | None = None) -> Store:
    """The store of `url`, behind the shared cache on the Redis `cache` if one is given."""
    store = open_store(url)
    if not cache:
        return store
    from .cache import CachedStore

    return CachedStore(store, cache)


def run(store: Store, args: argparse.Namespace, out: Writer, confirm: Confirm) -> int:
    """Run the operation named by args.command; returns the process exit status."""
    try:
        operation: str = args.command
        if operation == "init":
            return init(store, out, fix=args.fix)
        if operation == "check":
            return check(store, out)
        if operation == "purge":
            return purge(store, out, args.batch_size)
        return destroy(store, out, confirm if not args.yes else lambda _: True)
    except CloudSessionsError as exc:
        out.write(f"error: {exc}\n")
        return 1


def init(store: Store, out: Writer, *, fix: bool = False) -> int:
    done = store.provision(fix=fix)
    for line in done:
        out.write(f"{line}\n")
    if not done:
        out.write(f"{store.describe()}: already set up, nothing changed\n")
    return check(store, out)


def check(store: Store, out: Writer) -> int:
    results = store.check()
    width = max((len(r.name) for r in results), default=0)
    out.write(f"{store.describe()}\n")
    for result in results:
        mark = "ok  " if result.ok else "WARN" if result.warning else "FAIL"
        out.write(f"  {mark} {result.name.ljust(width)}  {result.detail}\n")
    failed = [r for r in results if not r.ok and not r.warning]
    if failed:
        out.write(f"{len(failed)} check(s) failed\n")
    return 1 if failed else 0


def _progress(out: Writer, what: str) -> Callable[[int], None]:
    def progress(removed: int) -> None:
        out.write(f"  removed {removed} {what} so far\n")
        out.flush()

    return progress


def purge(store: Store, out: Writer, batch_size: int) -> int:
    progress = _progress(out, "expired session(s)")
    removed = store.purge_expired(batch_size=batch_size, progress=progress)
    out.write(f"removed {removed} expired session(s) from {store.describe()}\n")
    return 0


def destroy(store: Store, out: Writer, confirm: Confirm) -> int:
    question = f"Delete {store.describe()} and every session in it? Type 'yes' to confirm: "
    if not confirm(question):
        out.write("not confirmed; nothing deleted\n")
        return 1
    store.drop(progress=_progress(out, "record(s)"))
    out.write(f"deleted {store.describe()}\n")
    return 0


def ask(question: str) -> bool:
    try:
        return input(question).strip().lower() == "yes"
    except EOFError:
        return False
