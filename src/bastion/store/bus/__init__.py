"""The bus: what one part of Bastion must tell the others (and, later, other instances) as it happens.

Today it carries one kind of event, a grant revoked, so that every cache of verified tokens forgets at once. The
local bus delivers within this process; backends that reach other instances implement the same interface.
"""

from .base import GRANT_REVOKED, Bus, Handler
from .local import LocalBus

__all__ = ["GRANT_REVOKED", "Bus", "Handler", "LocalBus"]
