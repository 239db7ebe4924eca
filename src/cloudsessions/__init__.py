"""Server-side sessions for Django, Flask and ASGI in DynamoDB, Firestore, MongoDB or SQLite."""

from .errors import (
    CloudSessionsError,
    ConfigurationError,
    SessionExists,
    SessionGone,
    SessionTooLarge,
    SessionValueError,
    StoreUnavailable,
)
from .keys import is_valid_key, new_key, record_id
from .record import CheckResult, SessionInfo, SessionRecord
from .store import Store
from .urls import DEFAULT_STORE_URL, StoreURL, open_store, shared_store

__all__ = [
    "DEFAULT_STORE_URL",
    "CheckResult",
    "CloudSessionsError",
    "ConfigurationError",
    "SessionExists",
    "SessionGone",
    "SessionInfo",
    "SessionRecord",
    "SessionTooLarge",
    "SessionValueError",
    "Store",
    "StoreURL",
    "StoreUnavailable",
    "is_valid_key",
    "new_key",
    "open_store",
    "record_id",
    "shared_store",
]
__version__ = "0.1.0"
