"""GraphiQL served from this package, without a CDN.

The page (static/graphiql/index.html) loads only /graphql/static/graphiql.js and graphiql.css,
which scripts/graphiql/build.sh bundles from pinned npm packages (the built files are committed,
so serving needs no Node). In development its headers editor is prefilled with a dev token."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Mapping
from functools import cache
from importlib.resources import files

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from pulseboard.auth import mint_token
from pulseboard.seed import ADMIN, DemoUser
from pulseboard.settings import Settings

PLACEHOLDER = "__PULSEBOARD_HEADERS__"
STATIC_PATH = "/graphql/static"
# The only files served under STATIC_PATH (index.html is a template, rendered by page()).
ASSETS = frozenset({"graphiql.js", "graphiql.css", "THIRD_PARTY_LICENSES.txt"})
DEV_TOKEN_TTL = dt.timedelta(days=1)


@cache
def _template() -> str:
    return (files("pulseboard") / "static" / "graphiql" / "index.html").read_text(encoding="utf-8")


def page(headers: Mapping[str, str]) -> str:
    """The GraphiQL page, its headers editor prefilled with `headers` (e.g. Authorization)."""
    # Inside <script type="application/json">: no "</script>" or "<!--" may appear literally.
    payload = (
        json.dumps(dict(headers)).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    )
    return _template().replace(PLACEHOLDER, payload)


def is_loopback(host: str) -> bool:
    """A loopback address or name: only this machine can reach or be named by it."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev_headers(settings: Settings, request: Request, demo: DemoUser = ADMIN) -> dict[str, str]:
    """The headers GraphiQL starts with: a fresh token of a demo user (the one `python -m
    pulseboard dev` prints first) only in development, only on a server that listens on a
    loopback address, and only for a request from this machine that names a loopback host (a
    foreign Host header is a DNS-rebinding page); none otherwise."""
    client = request.client.host if request.client else ""
    local = is_loopback(settings.host) and is_loopback(client) and is_loopback(request.url.hostname or "")
    if settings.production or not local or settings.jwt_jwks_url:
        return {}  # with a JWKS, tokens come from the identity provider only
    token = mint_token(
        settings.jwt_secret,
        sub=demo.email,
        email=demo.email,
        name=demo.name,
        role=demo.role,
        ttl=DEV_TOKEN_TTL,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience[0] if settings.jwt_audience else "",
    )
    return {"Authorization": f"Bearer {token}"}


class _Assets(StaticFiles):
    """The built bundle, and nothing else of the directory."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in ASSETS:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return await super().get_response(path, scope)


def static_route() -> Mount:
    """Mount this before the /graphql routes: serves STATIC_PATH/graphiql.{js,css}."""
    return Mount(
        STATIC_PATH, app=_Assets(packages=[("pulseboard", "static/graphiql")]), name="graphiql-static"
    )
