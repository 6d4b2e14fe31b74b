"""JWT minting (HS256, development) and verification: HS256 with a shared secret, or RS256/ES256
with an identity provider's JWKS. Used by the HTTP context and by connection_init."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient

from pulseboard.errors import AppError, unauthenticated
from pulseboard.models.enums import Role
from pulseboard.resolvers.validation import unstorable
from pulseboard.settings import JWT_ASYMMETRIC_ALGORITHMS, JWT_JWKS_DEFAULT_ALGORITHMS, Settings

logger = logging.getLogger("pulseboard")

ALGORITHM = "HS256"
# The widths of the users columns the claims are stored in.
SUB_MAX = 255
EMAIL_MAX = 255
NAME_MAX = 200
# The message of an expired token's UNAUTHENTICATED. A socket tells it apart from every other bad
# token (its close reason is "Token expired", not "Invalid token"): a client can refresh it.
TOKEN_EXPIRED = "Token expired."


@dataclass(frozen=True)
class Claims:
    sub: str
    email: str
    name: str
    role: Role
    expires_at: dt.datetime | None
    # The token's `iat` (None when it has none): the newest token's claims win (resolvers/users.py).
    issued_at: dt.datetime | None = None


def mint_token(
    secret: str,
    *,
    sub: str,
    email: str,
    name: str,
    role: Role,
    ttl: dt.timedelta,
    issuer: str = "",
    audience: str = "",
) -> str:
    now = dt.datetime.now(dt.UTC)
    payload: dict[str, Any] = {
        "sub": sub,
        "email": email,
        "name": name,
        "role": role.value,
        "iat": now,
        "exp": now + ttl,
    }
    if issuer:
        payload["iss"] = issuer
    if audience:
        payload["aud"] = audience
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def claims_of(payload: dict[str, Any]) -> Claims:
    """The claims of a verified payload, or UNAUTHENTICATED saying why (never echoing the token):
    a validly signed token is still refused when no user can be made of its claims."""
    try:
        role = Role(payload.get("role", Role.MEMBER.value))
    except ValueError:
        raise unauthenticated("Invalid token: unknown role.") from None
    sub = _claim(payload, "sub", SUB_MAX, "subject")
    if not sub:
        raise unauthenticated("Invalid token: bad subject.")
    email = _claim(payload, "email", EMAIL_MAX, "email")
    # The fallbacks may be wider than the name column; a shortened one still tells people apart.
    name = _claim(payload, "name", NAME_MAX, "name") or (email or sub)[:NAME_MAX]
    return Claims(
        sub=sub,
        email=email,
        name=name,
        role=role,
        expires_at=_expiry(payload["exp"]),
        issued_at=_issued_at(payload.get("iat")),
    )


def _claim(payload: dict[str, Any], key: str, max_length: int, what: str) -> str:
    """A text claim as it will be stored ("" when absent or null)."""
    value = payload.get(key)
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > max_length or unstorable(value):
        raise unauthenticated(f"Invalid token: bad {what}.")
    return value


def _expiry(exp: object) -> dt.datetime:
    # PyJWT accepts anything int() takes ("4102444800" too); a NumericDate is a JSON number.
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise unauthenticated("Invalid token: bad expiry.")
    try:
        return dt.datetime.fromtimestamp(exp, dt.UTC)
    except (OverflowError, ValueError, OSError):  # beyond the year 9999
        raise unauthenticated("Invalid token: bad expiry.") from None


def _issued_at(iat: object) -> dt.datetime | None:
    # Whole seconds, as NumericDates usually are: stored and compared the same way everywhere.
    if iat is None:
        return None
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise unauthenticated("Invalid token: bad issue time.")
    try:
        return dt.datetime.fromtimestamp(int(iat), dt.UTC)
    except (OverflowError, ValueError, OSError):
        raise unauthenticated("Invalid token: bad issue time.") from None


def expired(error: AppError) -> bool:
    """Whether `error` refused a token only because its `exp` has passed."""
    return error.message == TOKEN_EXPIRED


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` value; None when absent."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Authorization must be 'Bearer <token>'.")
    return token.strip()


# A JWKS request that takes longer fails (the event loop never waits on it: it runs in a thread).
JWKS_TIMEOUT_SECONDS = 5.0
# Key types taken from a JWKS: public keys only, never a symmetric ("oct") one.
_JWKS_KEY_TYPES = ("RSA", "EC")


# How long a verified token is remembered (at most: never past its expiry), and how many are.
VERIFIED_SECONDS = 60.0
VERIFIED_TOKENS = 10_000


class Verifier:
    """Verifies bearer tokens as the settings say, made once per app. With a JWKS URL only the
    asymmetric algorithms configured (RS256 and ES256 by default) are accepted, with the key the
    token's `kid` names; without one, HS256 with the shared secret. Either way `iss` and `aud`
    are checked when configured, and tokens living longer than the maximum lifetime are refused."""

    def __init__(
        self,
        *,
        secret: str = "",
        jwks_url: str = "",
        algorithms: Sequence[str] = (),
        issuer: str = "",
        audience: Sequence[str] = (),
        max_lifetime: dt.timedelta | None = dt.timedelta(days=30),
        jwks_cache_seconds: float = 300.0,
        jwks_refetch_seconds: float = 15.0,
    ) -> None:
        self.keys = (
            JwksKeys(jwks_url, lifespan=jwks_cache_seconds, min_interval=jwks_refetch_seconds)
            if jwks_url
            else None
        )
        if self.keys is not None:
            self.algorithms = tuple(algorithms) or JWT_JWKS_DEFAULT_ALGORITHMS
            if not set(self.algorithms) <= set(JWT_ASYMMETRIC_ALGORITHMS):
                raise ValueError("a JWKS verifies asymmetric algorithms only")
        else:
            self.algorithms = tuple(algorithms) or (ALGORITHM,)
            if self.algorithms != (ALGORITHM,):
                raise ValueError(f"a shared secret verifies {ALGORITHM} only")
        self._secret = secret
        self.issuer = issuer
        self.audience = tuple(audience)
        self.max_lifetime = max_lifetime if max_lifetime else None
        self._required = ["sub", "exp", *(["iss"] if issuer else []), *(["aud"] if audience else [])]
        # Tokens verified lately, by their whole text (signature included): a client sends the
        # same token with every request, and its signature is checked once a minute, not each time.
        # With a JWKS, only while the key set that verified it is current and fresh (a withdrawn
        # key stops verifying once the set is fetched again).
        self._verified: OrderedDict[str, tuple[Claims, float, int]] = OrderedDict()
        self.verifications = 0  # signature checks made, for tests

    @classmethod
    def from_settings(cls, settings: Settings) -> Verifier:
        days = settings.jwt_max_lifetime_days
        return cls(
            secret=settings.jwt_secret,
            jwks_url=settings.jwt_jwks_url,
            algorithms=settings.jwt_algorithms,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            max_lifetime=dt.timedelta(days=days) if days else None,
            jwks_cache_seconds=settings.jwt_jwks_cache_seconds,
            jwks_refetch_seconds=settings.jwt_jwks_refetch_seconds,
        )

    async def claims_from_header(self, header: str | None) -> tuple[Claims | None, AppError | None]:
        """Claims when a valid token is present; the reason when one is present but bad."""
        try:
            token = bearer_token(header)
            return (await self.verify(token) if token else None), None
        except AppError as error:
            return None, error

    async def verify(self, token: str) -> Claims:
        """The claims of a valid token, or UNAUTHENTICATED saying why (never echoing the token).
        A token verified within VERIFIED_SECONDS is taken from memory until it expires."""
        now = time.monotonic()
        remembered = self._verified.get(token)
        if remembered is not None:
            claims, until, generation = remembered
            live = claims.expires_at is None or claims.expires_at > dt.datetime.now(dt.UTC)
            if now < until and generation == self._generation() and live:
                self._verified.move_to_end(token)
                return claims
            del self._verified[token]  # checked again: expired, or its key may be withdrawn
        claims = await self._verify(token)
        if (generation := self._generation()) != -1:
            self._verified[token] = (claims, now + VERIFIED_SECONDS, generation)
        if len(self._verified) > VERIFIED_TOKENS:
            self._verified.popitem(last=False)
        return claims

    def _generation(self) -> int:
        return self.keys.generation() if self.keys is not None else 0

    async def _verify(self, token: str) -> Claims:
        self.verifications += 1
        if self.keys is None:  # a shared secret: PyJWT refuses any algorithm but ALGORITHM itself
            if not self._secret:
                raise unauthenticated("Invalid token.")
            return self._claims(self._decode(token, self._secret, ALGORITHM))
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.InvalidTokenError, UnicodeError):
            raise unauthenticated("Invalid token.") from None
        algorithm = header.get("alg")
        # Checked before any key is looked up: `none`, and HS256 when the keys are public, never
        # get as far as a signature check.
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise unauthenticated("Invalid token.")
        return self._claims(self._decode(token, await self._key(header, algorithm), algorithm))

    def _claims(self, payload: dict[str, Any]) -> Claims:
        claims = claims_of(payload)
        self._check_lifetime(payload)
        return claims

    async def _key(self, header: dict[str, Any], algorithm: str) -> PyJWK:
        assert self.keys is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise unauthenticated("Invalid token.")
        key = await self.keys.get(kid)
        if key is None:
            if self.keys.unavailable:
                raise unauthenticated("Invalid token: signing keys unavailable.")
            raise unauthenticated("Invalid token: unknown signing key.")
        jwk = key.for_algorithm(algorithm)
        if jwk is None:
            raise unauthenticated("Invalid token.")
        return jwk

    def _decode(self, token: str, key: PyJWK | str, algorithm: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=self.issuer or None,
                audience=list(self.audience) or None,
                # PyJWT checks exp, iat and nbf are numbers (and not in the future for iat and
                # nbf) and that sub is a string; the types and sizes of the rest are checked by
                # claims_of. A token with an `aud` is refused when no audience is configured.
                options={
                    "require": self._required,
                    "verify_exp": True,
                    "verify_iat": True,
                    "verify_nbf": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise unauthenticated(TOKEN_EXPIRED) from None
        except jwt.InvalidIssuerError:
            raise unauthenticated("Invalid token: wrong issuer.") from None
        except jwt.InvalidAudienceError:
            raise unauthenticated("Invalid token: wrong audience.") from None
        except jwt.MissingRequiredClaimError as error:
            what = {"iss": "Invalid token: wrong issuer.", "aud": "Invalid token: wrong audience."}
            raise unauthenticated(what.get(error.claim, "Invalid token.")) from None
        except (jwt.InvalidTokenError, UnicodeError):
            raise unauthenticated("Invalid token.") from None

    def _check_lifetime(self, payload: dict[str, Any]) -> None:
        """`exp - iat` (or, without `iat`, `exp - now`) at most the maximum lifetime: a stolen
        token is not good for a century. exp and iat are numbers by now (claims_of)."""
        if self.max_lifetime is None:
            return
        issued = payload.get("iat")
        start = issued if isinstance(issued, (int, float)) and not isinstance(issued, bool) else time.time()
        if payload["exp"] - start > self.max_lifetime.total_seconds():
            days = self.max_lifetime.total_seconds() / 86400
            raise unauthenticated(
                f"Invalid token: lifetime longer than {days:g} day{'' if days == 1 else 's'}."
            )


class JwksKey:
    """One signing key of a JWKS. A key that names its `alg` verifies that one only; one that
    does not verifies the algorithms of its type (RSA: RS*/PS*, EC: its curve's ES*)."""

    def __init__(self, data: dict[str, Any], jwk: PyJWK) -> None:
        self._data = data
        self.algorithm = data.get("alg")
        self._jwks: dict[str, PyJWK | None] = {jwk.algorithm_name: jwk}

    def for_algorithm(self, algorithm: str) -> PyJWK | None:
        if self.algorithm is not None and algorithm != self.algorithm:
            return None
        if algorithm not in self._jwks:  # bounded: the verifier accepts a few algorithms only
            try:
                self._jwks[algorithm] = PyJWK(self._data, algorithm)
            except (jwt.PyJWTError, ValueError, TypeError):  # not a key of that type
                self._jwks[algorithm] = None
        return self._jwks[algorithm]


class JwksKeys:
    """The signing keys of a JWKS URL, kept in memory by `kid`. The set is fetched (PyJWKClient,
    in a thread: never on the event loop) when first needed, again once it is older than
    `lifespan`, and when a token names a `kid` it lacks (a rotated key); but never twice within
    `min_interval`, so tokens with made-up kids cannot make us hammer the identity provider.
    When a fetch fails the keys already known keep working, and one warning is logged."""

    def __init__(
        self,
        url: str,
        *,
        lifespan: float,
        min_interval: float,
        timeout: float = JWKS_TIMEOUT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.lifespan = lifespan
        self.min_interval = min_interval
        self._clock = clock
        self._client = PyJWKClient(
            url, cache_jwk_set=False, timeout=timeout, headers={"User-Agent": "pulseboard"}
        )
        self._keys: dict[str, JwksKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._refreshing: asyncio.Future[None] | None = None
        self.fetches = 0
        # True while the last fetch failed (the keys known, if any, are from an earlier one).
        self.unavailable = False

    def generation(self) -> int:
        """Which fetch the keys in use come from; -1 once they are older than `lifespan`."""
        fresh = self._fetched_at is not None and self._clock() - self._fetched_at < self.lifespan
        return self.fetches if fresh else -1

    async def get(self, kid: str) -> JwksKey | None:
        now = self._clock()
        fresh = self._fetched_at is not None and now - self._fetched_at < self.lifespan
        if fresh and kid in self._keys:
            return self._keys[kid]
        if self._refreshing is None and (
            self._attempted_at is None or now - self._attempted_at >= self.min_interval
        ):
            self._attempted_at = now
            self._refreshing = asyncio.ensure_future(self._refresh())
        # While the endpoint is failing, a key already known is used without waiting for the
        # next attempt (which may take until its timeout).
        if self._refreshing is not None and not (self.unavailable and kid in self._keys):
            # Shielded: a request that goes away does not cancel the fetch others wait for.
            await asyncio.shield(self._refreshing)
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        self.fetches += 1
        try:
            data = await asyncio.to_thread(self._client.fetch_data)
            keys = _signing_keys(data)
            if not keys:
                raise ValueError("no usable signing keys")
        except Exception as error:  # the network, or whatever the endpoint sent
            self.unavailable = True
            logger.warning(
                "JWKS %s unavailable (%s: %s); keeping %d cached signing keys",
                self.url,
                type(error).__name__,
                error,
                len(self._keys),
            )
        else:
            self._keys, self._fetched_at, self.unavailable = keys, self._clock(), False
        finally:
            self._refreshing = None


def _signing_keys(data: Any) -> dict[str, JwksKey]:
    """The usable public signing keys of a JWKS document, by kid (unusable entries skipped)."""
    keys: dict[str, JwksKey] = {}
    entries = data.get("keys") if isinstance(data, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in _JWKS_KEY_TYPES or "d" in entry:  # public keys only
            continue
        if entry.get("alg") is not None and entry["alg"] not in JWT_ASYMMETRIC_ALGORITHMS:
            continue
        try:
            keys[kid] = JwksKey(entry, PyJWK(entry))
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
    return keys
