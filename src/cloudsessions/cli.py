"""The `cloudsessions` command: the demo site and the store operations."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import admin
from .errors import CloudSessionsError
from .registry import DEFAULT_STORE_URL

FRAMEWORKS = ("django", "flask", "asgi")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudsessions",
        description="Server-side sessions in DynamoDB, Firestore, MongoDB or SQLite.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = sub.add_parser("demo", help="serve the greeting demo site")
    demo.add_argument("--framework", choices=FRAMEWORKS, default="django")
    demo.add_argument("--store", default=DEFAULT_STORE_URL, help="store URL (default: %(default)s)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    admin.add_parsers(sub, store_required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import serve

            return serve(args.framework, args.store, args.host, args.port)
        store = admin.opened(args.store, args.cache)
    except CloudSessionsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    try:
        return admin.run(store, args, sys.stdout, admin.ask)
    finally:
        store.close()


if __name__ == "__main__":
    raise SystemExit(main())
