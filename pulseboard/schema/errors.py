"""Gives every error an `extensions.code`, and masks unexpected ones in production. Database
faults (unavailable, timed out, a conflict) are SERVICE_UNAVAILABLE, logged once per kind and
interval; root mutation fields are run again after a serialization failure or deadlock."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from typing import Any

from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import FieldExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import Info

from pulseboard import telemetry
from pulseboard.errors import AppError, DatabaseFault, ErrorCode, database_fault
from pulseboard.resolvers.events import retrying

logger = logging.getLogger("pulseboard.errors")

_VARIABLE = re.compile(r"^Variable '\$(\w+)'")
# graphql-core's hints at schema names; in production they would leak what introspection hides.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")
MASKED_MESSAGE = "Internal server error."
# Codes of failures that are the server's, not the request's (a subscription's delivery retries
# them rather than sending them to the subscriber).
INFRASTRUCTURE_CODES = frozenset({ErrorCode.INTERNAL_SERVER_ERROR.value, ErrorCode.SERVICE_UNAVAILABLE.value})


def extensions_for(error: GraphQLError) -> dict[str, Any]:
    """The `extensions` the client sees for `error`, always with a code (no side effects)."""
    original = error.original_error
    if isinstance(original, AppError):
        return original.extensions
    if (error.extensions or {}).get("code"):
        return error.extensions  # type: ignore[return-value]
    if isinstance(original, MissingQueryError):
        return {"code": ErrorCode.GRAPHQL_PARSE_FAILED.value}
    if isinstance(original, (CannotGetOperationTypeError, InvalidOperationTypeError)):
        return {"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value}
    if (fault := _fault(original)) is not None:
        return fault.error().extensions
    if match := _VARIABLE.match(error.message):
        return {"code": ErrorCode.BAD_USER_INPUT.value, "field": match.group(1)}
    if original is None or isinstance(original, GraphQLError):
        if error.message.startswith("Syntax Error"):
            code = ErrorCode.GRAPHQL_PARSE_FAILED
        elif original is not None:  # a literal that failed to parse as its scalar
            code = ErrorCode.BAD_USER_INPUT
        else:
            code = ErrorCode.GRAPHQL_VALIDATION_FAILED
        return {**(error.extensions or {}), "code": code.value}
    return {"code": ErrorCode.INTERNAL_SERVER_ERROR.value}


def _fault(original: BaseException | None) -> DatabaseFault | None:
    if original is None or isinstance(original, (AppError, GraphQLError)):
        return None
    return database_fault(original)


def log_fault(fault: DatabaseFault, error: BaseException, where: str) -> None:
    """One line per kind of fault and interval (telemetry.log_limited), without a traceback."""
    telemetry.DATABASE_FAULTS.labels(fault.name.lower()).inc()
    detail = telemetry.escape_controls(str(error))[:300]
    telemetry.log_limited(
        logger, fault.value, "%s (%s): %s: %s", fault.value, where, type(error).__name__, detail
    )


def classify(error: GraphQLError, *, mask: bool) -> GraphQLError:
    """The error as the client should see it: with a code, and without internals when masked."""
    if (fault := _fault(error.original_error)) is not None:
        assert error.original_error is not None
        log_fault(fault, error.original_error, "operation")
        unavailable = fault.error()
        return GraphQLError(
            unavailable.message, nodes=error.nodes, path=error.path, extensions=unavailable.extensions
        )
    extensions = extensions_for(error)
    if extensions["code"] != ErrorCode.INTERNAL_SERVER_ERROR.value:
        if mask and "Did you mean" in error.message:
            return GraphQLError(
                _SUGGESTION.sub("", error.message), nodes=error.nodes, path=error.path, extensions=extensions
            )
        error.extensions = extensions
        return error
    logger.error("unexpected error in %s", error.path, exc_info=error.original_error)
    return GraphQLError(
        MASKED_MESSAGE if mask else str(error.original_error) or MASKED_MESSAGE,
        nodes=error.nodes,
        path=error.path,
        extensions=extensions,
    )


class RetryConflicts(FieldExtension):
    """On each Mutation field (only there: queries pay nothing for it), the root field is one
    unit of work: after a serialization failure or a deadlock the database rolled back, it runs
    again whole, its reads included (resolvers/events.py `retrying`)."""

    async def resolve_async(
        self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        async def attempt() -> Any:
            result = next_(source, info, **kwargs)
            return await result if inspect.isawaitable(result) else result

        return await retrying(attempt)
