"""Legacy (2025-06-18, 2025-11-25) sessions, shared by Streamable HTTP and stdio.

`Session` holds what `initialize` agreed and the requests in flight; `SessionTable` holds HTTP's open ones;
`legacy_session_method` and `session_notification` answer what only touches session state; `Cancellable`
lets a transport cancel a request on purpose; `SharedSessions` is what many instances need to serve one session.
Nothing here knows which transport carries the session.
"""

from .cancel import Cancellable
from .methods import STATE_METHODS, SUBSCRIPTION_METHODS, legacy_session_method, session_notification
from .shared import SessionEvents, SessionsUnavailable, SharedSessions, StreamSink
from .state import Session
from .table import SessionTable

__all__ = [
    "STATE_METHODS",
    "SUBSCRIPTION_METHODS",
    "Cancellable",
    "Session",
    "SessionEvents",
    "SessionTable",
    "SessionsUnavailable",
    "SharedSessions",
    "StreamSink",
    "legacy_session_method",
    "session_notification",
]
