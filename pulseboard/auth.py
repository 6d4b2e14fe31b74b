"""JWT (HS256) minting and verification. Used by the HTTP context and by connection_init."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import jwt

from pulseboard.errors import AppError, unauthenticated
from pulseboard.models.enums import Role

ALGORITHM = "HS256"


@dataclass(frozen=True)
class Claims:
    sub: str
    email: str
    name: str
    role: Role
    expires_at: dt.datetime | None


def mint_token(secret: str, *, sub: str, email: str, name: str, role: Role, ttl: dt.timedelta) -> str:
    now = dt.datetime.now(dt.UTC)
    payload = {
        "sub": sub,
        "email": email,
        "name": name,
        "role": role.value,
        "iat": now,
        "exp": now + ttl,
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str) -> Claims:
    """Decode a token or raise UNAUTHENTICATED saying why (never echoing the token)."""
    try:
        payload = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise unauthenticated("Token expired.") from None
    except (jwt.InvalidTokenError, UnicodeError):
        raise unauthenticated("Invalid token.") from None
    try:
        role = Role(payload.get("role", Role.MEMBER.value))
    except ValueError:
        raise unauthenticated("Invalid token: unknown role.") from None
    sub = payload["sub"]
    if not isinstance(sub, str) or not sub:
        raise unauthenticated("Invalid token: bad subject.")
    exp = payload.get("exp")
    return Claims(
        sub=sub,
        email=str(payload.get("email") or ""),
        name=str(payload.get("name") or payload.get("email") or sub),
        role=role,
        expires_at=dt.datetime.fromtimestamp(exp, dt.UTC) if exp else None,
    )


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` value; None when absent."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("Authorization must be 'Bearer <token>'.")
    return token.strip()


def claims_from_header(secret: str, header: str | None) -> tuple[Claims | None, AppError | None]:
    """Claims when a valid token is present; the reason when one is present but bad."""
    try:
        token = bearer_token(header)
        return (verify_token(secret, token) if token else None), None
    except AppError as error:
        return None, error
