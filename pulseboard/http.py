"""GraphQL over HTTP as its specification asks: media type negotiation, status codes for
requests that cannot be executed, and errors in GraphQL's own JSON shape."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from strawberry.types import ExecutionResult

from pulseboard.errors import RETRY_AFTER_SECONDS, DatabaseFault, ErrorCode
from pulseboard.persisted import NOT_FOUND, NOT_FOUND_CODE

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"

# Strawberry's reasons for the requests it refuses, and the status the specification gives them.
_STATUS = {
    "mutations are not allowed when using GET": 405,
    "Unsupported content type": 415,
}


def wants_graphql_response(request: Request) -> bool:
    """Whether the client accepts application/graphql-response+json (then it gets it)."""
    return GRAPHQL_RESPONSE in request.headers.get("accept", "")


def is_request_error(result: ExecutionResult) -> bool:
    """Parse, validation and variable errors: nothing was executed (no error has a path)."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(e.path is None for e in errors)


def is_unavailable(result: ExecutionResult) -> bool:
    """The whole operation failed on SERVICE_UNAVAILABLE (no data): it is answered 503."""
    errors = result.errors or []
    return (
        result.data is None
        and bool(errors)
        and all((e.extensions or {}).get("code") == ErrorCode.SERVICE_UNAVAILABLE.value for e in errors)
    )


def shape(request: Request, result: ExecutionResult, body: dict[str, Any]) -> dict[str, Any]:
    """Under application/graphql-response+json a request error has no `data` and status 400.
    An operation that failed whole on SERVICE_UNAVAILABLE is 503 with Retry-After (either type)."""
    if is_unavailable(result):
        request.state.graphql_status = 503
        request.state.retry_after = RETRY_AFTER_SECONDS
    elif wants_graphql_response(request) and is_request_error(result):
        request.state.graphql_status = 400
        body.pop("data", None)
    return body


def finish(request: Request, response: Response) -> Response:
    if response.media_type == JSON:
        status = getattr(request.state, "graphql_status", None)
        if wants_graphql_response(request):
            response.headers["content-type"] = f"{GRAPHQL_RESPONSE}; charset=utf-8"
            response.status_code = status or response.status_code
        elif status == 503:
            response.status_code = status
        if (retry := getattr(request.state, "retry_after", None)) is not None:
            response.headers["retry-after"] = str(retry)
    return response


def unavailable(request: Request, fault: DatabaseFault) -> Response:
    """A request that could not start (the viewer could not be read): 503 SERVICE_UNAVAILABLE
    with Retry-After, as the overload shedding answers (limits.Shed)."""
    error = fault.error()
    body = json.dumps({"errors": [{"message": error.message, "extensions": error.extensions}]})
    media = GRAPHQL_RESPONSE if wants_graphql_response(request) else JSON
    headers = {"retry-after": str(RETRY_AFTER_SECONDS)}
    return Response(body, status_code=503, media_type=media, headers=headers)


def refusal(request: Request, status: int, reason: str) -> Response:
    """A request the server will not execute, as a GraphQL error body with a fitting status."""
    status = _STATUS.get(reason, status)
    body = json.dumps({"errors": [{"message": reason, "extensions": {"code": ErrorCode.BAD_REQUEST.value}}]})
    headers = {"allow": "POST"} if status == 405 else {}
    media = GRAPHQL_RESPONSE if wants_graphql_response(request) else JSON
    return Response(body, status_code=status, media_type=media, headers=headers)


def persisted_query_not_found(request: Request) -> Response:
    """What Apollo's and urql's persisted-query links expect before retrying with the document."""
    body = json.dumps({"errors": [{"message": NOT_FOUND, "extensions": {"code": NOT_FOUND_CODE}}]})
    return Response(body, media_type=GRAPHQL_RESPONSE if wants_graphql_response(request) else JSON)
