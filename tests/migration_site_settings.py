"""Django settings of the site tests/test_migration_browser.py switches to cloudsessions
(DJANGO_SETTINGS_MODULE=tests.migration_site_settings; what it serves is read from
$CLOUDSESSIONS_TEST_SITE, see tests/migration_sites.py).

Phase "old": Django's own SessionMiddleware on the engine the site had (db: the rows of a
file SQLite database; cache: Django's RedisCache on the test Redis). Phase "new":
cloudsessions with MIGRATE_FROM naming that engine, its settings still in place (the
read-through reads the old sessions through them).
"""

from tests.migration_sites import SECRET_KEY, site  # noqa: F401 - SECRET_KEY is a setting

_site = site()
_phase = _site.get("phase", "old")
OLD_ENGINE = {
    "db": "django.contrib.sessions.backends.db",
    "cache": "django.contrib.sessions.backends.cache",
}[_site.get("old", "db")]

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
USE_TZ = True
ROOT_URLCONF = "tests.migration_sites"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django.contrib.sessions"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _site.get("database", ":memory:"),
    }
}
# A sign-in checks one password: the default hasher's iterations would be most of a test.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
if "redis" in _site:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": _site["redis"] + "/0",
            "KEY_PREFIX": _site["prefix"],
        }
    }
_sessions = "django.contrib.sessions.middleware.SessionMiddleware"
SESSION_ENGINE = OLD_ENGINE
if _phase == "new":
    INSTALLED_APPS.append("cloudsessions.django")
    _sessions = "cloudsessions.django.middleware.SessionMiddleware"
    SESSION_ENGINE = "cloudsessions.django"
    CLOUDSESSIONS = {"STORE": _site["store"], "MIGRATE_FROM": OLD_ENGINE}
MIDDLEWARE = [
    _sessions,
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
