"""Gives every error an `extensions.code`, and masks unexpected ones in production."""

from __future__ import annotations

import logging
import re
from typing import Any

from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from pulseboard.errors import AppError, ErrorCode

logger = logging.getLogger("pulseboard.errors")

_VARIABLE = re.compile(r"^Variable '\$(\w+)'")
# graphql-core's hints at schema names; in production they would leak what introspection hides.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")
MASKED_MESSAGE = "Internal server error."


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


def classify(error: GraphQLError, *, mask: bool) -> GraphQLError:
    """The error as the client should see it: with a code, and without internals when masked."""
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
