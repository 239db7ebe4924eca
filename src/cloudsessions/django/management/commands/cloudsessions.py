"""``manage.py cloudsessions init|check|purge|destroy``: the CLI's operations on the store of
settings.CLOUDSESSIONS (or --store)."""

from __future__ import annotations

import argparse
import contextlib
import copy
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .... import admin
from ....errors import CloudSessionsError
from ...conf import config


class Command(BaseCommand):
    help = "Set up, check, purge or destroy the session store."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="command", required=True, metavar="OPERATION")
        admin.add_parsers(sub, store_required=False)
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
            status = admin.run(store, argparse.Namespace(**options), self.stdout, admin.ask)
        if status:
            raise CommandError(f"cloudsessions {options['command']} failed", returncode=status)


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
