"""graphql-transport-ws as PROTOCOL.md of graphql-ws specifies it.

Strawberry 0.341.2's handler is kept for everything it gets right; each method here mends one
deviation listed in STACK-NOTES.md: malformed frames close with 4400, a null connection_init
payload is accepted, and a document that fails to parse or names an unknown operation gets an
`error` message for that operation instead of closing the socket."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, ClassVar

from graphql import GraphQLError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

from pulseboard import telemetry
from pulseboard.persisted import NOT_FOUND, NOT_FOUND_CODE, PersistedQueryInvalid, PersistedQueryNotFound

MAX_REASON_BYTES = 123  # close reasons must fit a control frame


def _reason(text: str) -> str:
    # Lone surrogates (valid in JSON, not in UTF-8) are replaced rather than crash the close.
    return text.encode(errors="replace")[:MAX_REASON_BYTES].decode(errors="ignore")


def _object_or_null(value: Any) -> bool:
    return value is None or isinstance(value, dict)


def _subscribe_problem(message: dict[str, Any]) -> str | None:
    """Why a subscribe message is malformed, or None."""
    if not isinstance(message.get("id"), str) or not message["id"]:
        return "Subscribe id must be a non-empty string"
    payload = message.get("payload")
    if not isinstance(payload, dict):
        return "Subscribe payload must be an object"
    query = payload.get("query")
    persisted = isinstance(payload.get("extensions"), dict) and "persistedQuery" in payload["extensions"]
    if not (isinstance(query, str) or (query is None and persisted)):
        return "Subscribe query must be a string"
    if not _object_or_null(payload.get("variables")):
        return "Subscribe variables must be an object or null"
    if not (payload.get("operationName") is None or isinstance(payload["operationName"], str)):
        return "Subscribe operationName must be a string or null"
    if not _object_or_null(payload.get("extensions")):
        return "Subscribe extensions must be an object or null"
    return None


class ProtocolHandler(BaseGraphQLTransportWSHandler[Any, None]):
    # The sockets this worker serves, so a graceful shutdown can close them with 1001.
    open: ClassVar[set[ProtocolHandler]] = set()
    idle_task: asyncio.Task[None] | None = None

    async def handle(self) -> None:
        ProtocolHandler.open.add(self)
        telemetry.CONNECTIONS.inc()
        try:
            await super().handle()
        finally:
            if self.idle_task is not None:
                self.idle_task.cancel()
            telemetry.CONNECTIONS.dec()
            ProtocolHandler.open.discard(self)
            await self.view.on_ws_disconnect(self.context)  # type: ignore[attr-defined]

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code=code, reason=_reason(reason))

    async def handle_connection_init(self, message: Any) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self.context.anonymous_address is not None:
            idle = self.view.settings.anonymous_socket_idle_seconds  # type: ignore[attr-defined]
            self.idle_task = asyncio.create_task(self._close_when_idle(idle))

    async def _close_when_idle(self, seconds: float) -> None:
        """A socket without a token that runs no operation for `seconds` is closed (4403)."""
        while True:
            await asyncio.sleep(seconds)
            if not self.operations:
                with contextlib.suppress(Exception):  # closed already
                    await self.close(4403, "Authentication required")
                return

    async def handle_message(self, message: Any) -> None:  # type: ignore[override]
        problem = self._problem(message)
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        if message["type"] == "connection_init" and message.get("payload") is None:
            message = {**message, "payload": {}}  # PROTOCOL.md allows a null payload
        await super().handle_message(message)

    @staticmethod
    def _problem(message: Any) -> str | None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            return "Message must be an object with a string type"
        kind = message["type"]
        if kind in ("connection_init", "ping", "pong") and not _object_or_null(message.get("payload")):
            return f"{kind} payload must be an object or null"
        if kind == "subscribe":
            return _subscribe_problem(message)
        if kind == "complete" and (not isinstance(message.get("id"), str) or not message["id"]):
            return "Complete id must be a non-empty string"
        return None

    async def handle_subscribe(self, message: Any) -> None:
        if self.connection_acknowledged and message["id"] in self.operations:
            await self.websocket.close(4409, _reason(f"Subscriber for {message['id']} already exists"))
            return
        limit = self.max_subscriptions_per_connection
        if self.connection_acknowledged and limit is not None and len(self.operations) >= limit:
            await self._refuse(message["id"], f"At most {limit} operations per connection.", "BAD_REQUEST")
            return
        payload = message["payload"]
        if self.connection_acknowledged and "persistedQuery" in (payload.get("extensions") or {}):
            try:
                query = self.view.persist(  # type: ignore[attr-defined]
                    payload.get("query"),
                    payload["extensions"],
                    payload.get("operationName"),
                    payload.get("variables"),
                )
            except (PersistedQueryNotFound, PersistedQueryInvalid) as error:
                text = str(error) or NOT_FOUND
                code = NOT_FOUND_CODE if isinstance(error, PersistedQueryNotFound) else "BAD_REQUEST"
                await self.send_message(
                    {
                        "id": message["id"],
                        "type": "error",
                        "payload": [{"message": text, "extensions": {"code": code}}],
                    }
                )
                return
            message = {**message, "payload": {**payload, "query": query}}
        await super().handle_subscribe(message)

    async def _refuse(self, id: str, text: str, code: str) -> None:
        """An `error` message for one operation; the socket stays open."""
        error = {"message": text, "extensions": {"code": code}}
        await self.send_message({"id": id, "type": "error", "payload": [error]})  # type: ignore[typeddict-item,arg-type,misc]

    async def handle_invalid_message(self, error_message: str) -> None:
        await self.websocket.close(code=4400, reason=_reason(error_message))

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        # Parse errors and unknown operation names are errors of that operation only.
        return None
