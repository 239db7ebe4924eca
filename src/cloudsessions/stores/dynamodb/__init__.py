"""Amazon DynamoDB: one item per session, changed one key at a time with UpdateItem.

Item layout (every name configurable, so an existing table can be used):

    id          S   the record id (a hash of the session id), partition key
    [sort key]  S   a fixed value, for tables that have a sort key
    data        M   session field -> JSON text (S), or a counter (N, see Store.increment)
    key_order   M   session field -> ordinal (N): DynamoDB maps are unordered, and a
                    session's keys come back in the order they were first set
    ttl         N   expiry, epoch seconds: the table's TTL attribute
    user_id     S   owner, absent for anonymous sessions; key of a sparse GSI

A save is one conditional UpdateItem: SET data.#field = :json for each changed key and
REMOVE data.#field for each removed one, so two requests that change different keys of
one session both keep their change. Its condition (the item exists and has not expired)
is what turns a save of a logged-out session into SessionGone instead of resurrecting it.
DynamoDB's TTL deletes items up to days late, so expiry is also checked on every read
(the base class does it) and in that condition.

store.py holds the clients, the errors and the operations; requests.py what each call
sends and how an item is read (no I/O); admin.py provisioning, checks and purge, which
never run on a request; options.py the options.
"""

from .admin import ADMIN_ACTIONS, SESSION_ACTIONS
from .options import DynamoDBOptions
from .store import DynamoDBStore

__all__ = ["ADMIN_ACTIONS", "SESSION_ACTIONS", "DynamoDBOptions", "DynamoDBStore"]
