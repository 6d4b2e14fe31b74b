"""What every resolver receives: settings, the viewer and the per-request loaders."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pulseboard.errors import AppError, unauthenticated
from pulseboard.models import User
from pulseboard.resolvers.loaders import Loaders
from pulseboard.settings import Settings


@dataclass
class Context:
    settings: Settings
    viewer: User | None = None
    auth_error: AppError | None = None
    loaders: Loaders = field(default_factory=Loaders)
    # The transport's own objects (Starlette request/response or websocket); opaque here.
    request: Any = None
    response: Any = None
    # The connection_init payload of a WebSocket (Strawberry sets it).
    connection_params: dict[str, Any] | None = None
    # When the viewer's token expires (a socket is closed then).
    expires_at: dt.datetime | None = None
    expiry: asyncio.TimerHandle | None = None
    # Whether this socket counts against the viewer's open connections.
    counted: bool = False
    # The client address an anonymous socket is counted under.
    anonymous_address: str | None = None

    def require_viewer(self) -> User:
        if self.viewer is None:
            raise self.auth_error or unauthenticated()
        return self.viewer
