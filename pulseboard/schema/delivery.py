"""How the delivery engine runs a subscription: the plan made once at subscribe time (checked
document, authorized feed, cohort key) and the render that turns one event into the `next`
payload of a whole cohort.

The cohort key holds what makes two subscribers' frames differ: topic, document, operation,
variables and, only when the document selects a field in VIEWER_DEPENDENT, the viewer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    execute,
    get_named_type,
    located_error,
    visit,
)
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.language import Visitor

from pulseboard.errors import AppError
from pulseboard.resolvers import live
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.loaders import Loaders
from pulseboard.schema.documents import Documents, root_selections, single_operation
from pulseboard.schema.errors import INFRASTRUCTURE_CODES, classify, extensions_for
from pulseboard.schema.execution import is_awaitable
from pulseboard.subscriptions.encoding import EventMessage
from pulseboard.subscriptions.hub import Hub

# Fields reachable from the subscription payload types whose value or visibility depends on who
# asks: a User's email and platform role (the user's own and admins' to see; null for others).
# Every other field of TaskEvent, TicketEvent, TicketAssignment, NotificationEvent and
# QueueMetrics (and the types below them) reads only the event and rows any subscriber of that
# topic may see. A field added here puts the viewer into the cohort key of every document that
# selects it; tests/test_cohorts.py checks cohort and per-subscriber delivery stay identical.
VIEWER_DEPENDENT: frozenset[tuple[str, str]] = frozenset(
    {
        ("User", "email"),
        ("User", "role"),
        ("Ticket", "comments"),  # only for who may see the ticket now (in ticketAssigned's payload)
    }
)


class RenderFailed(Exception):
    """An event could not be rendered for a reason of the infrastructure (retried)."""


@dataclass(frozen=True)
class Source:
    """A subscription field as the engine serves it: how to open its feed (authorizing), and how
    an event becomes the field's value."""

    open: Callable[[Context, dict[str, Any]], Awaitable[Any]]
    build: Callable[[Any], object]
    snapshots: bool = False  # a watcher of snapshots (queueMetrics) rather than an event feed


@dataclass(frozen=True)
class Plan:
    key: Hashable
    field: str
    render: Callable[[Any], Awaitable[str]]
    feed: live.Feed | None = None
    watch: AbstractAsyncContextManager[Any] | None = None


def payload_json(result: ExecutionResult, *, mask: bool) -> str:
    """The `next` payload of `result`; RenderFailed when an error is the infrastructure's."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        for error in result.errors:
            if extensions_for(error)["code"] in INFRASTRUCTURE_CODES:
                raise RenderFailed(str(error.original_error or error)) from error.original_error
        payload["errors"] = [classify(e, mask=mask).formatted for e in result.errors]
    return orjson.dumps(payload).decode()


class Planner:
    def __init__(
        self,
        schema: Any,
        documents: Documents,
        sources: dict[str, Source],
        hub: Callable[[], Hub],
        mask: bool,
    ) -> None:
        self.schema = schema  # graphql-core's
        self.documents = documents
        self.sources = sources
        self.hub = hub
        self.mask = mask

    async def plan(
        self, context: Context, query: str, variables: dict[str, Any] | None, operation_name: str | None
    ) -> Plan | list[GraphQLError] | None:
        """The plan of a subscription the engine serves; its errors; None for anything else
        (queries and mutations over the socket run the ordinary way)."""
        document = self.documents.document(query)
        if document is None:
            return None
        operation = single_operation(document, operation_name)
        if operation is None or operation.operation != OperationType.SUBSCRIPTION:
            return None
        if errors := self.documents.errors(query, operation_name, variables):
            return errors
        coerced = get_variable_values(self.schema, operation.variable_definitions or (), variables or {})
        if isinstance(coerced, list):
            return coerced
        node = next(root_selections(document, operation_name))
        source = self.sources.get(node.name.value)
        if source is None:
            return None
        definition = self.schema.subscription_type.fields[node.name.value]
        try:
            arguments = get_argument_values(definition, node, coerced)
            opened = await source.open(context, arguments)
        except (AppError, GraphQLError) as error:
            return [located_error(error, [node], [(node.alias or node.name).value])]
        viewer = context.viewer if self._viewer_dependent(document, operation) else None
        key = (
            # A feed's topic; a watcher's field and arguments (the queue it watches).
            getattr(opened, "topic", None)
            or (node.name.value, json.dumps(arguments, sort_keys=True, default=str)),
            query,
            operation_name,
            _render_variables(document, operation, node, variables or {}),
            None if viewer is None else viewer.id,
        )
        # Nothing of the first subscriber's socket: the cohort's renders outlive it.
        render_context = Context(context.settings, viewer=viewer)

        async def render(event: Any) -> str:
            return await self._render(document, operation_name, variables, source, render_context, event)

        if source.snapshots:
            return Plan(key=key, field=node.name.value, render=render, watch=opened)
        return Plan(key=key, field=node.name.value, render=render, feed=opened)

    async def _render(
        self,
        document: DocumentNode,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        source: Source,
        context: Context,
        event: Any,
    ) -> str:
        if isinstance(event, EventMessage):
            # Loaders are fresh per event and shared by every cohort of it: its rows are read once.
            loaders = self.hub().per_event(event, lambda: Loaders(shared=True))
        else:
            loaders = Loaders(shared=True)
        result = execute(
            self.schema,
            document,
            root_value=source.build(event),
            context_value=dataclasses.replace(context, loaders=loaders),
            variable_values=variables,
            operation_name=operation_name,
            is_awaitable=is_awaitable,
        )
        if isawaitable(result):
            result = await result
        return payload_json(result, mask=self.mask)

    def _viewer_dependent(self, document: DocumentNode, operation: OperationDefinitionNode) -> bool:
        if not VIEWER_DEPENDENT:
            return False
        fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        root = self.schema.get_root_type(operation.operation)
        return _selects(self.schema, operation.selection_set, root, fragments, set())


def _selects(
    schema: Any,
    selection_set: SelectionSetNode | None,
    parent: GraphQLNamedType | None,
    fragments: dict[str, FragmentDefinitionNode],
    entered: set[str],
) -> bool:
    """Whether the selection reaches a VIEWER_DEPENDENT field (each fragment entered once)."""
    for selection in selection_set.selections if selection_set else ():
        if isinstance(selection, FieldNode):
            if not isinstance(parent, GraphQLObjectType) or selection.name.value not in parent.fields:
                continue
            if (parent.name, selection.name.value) in VIEWER_DEPENDENT:
                return True
            child = get_named_type(parent.fields[selection.name.value].type)
            if _selects(schema, selection.selection_set, child, fragments, entered):
                return True
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            target = schema.get_type(condition.name.value) if condition else parent
            if _selects(schema, selection.selection_set, target, fragments, entered):
                return True
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in entered:
            entered.add(selection.name.value)
            fragment = fragments.get(selection.name.value)
            if fragment is not None and _selects(
                schema,
                fragment.selection_set,
                schema.get_type(fragment.type_condition.name.value),
                fragments,
                entered,
            ):
                return True
    return False


def _render_variables(
    document: DocumentNode, operation: OperationDefinitionNode, root: FieldNode, variables: dict[str, Any]
) -> str:
    """The variables that can change what is rendered, as a key: the operation's own, less one
    used only as the root field's `after` (a resume position, not part of the selection)."""
    names = {d.variable.name.value for d in operation.variable_definitions or ()}
    position = next(
        (
            a.value.name.value
            for a in root.arguments or ()
            if a.name.value == "after" and isinstance(a.value, VariableNode)
        ),
        None,
    )
    if position is not None and _uses(document, operation, position) == 1:
        names.discard(position)
    return json.dumps({name: variables.get(name) for name in sorted(names)}, sort_keys=True, default=str)


def _uses(document: DocumentNode, operation: OperationDefinitionNode, name: str) -> int:
    """How often `$name` is used in the operation's selections and the document's fragments."""
    count = 0

    class Count(Visitor):
        def enter_variable(self, node: VariableNode, *_: Any) -> None:
            nonlocal count
            count += node.name.value == name

    counter = Count()
    visit(operation.selection_set, counter)
    for definition in document.definitions:
        if isinstance(definition, FragmentDefinitionNode):
            visit(definition.selection_set, counter)
    return count
