"""Signals for audit logs: a session created, rotated, revoked, or found expired on read.

They are blinker signals (Flask's own signal library), the same on every front door:

    from cloudsessions import signals

    @signals.session_revoked.connect
    def audit(store, *, user_id, reason, count, **extra):
        log.info("user %s: %d session(s) revoked (%s)", user_id, count, reason)

The sender is the Store. Every signal passes `user_id` (None for an anonymous session) and
`meta` (cloudsessions.Metadata, empty where not recorded); never a session id or a record
id, so a receiver can log everything it is given. `session_revoked` also passes `reason`:
"logout" (the session's own request ended it), "revoked" (revoke() of one session),
"others" (revoke_others(): all of a user's sessions but the current one) or "user"
(delete_for_user(): all of them), and `count`. A logout's `user_id` is None when the
request never read its session (Django's flush() before any read: nothing was loaded).

A receiver runs inside the request, after the store confirmed the write; an exception it
raises propagates (as with any blinker signal), so keep receivers small or hand off.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

session_created = _signals.signal("cloudsessions.session-created")
session_rotated = _signals.signal("cloudsessions.session-rotated")
session_revoked = _signals.signal("cloudsessions.session-revoked")
session_expired = _signals.signal("cloudsessions.session-expired")
