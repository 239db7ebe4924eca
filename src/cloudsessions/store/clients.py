"""Where a store keeps its SDK clients: made lazily, never shared across a fork or a loop.

- `PerProcess`: one sync client per process, shared by its threads. A client must not cross
  into a forked child (its connection pool would be shared with the parent), so a child
  makes its own on first use.
- `PerThread`: one per thread and process, for clients that cannot be shared by threads
  (sqlite3 connections).
- `PerLoop`: one async client per running asyncio loop, since the SDKs' async clients
  belong to the loop they were made on. Each is closed when its loop shuts down (loops run
  by asyncio.run, asyncio.Runner, asgiref or uvicorn finalize their async generators before
  closing: a generator's `finally` closes the client), by `aclose()` on that loop, or by
  `close()` from sync code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


class PerProcess(Generic[T]):
    """`make()` on first use in each process; `close()` hands this process's client to `dispose`."""

    def __init__(self, make: Callable[[], T], dispose: Callable[[T], None] | None = None) -> None:
        self._make, self._dispose = make, dispose
        self._lock = threading.Lock()
        self._value: T | None = None
        self._pid = 0

    def get(self) -> T:
        value = self._value
        if value is None or self._pid != os.getpid():
            with self._lock:
                if self._value is None or self._pid != os.getpid():
                    self._value, self._pid = self._make(), os.getpid()
                value = self._value
        return value

    def peek(self) -> T | None:
        """This process's client if it was made, without making one."""
        return self._value if self._pid == os.getpid() else None

    def close(self) -> None:
        with self._lock:
            value, self._value = self.peek(), None
        if value is not None and self._dispose is not None:
            self._dispose(value)


class PerThread(Generic[T]):
    """`make()` on first use in each thread (and process); `close()` only this thread's."""

    def __init__(self, make: Callable[[], T], dispose: Callable[[T], None]) -> None:
        self._make, self._dispose = make, dispose
        self._local = threading.local()

    def get(self) -> T:
        if getattr(self._local, "pid", None) != os.getpid():
            self._local.value, self._local.pid = self._make(), os.getpid()
        value: T = self._local.value
        return value

    def close(self) -> None:
        if getattr(self._local, "pid", None) == os.getpid():
            self._dispose(self._local.value)
        self._local.pid = None


MakeAsync = Callable[[contextlib.AsyncExitStack], Awaitable[T]]
"""Makes a loop's client; registers on the stack what closes it."""


@dataclass
class _Slot(Generic[T]):
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    value: T | None = None
    closer: AsyncGenerator[None, None] | None = None


class PerLoop(Generic[T]):
    """`await make(stack)` on first use in each running asyncio loop."""

    def __init__(self, make: MakeAsync[T]) -> None:
        self._make = make
        self._lock = threading.Lock()  # against threads running other loops; never awaited
        self._slots: dict[asyncio.AbstractEventLoop, _Slot[T]] = {}

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        slot = self._slots.get(loop)
        if slot is None:
            with self._lock:
                # Forget the slots of loops that have ended: their connections died with them.
                for ended in [lp for lp in self._slots if lp.is_closed()]:
                    del self._slots[ended]
                slot = self._slots.setdefault(loop, _Slot())
        if slot.value is None:
            async with slot.lock:
                if slot.value is None:
                    stack = contextlib.AsyncExitStack()
                    value = await self._make(stack)
                    slot.closer = _closed_at_shutdown(stack)
                    await anext(slot.closer)  # registers the generator with this loop
                    slot.value = value
        return slot.value

    async def aclose(self) -> None:
        """Close the running loop's client (e.g. at ASGI lifespan shutdown)."""
        if not _inside_a_loop():
            return  # another event loop (trio): clients exist only on asyncio loops
        with self._lock:
            slot = self._slots.pop(asyncio.get_running_loop(), None)
        if slot is not None and slot.closer is not None:
            await slot.closer.aclose()

    def close(self) -> None:
        """Close every loop's client, from sync code; each on its own loop."""
        with self._lock:
            slots, self._slots = self._slots, {}
        for loop, slot in slots.items():
            if slot.closer is None or loop.is_closed():
                continue
            if loop.is_running():  # in another thread, or around this very call
                with contextlib.suppress(RuntimeError):  # that loop closed meanwhile
                    asyncio.run_coroutine_threadsafe(slot.closer.aclose(), loop)
            elif not _inside_a_loop():
                loop.run_until_complete(slot.closer.aclose())
            # else: a loop cannot be run from inside another; its shutdown closes the client.


async def _closed_at_shutdown(stack: contextlib.AsyncExitStack) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await stack.aclose()


def _inside_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
