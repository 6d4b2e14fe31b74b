"""Command line: serve, migrate, seed, token, export-schema, and dev (what `make run` runs)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import logging
import signal
import socket
import sys
from dataclasses import replace

import uvicorn
from tortoise import Tortoise
from uvicorn.supervisors import multiprocess

from pulseboard.app import apply_migrations
from pulseboard.auth import mint_token
from pulseboard.models import Role
from pulseboard.seed import ADMIN, MEMBER, DemoUser, seed
from pulseboard.settings import Settings, SettingsError, export, from_env, tortoise_config
from pulseboard.subscriptions.protocol import ProtocolHandler
from pulseboard.telemetry import configure_logging


class GracefulServer(uvicorn.Server):
    """Closes this worker's GraphQL sockets with 1001 (going away) before uvicorn's own shutdown,
    which would close them with 1012; then in-flight requests finish, and the lifespan closes
    the database and the broker."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for handler in list(ProtocolHandler.open):
            with contextlib.suppress(Exception):
                await handler.close(1001, "Server shutting down")
        await super().shutdown(sockets)


def _serve(settings: Settings) -> None:
    config = uvicorn.Config(
        "pulseboard.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # keep the handlers configure_logging set up (text or JSON)
        ws_per_message_deflate=settings.ws_per_message_deflate,
        ws_max_size=settings.max_ws_message_bytes,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_seconds),
    )
    if config.workers > 1:
        # uvicorn's supervisor builds each worker's server from this module global.
        multiprocess.Server = GracefulServer  # type: ignore[misc]
        multiprocess.Multiprocess(config, sockets=[config.bind_socket()]).run()
    else:
        # uvicorn re-raises the SIGTERM it handled once shutdown is done; a completed graceful
        # shutdown is a success, so that re-raise ends the process with status 0.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        GracefulServer(config).run()


async def _seed(settings: Settings) -> bool:
    await apply_migrations(settings)
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        return await seed(settings)
    finally:
        await Tortoise.close_connections()


def _token(settings: Settings, demo: DemoUser, days: float) -> str:
    return mint_token(
        settings.jwt_secret,
        sub=demo.email,
        email=demo.email,
        name=demo.name,
        role=demo.role,
        ttl=dt.timedelta(days=days),
    )


def _dev(settings: Settings) -> None:
    created = asyncio.run(_seed(settings))
    url = f"http://{settings.host}:{settings.port}/graphql"
    print(f"\npulseboard {'seeded demo data and ' if created else ''}serving GraphiQL at {url}")
    for demo in (ADMIN, MEMBER):
        print(f"\n  {demo.name} ({demo.role.value}) -- paste into GraphiQL's Headers tab:")
        print(f'  {{"Authorization": "Bearer {_token(settings, demo, 30)}"}}')
    print()
    _serve(settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pulseboard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API (migrations are applied at startup)")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    commands.add_parser("dev", help="migrate, seed demo data once, print dev tokens, serve")
    commands.add_parser("migrate", help="apply the shipped migrations")
    commands.add_parser("seed", help="create the demo data unless it exists")
    token = commands.add_parser("token", help="mint a development JWT")
    token.add_argument("--email", required=True)
    token.add_argument("--name")
    token.add_argument("--role", choices=[r.value for r in Role], default=Role.MEMBER.value)
    token.add_argument("--days", type=float, default=30.0)
    commands.add_parser("export-schema", help="print the GraphQL SDL")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "export-schema":
        logging.basicConfig(level=logging.WARNING)
        from pulseboard.schema import schema

        print(schema.as_str())
        return
    try:
        settings = from_env()
        if args.command == "serve":
            overrides = {k: getattr(args, k) for k in ("host", "port", "workers") if getattr(args, k)}
            settings = replace(settings, **overrides).check()
            export(settings, tuple(overrides))
    except SettingsError as error:
        sys.exit(f"pulseboard: {error}")
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        _serve(settings)
    elif args.command == "dev":
        _dev(settings)
    elif args.command == "migrate":
        asyncio.run(apply_migrations(settings))
        print("migrations applied")
    elif args.command == "seed":
        print("seeded demo data" if asyncio.run(_seed(settings)) else "demo data exists already")
    elif args.command == "token":
        demo = DemoUser(args.email, args.name or args.email.split("@")[0], Role(args.role))
        print(_token(settings, demo, args.days))


if __name__ == "__main__":
    main()
