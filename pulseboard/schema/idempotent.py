"""Mutations sent with an idempotency key: which operations take part, and their answers as
resolvers/idempotency.py stores and replays them."""

from __future__ import annotations

from typing import Any

from graphql import GraphQLError, OperationType
from strawberry.types import ExecutionResult

from pulseboard.errors import ErrorCode
from pulseboard.resolvers import idempotency
from pulseboard.schema.documents import Documents, single_operation

# Codes that mean nothing was done and a retry may succeed: such an answer is not kept.
_NOTHING_DONE = frozenset({ErrorCode.SERVICE_UNAVAILABLE.value, ErrorCode.RATE_LIMITED.value})


def keyed(
    documents: Documents, query: str | None, operation_name: str | None, variables: Any, context: Any
) -> idempotency.Keyed | None:
    """The key of this operation when it runs once per key: a valid mutation, by a signed-in
    user, that carries a key. Everything else runs as usual (a key on a query means nothing)."""
    key = idempotency.requested.get()
    viewer = getattr(context, "viewer", None)
    if key is None or viewer is None or query is None or documents.errors(query, operation_name, variables):
        return None
    operation = single_operation(documents.document(query), operation_name)  # type: ignore[arg-type]
    if operation is None or operation.operation is not OperationType.MUTATION:
        return None
    return idempotency.Keyed(viewer.id, key, idempotency.fingerprint(query, operation_name, variables))


def encode(result: ExecutionResult) -> dict[str, Any] | None:
    """The answer to keep, or None when no root field did anything and every error is one a
    retry may get past (then the claim is rolled back too)."""
    errors = [error.formatted for error in result.errors or []]
    nothing = not any(value is not None for value in (result.data or {}).values())
    if nothing and errors and all((e.get("extensions") or {}).get("code") in _NOTHING_DONE for e in errors):
        return None
    return {"data": result.data, "errors": errors}


class _StoredError(GraphQLError):
    """An error of a stored answer, sent again exactly as it was first formatted."""

    def __init__(self, formatted: dict[str, Any]) -> None:
        super().__init__(
            formatted["message"], path=formatted.get("path"), extensions=formatted.get("extensions")
        )
        self._formatted = formatted

    @property
    def formatted(self) -> Any:
        return self._formatted


def replay(stored: dict[str, Any]) -> ExecutionResult:
    errors: list[GraphQLError] = [_StoredError(error) for error in stored["errors"]]
    return ExecutionResult(data=stored["data"], errors=errors or None, extensions={"idempotentReplay": True})
