"""Gives every error an `extensions.code`, and masks unexpected ones in production."""

from __future__ import annotations

import logging
import re

from graphql import GraphQLError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from pulseboard.errors import AppError, ErrorCode

logger = logging.getLogger("pulseboard.errors")

_VARIABLE = re.compile(r"^Variable '\$(\w+)'")
MASKED_MESSAGE = "Internal server error."


def classify(error: GraphQLError, *, mask: bool) -> GraphQLError:
    """The error as the client should see it: with a code, and without internals when masked."""
    original = error.original_error
    if isinstance(original, AppError):
        error.extensions = original.extensions
        return error
    if isinstance(original, (CannotGetOperationTypeError, InvalidOperationTypeError)):
        error.extensions = {"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value}
        return error
    if match := _VARIABLE.match(error.message):
        error.extensions = {"code": ErrorCode.BAD_USER_INPUT.value, "field": match.group(1)}
        return error
    if original is None or isinstance(original, GraphQLError):
        if error.message.startswith("Syntax Error"):
            code = ErrorCode.GRAPHQL_PARSE_FAILED
        elif original is not None:  # a literal that failed to parse as its scalar
            code = ErrorCode.BAD_USER_INPUT
        else:
            code = ErrorCode.GRAPHQL_VALIDATION_FAILED
        error.extensions = {**(error.extensions or {}), "code": code.value}
        return error
    logger.error("unexpected error in %s", error.path, exc_info=original)
    return GraphQLError(
        MASKED_MESSAGE if mask else str(original) or MASKED_MESSAGE,
        nodes=error.nodes,
        path=error.path,
        extensions={"code": ErrorCode.INTERNAL_SERVER_ERROR.value},
    )
