"""Which tokens are trusted: RS256/ES256 from an identity provider's JWKS (cached, rotated,
fetched at most once per interval, survived when it is down), HS256 for development, `iss` and
`aud` when configured, and a maximum lifetime. The keys are made here and the JWKS is served on
loopback over real HTTP; PyJWT is not mocked."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from pulseboard.auth import mint_token
from pulseboard.models import Role
from pulseboard.settings import Settings, SettingsError
from tests.helpers import Api, code, run_cli, serving
from tests.live import free_port, serve, ws

VIEWER = "{ viewer { email role } }"
ISSUER = "https://idp.example.test/"


# --- keys, tokens and a JWKS served on loopback --------------------------------------------------


@dataclass(frozen=True)
class Key:
    kid: str
    algorithm: str
    private: Any

    def jwk(self, **extra: str) -> dict[str, Any]:
        to_jwk = RSAAlgorithm.to_jwk if self.algorithm.startswith(("RS", "PS")) else ECAlgorithm.to_jwk
        data: dict[str, Any] = to_jwk(self.private.public_key(), as_dict=True)  # type: ignore[assignment]
        return {**data, "kid": self.kid, "use": "sig", **extra}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, payload: dict[str, Any], *, kid: str | None = None) -> str:
        return jwt.encode(payload, self.private, algorithm=self.algorithm, headers={"kid": kid or self.kid})


@functools.cache
def rsa_key(kid: str) -> Key:
    return Key(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


@functools.cache
def ec_key(kid: str) -> Key:
    return Key(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def claims(
    email: str = "ada@example.test", *, ttl: dt.timedelta = dt.timedelta(hours=1), **extra: Any
) -> dict:
    now = int(time.time())
    return {
        "sub": email,
        "email": email,
        "name": email.split("@")[0],
        "role": "MEMBER",
        "iat": now,
        "exp": now + int(ttl.total_seconds()),
        **extra,
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], key: bytes | None) -> str:
    """A token PyJWT would refuse to write: `alg: none`, or HS256 keyed with a public key."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


class JwksServer:
    """A JWKS endpoint on a loopback port, in a thread: the keys it serves can change, it counts
    the requests it gets, and it can answer slowly or go away."""

    def __init__(self) -> None:
        self.keys: list[Key] = []
        self.requests = 0
        self.delay = 0.0
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer._lock:
                    outer.requests += 1
                    body = json.dumps({"keys": [key.jwk() for key in outer.keys]}).encode()
                time.sleep(outer.delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/.well-known/jwks.json"
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    try:
        yield server
    finally:
        server.stop()


def trusting(settings: Settings, url: str, **overrides: Any) -> Settings:
    return dataclasses.replace(settings, jwt_jwks_url=url, **overrides).check()


async def accepted(api: Api, token: str, email: str = "ada@example.test") -> None:
    assert (await api.ok(token, VIEWER))["viewer"]["email"] == email


async def refused(api: Api, token: str) -> str:
    error = await api.error(token, VIEWER)
    assert code(error) == "UNAUTHENTICATED", error
    return str(error["message"])


def jwks_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and "JWKS" in r.getMessage()]


# --- RS256 and ES256 from a JWKS -----------------------------------------------------------------


async def test_rs256_and_es256_tokens_from_the_jwks_are_accepted(
    settings: Settings, jwks: JwksServer
) -> None:
    rsa_1, ec_1 = rsa_key("rsa-1"), ec_key("ec-1")
    jwks.keys = [rsa_1, ec_1]
    async with serving(trusting(settings, jwks.url)) as api:
        await accepted(api, rsa_1.sign(claims()))
        await accepted(api, ec_1.sign(claims("eve@example.test", role="AGENT")), "eve@example.test")
        assert (await api.ok(ec_1.sign(claims("eve@example.test", role="AGENT")), VIEWER))["viewer"] == {
            "email": "eve@example.test",
            "role": "AGENT",
        }
        # Fetched once, then the keys are kept in memory.
        for _ in range(5):
            await accepted(api, rsa_1.sign(claims()))
        assert jwks.requests == 1
        # Signed by a key the set does not have (same kid): a bad signature.
        assert await refused(api, rsa_key("rsa-other").sign(claims(), kid="rsa-1")) == "Invalid token."
        # A token's alg must fit the key its kid names.
        assert await refused(api, ec_1.sign(claims(), kid="rsa-1")) == "Invalid token."


async def test_hs256_and_alg_none_are_refused_when_a_jwks_is_configured(
    settings: Settings, jwks: JwksServer
) -> None:
    rsa_1 = rsa_key("rsa-1")
    jwks.keys = [rsa_1]
    async with serving(trusting(settings, jwks.url)) as api:
        await accepted(api, rsa_1.sign(claims()))
        # A token signed with the shared secret: HS256 is for development without a JWKS.
        assert await refused(api, api.token("ada@example.test")) == "Invalid token."
        # Algorithm confusion: HS256 keyed with the public key (PEM, or its JWK) that the
        # server holds for that kid.
        header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
        for public in (rsa_1.public_pem(), json.dumps(rsa_1.jwk()).encode()):
            assert await refused(api, hand_made(header, claims(), public)) == "Invalid token."
        # No signature at all.
        for alg in ("none", "None", "NONE"):
            none = hand_made({"alg": alg, "kid": "rsa-1"}, claims(role="ADMIN"), None)
            assert await refused(api, none) == "Invalid token."
        # No kid, or one that is not a string.
        assert await refused(api, jwt.encode(claims(), rsa_1.private, algorithm="RS256")) == "Invalid token."
        bad_kid = hand_made({"alg": "RS256", "kid": 1}, claims(), None)
        assert await refused(api, bad_kid) == "Invalid token."
        # An algorithm the settings do not list, with the right key.
        ps256 = jwt.encode(claims(), rsa_1.private, algorithm="PS256", headers={"kid": "rsa-1"})
        assert await refused(api, ps256) == "Invalid token."
    async with serving(trusting(settings, jwks.url, jwt_algorithms=("PS256",))) as api:
        await accepted(api, ps256)
        assert await refused(api, rsa_1.sign(claims())) == "Invalid token."


async def test_without_a_jwks_only_hs256_is_accepted(api: Api) -> None:
    await accepted(api, api.token("ada@example.test"))
    assert await refused(api, rsa_key("rsa-1").sign(claims())) == "Invalid token."
    assert await refused(api, ec_key("ec-1").sign(claims())) == "Invalid token."
    none = hand_made({"alg": "none"}, claims(role="ADMIN"), None)
    assert await refused(api, none) == "Invalid token."


# --- rotation, and how often the JWKS is fetched ---------------------------------------------------


async def test_a_rotated_key_verifies_without_a_restart_and_the_removed_one_is_refused(
    settings: Settings, jwks: JwksServer
) -> None:
    old, new = rsa_key("2024-old"), ec_key("2025-new")
    jwks.keys = [old]
    async with serving(trusting(settings, jwks.url, jwt_jwks_refetch_seconds=0.3)) as api:
        old_token, new_token = old.sign(claims()), new.sign(claims())
        await accepted(api, old_token)
        jwks.keys = [new]  # the provider rotates: the old key is gone from the set
        await accepted(api, old_token)  # still cached
        assert jwks.requests == 1
        await asyncio.sleep(0.35)
        await accepted(api, new_token)  # an unknown kid fetches the set again
        assert jwks.requests == 2
        assert await refused(api, old_token) == "Invalid token: unknown signing key."
        await accepted(api, new_token)
        assert jwks.requests == 2


async def test_the_key_set_is_fetched_again_once_its_cache_lifespan_is_over(
    settings: Settings, jwks: JwksServer
) -> None:
    old, new = rsa_key("2024-old"), rsa_key("2025-new")
    jwks.keys = [old, new]
    overrides = {"jwt_jwks_cache_seconds": 0.5, "jwt_jwks_refetch_seconds": 0.2}
    async with serving(trusting(settings, jwks.url, **overrides)) as api:
        old_token = old.sign(claims())
        await accepted(api, old_token)
        jwks.keys = [new]  # the old key is withdrawn (compromised, say)
        await accepted(api, old_token)
        await asyncio.sleep(0.6)
        assert await refused(api, old_token) == "Invalid token: unknown signing key."
        assert jwks.requests == 2
        await accepted(api, new.sign(claims()))
        assert jwks.requests == 2


async def test_unknown_kids_fetch_the_key_set_at_most_once_per_interval(
    settings: Settings, jwks: JwksServer
) -> None:
    key = rsa_key("rsa-1")
    jwks.keys = [key]
    interval = 3.0
    async with serving(trusting(settings, jwks.url, jwt_jwks_refetch_seconds=interval)) as api:
        await accepted(api, key.sign(claims()))
        started = time.monotonic()

        def random_kid() -> str:
            return key.sign(claims(), kid=uuid.uuid4().hex)

        for _ in range(30):
            assert await refused(api, random_kid()) == "Invalid token: unknown signing key."
        messages = await asyncio.gather(*(refused(api, random_kid()) for _ in range(30)))
        assert set(messages) == {"Invalid token: unknown signing key."}
        assert time.monotonic() - started < interval
        assert jwks.requests == 1
        await accepted(api, key.sign(claims()))  # known kids never wait for the interval
        await asyncio.sleep(interval - (time.monotonic() - started) + 0.1)
        await asyncio.gather(*(refused(api, random_kid()) for _ in range(30)))
        assert jwks.requests == 2


async def test_concurrent_first_requests_share_one_fetch(settings: Settings, jwks: JwksServer) -> None:
    key = ec_key("ec-1")
    jwks.keys = [key]
    jwks.delay = 0.3
    async with serving(trusting(settings, jwks.url)) as api:
        await asyncio.gather(*(accepted(api, key.sign(claims())) for _ in range(10)))
        assert jwks.requests == 1


async def test_a_slow_jwks_does_not_block_the_event_loop(settings: Settings, jwks: JwksServer) -> None:
    key = rsa_key("rsa-1")
    jwks.keys = [key]
    jwks.delay = 1.0
    async with serving(trusting(settings, jwks.url)) as api:
        waiting = asyncio.create_task(accepted(api, key.sign(claims())))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        body = await api.post(None, "{ __typename }")
        assert body == {"data": {"__typename": "Query"}}
        assert time.monotonic() - started < 0.5
        assert not waiting.done()
        await waiting


# --- a JWKS that is down ----------------------------------------------------------------------------


async def test_jwks_down_is_unauthenticated_with_one_warning_and_the_server_stays_up(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"  # nothing listens there
    token = rsa_key("rsa-1").sign(claims())
    with caplog.at_level(logging.WARNING, logger="pulseboard"):
        async with serving(trusting(settings, url)) as api:
            for _ in range(5):
                assert await refused(api, token) == "Invalid token: signing keys unavailable."
            assert (await api.post(None, "{ __typename }"))["data"] == {"__typename": "Query"}
            response = await api.http.post(
                "/graphql", json={"query": VIEWER}, headers={"authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200
    [warning] = jwks_warnings(caplog)
    assert warning.exc_info is None and "\n" not in warning.getMessage()
    assert token not in caplog.text


async def test_cached_keys_keep_working_while_the_jwks_is_down(
    settings: Settings, jwks: JwksServer, caplog: pytest.LogCaptureFixture
) -> None:
    key = rsa_key("rsa-1")
    jwks.keys = [key]
    overrides = {"jwt_jwks_cache_seconds": 0.3, "jwt_jwks_refetch_seconds": 0.3}
    with caplog.at_level(logging.WARNING, logger="pulseboard"):
        async with serving(trusting(settings, jwks.url, **overrides)) as api:
            await accepted(api, key.sign(claims()))
            jwks.stop()
            await asyncio.sleep(0.4)  # the set is past its lifespan: the next token fetches it
            for _ in range(5):
                await accepted(api, key.sign(claims()))
            unknown = rsa_key("rsa-2").sign(claims())
            assert await refused(api, unknown) == "Invalid token: signing keys unavailable."
    assert len(jwks_warnings(caplog)) == 1


# --- iss and aud -----------------------------------------------------------------------------------


async def test_issuer_and_audience_are_checked_when_configured(settings: Settings, jwks: JwksServer) -> None:
    key = rsa_key("rsa-1")
    jwks.keys = [key]
    configured = trusting(
        settings, jwks.url, jwt_issuer=ISSUER, jwt_audience=("pulseboard", "pulseboard-web")
    )
    async with serving(configured) as api:
        await accepted(api, key.sign(claims(iss=ISSUER, aud="pulseboard")))
        await accepted(api, key.sign(claims(iss=ISSUER, aud="pulseboard-web")))
        await accepted(api, key.sign(claims(iss=ISSUER, aud=["billing", "pulseboard"])))
        for bad, message in [
            (claims(iss="https://evil.example.test/", aud="pulseboard"), "Invalid token: wrong issuer."),
            (claims(aud="pulseboard"), "Invalid token: wrong issuer."),
            (claims(iss=ISSUER, aud="billing"), "Invalid token: wrong audience."),
            (claims(iss=ISSUER, aud=["billing", "crm"]), "Invalid token: wrong audience."),
            (claims(iss=ISSUER), "Invalid token: wrong audience."),
        ]:
            assert await refused(api, key.sign(bad)) == message
    # Not configured: no issuer is required, and a token meant for some audience is refused.
    async with serving(trusting(settings, jwks.url)) as api:
        await accepted(api, key.sign(claims(iss="https://anyone.example.test/")))
        assert await refused(api, key.sign(claims(aud="billing"))) == "Invalid token: wrong audience."


async def test_issuer_and_audience_with_hs256(settings: Settings) -> None:
    configured = dataclasses.replace(settings, jwt_issuer=ISSUER, jwt_audience=("pulseboard",))
    async with serving(configured) as api:
        good = mint_token(
            settings.jwt_secret,
            sub="ada@example.test",
            email="ada@example.test",
            name="ada",
            role=Role.MEMBER,
            ttl=dt.timedelta(hours=1),
            issuer=ISSUER,
            audience="pulseboard",
        )
        await accepted(api, good)
        assert await refused(api, api.token("ada@example.test")) == "Invalid token: wrong issuer."


# --- the maximum lifetime ------------------------------------------------------------------------


async def test_tokens_living_longer_than_the_maximum_are_refused(api: Api) -> None:
    century = api.token("ada@example.test", ttl=dt.timedelta(days=36_500))
    assert await refused(api, century) == "Invalid token: lifetime longer than 30 days."
    await accepted(api, api.token("ada@example.test", ttl=dt.timedelta(days=30)))
    assert await refused(api, api.token("ada@example.test", ttl=dt.timedelta(days=30, seconds=1))) == (
        "Invalid token: lifetime longer than 30 days."
    )
    # Without iat, the lifetime left counts.
    secret = api.settings.jwt_secret
    now = int(time.time())
    no_iat = {"sub": "ada@example.test", "email": "ada@example.test"}
    soon = jwt.encode({**no_iat, "exp": now + 29 * 86_400}, secret, algorithm="HS256")
    await accepted(api, soon)
    late = jwt.encode({**no_iat, "exp": now + 31 * 86_400}, secret, algorithm="HS256")
    assert await refused(api, late) == "Invalid token: lifetime longer than 30 days."
    # An old iat does not stretch what a token may claim.
    backdated = jwt.encode({**no_iat, "iat": now - 40 * 86_400, "exp": now + 3600}, secret, algorithm="HS256")
    assert await refused(api, backdated) == "Invalid token: lifetime longer than 30 days."


async def test_the_maximum_lifetime_applies_to_jwks_tokens_and_is_configurable(
    settings: Settings, jwks: JwksServer
) -> None:
    key = ec_key("ec-1")
    jwks.keys = [key]
    async with serving(trusting(settings, jwks.url)) as api:
        century = key.sign(claims(ttl=dt.timedelta(days=36_500)))
        assert await refused(api, century) == "Invalid token: lifetime longer than 30 days."
    async with serving(trusting(settings, jwks.url, jwt_max_lifetime_days=1)) as api:
        await accepted(api, key.sign(claims(ttl=dt.timedelta(hours=24))))
        two_days = key.sign(claims(ttl=dt.timedelta(days=2)))
        assert await refused(api, two_days) == "Invalid token: lifetime longer than 1 day."
    async with serving(trusting(settings, jwks.url, jwt_max_lifetime_days=0)) as api:  # no limit
        await accepted(api, century)


# --- the socket path -----------------------------------------------------------------------------


async def test_connection_init_with_an_rs256_token_is_acknowledged(
    settings: Settings, jwks: JwksServer
) -> None:
    key = rsa_key("rsa-1")
    jwks.keys = [key]
    async with serve(trusting(settings, jwks.url)) as live:
        async with ws(live) as client:
            await client.init(key.sign(claims()))
            await client.send({"id": "1", "type": "subscribe", "payload": {"query": VIEWER}})
            assert await client.next("1") == {"viewer": {"email": "ada@example.test", "role": "MEMBER"}}
        for bad in (live.token("ada@example.test"), key.sign(claims(ttl=dt.timedelta(days=36_500)))):
            async with ws(live) as client:
                await client.send({"type": "connection_init", "payload": {"authorization": f"Bearer {bad}"}})
                assert (await client.closed())[0] == 4403


# --- the command line --------------------------------------------------------------------------------


def test_token_command_refuses_tokens_longer_than_the_maximum_lifetime(tmp_path: Path) -> None:
    # (0 days or fewer is a usage error: tests/test_cli.py)
    result = run_cli("token", "--email", "a@example.test", "--days", "400", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stdout == ""
    assert "--days 400 is longer than the maximum token lifetime of 30 days" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 or "generated a development secret" in result.stderr


def test_token_command_follows_the_configured_maximum(tmp_path: Path) -> None:
    secret = {"PULSEBOARD_JWT_SECRET": "s" * 40, "PULSEBOARD_JWT_MAX_LIFETIME_DAYS": "7"}
    result = run_cli("token", "--email", "a@example.test", cwd=tmp_path, **secret)
    assert result.returncode == 0, result.stderr
    payload = jwt.decode(result.stdout.strip(), "s" * 40, algorithms=["HS256"])
    assert payload["exp"] - payload["iat"] == 7 * 86_400
    result = run_cli("token", "--email", "a@example.test", "--days", "8", cwd=tmp_path, **secret)
    assert result.returncode != 0 and "maximum token lifetime of 7 days" in result.stderr


def test_token_command_refuses_when_tokens_come_from_a_jwks(tmp_path: Path) -> None:
    env = {"PULSEBOARD_JWT_SECRET": "s" * 40, "PULSEBOARD_JWT_JWKS_URL": "https://idp.example.test/jwks"}
    result = run_cli("token", "--email", "a@example.test", cwd=tmp_path, **env)
    assert result.returncode != 0 and "PULSEBOARD_JWT_JWKS_URL" in result.stderr
    assert result.stdout == ""


async def test_the_default_dev_token_of_the_command_line_is_accepted(api: Api, tmp_path: Path) -> None:
    result = await asyncio.to_thread(
        run_cli,
        "token",
        "--email",
        "ada@example.test",
        cwd=tmp_path,
        PULSEBOARD_JWT_SECRET=api.settings.jwt_secret,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    payload = jwt.decode(token, api.settings.jwt_secret, algorithms=["HS256"])
    assert payload["exp"] - payload["iat"] == 30 * 86_400
    await accepted(api, token)


# --- settings ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"jwt_jwks_url": "ftp://idp.example.test/jwks"}, "must be an http:// or https:// URL"),
        ({"jwt_jwks_url": "file:///etc/jwks.json"}, "must be an http:// or https:// URL"),
        ({"jwt_jwks_url": "https://idp.example.test/jwks", "jwt_algorithms": ("HS256",)}, "ALGORITHMS"),
        ({"jwt_algorithms": ("RS256",)}, "PULSEBOARD_JWT_ALGORITHMS must be among HS256"),
        ({"jwt_max_lifetime_days": -1.0}, "PULSEBOARD_JWT_MAX_LIFETIME_DAYS"),
        ({"jwt_max_lifetime_days": float("inf")}, "PULSEBOARD_JWT_MAX_LIFETIME_DAYS"),
        ({"jwt_jwks_cache_seconds": 0.0}, "PULSEBOARD_JWT_JWKS_CACHE_SECONDS"),
        ({"jwt_jwks_refetch_seconds": -1.0}, "PULSEBOARD_JWT_JWKS_REFETCH_SECONDS"),
        (
            {"env": "production", "jwt_jwks_url": "http://idp.example.test/jwks"},
            "must be https:// in production",
        ),
        (
            {"env": "production", "jwt_jwks_url": "https://idp.example.test/jwks", "jwt_issuer": ISSUER},
            "PULSEBOARD_JWT_AUDIENCE must be set",
        ),
    ],
)
def test_token_settings_are_validated(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings(jwt_secret="s" * 40, **overrides).check()


def test_production_with_a_jwks_needs_no_shared_secret() -> None:
    production = {"env": "production", "jwt_issuer": ISSUER, "jwt_audience": ("pulseboard",)}
    Settings(jwt_jwks_url="https://idp.example.test/jwks", **production).check()
    Settings(jwt_jwks_url="http://127.0.0.1:8080/jwks", **production).check()  # loopback
    Settings(jwt_jwks_url="http://[::1]:8080/jwks", **production).check()
    with pytest.raises(SettingsError, match="PULSEBOARD_JWT_SECRET"):
        Settings(env="production").check()


def test_token_settings_are_read_from_the_environment(tmp_path: Path) -> None:
    from pulseboard.settings import from_env

    settings = from_env(
        {
            "PULSEBOARD_JWT_SECRET": "s" * 40,
            "PULSEBOARD_JWT_JWKS_URL": "https://idp.example.test/jwks",
            "PULSEBOARD_JWT_ALGORITHMS": "RS256, ES384",
            "PULSEBOARD_JWT_ISSUER": ISSUER,
            "PULSEBOARD_JWT_AUDIENCE": "pulseboard,pulseboard-web",
            "PULSEBOARD_JWT_MAX_LIFETIME_DAYS": "7",
            "PULSEBOARD_JWT_JWKS_CACHE_SECONDS": "600",
            "PULSEBOARD_JWT_JWKS_REFETCH_SECONDS": "20",
        }
    )
    assert (settings.jwt_algorithms, settings.jwt_audience) == (
        ("RS256", "ES384"),
        ("pulseboard", "pulseboard-web"),
    )
    assert (
        settings.jwt_max_lifetime_days,
        settings.jwt_jwks_cache_seconds,
        settings.jwt_jwks_refetch_seconds,
    ) == (
        7.0,
        600.0,
        20.0,
    )
    assert Settings().jwt_max_lifetime_days == 30.0
