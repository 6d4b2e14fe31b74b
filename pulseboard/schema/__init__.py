"""Strawberry types, inputs and the Query/Mutation roots; thin: every field calls resolvers/."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from pulseboard.limits import RateLimiter
from pulseboard.schema.documents import Documents, Guard, Limits
from pulseboard.schema.errors import classify
from pulseboard.schema.mutation import Mutation
from pulseboard.schema.observe import Observe
from pulseboard.schema.query import Query
from pulseboard.schema.ratelimit import MutationRateLimit
from pulseboard.schema.subscription import Subscription
from pulseboard.settings import Settings


class Schema(strawberry.Schema):
    """Every error leaves with an `extensions.code`; unexpected ones are masked in production.
    Documents are parsed, validated and limit-checked once per worker (`self.documents`)."""

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mask_errors = settings.production
        self.documents = Documents(
            self._schema,
            Limits.from_settings(settings),
            introspection=settings.introspection,
            hide_suggestions=settings.production,
        )
        self.extensions = (*self.extensions, lambda: Guard(self.documents))

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:  # type: ignore[override]
        # Subscriptions are served over WebSockets only (the HTTP path here cannot stream them).
        allowed = kwargs.get("allowed_operation_types")
        if allowed is not None:
            kwargs["allowed_operation_types"] = set(allowed) - {OperationType.SUBSCRIPTION}
        # Errors get their codes here rather than in an extension: parse errors end the
        # operation before extensions' exit hooks run.
        result = await super().execute(*args, **kwargs)
        if result.errors:
            result.errors = [classify(e, mask=self.mask_errors) for e in result.errors]
        return result

    def classified(self, error: GraphQLError) -> GraphQLError:
        """`error` as clients see it (for messages sent outside Strawberry's execution)."""
        return classify(error, mask=self.mask_errors)

    async def stream(self, *args: Any, **kwargs: Any) -> Any:
        # graphql-transport-ws runs every operation (queries too) through stream().
        return self._classified(await super().stream(*args, **kwargs))

    async def _classified(self, results: Any) -> AsyncIterator[Any]:
        async with aclosing(results):
            async for result in results:
                if getattr(result, "errors", None):
                    result.errors = [classify(e, mask=self.mask_errors) for e in result.errors]
                yield result

    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        # classify() logs unexpected errors once; expected ones are not worth a log line.
        return None


def build_schema(settings: Settings) -> Schema:
    limiter = RateLimiter(rate=settings.mutations_per_second, burst=settings.mutation_burst)
    extensions: list[Callable[[], SchemaExtension]] = [
        Observe,
        lambda: MutationRateLimit(limiter),
    ]
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,
        settings=settings,
    )


# The exported SDL does not depend on settings; `export-schema` and codegen read this one.
schema = build_schema(Settings())
