"""The progress of long operations (purge, destroy, a migration): a tqdm bar on a terminal.

tqdm draws the count, the rate and, when the total is known, the ETA. With disable=None it
draws nothing when its stream is not a terminal, so logs, pipes and cron mail only get the
operation's final line. tqdm is imported when a bar starts, never with the package.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import Any, TextIO


class Bar:
    """Counts one operation's records; `to` is the stores' Progress callback (a running
    count), `add` suits a caller that counts batches itself (a migration)."""

    def __init__(self, tqdm_bar: Any) -> None:
        self._bar = tqdm_bar
        self.count = 0

    def to(self, count: int) -> None:
        self.add(count - self.count)

    def add(self, done: int) -> None:
        self.count += done
        self._bar.update(done)


@contextlib.contextmanager
def progress(
    what: str, *, total: int | None = None, unit: str = " sessions", stream: TextIO | None = None
) -> Iterator[Bar]:
    """A bar titled `what` on `stream` (default: stderr) if it is a terminal, else silent."""
    from tqdm import tqdm  # type: ignore[import-untyped]  # it ships no stubs

    with tqdm(
        desc=what,
        total=total or None,  # 0 would draw an empty 0/0 bar; unknown shows count and rate
        unit=unit,
        file=stream if stream is not None else sys.stderr,
        disable=None,  # off unless the stream is a terminal
        dynamic_ncols=True,
        mininterval=0.2,
    ) as bar:
        yield Bar(bar)
