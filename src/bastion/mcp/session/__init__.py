"""Legacy (2025-06-18, 2025-11-25) sessions, shared by Streamable HTTP and stdio.

`Session` holds what `initialize` agreed and the requests in flight; `SessionTable` holds HTTP's open ones;
`legacy_session_method` and `session_notification` answer what only touches session state; `Cancellable`
lets a transport cancel a request on purpose. Nothing here knows which transport carries the session.
"""

from .cancel import Cancellable
from .methods import legacy_session_method, session_notification
from .state import Session
from .table import SessionTable

__all__ = ["Cancellable", "Session", "SessionTable", "legacy_session_method", "session_notification"]
