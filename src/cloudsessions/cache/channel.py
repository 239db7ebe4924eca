"""The invalidation channel: a thread per process that applies other processes' writes.

Every write through a cached store publishes its record id (see shared.py); this thread
drops each one it receives from the process-local tier. On joining the channel (first
time, and after every reconnect) it clears the local tier, since what was published while
it was away is lost: an entry is then never older than the staleness bound, channel or not.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from .shared import FAILURES

logger = logging.getLogger("cloudsessions")

_POLL = 1.0  # seconds a wait for a message lasts, so that close() is noticed
_BACKOFF = (0.1, 0.2, 0.5, 1.0, 2.0)


class Channel:
    def __init__(
        self,
        name: str,
        client: Callable[[], Any],
        on_message: Callable[[str], None],
        on_join: Callable[[], None],
    ) -> None:
        self.name = name
        self._client = client
        self._on_message = on_message
        self._on_join = on_join
        self._lock = threading.Lock()
        self._pid = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.joined = threading.Event()  # set while subscribed
        self.received = 0
        self.joins = 0

    def start(self) -> None:
        """Start listening in this process, once (again after a fork: threads do not follow)."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._stop = threading.Event()
            self.joined = threading.Event()
            self._thread = threading.Thread(
                target=self._run, name="cloudsessions-cache-channel", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
            self._pid = 0
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except FAILURES as exc:
                self.joined.clear()
                if failures == 0:
                    logger.warning(
                        "the session cache's invalidation channel was lost (%s); local"
                        " entries are served only within max_staleness until it is back",
                        type(exc).__name__,
                    )
                self._stop.wait(_BACKOFF[min(failures, len(_BACKOFF) - 1)])
                failures += 1

    def _listen(self) -> None:
        pubsub = self._client().pubsub()
        try:
            pubsub.subscribe(self.name)
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=_POLL)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    self._on_join()
                    self.joins += 1
                    self.joined.set()
                elif message["type"] == "message":
                    self.received += 1
                    self._on_message(message["data"])
        finally:
            self.joined.clear()
            pubsub.close()
