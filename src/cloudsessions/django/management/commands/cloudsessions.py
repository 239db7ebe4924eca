"""``manage.py cloudsessions init|check|purge|destroy``: the CLI's operations on the store of
settings.CLOUDSESSIONS (or --store)."""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .... import admin
from ...conf import config


class Command(BaseCommand):
    help = "Set up, check, purge or destroy the session store."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="command", required=True, metavar="OPERATION")
        admin.add_parsers(sub, store_required=False)

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("store"):
            opened = admin.opened(options["store"], options.get("cache"))
            with contextlib.closing(opened) as store:
                status = admin.run(store, argparse.Namespace(**options), self.stdout, admin.ask)
        else:
            status = admin.run(
                config().store(), argparse.Namespace(**options), self.stdout, admin.ask
            )
        if status:
            raise CommandError(f"cloudsessions {options['command']} failed", returncode=status)
