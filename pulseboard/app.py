"""The Starlette application: GraphQL over HTTP and graphql-transport-ws, with migrations,
Tortoise and the real-time hub in the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import hmac
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import asyncpg
import orjson
from broadcaster import Broadcast
from broadcaster._backends.base import BroadcastBackend
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType
from tortoise import Tortoise, connections
from tortoise.backends.base.config_generator import expand_db_url
from tortoise.contrib.starlette import RegisterTortoise
from tortoise.migrations.api import migrate

from pulseboard import graphiql, http, mail, reminders, telemetry
from pulseboard.auth import Verifier, expired
from pulseboard.errors import AppError, DatabaseFault, ErrorCode, database_fault
from pulseboard.limits import BodySizeLimit, ConnectionCounter, LoopLag, Shed
from pulseboard.persisted import PersistedQueries, PersistedQueryInvalid, PersistedQueryNotFound
from pulseboard.resolvers import idempotency
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.users import Viewers
from pulseboard.schema import build_schema
from pulseboard.schema.delivery import Planner
from pulseboard.schema.errors import log_fault
from pulseboard.schema.subscription import SOURCES
from pulseboard.settings import Settings, channel_namespace, from_env, tortoise_config
from pulseboard.subscriptions import access, closes, hub
from pulseboard.subscriptions.access import AccessWatch
from pulseboard.subscriptions.engine import TRY_AGAIN, Engine
from pulseboard.subscriptions.protocol import ProtocolHandler
from pulseboard.subscriptions.redis_backend import SupervisedRedisBackend

logger = logging.getLogger("pulseboard")


class GraphQLApp(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = ProtocolHandler

    def __init__(self, settings: Settings) -> None:
        self.connections = ConnectionCounter(limit=settings.connections_per_user)
        self.anonymous = ConnectionCounter(limit=settings.anonymous_connections_per_address)
        self.viewers = Viewers(ttl=settings.viewer_cache_seconds, role_source=settings.role_source)
        self.persisted = PersistedQueries(
            max_count=settings.persisted_queries_max_count,
            max_bytes=settings.persisted_queries_max_bytes,
            max_document_bytes=settings.persisted_query_max_bytes,
        )
        self.documents = (schema := build_schema(settings)).documents
        self.planner = Planner(
            schema._schema, self.documents, SOURCES, hub=_running_hub, mask=settings.production
        )
        self.engine: Engine | None = None  # made in the lifespan, with the hub
        super().__init__(
            schema,
            graphql_ide=None if settings.production else "graphiql",
            subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL],
            connection_init_wait_timeout=dt.timedelta(seconds=settings.connection_init_timeout_seconds),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            allowed_origins=settings.origins,  # the same list as CORS's (create_app)
        )
        self.settings = settings
        self.verifier = Verifier.from_settings(settings)

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        claims, error = await self.verifier.claims_from_header(request.headers.get("authorization"))
        try:
            viewer = await self.viewers.get(claims) if claims else None
        except Exception as failure:
            # Over HTTP __call__ answers 503; a socket's on_ws_connect looks again, or closes 1013.
            if not isinstance(request, WebSocket) or (fault := database_fault(failure)) is None:
                raise
            viewer, error = None, fault.error()
        return Context(
            settings=self.settings,
            viewer=viewer,
            auth_error=error,
            request=request,
            response=response,
            expires_at=claims.expires_at if claims else None,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            with idempotency.carrying(request.headers.get("idempotency-key")):
                response = http.finish(request, await self.run(request))
        except AppError as error:  # an unusable Idempotency-Key
            response = http.refusal(request, 400, error.message)
        except HTTPException as error:
            response = http.refusal(request, error.status_code, error.reason)
        except PersistedQueryNotFound:
            response = http.persisted_query_not_found(request)
        except PersistedQueryInvalid as error:
            response = http.refusal(request, 400, str(error))
        except Exception as error:
            # The database failed before execution (reading the viewer): 503 with Retry-After,
            # a response the connection survives, and one log line per interval.
            if (fault := database_fault(error)) is None:
                raise
            log_fault(fault, error, "request")
            response = http.unavailable(request, fault)
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:  # type: ignore[override]
        """GraphiQL from this package (no CDN), prefilled with a dev token in development."""
        return HTMLResponse(graphiql.page(graphiql.dev_headers(self.settings, request)))

    def encode_json(self, data: object) -> str:
        # orjson is several times quicker than json.dumps on a page of results. It refuses what
        # JSON cannot carry as UTF-8 (a lone surrogate a client sent, echoed in an error
        # message): json.dumps escapes that. Always text: a socket's frames must be text frames.
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            return super().encode_json(data)  # type: ignore[return-value]

    def decode_json(self, data: str | bytes) -> object:
        # Nesting deeper than the parser recurses, or integers longer than Python converts, are
        # malformed JSON for us too (4400 on a socket, 400 over HTTP), not a crash.
        try:
            return super().decode_json(data)
        except json.JSONDecodeError:
            raise
        except (RecursionError, ValueError) as error:
            raise json.JSONDecodeError(f"unusable JSON ({type(error).__name__})", "", 0) from None

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET that names a persisted query is an operation, not a browser asking for the page.
        return super().should_render_graphql_ide(request) and "extensions" not in request.query_params

    async def parse_http_body(self, request: Any) -> Any:
        if (body := await http.batch_body(request)) is not None:
            # A batch is refused whole (400) before any of it runs: too many operations, one that
            # is not an operation, or a persisted query unknown.
            batch = http.batch_requests(
                self.parse_json(body), max_size=self.settings.max_batch_size, headers=request.headers
            )
            for item in batch:
                item.query = self.persist(item.query, item.extensions, item.operation_name, item.variables)
            return batch
        data = await super().parse_http_body(request)
        if isinstance(data, GraphQLRequestData):
            data.query = self.persist(data.query, data.extensions, data.operation_name, data.variables)
        return data

    async def execute_operation(  # type: ignore[override]
        self,
        request: Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: None,
        sub_response: Any,
    ) -> Any:
        """A batch runs one operation after another, in order (Strawberry's would run them at
        once): a batch of mutations is applied in turn. Each is a request of its own to the
        limits (rate, cost) and the loaders; one the server refuses is that operation's error."""
        if not isinstance(request_data, list):
            return await super().execute_operation(
                request, request_adapter, request_data, context, root_value, sub_response
            )
        request.state.batch = http.Batch(size=len(request_data))
        results: list[ExecutionResult] = []
        for item in request_data:
            try:
                result = await self.execute_single(
                    request, request_adapter, sub_response, http.operation_context(context), root_value, item
                )
            except HTTPException as error:  # no query, an unknown operationName
                result = http.refused(error.reason)
            results.append(result)
        return results

    def persist(self, query: str | None, extensions: Any, operation_name: Any, variables: Any) -> str | None:
        """The document a request runs, registering a persisted query only once it would run."""

        def runs(document: str) -> bool:
            return not self.documents.errors(document, operation_name, variables)

        return self.persisted.resolve(query, extensions, acceptable=runs)

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:  # type: ignore[override]
        body = await super().process_result(request, result)
        return http.shape(request, result, body)  # type: ignore[arg-type,return-value]

    async def on_ws_connect(self, context: Context) -> UnsetType:  # type: ignore[override]
        """Authenticates a socket from connection_init's `authorization` (or the handshake's
        Authorization header). A bad token, or too many sockets, closes it with 4403 and a reason
        that tells a client whether to retry (closes.Reason: "Token expired" when only its exp
        has passed, else "Invalid token"; "Too many sockets"). The socket is closed with 4403
        "Token expired" again when the token expires."""
        header = (context.connection_params or {}).get("authorization")
        if header is None and _unavailable(context.auth_error):
            header = context.request.headers.get("authorization")  # the handshake's, read again
        if header is not None:
            if not isinstance(header, str):
                raise closes.Refused(closes.Reason.INVALID_TOKEN)
            claims, error = await self.verifier.claims_from_header(header)
            if error is not None or claims is None:
                expiry = error is not None and expired(error)
                raise closes.Refused(closes.Reason.TOKEN_EXPIRED if expiry else closes.Reason.INVALID_TOKEN)
            try:
                context.viewer, context.auth_error = await self.viewers.get(claims), None
            except Exception as failure:
                if (fault := database_fault(failure)) is None:
                    raise
                await _try_again_later(context, fault, failure)
            context.expires_at = claims.expires_at
        if context.viewer is None:
            # Anonymous: operations that need a viewer answer UNAUTHENTICATED; the socket is
            # counted per client address and closed once idle (ProtocolHandler).
            address = context.request.client.host if context.request.client else ""
            if not self.anonymous.acquire(address):
                raise closes.Refused(closes.Reason.TOO_MANY_SOCKETS)
            context.anonymous_address = address
            return UNSET
        if not self.connections.acquire(context.viewer.id):
            context.viewer = None
            raise closes.Refused(closes.Reason.TOO_MANY_SOCKETS)
        context.counted = True
        if context.expires_at is not None:
            delay = (context.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
            context.expiry = asyncio.get_running_loop().call_later(
                max(delay, 0), lambda: asyncio.ensure_future(_expire(context))
            )
        return UNSET

    async def disconnect(self, user_id: int) -> None:
        """Closes this app's sockets of `user_id` with 4403: their role changed, so what they were
        authorized for is out of date (an access notice; clients reconnect and are re-authorized)."""
        stale = [
            handler
            for handler in ProtocolHandler.open
            if handler.view is self
            and (viewer := getattr(handler.context, "viewer", None)) is not None
            and viewer.id == user_id
        ]
        await asyncio.gather(*(_access_changed(handler) for handler in stale))

    async def on_ws_disconnect(self, context: Context) -> None:
        if context.expiry is not None:
            context.expiry.cancel()
        if context.anonymous_address is not None:
            self.anonymous.release(context.anonymous_address)
            context.anonymous_address = None
        if context.counted and context.viewer is not None:
            self.connections.release(context.viewer.id)
            context.counted = False


def _unavailable(error: AppError | None) -> bool:
    return error is not None and error.code == ErrorCode.SERVICE_UNAVAILABLE


async def _try_again_later(context: Context, fault: DatabaseFault, failure: Exception) -> NoReturn:
    """A socket whose viewer cannot be read (the database is down) is closed with 1013, which
    graphql-ws clients retry; ending the handler as a disconnect leaves other sockets be."""
    log_fault(fault, failure, "socket")
    with contextlib.suppress(Exception):  # closed already
        await context.request.close(code=TRY_AGAIN, reason="Try again later: the database is unavailable")
    raise WebSocketDisconnected


async def _access_changed(handler: ProtocolHandler) -> None:
    with contextlib.suppress(Exception):  # already closed
        await handler.close(access.CLOSE_CODE, access.CLOSE_REASON)


async def _expire(context: Context) -> None:
    with contextlib.suppress(Exception):  # already closed
        await context.request.close(code=closes.FORBIDDEN, reason=closes.Reason.TOKEN_EXPIRED.value)


# A PostgreSQL advisory lock key: held while one process migrates (any number 64 bits hold).
MIGRATION_LOCK = 0x70756C7365  # "pulse"


async def apply_migrations(settings: Settings) -> None:
    """Brings the database to the latest shipped migration (idempotent). Workers and hosts that
    start together on PostgreSQL migrate one at a time: the first applies what is pending, the
    others then find nothing to do (without the lock two would create the same index)."""
    async with _migrating_alone(settings.database_url):
        try:
            await migrate(config=tortoise_config(settings.database_url))
        finally:
            await Tortoise.close_connections()


@asynccontextmanager
async def _migrating_alone(url: str) -> AsyncIterator[None]:
    """PostgreSQL's advisory lock MIGRATION_LOCK, on a connection of its own (closing it releases
    the lock, also when this process dies); SQLite serves one process and needs none."""
    expanded = expand_db_url(url)
    if expanded["engine"] != "tortoise.backends.asyncpg":
        yield
        return
    credentials = expanded["credentials"]
    keys = ("host", "port", "user", "password", "database")
    conn = await asyncpg.connect(**{key: credentials.get(key) for key in keys})
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        yield
    finally:
        await conn.close()


def _running_hub() -> hub.Hub:
    running = hub.current()
    assert running is not None, "subscriptions are served only while the app's lifespan runs"
    return running


def _always() -> bool:
    return True


def broker(url: str, timeout: float = Settings.broker_timeout_seconds) -> BroadcastBackend | None:
    """Our self-reconnecting backend for Redis; broadcaster's own for everything else."""
    scheme = url.split("://", 1)[0]
    return SupervisedRedisBackend(url, timeout) if scheme in ("redis", "rediss") else None


async def healthz(_: Request) -> Response:
    """Liveness: the process serves requests."""
    return PlainTextResponse("ok")


async def metrics(request: Request) -> Response:
    """Prometheus text exposition of the server's metrics: with several workers, every worker's
    summed (telemetry.exposition reads them all).

    With PULSEBOARD_METRICS_TOKEN set, only for `Authorization: Bearer <token>`. In production
    without a token it answers 404 like an unknown path: traffic figures are not public, and a
    deployment that forgot the token should see its scrapes fail rather than expose them."""
    settings: Settings = request.app.state.settings
    if settings.metrics_token:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        given = credentials.strip().encode() if scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(given, settings.metrics_token.encode()):
            return PlainTextResponse("Unauthorized", status_code=401, headers={"WWW-Authenticate": "Bearer"})
    elif settings.production:
        return PlainTextResponse("Not Found", status_code=404)
    return Response(telemetry.exposition(), media_type=telemetry.CONTENT_TYPE)


# How long /readyz waits for the database (a pooled connection and `SELECT 1`): a probe answers
# within its own deadline even while heavy reads hold every connection.
READYZ_DATABASE_TIMEOUT_SECONDS = 2.0


async def _database_answers() -> None:
    async with asyncio.timeout(READYZ_DATABASE_TIMEOUT_SECONDS):
        await connections.get("default").execute_query("SELECT 1")


async def readyz(request: Request) -> Response:
    """Readiness: the database answers, and the broker is connected and answers a PING within
    PULSEBOARD_BROKER_TIMEOUT_SECONDS (a hung broker keeps its sockets open)."""
    problems = []
    try:
        await _database_answers()
    except Exception:
        problems.append("database unreachable")
    if not await request.app.state.hub.broker_answers():
        problems.append("broker unreachable")
    if problems:
        return PlainTextResponse("; ".join(problems), status_code=503)
    return PlainTextResponse("ready")


def _mail_sender(settings: Settings) -> mail.Sender | None:
    """This worker's e-mail sender, started; None (and a line saying so) without an SMTP server."""
    if not settings.smtp_url:
        logger.info("e-mail off: PULSEBOARD_SMTP_URL is not set")
        return None
    sender = mail.Sender(settings)
    sender.start()
    return sender


def create_app(settings: Settings) -> Starlette:
    graphql = GraphQLApp(settings)
    lag = LoopLag()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await apply_migrations(settings)
        backend = broker(settings.broadcast_url, settings.broker_timeout_seconds)
        async with (
            lag.running(),
            RegisterTortoise(app, config=tortoise_config(settings.database_url, settings)),
            Broadcast(settings.broadcast_url, backend=backend) as broadcast,
        ):
            live = hub.Hub(
                broadcast,
                metrics_interval=settings.metrics_interval_seconds,
                broker_up=backend.connected.is_set
                if isinstance(backend, SupervisedRedisBackend)
                else _always,
                broker_ping=backend.ping if isinstance(backend, SupervisedRedisBackend) else None,
                publish_timeout=settings.broker_timeout_seconds,
                publish_queue_size=settings.publish_queue_events,
                namespace=channel_namespace(settings),
            )
            app.state.hub = live
            app.state.settings = settings
            app.state.persisted = graphql.persisted
            app.state.documents = graphql.documents
            app.state.planner = graphql.planner
            graphql.engine = app.state.engine = Engine(live, retry_seconds=settings.delivery_retry_seconds)
            hub.install(live)
            live.start()
            watch = AccessWatch(
                live,
                forget=graphql.viewers.forget,
                disconnect=graphql.disconnect,
                sockets_open=lambda: bool(ProtocolHandler.open),
            )
            await watch.start()
            app.state.access = watch
            access.install(watch)
            app.state.mail = sender = _mail_sender(settings)
            mail.install(sender)
            sweeper = reminders.Sweeper(settings)
            sweeper.start()
            try:
                yield
            finally:
                await sweeper.close()
                mail.install(None)
                if sender is not None:
                    await sender.close()
                access.install(None)
                await watch.close()
                hub.install(None)
                await graphql.engine.close()
                await live.close()

    return Starlette(
        middleware=[
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes),
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.origins),  # those that may open sockets too
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type", "idempotency-key"],
                max_age=600,
            ),
            # Inside CORS, so that a browser can read the 503 too.
            Middleware(Shed, lag=lag, max_lag=settings.overload_lag_ms / 1000, paths=("/graphql",)),
        ],
        routes=[
            *([] if settings.production else [graphiql.static_route()]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        lifespan=lifespan,
    )


# Garbage collection thresholds for a serving worker. CPython's defaults (700, 10, 10) run a
# young collection every 700 allocations and soon a full one that walks every live object: with
# thousands of sockets, each holding frames, tasks and protocol state, those walks took about
# 40% of the CPU of connecting 2000 sockets (bench/delivery.py --connect: 6.6 s -> 3.8 s).
# Young cycles are still collected, 70 times less often; full collections become rare.
GC_THRESHOLDS = (50_000, 50, 1_000)


def tune_gc() -> None:
    """Move what importing and building the app made (modules, the schema) out of the
    collector's sight, then raise its thresholds. Only for a serving process: a test process that
    builds many apps keeps CPython's defaults."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def app_from_env() -> Starlette:
    """The app as uvicorn workers build it: settings from the environment. Each worker (a
    spawned process with `--workers N`) configures its own logging, as the command line did for
    the single-worker server."""
    settings = from_env()
    telemetry.configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    tune_gc()
    return app
