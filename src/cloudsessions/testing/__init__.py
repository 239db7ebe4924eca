"""The Store contract suite, for any store: ours run it, and so can yours.

In a test module of your store (pytest and hypothesis installed, e.g.
``pip install 'cloudsessions[testing]'``)::

    import pytest
    from cloudsessions.testing import Instrumented, RoundTrips, StoreContract

    class TestMyStore(StoreContract):
        @pytest.fixture
        def instrumented(self):
            trips = RoundTrips()
            store = ...  # a fresh, empty store whose SDK calls append to trips.reads/writes
            yield Instrumented(store, trips)
            store.drop()
            store.close()

Every test asserts exact round trips through `trips`, so count what your SDK sends (an
event hook, a command listener, a trace callback): see docs/writing-a-store.md.
"""

from .counters import CounterContract
from .harness import HOUR, Instrumented, RoundTrips, at_once, event_loops, expired, live, run_async
from .records import RecordContract
from .signed_in import SignedInContract


class StoreContract(RecordContract, CounterContract, SignedInContract):
    """Every behaviour the Store contract promises, asserted against `instrumented`."""


__all__ = [
    "HOUR",
    "CounterContract",
    "Instrumented",
    "RecordContract",
    "RoundTrips",
    "SignedInContract",
    "StoreContract",
    "at_once",
    "event_loops",
    "expired",
    "live",
    "run_async",
]
