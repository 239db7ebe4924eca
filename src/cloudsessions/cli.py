"""The `cloudsessions` command: the demo site and the store operations (see admin).

Every failure ends in one line on stderr, `error: ...`, naming the fix when it is known;
the traceback only with --debug. The exit statuses are admin's (0 done, 1 failed, 2 usage or
configuration), plus 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import textwrap
import traceback
from collections.abc import Sequence

from . import admin
from .errors import CloudSessionsError, ConfigurationError
from .registry import DEFAULT_STORE_URL, STORE_ENV, default_store_url

FRAMEWORKS = ("django", "flask", "asgi")
INTERRUPTED = 130

DESCRIPTION = """\
Server-side sessions for Django, Flask and ASGI in DynamoDB, Firestore, MongoDB, Redis or an
embedded SQLite file. This command sets a store up (init), reports whether it is ready
(check), deletes expired sessions (purge) or the whole store (destroy), lists or signs out
the sessions of one user (sessions), and serves a demo site on any store (demo). Run
`cloudsessions COMMAND --help` for each command's options."""

EPILOG = f"""\
the store:
  --store URL, else ${STORE_ENV}, else {DEFAULT_STORE_URL}
  (a file in the current directory). The first line an operation prints names the store.

exit status:
  0    done; for check, nothing failed (WARN lines do not fail it)
  1    the operation failed, a check failed, or destroy found nothing to delete or
       was not confirmed
  2    usage or configuration error: a wrong option, store URL, setting or credentials
       (the message says what to fix)
  130  interrupted (Ctrl-C)

examples:
  cloudsessions init
  cloudsessions check --store 'dynamodb://sessions?region=eu-west-1'
  {STORE_ENV}=mongodb://localhost/app cloudsessions purge --batch-size 1000
  cloudsessions sessions 42 --all
  cloudsessions destroy --store sqlite:///sessions.db --yes
  cloudsessions demo --framework flask --port 8080"""


class Manual(argparse.HelpFormatter):
    """Paragraphs wrapped to the terminal; a block that opens with "heading:" and indented
    lines (the exit statuses, the examples) kept as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks = []
        for block in text.split("\n\n"):
            lines = block.splitlines()
            if len(lines) > 1 and lines[0].endswith(":") and lines[1].startswith(" "):
                blocks.append(textwrap.indent(block, indent))
            else:
                blocks.append(
                    textwrap.fill(
                        " ".join(lines), width, initial_indent=indent, subsequent_indent=indent
                    )
                )
        return "\n\n".join(blocks)


def _version() -> str:
    try:
        return importlib.metadata.version("cloudsessions")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(version unknown: not installed)"


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"must be a TCP port, 1-65535, not {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # given after the command, it keeps the global value
        help="on an error, print the traceback too (default: one line)",
    )
    parser = argparse.ArgumentParser(
        prog="cloudsessions", description=DESCRIPTION, epilog=EPILOG, formatter_class=Manual
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--debug",
        action="store_true",
        help="on an error, print the traceback too (default: one line)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store_default = f"${STORE_ENV}, else {DEFAULT_STORE_URL}"
    demo = sub.add_parser(
        "demo",
        help="serve the greeting demo site on a store",
        description="Serve the greeting demo (from Google's \"Handling sessions with"
        ' Firestore" tutorial) on any store, with the framework of your choice. The store'
        " is set up first (as init does), so any store URL works out of the box. Stop it"
        " with Ctrl-C.",
        parents=[debug],
        formatter_class=Manual,
    )
    demo.add_argument(
        "--framework",
        choices=FRAMEWORKS,
        default="django",
        help="the web framework serving the page (default: %(default)s)",
    )
    demo.add_argument(
        "--store", metavar="URL", help=f"the store of the sessions (default: {store_default})"
    )
    demo.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)"
    )
    demo.add_argument(
        "--port", type=_port, default=8000, help="the port to listen on (default: %(default)s)"
    )
    admin.add_parsers(
        sub,
        store_required=False,
        store_default=store_default,
        parents=[debug],
        formatter_class=Manual,
    )
    return parser


def _store_url(given: str | None) -> tuple[str, str]:
    """The store URL to use and where it came from."""
    if given:
        return given, "from --store"
    if os.environ.get(STORE_ENV):
        return default_store_url(), f"from ${STORE_ENV}"
    return default_store_url(), f"the default; choose another with --store or ${STORE_ENV}"


def _failed(exc: CloudSessionsError, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    sys.stderr.write(f"error: {exc}\n")
    return admin.USAGE if isinstance(exc, ConfigurationError) else admin.FAILED


def _run(args: argparse.Namespace) -> int:
    url, source = _store_url(args.store)
    if args.command == "demo":
        from .demo import serve

        try:
            return serve(args.framework, url, args.host, args.port)
        except CloudSessionsError as exc:
            return _failed(exc, args.debug)
    try:
        store = admin.opened(url, args.cache)
    except CloudSessionsError as exc:
        return _failed(exc, args.debug)
    try:
        return admin.run(
            store, args, sys.stdout, admin.ask, err=sys.stderr, source=source, debug=args.debug
        )
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        sys.stderr.write("\nerror: interrupted\n")
        return INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - a bug or an unmapped SDK error: one line
        if args.debug:
            traceback.print_exc()
        detail = str(exc).splitlines()[0] if str(exc) else ""
        sys.stderr.write(
            f"error: unexpected {type(exc).__name__}{f': {detail}' if detail else ''}"
            f"{'' if args.debug else ' (run with --debug for the traceback)'}\n"
        )
        return admin.FAILED


if __name__ == "__main__":
    raise SystemExit(main())
