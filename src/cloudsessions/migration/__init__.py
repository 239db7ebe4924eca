"""Switching to cloudsessions without logging anyone out (docs/migrating.md).

A front door configured with a previous backend (`MIGRATE_FROM`: a `Source`) looks up a
cookie that names no session of ours in that backend, once: a live old session is copied
into our store under an id derived from the old key (so concurrent first requests of one
old session end with one new session), the browser gets our cookie on that response, and
the old record is deleted (unless the source keeps it). A session logged out in the old
backend is not there to copy: it stays logged out. `cloudsessions migrate` copies every
live old session ahead of time, under the same derived ids, so both paths meet.
"""

from .registry import source_from_url
from .source import Found, Migration, OldSession, Source, migrated_id

__all__ = ["Found", "Migration", "OldSession", "Source", "migrated_id", "source_from_url"]
