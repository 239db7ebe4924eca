"""Server-side sessions for Django, Flask and ASGI in DynamoDB, Firestore, MongoDB, Redis, SQLite"""

from .errors import (
    CloudSessionsError,
    ConfigurationError,
    DeadlineExceeded,
    SessionExists,
    SessionGone,
    SessionTooLarge,
    SessionValueError,
    StoreUnavailable,
)
from .metadata import Client, MetadataSettings
from .record import CheckResult, Metadata, SessionInfo, SessionRecord
from .registry import DEFAULT_STORE_URL, open_store, shared_store
from .session_ids import is_valid_session_id, new_session_id, record_id
from .store import Store, StoreURL

__all__ = [
    "DEFAULT_STORE_URL",
    "CheckResult",
    "Client",
    "CloudSessionsError",
    "ConfigurationError",
    "DeadlineExceeded",
    "Metadata",
    "MetadataSettings",
    "SessionExists",
    "SessionGone",
    "SessionInfo",
    "SessionRecord",
    "SessionTooLarge",
    "SessionValueError",
    "Store",
    "StoreURL",
    "StoreUnavailable",
    "is_valid_session_id",
    "new_session_id",
    "open_store",
    "record_id",
    "shared_store",
]
__version__ = "0.1.0"
