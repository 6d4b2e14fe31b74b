"""Why the server closes a socket with 4403, in words clients can act on.

graphql-transport-ws has one code for "not allowed" (4403 Forbidden); what a client should do
next depends on why. The reason of the close frame says it, and is part of the API: clients
(clients/js among them) compare it exactly, so each reason is written here once and used
everywhere a socket is closed with 4403.

Retry: TOKEN_EXPIRED (fetch a fresh token, reconnect at once, resubscribe with your cursors) and
ACCESS_CHANGED (reconnect and resubscribe: you are authorized anew). Final: INVALID_TOKEN and
TOO_MANY_SOCKETS (the same token or address would be refused again), and
AUTHENTICATION_REQUIRED (a socket without a token ran nothing for a while: connect again when
there is something to run)."""

from __future__ import annotations

from enum import StrEnum

FORBIDDEN = 4403


class Reason(StrEnum):
    TOKEN_EXPIRED = "Token expired"  # at connection_init, or at the token's exp while open
    INVALID_TOKEN = "Invalid token"  # bad signature, malformed, unknown key, wrong issuer/audience...
    TOO_MANY_SOCKETS = "Too many sockets"  # per user; without a token, per client address
    ACCESS_CHANGED = "Access changed"  # the user's role changed (subscriptions/access.py)
    AUTHENTICATION_REQUIRED = "Authentication required"  # an idle socket without a token


# The reasons a client should reconnect after (see the module's docstring).
RETRYABLE = frozenset({Reason.TOKEN_EXPIRED, Reason.ACCESS_CHANGED})


class Refused(Exception):
    """Raised by the app's on_ws_connect: the handler closes the socket with 4403 and `reason`
    instead of acknowledging it (Strawberry's ConnectionRejectionError would say "Forbidden")."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(reason.value)
        self.reason = reason
