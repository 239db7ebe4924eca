"""The operations behind `cloudsessions init|check|purge|destroy` and `manage.py cloudsessions`.

One implementation, two front doors: the CLI passes the store named by --store (else
$CLOUDSESSIONS_STORE, else the default SQLite file), the Django management command the
store of settings.CLOUDSESSIONS unless --store is given.

Each reports only what happened: the exit status is OK (0) when the operation was done,
FAILED (1) when it, or a check, failed or there was nothing to do it to, USAGE (2) for a
configuration error (the message names what to set or run).

What they report comes from the store (Store.drop_target, purge_note, count_records).
"""

from __future__ import annotations

import argparse
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from .cache import CachedStore
from .errors import CloudSessionsError, ConfigurationError
from .migration import Source
from .progress import progress
from .record import SessionInfo
from .registry import open_store
from .store import Store

Confirm = Callable[[str], bool]

OK, FAILED, USAGE = 0, 1, 2


class Writer(Protocol):
    def write(self, text: str, /) -> Any: ...

    def flush(self) -> Any: ...


# name -> (one line for the command list, the paragraph of its own --help)
COMMANDS = {
    "init": (
        "create the table/collection, indexes and TTL the store needs (idempotent)",
        "Create what the store needs, then check it: the SQLite file and table; the"
        " DynamoDB table, its user index and TTL; the MongoDB TTL and user indexes; the"
        " Firestore TTL policy; the Redis scripts (and the shared cache's, with --cache)."
        " What exists is left alone; something of ours with other settings (say, an index"
        " with another TTL) is reported and left alone unless --fix is given.",
    ),
    "check": (
        "report whether the store is ready, without changing anything",
        "Report, without changing anything, whether the store is ready to serve sessions:"
        " the table or collection, its indexes and TTL, how many sessions it holds; on"
        " DynamoDB each IAM action the library needs, probed with a request that cannot"
        " change anything. FAIL lines fail the check (exit status 1); WARN lines do not.",
    ),
    "purge": (
        "delete expired sessions in batches (or say who deletes them)",
        "Delete expired sessions, a batch at a time, with a progress bar when stderr is a"
        " terminal. Reads already ignore expired sessions: purging reclaims their space."
        " Where the store deletes them itself (DynamoDB with its TTL on) purge says so"
        " instead of scanning for them.",
    ),
    "sessions": (
        "list the sessions of one user, or sign them out",
        "List the live sessions of one user (the user id the sessions record, e.g. Django's"
        " user pk): a handle, the device, the address, when each signed in and was last"
        " seen. With --revoke HANDLE, sign out the sessions those handles name (the first"
        " 12 characters of a listed handle are enough); with --all, every session of the"
        " user, as after a password reset or a stolen device, with a progress bar when"
        " stderr is a terminal. Each revoked session's next request is anonymous, on every"
        " server.",
    ),
    "migrate": (
        "copy every live session of the backend you are leaving into the store",
        "Copy every live session of a previous backend (--from) into the store, in"
        " batches, with a progress bar on a terminal, under the ids the read-through"
        " (MIGRATE_FROM) gives them, so both meet: run it after every server runs"
        " cloudsessions with the read-through on. Each copied old record is then deleted"
        " (--keep-old leaves it). A checkpoint file written after every batch lets a run"
        " that was stopped resume where it was; a second run copies nothing twice. It ends"
        " with the count of sessions read, copied, already copied, skipped and failed, each"
        " with its reason.",
    ),
    "destroy": (
        "delete the table/collection and every session in it",
        "Delete the store's table or collection and every session in it, after asking"
        " (unless --yes). On SQLite the table is dropped and the file is kept. Exit status"
        " 1 if there was nothing to delete or the answer was not 'yes'.",
    ),
}


def add_parsers(
    sub: argparse._SubParsersAction[Any],
    *,
    store_required: bool,
    store_default: str = "the configured store",
    source_required: bool = True,
    source_default: str = "none: required",
    parents: Sequence[argparse.ArgumentParser] = (),
    formatter_class: type[argparse.HelpFormatter] | None = None,
) -> None:
    """The operations' subcommands, shared by the CLI and the Django management command.

    `store_default` says in --help what an absent --store means; `parents` and
    `formatter_class` are the front door's own (the CLI's --debug, its help layout).
    """
    for name, (summary, description) in COMMANDS.items():
        extra: dict[str, Any] = {"formatter_class": formatter_class} if formatter_class else {}
        op = sub.add_parser(
            name, help=summary, description=description, parents=list(parents), **extra
        )
        op.add_argument(
            "--store",
            required=store_required,
            metavar="URL",
            help="the store: sqlite:///sessions.db, dynamodb://TABLE?region=eu-west-1,"
            " firestore://PROJECT/COLLECTION, mongodb://HOST:PORT/DB?collection=NAME,"
            f" redis://HOST:PORT/DB?prefix=NAME (default: {store_default})",
        )
        op.add_argument(
            "--cache",
            metavar="REDIS_URL",
            help="the Redis of a shared cache in front of the store: init loads its scripts,"
            " check pings it, destroy empties it (default: none; Django: the CACHE setting"
            " unless --store is given)",
        )
        if name == "init":
            op.add_argument(
                "--fix",
                action="store_true",
                help="change what exists with other settings (e.g. an index's TTL) to ours"
                " (default: report it and change nothing)",
            )
        if name == "purge":
            op.add_argument(
                "--batch-size",
                type=_positive,
                default=500,
                metavar="N",
                help="records deleted per request or statement (default: %(default)s)",
            )
        if name == "sessions":
            op.add_argument("user", metavar="USER_ID", help="the user id the sessions record")
            revoke = op.add_mutually_exclusive_group()
            revoke.add_argument(
                "--revoke",
                action="append",
                default=[],
                metavar="HANDLE",
                help="sign out the session this handle (or its first 12+ characters) names;"
                " may be repeated (default: list the sessions, sign out none)",
            )
            revoke.add_argument(
                "--all",
                action="store_true",
                help="sign out every session of the user (default: list them)",
            )
        if name == "migrate":
            op.add_argument(
                "--from",
                dest="source",
                required=source_required,
                metavar="SOURCE",
                help="the backend the sessions come from, as a source URL (see"
                f" docs/migrating.md) (default: {source_default})",
            )
            op.add_argument(
                "--batch-size",
                type=_positive,
                default=500,
                metavar="N",
                help="old sessions read per batch (default: %(default)s)",
            )
            op.add_argument(
                "--checkpoint",
                metavar="FILE",
                default=DEFAULT_CHECKPOINT,
                help="where the run notes its progress after each batch, and resumes from"
                " (default: %(default)s in the current directory)",
            )
            op.add_argument(
                "--dry-run",
                action="store_true",
                help="read and count, write nothing (default: copy)",
            )
            op.add_argument(
                "--keep-old",
                action="store_true",
                help="leave the old records in place (default: delete each one copied)",
            )
        if name == "destroy":
            op.add_argument(
                "--yes",
                action="store_true",
                help="do not ask for confirmation (default: ask on stdin; anything but"
                " 'yes' deletes nothing)",
            )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return value


def opened(url: str, cache: str | None = None) -> Store:
    """The store of `url`, behind the shared cache on the Redis `cache` if one is given."""
    store = open_store(url)
    if not cache:
        return store
    return CachedStore(store, cache)


def run(
    store: Store,
    args: argparse.Namespace,
    out: Writer,
    confirm: Confirm,
    *,
    err: Writer | None = None,
    bar_stream: Any = None,
    source: str = "",
    debug: bool = False,
    sources: Callable[[str | None], Source] | None = None,
) -> int:
    """Run the operation named by args.command; returns the process exit status.

    Errors go to `err` (default: `out`) as one line, with the traceback before it if
    `debug`; the progress bar to `bar_stream` (default: stderr), only if a terminal.
    `source` says where the store came from, in the first line; `sources` makes the
    previous backend of `migrate --from` (default: from a source URL).
    """
    err = err if err is not None else out
    try:
        out.write(f"store: {store.describe()}{f' ({source})' if source else ''}\n")
        operation: str = args.command
        if operation == "init":
            return init(store, out, fix=args.fix)
        if operation == "check":
            return check(store, out)
        if operation == "purge":
            return purge(store, out, args.batch_size, bar_stream=bar_stream)
        if operation == "sessions":
            return sessions(
                store, out, args.user, args.revoke, every=args.all, bar_stream=bar_stream
            )
        if operation == "migrate":
            return migrate(store, args, out, sources or _source_from_url, bar_stream=bar_stream)
        asked = (lambda _: True) if args.yes else confirm
        return destroy(store, out, asked, err=err, bar_stream=bar_stream)
    except CloudSessionsError as exc:
        if debug:
            err.write("".join(traceback.format_exception(exc)))
        err.write(f"error: {exc}\n")
        return USAGE if isinstance(exc, ConfigurationError) else FAILED


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
    for result in results:
        mark = "ok  " if result.ok else "WARN" if result.warning else "FAIL"
        # A detail of several lines (one per IAM action, say) stays under its first.
        detail = result.detail.replace("\n", "\n" + " " * (width + 9))
        out.write(f"  {mark} {result.name.ljust(width)}  {detail}\n")
    failed = [r for r in results if not r.ok and not r.warning]
    if failed:
        out.write(f"{len(failed)} check(s) failed\n")
    return FAILED if failed else OK


def purge(store: Store, out: Writer, batch_size: int, *, bar_stream: Any = None) -> int:
    total = store.count_records(expired_only=True)
    with progress("purging expired sessions", total=total, stream=bar_stream) as bar:
        removed = store.purge_expired(batch_size=batch_size, progress=bar.to)
    out.write(f"removed {removed} expired session(s) from {store.describe()}\n")
    said = store.purge_note()
    if said:
        out.write(f"{said}\n")
    return OK


def destroy(
    store: Store,
    out: Writer,
    confirm: Confirm,
    *,
    err: Writer | None = None,
    bar_stream: Any = None,
) -> int:
    exists, what = store.drop_target()
    if not exists:
        (err or out).write(f"error: nothing to delete: {what}\n")
        return FAILED
    if isinstance(store, CachedStore):
        what += "; the cache in front is emptied too"
    if not confirm(f"Delete {what}? Type 'yes' to confirm: "):
        out.write("not confirmed; nothing deleted\n")
        return FAILED
    total = store.count_records(expired_only=False)
    with progress("deleting", total=total, unit=" records", stream=bar_stream) as bar:
        store.drop(progress=bar.to)
    removed = f" ({bar.count} record(s) removed)" if bar.count else ""
    out.write(f"deleted {what}{removed}\n")
    return OK


DEFAULT_CHECKPOINT = "cloudsessions-migrate.json"


def _source_from_url(url: str | None) -> Source:
    from .migration.registry import source_from_url

    assert url is not None  # --from is required where there is no default
    return source_from_url(url)


def migrate(
    store: Store,
    args: argparse.Namespace,
    out: Writer,
    sources: Callable[[str | None], Source],
    *,
    bar_stream: Any = None,
) -> int:
    from .migration.bulk import Checkpoint, copy_all, report

    source = sources(args.source)
    try:
        out.write(
            f"from: {source.describe()}{' (dry run: nothing is written)' if args.dry_run else ''}\n"
        )
        checkpoint = None if args.dry_run else Path(args.checkpoint)
        state = Checkpoint(source.describe(), store.describe())
        if checkpoint is not None:
            saved = Checkpoint.load(checkpoint, state.source, state.store)
            if saved.done:  # that copy was complete: this run starts over
                out.write(f"checkpoint: {checkpoint} (an earlier run finished: starting over)\n")
            elif saved.resume is not None:
                state = saved
                out.write(
                    f"checkpoint: {checkpoint} (resuming after {saved.tally.read} session(s))\n"
                )
            else:
                out.write(f"checkpoint: {checkpoint}\n")
        try:
            with progress("copying sessions", total=source.count(), stream=bar_stream) as bar:
                tally = copy_all(
                    source,
                    store,
                    state,
                    batch_size=args.batch_size,
                    checkpoint=checkpoint,
                    dry_run=args.dry_run,
                    keep_old=args.keep_old,
                    progress=bar.add,
                )
        except NotImplementedError as exc:  # a source whose sessions cannot be listed
            raise ConfigurationError(
                f"{source.describe()} cannot be copied in bulk: {exc}. Nothing was copied;"
                " keep MIGRATE_FROM on until the old sessions' lifetime has passed"
            ) from exc
    finally:
        source.close()
    for line in report(tally):
        out.write(f"{line}\n")
    return OK if tally.balanced() and not tally.failures else FAILED


SHORT_HANDLE = 12


def sessions(
    store: Store,
    out: Writer,
    user: str,
    revoke: Sequence[str],
    *,
    every: bool,
    bar_stream: Any = None,
) -> int:
    if every:
        # No total: no store counts a user's sessions without listing them all.
        with progress("signing out", stream=bar_stream) as bar:
            count = store.delete_for_user(user, progress=bar.to)
        out.write(f"signed out {count} session(s) of user {user}\n")
        return OK
    listed = store.for_user(user)
    if revoke:
        return _revoke(store, out, user, listed, revoke)
    out.write(f"{len(listed)} session(s) of user {user}\n")
    rows = [("HANDLE", "DEVICE", "ADDRESS", "SIGNED IN", "LAST SEEN", "EXPIRES")]
    rows += [
        (
            s.handle[:SHORT_HANDLE],
            s.device,
            s.ip or "-",
            _when(s.created_at),
            _when(s.last_seen),
            _when(s.expires_at),
        )
        for s in listed
    ]
    widths = [max(len(row[n]) for row in rows) for n in range(len(rows[0]))]
    for row in rows if listed else []:
        out.write("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")
    return OK


def _revoke(
    store: Store, out: Writer, user: str, listed: Sequence[SessionInfo], given: Sequence[str]
) -> int:
    failed = False
    for prefix in given:
        found = [s for s in listed if prefix and s.handle.startswith(prefix.lower())]
        if len(prefix) < SHORT_HANDLE or len(found) != 1:
            why = "is too short" if len(prefix) < SHORT_HANDLE else "names no session"
            if len(found) > 1:
                why = "names several sessions"
            out.write(f"{prefix}: {why} of user {user}; nothing signed out\n")
            failed = True
        elif store.revoke(user, found[0].handle):
            out.write(f"{prefix}: signed out ({found[0].device})\n")
        else:
            out.write(f"{prefix}: already gone\n")
    return FAILED if failed else OK


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def ask(question: str) -> bool:
    try:
        return input(question).strip().lower() == "yes"
    except EOFError:
        return False
