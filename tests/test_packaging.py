"""Imports stay cheap and offline, and each store's extra pulls only its own SDK."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDKS = {
    "dynamodb": {"boto3", "aiobotocore"},
    "firestore": {"google"},
    "mongodb": {"pymongo"},
    "redis": {"redis"},
}


def test_each_store_extra_pulls_no_other_store_sdk() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for store, own in SDKS.items():
        names = {
            req.split(">")[0].split("=")[0].split("[")[0].split("-")[0] for req in extras[store]
        }
        others = set().union(*(sdk for name, sdk in SDKS.items() if name != store))
        assert names & own, store
        assert not names & others, f"{store} extra pulls {names & others}"


def test_importing_the_package_and_engine_loads_no_sdk_and_reads_no_settings() -> None:
    code = (
        "import sys, cloudsessions, cloudsessions.django, cloudsessions.stores.sqlite\n"
        "from cloudsessions import open_store\n"
        "store = open_store('sqlite:///never-created.db')\n"
        "from cloudsessions.cache import CachedStore\n"
        "CachedStore(store, {'max_staleness': 1})  # a local tier alone needs no redis-py\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "bad = loaded & {'boto3', 'botocore', 'google', 'pymongo', 'redis', 'flask', 'starlette'}\n"
        "assert not bad, bad\n"
        "assert 'django.contrib.sessions.backends.base' not in sys.modules\n"
        "import os; assert not os.path.exists('never-created.db')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT / "tests"
    )
    assert done.returncode == 0, done.stderr


def test_a_redis_cache_without_redis_py_says_which_extra_to_install() -> None:
    code = (
        "import sys; sys.modules['redis'] = None  # as if the redis extra were not installed\n"
        "from cloudsessions import ConfigurationError, open_store\n"
        "from cloudsessions.cache import CachedStore\n"
        "try:\n"
        "    CachedStore(open_store('sqlite:///x.db'), 'redis://cache:6379/0')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "pip install 'cloudsessions[redis]'" in done.stdout
