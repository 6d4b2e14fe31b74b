"""JWT (HS256) minting and verification. Used by the HTTP context and by connection_init."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import jwt

from pulseboard.errors import AppError, unauthenticated
from pulseboard.models.enums import Role
from pulseboard.resolvers.validation import unstorable

ALGORITHM = "HS256"
# The widths of the users columns the claims are stored in.
SUB_MAX = 255
EMAIL_MAX = 255
NAME_MAX = 200


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
    """Decode a token or raise UNAUTHENTICATED saying why (never echoing the token). A validly
    signed token is still refused when no user can be made of its claims."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            # PyJWT checks exp, iat and nbf are numbers (and not in the future for iat and nbf)
            # and that sub is a string; the types and sizes of the rest are checked below.
            options={"require": ["sub", "exp"], "verify_exp": True, "verify_iat": True, "verify_nbf": True},
        )
    except jwt.ExpiredSignatureError:
        raise unauthenticated("Token expired.") from None
    except (jwt.InvalidTokenError, UnicodeError):
        raise unauthenticated("Invalid token.") from None
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
    return Claims(sub=sub, email=email, name=name, role=role, expires_at=_expiry(payload["exp"]))


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
