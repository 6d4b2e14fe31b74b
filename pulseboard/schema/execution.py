"""How graphql-core tells a value from an awaitable, for rows of our models.

A Tortoise model defines `__await__` (awaiting a row gives the row), so graphql-core took every
row a resolver returned for an awaitable: each task of a board page was awaited in a task of its
own (a quarter of a page's CPU). A row is a value; everything else is checked as Strawberry does."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeGuard

from strawberry.execution import optimized_is_awaitable
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from tortoise.models import Model

# What most values are, answered before anything else (as Strawberry's own check does).
_PLAIN = frozenset({type(None), bool, int, float, str, list, dict})


def is_awaitable(value: Any) -> TypeGuard[Awaitable[Any]]:
    if type(value) in _PLAIN:
        return False
    return not isinstance(value, Model) and optimized_is_awaitable(value)


class ExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, with rows taken for the values they are."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.is_awaitable = is_awaitable
