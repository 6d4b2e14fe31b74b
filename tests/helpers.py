"""Helpers for driving the API in tests: people with tokens, and GraphQL calls that assert."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from pulseboard.auth import mint_token
from pulseboard.models import Role
from pulseboard.settings import Settings

_serial = itertools.count(1)


@dataclass(frozen=True)
class Person:
    id: str
    email: str
    role: Role
    token: str


class Api:
    def __init__(self, http: httpx.AsyncClient, settings: Settings, app: Starlette | None = None) -> None:
        self.http = http
        self.settings = settings
        self._app = app

    @property
    def app(self) -> Starlette:
        assert self._app is not None, "this Api was made without its app"
        return self._app

    def token(
        self, email: str, role: Role = Role.MEMBER, *, ttl: dt.timedelta = dt.timedelta(hours=1)
    ) -> str:
        return mint_token(
            self.settings.jwt_secret, sub=email, email=email, name=email.split("@")[0], role=role, ttl=ttl
        )

    async def person(self, role: Role = Role.MEMBER, email: str | None = None) -> Person:
        """A user known to the API (upserted by their first request)."""
        email = email or f"{role.value.lower()}{next(_serial)}@example.test"
        token = self.token(email, role)
        data = await self.ok(token, "{ viewer { id } }")
        return Person(id=data["viewer"]["id"], email=email, role=role, token=token)

    async def post(
        self, who: Person | str | None, query: str, variables: dict[str, Any] | None = None
    ) -> dict:
        """The JSON body of one GraphQL request (as `who`: a Person, a raw token, or anonymous)."""
        token = who.token if isinstance(who, Person) else who
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code in (200, 400), response.text
        return response.json()

    async def ok(self, who: Person | str | None, query: str, **variables: Any) -> dict:
        body = await self.post(who, query, variables)
        assert not body.get("errors"), body["errors"]
        return body["data"]

    async def error(self, who: Person | str | None, query: str, **variables: Any) -> dict:
        """The first error of a request that must fail; its `extensions.code` is always set."""
        body = await self.post(who, query, variables)
        assert body.get("errors"), body
        error = body["errors"][0]
        assert "code" in error.get("extensions", {}), error
        return error


def code(error: dict) -> str:
    return error["extensions"]["code"]


@contextmanager
def count_queries() -> Iterator[list[str]]:
    """Collects the SQL statements Tortoise runs inside the block."""
    statements: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            statements.append(record.getMessage())

    logger = logging.getLogger("tortoise.db_client")
    handler, level = Collect(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield statements
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
