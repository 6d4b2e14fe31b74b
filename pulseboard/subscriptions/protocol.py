"""graphql-transport-ws as PROTOCOL.md of graphql-ws specifies it.

Strawberry 0.341.2's handler is kept for everything it gets right; each method here mends one
way that release departs from the protocol: malformed frames close with 4400, a null
connection_init payload is accepted, and a document that fails to parse or names an unknown
operation gets an `error` message for that operation instead of closing the socket. A refused
connection_init closes with 4403 and a reason a client can act on (closes.Reason), not
"Forbidden". Subscriptions
go to the delivery engine (`run_operation`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, ClassVar

from graphql import GraphQLError, located_error
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)

from pulseboard import telemetry
from pulseboard.errors import AppError
from pulseboard.persisted import NOT_FOUND, NOT_FOUND_CODE, PersistedQueryInvalid, PersistedQueryNotFound
from pulseboard.resolvers import idempotency
from pulseboard.subscriptions import closes
from pulseboard.subscriptions.cohorts import Retry, Unavailable
from pulseboard.subscriptions.engine import TRY_AGAIN
from pulseboard.subscriptions.outbox import Outbox

logger = logging.getLogger("pulseboard.protocol")

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
    _outbox: Outbox | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.keys: dict[str, str] = {}  # idempotency keys of operations not yet started

    @property
    def outbox(self) -> Outbox:
        """Frames of the subscriptions the delivery engine serves, written by one task."""
        if self._outbox is None:
            size = self.view.settings.outbox_frames  # type: ignore[attr-defined]
            self._outbox = Outbox(self.websocket.ws.send_text, size=size)  # type: ignore[attr-defined]
        return self._outbox

    async def handle(self) -> None:
        ProtocolHandler.open.add(self)
        telemetry.CONNECTIONS.inc()
        try:
            await super().handle()
        finally:
            if self.idle_task is not None:
                self.idle_task.cancel()
            if self._outbox is not None:
                await self._outbox.aclose()
            telemetry.CONNECTIONS.dec()
            ProtocolHandler.open.discard(self)
            await self.view.on_ws_disconnect(self.context)  # type: ignore[attr-defined]

    async def close(self, code: int, reason: str) -> None:
        await self.websocket.close(code=code, reason=_reason(reason))

    async def handle_connection_init(self, message: Any) -> None:
        try:
            await super().handle_connection_init(message)
        except closes.Refused as refused:  # raised by the app's on_ws_connect
            with contextlib.suppress(Exception):  # closed already
                await self.close(closes.FORBIDDEN, refused.reason)
            return
        if self.connection_acknowledged and self.context.anonymous_address is not None:
            idle = self.view.settings.anonymous_socket_idle_seconds  # type: ignore[attr-defined]
            self.idle_task = asyncio.create_task(self._close_when_idle(idle))

    async def _close_when_idle(self, seconds: float) -> None:
        """A socket without a token that runs no operation for `seconds` is closed (4403)."""
        while True:
            await asyncio.sleep(seconds)
            if not self.operations:
                with contextlib.suppress(Exception):  # closed already
                    await self.close(closes.FORBIDDEN, closes.Reason.AUTHENTICATION_REQUIRED)
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
        if self.connection_acknowledged and "idempotencyKey" in (payload.get("extensions") or {}):
            try:  # the operation's task takes it up (run_operation)
                self.keys[message["id"]] = idempotency.parse_key(payload["extensions"]["idempotencyKey"])
            except AppError as error:
                await self._refuse(message["id"], error.message, error.code.value)
                return
        await super().handle_subscribe(message)

    async def run_operation(self, operation: Operation[Any, None]) -> None:
        """Subscriptions go to the delivery engine; queries and mutations over the socket, and
        anything the engine does not serve, run the ordinary way."""
        planner, engine = self.view.planner, self.view.engine  # type: ignore[attr-defined]
        key = self.keys.pop(operation.id, None)

        async def planned() -> Any:  # authorizing reads the database: retried like delivery
            return await planner.plan(
                self.context, operation.query, operation.variables, operation.operation_name
            )

        try:
            plan = await Retry(engine.retry_seconds, engine.cohorts.stats, "subscribing").call(planned)
        except Unavailable:
            await self._try_again()
            return
        if plan is None:
            with idempotency.carrying(key):  # a mutation with a key runs once per key
                await super().run_operation(operation)
            return
        started, codes = time.perf_counter(), []
        active = telemetry.SUBSCRIPTIONS.labels(getattr(plan, "field", "invalid"))
        try:
            if isinstance(plan, list):
                errors = [self.view.schema.classified(e) for e in plan]  # type: ignore[attr-defined]
                codes = [e.extensions["code"] for e in errors]
                await self._final(
                    operation, {"id": operation.id, "type": "error", "payload": [e.formatted for e in errors]}
                )
                return
            active.inc()
            try:
                ended = await engine.serve(plan, id=operation.id, outbox=self.outbox)
            finally:
                active.dec()
            if ended.error is not None:
                located = located_error(ended.error, None, [getattr(plan, "field", "")])
                error = self.view.schema.classified(located)  # type: ignore[attr-defined]
                codes = [error.extensions["code"]]
                frame = {
                    "id": operation.id,
                    "type": "next",
                    "payload": {"data": None, "errors": [error.formatted]},
                }
                await self.outbox.put(json.dumps(frame))
                await self._final(operation, {"id": operation.id, "type": "complete"})
            elif ended.unavailable is not None:
                codes = ["SERVICE_UNAVAILABLE"]
                await self._try_again()
        finally:
            telemetry.observe_operation(
                kind="subscription",
                name=operation.operation_name,
                field=getattr(plan, "field", "invalid"),
                seconds=time.perf_counter() - started,
                codes=codes,
                user_id=self.context.viewer.id if self.context.viewer is not None else None,
            )

    async def _try_again(self) -> None:
        """Closes the socket with 1013: the client reconnects and resumes with its cursors."""
        with contextlib.suppress(Exception):  # closed already
            await self.close(TRY_AGAIN, "Try again later: the service could not deliver")

    async def _final(self, operation: Operation[Any, None], message: dict[str, Any]) -> None:
        """The last message of an operation the engine served, after its frames."""
        if operation.completed:
            return
        operation.completed = True
        self.operations.pop(operation.id, None)
        await self.outbox.put(json.dumps(message))

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
