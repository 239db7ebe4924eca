"""``manage.py cloudsessions init|check|purge|destroy``: the CLI's operations on the store of
settings.CLOUDSESSIONS (or --store)."""

from __future__ import annotations

import argparse
import contextlib
import copy
from typing import Any

from django.core.management.base import (
    BaseCommand,
    CommandError,
    CommandParser,
    DjangoHelpFormatter,
)

from .... import admin
from ....cli import Manual
from ....errors import CloudSessionsError, ConfigurationError
from ....migration import Source
from ...conf import config, engine_migration

EPILOG = """\
the store:
  settings.CLOUDSESSIONS (its STORE and CACHE), else --store URL for another one.
  The first line an operation prints names the store.

exit status:
  0    done; for check, nothing failed (WARN lines do not fail it)
  1    the operation failed, a check failed, or destroy found nothing to delete or
       was not confirmed
  2    a wrong setting or --store URL (the message says what to fix)

examples:
  python manage.py cloudsessions init
  python manage.py cloudsessions check --settings=mysite.settings.prod -v 2
  python manage.py cloudsessions purge --batch-size 1000
  python manage.py cloudsessions destroy --yes"""


class _Manual(Manual, DjangoHelpFormatter):
    """Django's option order, with the CLI's layout of the epilog's blocks."""


class Command(BaseCommand):
    help = (
        "Set up (init), check (check), clean (purge) or delete (destroy) the session store"
        " of settings.CLOUDSESSIONS: the same operations as the `cloudsessions` command."
        " Run `manage.py cloudsessions OPERATION --help` for each one's options."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, epilog=EPILOG, **kwargs)
        parser.formatter_class = _Manual
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="command", required=True, metavar="OPERATION")
        admin.add_parsers(
            sub,
            store_required=False,
            store_default="the store of settings.CLOUDSESSIONS",
            source_required=False,
            source_default='settings.CLOUDSESSIONS["MIGRATE_FROM"]; a SESSION_ENGINE path'
            " or a source URL",
            formatter_class=_Manual,
        )
        for operation in sub.choices.values():
            _accept_common_options(parser, operation)

    def handle(self, *args: Any, **options: Any) -> None:
        url = options.get("store")
        try:
            # --store opens a store of its own (closed after); else the settings' shared one.
            store = admin.opened(url, options.get("cache")) if url else config().store()
        except CloudSessionsError as exc:
            # A wrong setting or --store URL: one line naming the fix, not a traceback.
            raise CommandError(str(exc), returncode=2) from exc
        with contextlib.closing(store) if url else contextlib.nullcontext():
            status = admin.run(
                store,
                argparse.Namespace(**options),
                self.stdout,
                admin.ask,
                err=self.stderr,
                bar_stream=self.stderr,
                source="from --store" if url else "from settings.CLOUDSESSIONS",
                sources=_source,
            )
        if status:
            raise CommandError(f"cloudsessions {options['command']} failed", returncode=status)


def _source(value: str | None) -> Source:
    """The previous backend of `migrate`: --from (a SESSION_ENGINE path or a source URL),
    else settings.CLOUDSESSIONS["MIGRATE_FROM"]."""
    if value is None:
        migration = config().migration
        if migration is None:
            raise ConfigurationError(
                'migrate needs --from, or settings.CLOUDSESSIONS["MIGRATE_FROM"]: the'
                " SESSION_ENGINE you are leaving"
            )
        return migration.source
    if "://" in value or ":" in value.split(".")[0]:
        from ....migration.registry import source_from_url

        return source_from_url(value)
    migration = engine_migration(value)
    assert migration is not None
    return migration.source


def _accept_common_options(parser: argparse.ArgumentParser, operation: Any) -> None:
    """Django's own options (--settings, --verbosity, --skip-checks, ...) after the operation
    too, as every other command accepts them anywhere on the line.

    The command's parser already holds them (Django adds them before add_arguments); each is
    copied onto the operation's parser with no default, so that a value given before the
    operation is not reset by the operation's parser, which parses the rest of the line.
    """
    for action in parser._actions:
        if not action.option_strings or isinstance(
            action, argparse._HelpAction | argparse._VersionAction
        ):
            continue
        if any(s in operation._option_string_actions for s in action.option_strings):
            continue  # the operation has an option of that name: its own wins there
        common = copy.copy(action)
        common.default = argparse.SUPPRESS
        operation._add_action(common)
