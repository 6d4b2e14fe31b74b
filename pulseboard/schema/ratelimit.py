"""Mutations per user per second, checked before a mutation executes (RATE_LIMITED).

Every root field of a mutation counts: thirty aliased mutations in one request are thirty."""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from pulseboard.limits import RateLimiter
from pulseboard.schema.documents import root_fields


class MutationRateLimit(SchemaExtension):
    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        viewer = getattr(context.context, "viewer", None)
        document = context.graphql_document
        if viewer is not None and document is not None and context.operation_type == OperationType.MUTATION:
            self.limiter.check(viewer.id, root_fields(document, context.operation_name))
        yield
