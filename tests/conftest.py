from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import stores


def pytest_configure(config: pytest.Config) -> None:
    try:
        import django
    except ImportError:
        return
    from tests.django_suite import django_tests_path

    sys.path.insert(0, str(django_tests_path()))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.django_settings")
    django.setup()
    from django.test.utils import setup_test_environment

    setup_test_environment()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stores.stop_services()


@pytest.fixture(params=stores.STORE_NAMES)
def store_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def instrumented(store_name: str, tmp_path: Path) -> Iterator[stores.Instrumented]:
    """A fresh, empty store of this kind and a counter of its round trips."""
    with stores.fresh(store_name, tmp_path) as inst:
        yield inst


@pytest.fixture
def on_store(instrumented: stores.Instrumented) -> stores.Instrumented:
    """A fresh store of each kind, provisioned as an application's store is."""
    instrumented.store.provision()
    return instrumented
