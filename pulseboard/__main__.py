"""Command line: serve, migrate, seed, token, role, export-schema, and dev (what `make run` runs)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import math
import signal
import sys
from dataclasses import replace

from broadcaster import Broadcast
from tortoise import Tortoise

from pulseboard.app import apply_migrations, broker
from pulseboard.auth import mint_token
from pulseboard.errors import AppError
from pulseboard.models import Role
from pulseboard.resolvers import users
from pulseboard.seed import ADMIN, MEMBER, DemoUser, seed
from pulseboard.serving import GracefulServer, WorkerConfig, run_workers
from pulseboard.settings import Settings, SettingsError, channel_namespace, export, from_env, tortoise_config
from pulseboard.subscriptions import hub
from pulseboard.telemetry import configure_logging


def _serve(settings: Settings) -> None:
    # WorkerConfig and GracefulServer live in pulseboard.serving: spawned workers import them
    # from there (this module runs as __main__, which a worker cannot import by that name).
    config = WorkerConfig(
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
        # Each worker makes its own server a GracefulServer and configures its own logging; a
        # temporary PROMETHEUS_MULTIPROC_DIR made for this run lets /metrics sum all workers.
        run_workers(config)
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


async def _role(settings: Settings, role: Role, *, email: str | None, sub: str | None) -> str:
    """Sets a user's role on the configured database, as setUserRole does: the change and its
    access notice commit together and the notice is broadcast, so running servers forget the
    user's cached viewer and close their sockets (over memory://, or if the broker is down, they
    read it from the event log within a second)."""
    users.require_server_roles(settings)
    await apply_migrations(settings)
    await Tortoise.init(config=tortoise_config(settings.database_url))
    try:
        backend = broker(settings.broadcast_url)
        async with Broadcast(settings.broadcast_url, backend=backend) as broadcast:
            hub.install(
                hub.Hub(
                    broadcast,
                    metrics_interval=settings.metrics_interval_seconds,
                    namespace=channel_namespace(settings),
                )
            )
            try:
                user = await users.user_by_login(email=email, sub=sub)
                user, previous = await users.change_role(user.id, role, actor=None)
            finally:
                hub.install(None)
    finally:
        await Tortoise.close_connections()
    who = f"user {user.id} ({user.email or user.sub})"
    if previous == role:
        return f"{who} is {role.value} already"
    return f"{who}: {previous.value} -> {role.value}"


# Days a development token lives unless `--days` says otherwise (within the maximum lifetime).
DEV_TOKEN_DAYS = 30.0


def _dev_days(settings: Settings) -> float:
    return min(DEV_TOKEN_DAYS, settings.jwt_max_lifetime_days or DEV_TOKEN_DAYS)


def _token(settings: Settings, demo: DemoUser, days: float) -> str:
    """A development token the server accepts (SystemExit saying why when it would not)."""
    if settings.jwt_jwks_url:
        sys.exit(
            "pulseboard: tokens come from the identity provider (PULSEBOARD_JWT_JWKS_URL is set);"
            " HS256 development tokens would be refused"
        )
    longest = settings.jwt_max_lifetime_days
    if longest and days > longest:
        sys.exit(
            f"pulseboard: --days {days:g} is longer than the maximum token lifetime of {longest:g} days"
            " (PULSEBOARD_JWT_MAX_LIFETIME_DAYS)"
        )
    return mint_token(
        settings.jwt_secret,
        sub=demo.email,
        email=demo.email,
        name=demo.name,
        role=demo.role,
        ttl=dt.timedelta(days=days),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience[0] if settings.jwt_audience else "",
    )


def _days(value: str) -> float:
    """`--days`: a token that lives 0 days (or fewer) would be expired already. Refused as a usage
    error (exit status 2, with the usage line), before any setting is read."""
    try:
        days = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {value!r}") from None
    if not (math.isfinite(days) and days > 0):
        raise argparse.ArgumentTypeError(
            f"must be more than 0, not {value} (the token would be expired already)"
        )
    return days


def _dev(settings: Settings) -> None:
    created = asyncio.run(_seed(settings))
    url = f"http://{settings.host}:{settings.port}/graphql"
    print(f"\npulseboard {'seeded demo data and ' if created else ''}serving GraphiQL at {url}")
    days = _dev_days(settings)
    for demo in () if settings.jwt_jwks_url else (ADMIN, MEMBER):
        print(f"\n  {demo.name} ({demo.role.value}) -- paste into GraphiQL's Headers tab:")
        print(f'  {{"Authorization": "Bearer {_token(settings, demo, days)}"}}')
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
    token.add_argument("--days", type=_days, help=f"default {DEV_TOKEN_DAYS:g} (or the maximum lifetime)")
    role = commands.add_parser(
        "role", help="set a user's role (PULSEBOARD_ROLE_SOURCE=server); their live sessions re-authorize"
    )
    who = role.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--sub")
    role.add_argument("--role", required=True, choices=[r.value for r in Role])
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
    elif args.command == "role":
        try:
            print(asyncio.run(_role(settings, Role(args.role), email=args.email, sub=args.sub)))
        except AppError as error:
            sys.exit(f"pulseboard: {error.message}")
    elif args.command == "token":
        demo = DemoUser(args.email, args.name or args.email.split("@")[0], Role(args.role))
        print(_token(settings, demo, _dev_days(settings) if args.days is None else args.days))


if __name__ == "__main__":
    main()
