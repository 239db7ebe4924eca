"""Settings for the Django tests: no database is used by our engine (SimpleTestCase
forbids queries), but Django's test module imports the db-backed session models."""

SECRET_KEY = "cloudsessions-tests-not-secret"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "sessions_tests",
    "cloudsessions.django",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

SESSION_ENGINE = "cloudsessions.django"
MIDDLEWARE = ["cloudsessions.django.middleware.SessionMiddleware"]
ROOT_URLCONF = "tests.front_doors"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
