"""GraphQL over HTTP as its specification asks: media type negotiation, status codes for
requests that cannot be executed, and errors in GraphQL's own JSON shape. Also batches (a JSON
array of operations answered by an array, in order), as Apollo's BatchHttpLink sends them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import Response
from strawberry.http import GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.types import ExecutionResult

from pulseboard.errors import RETRY_AFTER_SECONDS, DatabaseFault, ErrorCode
from pulseboard.persisted import NOT_FOUND, NOT_FOUND_CODE
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.loaders import Loaders

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
    An operation that failed whole on SERVICE_UNAVAILABLE is 503 with Retry-After (either type).
    In a batch, one operation's answer decides no status: see Batch."""
    batch: Batch | None = getattr(request.state, "batch", None)
    if is_unavailable(result):
        if batch is not None:
            batch.unavailable += 1
        else:
            request.state.graphql_status = 503
        request.state.retry_after = RETRY_AFTER_SECONDS
    elif wants_graphql_response(request) and is_request_error(result):
        if batch is None:
            request.state.graphql_status = 400
        body.pop("data", None)
    return body


def finish(request: Request, response: Response) -> Response:
    if response.media_type == JSON:
        batch: Batch | None = getattr(request.state, "batch", None)
        if batch is not None and batch.unavailable == batch.size:
            request.state.graphql_status = 503  # nothing of it ran: retry it whole
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


# --- batches -----------------------------------------------------------------------------------


@dataclass
class Batch:
    """A batch being answered (request.state.batch). It is 200 with an answer per operation,
    errors included, as batching clients expect one array; only a batch of which every operation
    failed on SERVICE_UNAVAILABLE is 503 (with Retry-After, which also comes when some did)."""

    size: int
    unavailable: int = 0


async def batch_body(request: AsyncHTTPRequestAdapter) -> bytes | None:
    """The body of a POST of application/json that is a JSON array (a batch), else None: any
    other request is read as one operation (other content types are refused there, 415)."""
    if (
        request.method != "POST"
        or "application/json" not in parse_content_type(request.content_type or "")[0]
    ):
        return None
    body = await request.get_body()  # kept by Starlette: reading it again costs nothing
    return body if body.lstrip()[:1] == b"[" else None


def operation_context(context: Context) -> Context:
    """The context of one operation of a batch: the request's viewer, loaders of its own, as if
    the operation had come alone (so nothing one operation read is stale for the next)."""
    return dataclasses.replace(context, loaders=Loaders())


def batch_requests(items: object, *, max_size: int, headers: Mapping[str, str]) -> list[GraphQLRequestData]:
    """The operations of a batch, or an HTTPException (400 BAD_REQUEST) that refuses the whole
    batch before any of it runs."""
    if not isinstance(items, list):
        raise HTTPException(400, "A batch must be a JSON array of operations.")
    if max_size == 0:
        raise HTTPException(400, "Batching is off on this server: send one operation per request.")
    if not items:
        raise HTTPException(400, "The batch is empty: send at least one operation.")
    if len(items) > max_size:
        raise HTTPException(
            400, f"A batch may hold at most {max_size} operations ({len(items)} sent); none was run."
        )
    if "idempotency-key" in headers:
        raise HTTPException(
            400,
            "An Idempotency-Key names one operation: send keyed mutations one per request, not in a batch.",
        )
    return [_batched(index, item) for index, item in enumerate(items)]


_BATCHED_FIELDS = {"query": str, "variables": dict, "operationName": str, "extensions": dict}


def _batched(index: int, item: object) -> GraphQLRequestData:
    if not isinstance(item, dict):
        raise HTTPException(400, f"Operation {index} of the batch is not a JSON object.")
    for name, kind in _BATCHED_FIELDS.items():
        if not isinstance(item.get(name), (kind, type(None))):
            raise HTTPException(
                400, f"Operation {index} of the batch: `{name}` must be a {kind.__name__} or null."
            )
    return GraphQLRequestData(
        query=item.get("query"),
        variables=item.get("variables"),
        operation_name=item.get("operationName"),
        extensions=item.get("extensions"),
        protocol="http",
    )


def refused(reason: str) -> ExecutionResult:
    """One operation of a batch the server would have refused had it come alone (no query, an
    unknown operationName): its answer is that error, and the others still run."""
    return ExecutionResult(
        data=None, errors=[GraphQLError(reason, extensions={"code": ErrorCode.BAD_REQUEST.value})]
    )
