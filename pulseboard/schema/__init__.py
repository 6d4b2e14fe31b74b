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
from pulseboard.resolvers import idempotency
from pulseboard.schema import idempotent
from pulseboard.schema.documents import Documents, Guard, Limits
from pulseboard.schema.errors import classify
from pulseboard.schema.execution import ExecutionContext
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
        self.idempotency_retention_seconds = settings.idempotency_retention_seconds
        self.documents = Documents(
            self._schema,
            Limits.from_settings(settings),
            introspection=settings.introspection,
            hide_suggestions=settings.production,
        )
        self.extensions = (*self.extensions, lambda: Guard(self.documents))

    async def execute(  # type: ignore[override]
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any = None,
        root_value: Any = None,
        operation_name: str | None = None,
        **kwargs: Any,
    ) -> ExecutionResult:
        # Subscriptions are served over WebSockets only (the HTTP path here cannot stream them).
        allowed = kwargs.get("allowed_operation_types")
        if allowed is not None:
            kwargs["allowed_operation_types"] = set(allowed) - {OperationType.SUBSCRIPTION}

        async def run() -> ExecutionResult:
            result = await super(Schema, self).execute(
                query,
                variable_values=variable_values,
                context_value=context_value,
                root_value=root_value,
                operation_name=operation_name,
                **kwargs,
            )
            # Errors get their codes here rather than in an extension: parse errors end the
            # operation before extensions' exit hooks run.
            if result.errors:
                result.errors = [classify(e, mask=self.mask_errors) for e in result.errors]
            return result

        keyed = idempotent.keyed(self.documents, query, operation_name, variable_values, context_value)
        if keyed is None:
            return await run()
        try:
            return await idempotency.once(
                keyed,
                run,
                encode=idempotent.encode,
                replay=idempotent.replay,
                retention_seconds=self.idempotency_retention_seconds,
            )
        except Exception as error:  # claiming or storing the key failed: nothing was committed
            failed = GraphQLError(str(error), original_error=error)
            return ExecutionResult(data=None, errors=[classify(failed, mask=self.mask_errors)])

    def classified(self, error: GraphQLError) -> GraphQLError:
        """`error` as clients see it (for messages sent outside Strawberry's execution)."""
        return classify(error, mask=self.mask_errors)

    async def stream(self, query: str | None, *args: Any, **kwargs: Any) -> Any:
        # graphql-transport-ws runs every operation (queries too) through stream(); a mutation
        # with an idempotency key runs through execute(), which keeps its answer.
        context, name = kwargs.get("context_value"), kwargs.get("operation_name")
        if not args and idempotent.keyed(self.documents, query, name, kwargs.get("variable_values"), context):
            return _single(await self.execute(query, **kwargs))
        return self._classified(await super().stream(query, *args, **kwargs))

    async def _classified(self, results: Any) -> AsyncIterator[Any]:
        async with aclosing(results):
            async for result in results:
                if getattr(result, "errors", None):
                    result.errors = [classify(e, mask=self.mask_errors) for e in result.errors]
                yield result

    def process_errors(self, errors: Any, execution_context: Any = None) -> None:
        # classify() logs unexpected errors once; expected ones are not worth a log line.
        return None


async def _single(result: ExecutionResult) -> AsyncIterator[ExecutionResult]:
    yield result


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
        execution_context_class=ExecutionContext,
        settings=settings,
    )


# The exported SDL does not depend on settings; `export-schema` and codegen read this one.
schema = build_schema(Settings())
