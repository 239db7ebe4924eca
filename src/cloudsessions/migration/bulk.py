"""`cloudsessions migrate`: copy every live session of a previous backend, ahead of time.

Each old session is created in our store under migrated_id(old key), the id the
read-through would give it, so the two meet: a session the bulk copy moved is found by the
read-through (and the other way round); a second copy of one session finds the first and
counts as "already copied", which makes a run idempotent. After a batch is copied, its old
records are deleted (unless kept): from then on a revocation in cloudsessions is final, as
the old record can no longer bring the session back.

Memory stays flat: one batch at a time, and the checkpoint (a small JSON file, written
atomically after every batch) holds only where the scan stands and the running counts. A
run killed at any point resumes from its last checkpoint; the batch it was in is copied
again, harmlessly (already copied).
"""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import (
    CloudSessionsError,
    ConfigurationError,
    SessionExists,
    SessionTooLarge,
    StoreUnavailable,
)
from ..record import SessionRecord
from ..store import Store
from .source import Found, Source, migrated_id

CHECKPOINT_VERSION = 1


@dataclass
class Tally:
    """What a bulk copy did, by outcome; `skipped` and `failed` count by reason."""

    read: int = 0
    copied: int = 0
    already: int = 0  # copied before (an earlier run, the read-through)
    skipped: dict[str, int] = field(default_factory=dict)  # expired, undecodable, ...
    failed: dict[str, int] = field(default_factory=dict)  # too large, store unavailable
    discarded: int = 0  # old records deleted

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def fail(self, reason: str) -> None:
        self.failed[reason] = self.failed.get(reason, 0) + 1

    @property
    def failures(self) -> int:
        return sum(self.failed.values())

    @property
    def skips(self) -> int:
        return sum(self.skipped.values())

    def balanced(self) -> bool:
        """Every session read is accounted for, exactly once."""
        return self.read == self.copied + self.already + self.skips + self.failures


@dataclass
class Checkpoint:
    """Where a run stands: written after each batch, read by the next run."""

    source: str
    store: str
    resume: str | None = None
    done: bool = False
    tally: Tally = field(default_factory=Tally)

    @classmethod
    def load(cls, path: Path, source: str, store: str) -> Checkpoint:
        if not path.exists():
            return cls(source, store)
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != CHECKPOINT_VERSION:
                raise ValueError(f"version {raw.get('version')!r}")
            saved = cls(
                raw["source"], raw["store"], raw["resume"], raw["done"], Tally(**raw["tally"])
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(
                f"checkpoint {path} is not one of ours ({exc}): move it away to start over"
            ) from exc
        if (saved.source, saved.store) != (source, store):
            raise ConfigurationError(
                f"checkpoint {path} is of a copy from {saved.source} to {saved.store}, not"
                f" from {source} to {store}: give another --checkpoint file"
            )
        return saved

    def save(self, path: Path) -> None:
        raw = {"version": CHECKPOINT_VERSION, **asdict(self)}
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(raw, indent=1, sort_keys=True))
        os.replace(partial, path)  # atomic: a kill leaves the old checkpoint or the new one


def copy_all(
    source: Source,
    store: Store,
    state: Checkpoint,
    *,
    batch_size: int = 500,
    checkpoint: Path | None = None,
    dry_run: bool = False,
    keep_old: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Tally:
    """Copy every live session of `source` into `store` from where `state` stands (a
    loaded checkpoint, or a new one), saving it to `checkpoint` after each batch; returns
    the tally (this run's and the checkpointed runs' before it).

    `progress` is called with the number of old records each batch read. A dry run writes
    nothing (neither the store, the old backend, nor the checkpoint) and counts what it
    would copy as copied.
    """
    if dry_run:
        checkpoint = None
    tally = state.tally
    for batch, resume in source.scan(state.resume, batch_size):
        copied = _copy_batch(batch, store, tally, dry_run)
        if copied and not (dry_run or keep_old or source.keep_old):
            source.discard_many(copied)  # copied or found copied: the old records may go
            tally.discarded += len(copied)
        state.resume = resume
        if checkpoint is not None:
            state.save(checkpoint)
        if progress is not None:
            progress(len(batch))
    state.done = True
    if checkpoint is not None:
        state.save(checkpoint)
    return tally


def _copy_batch(batch: list[Found], store: Store, tally: Tally, dry_run: bool) -> list[str]:
    """Create each live session of the batch; returns the old keys now copied."""
    copied: list[str] = []
    now = time.time()
    for found in batch:
        tally.read += 1
        session = found.session
        if session is None:
            tally.skip(found.reason or "not copyable")
            continue
        if session.expires_at <= now:
            tally.skip("expired")
            continue
        if dry_run:
            tally.copied += 1
            continue
        record = SessionRecord(dict(session.data), session.expires_at, session.user_id)
        try:
            store.create(migrated_id(found.key), record)
        except SessionExists:
            tally.already += 1
        except SessionTooLarge:
            tally.fail("too large for the store")
            continue
        except StoreUnavailable:
            # The run stops here, its checkpoint at the last whole batch: a rerun copies
            # this batch again (what it did copy counts as already copied).
            raise
        except CloudSessionsError as exc:
            tally.fail(f"{type(exc).__name__}: {_first_line(exc)}")
            continue
        else:
            tally.copied += 1
        copied.append(found.key)
    return copied


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def report(tally: Tally) -> list[str]:
    """The count check a run ends with: every session read, by outcome and reason."""
    lines = [
        f"read     {tally.read}",
        f"copied   {tally.copied}",
        f"already  {tally.already} (copied before: an earlier run or the read-through)",
    ]
    for title, counts in (("skipped", tally.skipped), ("failed", tally.failed)):
        total = sum(counts.values())
        lines.append(f"{title.ljust(8)} {total}")
        for reason, count in collections.Counter(counts).most_common():
            lines.append(f"  {count:>7}  {reason}")
    if tally.discarded:
        lines.append(f"old records deleted: {tally.discarded}")
    balance = "ok" if tally.balanced() else "MISMATCH"
    lines.append(
        f"check    {balance}: {tally.read} read = {tally.copied} copied + {tally.already}"
        f" already + {tally.skips} skipped + {tally.failures} failed"
    )
    return lines
