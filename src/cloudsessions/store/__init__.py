"""What a store is made of: the contract and the kit for writing one (docs/writing-a-store.md).

A store subclasses `Store`, implements its underscore methods on record ids and
`EncodedRecord`s, parses its options with `parse_options` into a `StoreOptions` subclass,
keeps its SDK clients in `PerProcess`/`PerThread`/`PerLoop`, and lists its SDK errors as
`ErrorKind`s. It registers its URL scheme with an entry point in the
"cloudsessions.stores" group, and runs cloudsessions.testing's contract suite on itself.
"""

from ..metadata import decode as decode_meta
from ..record import Changes, CheckResult, EncodedRecord, Metadata, SessionInfo, SessionRecord
from .clients import PerLoop, PerProcess, PerThread
from .contract import RECORD_OVERHEAD, Progress, Store, in_thread, logger
from .options import StoreOptions, parse_options
from .translate import ErrorKind, translated
from .url import StoreURL

__all__ = [
    "RECORD_OVERHEAD",
    "Changes",
    "CheckResult",
    "EncodedRecord",
    "ErrorKind",
    "Metadata",
    "PerLoop",
    "PerProcess",
    "PerThread",
    "Progress",
    "SessionInfo",
    "SessionRecord",
    "Store",
    "StoreOptions",
    "StoreURL",
    "decode_meta",
    "in_thread",
    "logger",
    "parse_options",
    "translated",
]
