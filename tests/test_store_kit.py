"""The store-writer's kit (cloudsessions.store): options, client holders, error kinds."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from cloudsessions import (
    ConfigurationError,
    DeadlineExceeded,
    SessionRecord,
    SessionTooLarge,
    StoreUnavailable,
    new_session_id,
)
from cloudsessions.store import (
    ErrorKind,
    PerLoop,
    PerProcess,
    PerThread,
    StoreOptions,
    parse_options,
    translated,
)
from cloudsessions.stores.sqlite import SQLiteOptions, SQLiteStore
from cloudsessions.testing import at_once

# ----------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExampleOptions(StoreOptions):
    name: str = "sessions"
    timeout: float = 5.0
    attempts: int = 3
    strict: bool = True
    region: str | None = None
    client: Any = None


def test_options_from_url_strings_are_converted_by_their_type() -> None:
    parsed = parse_options(
        ExampleOptions,
        "example",
        {"name": "web", "timeout": "2.5", "attempts": "7", "strict": "off", "region": ""},
    )
    assert parsed == ExampleOptions(name="web", timeout=2.5, attempts=7, strict=False)
    assert parse_options(ExampleOptions, "example", {}) == ExampleOptions()
    assert (
        parse_options(ExampleOptions, "example", {"max_record_bytes": "100"}).max_record_bytes
        == 100
    )


def test_typed_values_and_handed_over_objects_pass_as_given() -> None:
    client = object()
    parsed = parse_options(ExampleOptions, "example", {"strict": True, "client": client})
    assert parsed.strict is True and parsed.client is client


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"nmae": "x"}, "unknown option(s) for the example store: nmae; known: attempts,"),
        ({"timeout": "soon"}, "option 'timeout' of the example store must be a number, got 'soon'"),
        ({"attempts": "-1"}, "'attempts' of the example store must be an integer >= 0"),
        ({"attempts": "1.5"}, "'attempts' of the example store must be an integer"),
        ({"attempts": True}, "'attempts' of the example store must be an integer"),
        ({"strict": "maybe"}, "'strict' of the example store must be true or false"),
    ],
)
def test_bad_options_name_what_to_fix(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        parse_options(ExampleOptions, "example", values)
    assert message in str(raised.value)


# ------------------------------------------------------------------ client holders


class Made:
    """A stand-in client that knows where it was made and whether it was closed."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.thread = threading.get_ident()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_one_client_per_process_made_once_by_racing_threads() -> None:
    made: list[Made] = []

    def make() -> Made:
        made.append(Made())
        return made[-1]

    holder = PerProcess(make, Made.close)
    assert holder.peek() is None, "nothing is made before first use"
    clients = at_once(8, lambda _: holder.get())
    assert len(made) == 1 and all(c is made[0] for c in clients)
    holder.close()
    assert made[0].closed and holder.peek() is None
    assert holder.get() is not made[0], "used again after close, it makes a new one"


# Run in a fresh, single-threaded interpreter: forking this test process, which runs server
# threads, could deadlock the child.
FORK_CHECK = """
import os
import subprocess
import sys
from cloudsessions.store import PerProcess

holder = PerProcess(object)
parent = holder.get()
pid = os.fork()
if pid == 0:
    os._exit(0 if holder.get() is not parent and holder.get() is holder.get() else 1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0, "the child reused the parent's client"
assert holder.get() is parent, "the parent keeps its own"
"""


def test_a_forked_child_makes_its_own_client() -> None:
    done = subprocess.run([sys.executable, "-c", FORK_CHECK], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_one_connection_per_thread() -> None:
    holder = PerThread(Made, Made.close)
    mine = holder.get()
    theirs = at_once(3, lambda _: holder.get())
    assert holder.get() is mine
    assert len({id(c) for c in theirs} | {id(mine)}) == 4
    assert {c.thread for c in theirs} != {mine.thread}
    holder.close()
    assert mine.closed and not any(c.closed for c in theirs), "close() is this thread's"


class AsyncMade:
    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.closed_on: asyncio.AbstractEventLoop | None = None

    async def aclose(self) -> None:
        self.closed_on = asyncio.get_running_loop()


async def _make_async(stack: contextlib.AsyncExitStack) -> AsyncMade:
    client = AsyncMade()
    stack.push_async_callback(client.aclose)
    return client


def test_one_async_client_per_loop_closed_when_the_loop_shuts_down() -> None:
    holder = PerLoop(_make_async)

    async def twice() -> tuple[AsyncMade, AsyncMade]:
        return await holder.get(), await holder.get()

    first, again = asyncio.run(twice())
    second, _ = asyncio.run(twice())
    assert first is again and first is not second
    assert first.closed_on is first.loop and second.closed_on is second.loop


def test_aclose_closes_the_running_loops_client_and_a_new_one_is_made_after() -> None:
    holder = PerLoop(_make_async)

    async def work() -> tuple[AsyncMade, AsyncMade]:
        client = await holder.get()
        await holder.aclose()
        assert client.closed_on is client.loop
        return client, await holder.get()

    closed, fresh = asyncio.run(work())
    assert fresh is not closed


def test_close_from_sync_code_closes_idle_and_running_loops_clients_on_their_loop() -> None:
    holder = PerLoop(_make_async)
    idle = asyncio.new_event_loop()
    idle_client = idle.run_until_complete(holder.get())
    running = asyncio.new_event_loop()
    ready, done = threading.Event(), threading.Event()
    clients: list[AsyncMade] = []

    async def serve() -> None:
        clients.append(await holder.get())
        ready.set()
        while clients[0].closed_on is None:
            await asyncio.sleep(0.01)
        done.set()

    thread = threading.Thread(target=running.run_until_complete, args=(serve(),))
    thread.start()
    assert ready.wait(10)
    holder.close()
    assert idle_client.closed_on is idle
    assert done.wait(10), "the running loop closed its own client"
    thread.join(10)
    assert clients[0].closed_on is running
    idle.close()
    running.close()


# -------------------------------------------------------------------- error kinds


class Fake:
    """What translated() needs of a store."""

    kind = "fake"
    max_record_bytes = 1000
    table = "web"

    def describe(self) -> str:
        return "fake table web"


class SDKError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(f"the SDK says {code}")
        self.code = code


KINDS = (
    ErrorKind(
        SDKError, ConfigurationError, "run init for {store.table}", lambda e: e.code == "missing"
    ),
    ErrorKind(SDKError, SessionTooLarge, when=lambda e: e.code == "too big"),
    ErrorKind((SDKError, TimeoutError), StoreUnavailable),
)


@pytest.mark.parametrize(
    ("raised", "ours", "message"),
    [
        (
            SDKError("missing"),
            ConfigurationError,
            "fake table web: could not save a session: the SDK says missing; run init for web",
        ),
        (
            SDKError("busy"),
            StoreUnavailable,
            "fake table web: could not save a session: the SDK says busy",
        ),
        (
            TimeoutError(),
            StoreUnavailable,
            "fake table web: could not save a session: TimeoutError",
        ),
        (SDKError("too big"), SessionTooLarge, "over the 1000-byte limit of the fake store"),
    ],
)
def test_the_first_matching_kind_decides_and_keeps_the_cause(
    raised: Exception, ours: type[Exception], message: str
) -> None:
    with pytest.raises(ours) as caught, translated(KINDS, Fake(), "save a session"):
        raise raised
    assert str(caught.value).startswith(message) or message in str(caught.value)
    assert caught.value.__cause__ is raised


def test_our_own_errors_and_unknown_ones_pass_unchanged() -> None:
    gone = StoreUnavailable("already ours")
    with pytest.raises(StoreUnavailable) as caught, translated(KINDS, Fake(), "load"):
        raise gone
    assert caught.value is gone
    with pytest.raises(KeyError), translated(KINDS, Fake(), "load"):
        raise KeyError("a bug of ours")


# --------------------------------------------------------- the hooks' signatures


def test_a_delete_for_user_hook_written_before_progress_still_serves_calls_without_it(
    tmp_path: Path,
) -> None:
    # Another package's store, its hook written to the signature before `progress`.
    class OldStore(SQLiteStore):
        def _delete_for_user(self, user_id: str, keep_rid: str | None) -> list[str]:  # type: ignore[override]
            return super()._delete_for_user(user_id, keep_rid)

    store = OldStore(tmp_path / "old.db", SQLiteOptions())
    sessions = [new_session_id() for _ in range(3)]
    for session_id in sessions:
        store.create(session_id, SessionRecord({}, time.time() + 60, "7"))
    assert store.delete_for_user("7", keep=sessions[0]) == 2
    assert asyncio.run(store.adelete_for_user("7")) == 1


# ------------------------------------------------------------ the request deadline


def test_an_async_call_on_a_sync_client_stops_waiting_at_the_deadline(tmp_path: Path) -> None:
    """A store without a native async client runs its sync call in a worker thread. A sync
    client can overrun the deadline (PyMongo waits for its monitor in steps of 0.5 s): the
    request stops waiting at the deadline, as it does for a native client, and the thread
    finishes the call on its own."""
    released, finished = threading.Event(), threading.Event()

    class Overrunning(SQLiteStore):
        def _load(self, rid: str) -> Any:
            released.wait(10)  # a sync SDK call that outlives the request's deadline
            try:
                return super()._load(rid)
            finally:
                finished.set()

    store = Overrunning(tmp_path / "late.db", SQLiteOptions(deadline=0.2))
    assert not store.native_async()
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match="within the request deadline"):
        asyncio.run(store.aload(new_session_id()))
    took = time.monotonic() - started
    assert took < 1.0, f"{took:.3f} s: waited for the thread past the deadline"
    assert not finished.is_set(), "the call was still running when the request gave up"
    released.set()
    assert finished.wait(10), "the abandoned thread did not finish the call"
