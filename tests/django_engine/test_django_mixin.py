"""Django's own SessionTestsMixin, run against the cloudsessions engine on every store."""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.test import SimpleTestCase, override_settings
from sessions_tests.tests import SessionTestsMixin

from cloudsessions.django.engine import SessionStore
from cloudsessions.registry import close_shared_stores
from tests import stores


class _OnStore(SessionTestsMixin, SimpleTestCase):
    backend = SessionStore
    store_name = ""

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        folder = Path(cls.enterClassContext(tempfile.TemporaryDirectory()))
        url = stores.store_url(cls.store_name, folder)
        setting = {"STORE": url, "CACHE": stores.cache_setting(cls.store_name)}
        cls.enterClassContext(override_settings(CLOUDSESSIONS=setting))
        cls.addClassCleanup(close_shared_stores)


for _name in stores.STORE_NAMES + stores.CACHED_NAMES:
    _cls = type(f"TestDjangoMixinOn{_name.title()}", (_OnStore,), {"store_name": _name})
    globals()[_cls.__name__] = _cls
del _OnStore, _cls
