"""The Store contract (cloudsessions.testing), run against every store in tests/backends.

Round trips are counted at the SDK level by each store's instrumentation; the `instrumented`
fixture (conftest.py) gives a fresh store of each kind.
"""

from cloudsessions.testing import StoreContract


class TestContract(StoreContract):
    pass
