"""The Starlette application: GraphQL over HTTP, with migrations and Tortoise in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL
from tortoise import Tortoise
from tortoise.contrib.starlette import RegisterTortoise
from tortoise.migrations.api import migrate

from pulseboard.auth import claims_from_header
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.users import upsert_from_claims
from pulseboard.schema import build_schema
from pulseboard.settings import Settings, from_env, tortoise_config

logger = logging.getLogger("pulseboard")


class GraphQLApp(GraphQL[Context, None]):
    def __init__(self, settings: Settings) -> None:
        super().__init__(build_schema(settings), graphql_ide="graphiql" if not settings.production else None)
        self.settings = settings

    async def get_context(self, request: Any, response: Any) -> Context:  # type: ignore[override]
        claims, error = claims_from_header(self.settings.jwt_secret, request.headers.get("authorization"))
        viewer = await upsert_from_claims(claims) if claims else None
        return Context(
            settings=self.settings, viewer=viewer, auth_error=error, request=request, response=response
        )


async def apply_migrations(settings: Settings) -> None:
    """Brings the database to the latest shipped migration (idempotent)."""
    try:
        await migrate(config=tortoise_config(settings.database_url))
    finally:
        await Tortoise.close_connections()


async def healthz(_: Request) -> Response:
    return PlainTextResponse("ok")


def create_app(settings: Settings) -> Starlette:
    graphql = GraphQLApp(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await apply_migrations(settings)
        async with RegisterTortoise(app, config=tortoise_config(settings.database_url)):
            yield

    return Starlette(
        routes=[Route("/graphql", graphql, methods=["GET", "POST"]), Route("/healthz", healthz)],
        lifespan=lifespan,
    )


def app_from_env() -> Starlette:
    """The app as uvicorn workers build it: settings from the environment."""
    return create_app(from_env())
