"""The MongoDB store: one document per session, in one collection.

- store: the MongoDBStore class, its clients and errors, and the contract's operations,
  each one command.
- requests: the documents and commands those operations send, and how answers decode.
- options: the store URL, our options (MongoDBOptions) and PyMongo's.
- admin: provisioning (the TTL and user indexes) and checks, never run on a request.
"""

from .options import CLIENT_DEFAULTS, MongoDBOptions
from .store import MongoDBStore

__all__ = ["CLIENT_DEFAULTS", "MongoDBOptions", "MongoDBStore"]
