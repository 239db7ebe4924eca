"""The Store contract (cloudsessions.testing), run against every store in tests/backends.

Round trips are counted at the SDK level by each store's instrumentation; the `instrumented`
fixture (conftest.py) gives a fresh store of each kind.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudsessions.testing import Instrumented, StoreContract
from tests import stores


class TestContract(StoreContract):
    pass


class TestContractWithCacheTiers(StoreContract):
    """The same contract through each tier of cloudsessions.cache in front of a store."""

    @pytest.fixture(params=stores.CACHED_NAMES)
    def instrumented(
        self, request: pytest.FixtureRequest, tmp_path: Path
    ) -> Iterator[Instrumented]:
        with stores.fresh(request.param, tmp_path) as inst:
            yield inst
