"""Mutations per user per second, checked before a mutation executes (RATE_LIMITED)."""

from __future__ import annotations

from collections.abc import Iterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from pulseboard.limits import RateLimiter


class MutationRateLimit(SchemaExtension):
    def __init__(self, limiter: RateLimiter) -> None:
        self.limiter = limiter

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        viewer = getattr(context.context, "viewer", None)
        if viewer is not None and context.operation_type == OperationType.MUTATION:
            self.limiter.check(viewer.id)
        yield
