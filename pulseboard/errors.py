"""Error codes clients can rely on, and the one exception type resolvers raise."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from graphql import GraphQLError


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    NOT_FOUND = "NOT_FOUND"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    QUERY_TOO_COMPLEX = "QUERY_TOO_COMPLEX"
    BAD_REQUEST = "BAD_REQUEST"
    GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
    GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
    # Retryable: nothing was done; try again after the Retry-After header (or retryAfterSeconds).
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"


class AppError(Exception):
    """An expected failure whose message and code are safe to show to the client."""

    def __init__(self, code: ErrorCode, message: str, **extensions: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extensions = {"code": code.value, **extensions}

    def to_graphql(self) -> GraphQLError:
        return GraphQLError(self.message, extensions=self.extensions, original_error=self)


def unauthenticated(message: str = "Authentication required.") -> AppError:
    return AppError(ErrorCode.UNAUTHENTICATED, message)


def forbidden(message: str = "You do not have access to this resource.") -> AppError:
    return AppError(ErrorCode.FORBIDDEN, message)


def not_found(kind: str, id: object) -> AppError:
    return AppError(ErrorCode.NOT_FOUND, f"{kind} {id} not found.")


def bad_input(field: str, message: str) -> AppError:
    return AppError(ErrorCode.BAD_USER_INPUT, message, field=field)


def conflict(kind: str, id: object, current_version: int) -> AppError:
    return AppError(
        ErrorCode.CONFLICT,
        f"{kind} {id} was changed by someone else (current version {current_version}).",
        currentVersion=current_version,
    )
