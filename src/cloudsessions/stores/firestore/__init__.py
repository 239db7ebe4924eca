"""The Firestore store: one document per session in one collection (docs/stores/firestore.md).

store.py holds the store and the request path, documents.py the document layout and the
writes (a save is one write on a version this process saw, else two), admin.py what no
request runs, options.py the options.
"""

from .documents import MAX_DOCUMENT_BYTES
from .options import FirestoreOptions
from .store import CHANNEL_OPTIONS, FirestoreStore

__all__ = ["CHANNEL_OPTIONS", "MAX_DOCUMENT_BYTES", "FirestoreOptions", "FirestoreStore"]
