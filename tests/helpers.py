"""Helpers for driving the API in tests: people with tokens, and GraphQL calls that assert."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from starlette.applications import Starlette

from pulseboard.app import create_app
from pulseboard.auth import mint_token
from pulseboard.models import Role
from pulseboard.settings import Settings

_serial = itertools.count(1)
T = TypeVar("T")


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


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Api]:
    """The app built with `settings`, lifespan and all, behind an HTTP client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(http, settings, app)


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m pulseboard ARGS` in `cwd`, with none of this process's PULSEBOARD_* settings."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PULSEBOARD_")}
    return subprocess.run(
        [sys.executable, "-m", "pulseboard", *args],
        cwd=cwd,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def code(error: dict) -> str:
    return error["extensions"]["code"]


def count_queries() -> AbstractContextManager[list[str]]:
    """Collects the SQL statements Tortoise runs inside the block."""
    return tortoise_records(logging.LogRecord.getMessage)


@contextmanager
def tortoise_records(keep: Callable[[logging.LogRecord], T | None]) -> Iterator[list[T]]:
    """What `keep` makes of each debug record Tortoise's database client logs inside the block
    (None: nothing kept)."""
    statements: list[T] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if (kept := keep(record)) is not None:
                statements.append(kept)

    logger = logging.getLogger("tortoise.db_client")
    handler, level = Collect(level=logging.DEBUG), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield statements
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
