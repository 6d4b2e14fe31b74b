"""Each distinct document is parsed, validated and checked against the limits once per worker.

The checks walk the document once, computing each fragment's depth, aliases and cost a single
time however often it is spread, so their work is linear in the document's size: a document of
doubling fragments is refused (or passed) in microseconds, never expanded. Strawberry's own
depth and alias limiters re-walk a fragment at every spread, which is exponential."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from pulseboard.errors import ErrorCode
from pulseboard.settings import Settings

# Types that only shape a connection: selecting through them touches no further rows.
_STRUCTURAL = re.compile(r"(Connection|Edge|PageInfo)$")
# Documents larger than this are checked every time rather than kept (they cannot be common).
MAX_CACHED_DOCUMENT_CHARS = 64 * 1024


@dataclass(frozen=True)
class Limits:
    max_depth: int
    max_aliases: int
    max_cost: int
    max_event_cost: int
    max_tokens: int
    default_page: int
    max_page: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            max_depth=settings.max_query_depth,
            max_aliases=settings.max_aliases,
            max_cost=settings.max_query_cost,
            max_event_cost=settings.max_subscription_event_cost,
            max_tokens=settings.max_tokens,
            default_page=settings.page_size_default,
            max_page=settings.page_size_max,
        )


@dataclass
class _Measure:
    depth: int = 0
    aliases: int = 0
    cost: int = 0  # rows touched per row of the parent selection
    per_item: int = 0  # inside a connection: rows touched per item of its page (its edges)
    subscription: bool = False  # then `cost` is what each event costs, per subscriber

    def add(self, other: _Measure) -> None:
        self.depth = max(self.depth, other.depth)
        self.aliases += other.aliases
        self.cost += other.cost
        self.per_item += other.per_item
        self.subscription = self.subscription or other.subscription


class _Walk:
    """One pass over an operation; fragments are measured once and reused at every spread."""

    def __init__(self, schema: GraphQLSchema, limits: Limits, document: DocumentNode, variables: Any) -> None:
        self.schema = schema
        self.limits = limits
        self.variables = variables if isinstance(variables, dict) else {}
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.memo: dict[str, _Measure] = {}
        self.in_progress: set[str] = set()

    def operation(self, operation: OperationDefinitionNode) -> _Measure:
        root = self.schema.get_root_type(operation.operation)
        measured = self.selections(operation.selection_set, root)
        measured.subscription = operation.operation == OperationType.SUBSCRIPTION
        return measured

    def selections(self, selection_set: SelectionSetNode | None, parent: GraphQLNamedType | None) -> _Measure:
        total = _Measure()
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                part = self.field(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                part = self.selections(
                    selection.selection_set,
                    self.schema.get_type(condition.name.value) if condition else parent,
                )
            elif isinstance(selection, FragmentSpreadNode):
                part = self.fragment(selection.name.value)
            else:  # pragma: no cover - the grammar has no other selection
                continue
            total.add(part)
        return total

    def fragment(self, name: str) -> _Measure:
        if name in self.memo:
            return self.memo[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.in_progress:
            return _Measure()  # unknown fragments and cycles are validation's to report
        self.in_progress.add(name)
        measure = self.selections(
            definition.selection_set, self.schema.get_type(definition.type_condition.name.value)
        )
        self.in_progress.discard(name)
        self.memo[name] = measure
        return measure

    def field(self, node: FieldNode, parent: GraphQLNamedType | None) -> _Measure:
        name = node.name.value
        aliases = 1 if node.alias else 0
        if name.startswith("__"):  # introspection: limited by being switched off in production
            return _Measure(aliases=aliases)
        definition = parent.fields.get(name) if isinstance(parent, GraphQLObjectType) else None
        if definition is None:
            return _Measure(aliases=aliases)  # unknown field: validation reports it
        child_type = get_named_type(definition.type)
        inner = self.selections(node.selection_set, child_type)
        structural = _STRUCTURAL.search(parent.name) is not None if parent else False
        depth = inner.depth + 1 if node.selection_set is not None else 0
        measured = _Measure(depth=depth, aliases=aliases + inner.aliases)
        listed = isinstance(get_nullable_type(definition.type), GraphQLList)
        if "first" in definition.args:  # a connection: a page of rows, its edges' cost per row
            rows = self.page_size(node)
            measured.cost = rows + rows * inner.per_item + inner.cost
        elif node.selection_set is None:
            measured.cost = 1 if name == "totalCount" and structural else 0  # a count is one query
        elif structural and listed:
            measured.per_item = inner.cost  # edges: paid once per row of the connection
        elif structural:
            measured.cost = inner.cost  # node, pageInfo: the connection counted their row
        elif listed:
            rows = self.limits.default_page
            measured.cost = rows + rows * inner.cost
        else:
            measured.cost = 1 + inner.cost  # one related row
        return measured

    def page_size(self, node: FieldNode) -> int:
        """The page a connection asks for: `first`, or `last` paging backward (the larger, should
        a document give both, which the resolver refuses anyway)."""
        sizes = [self.page_argument(node, name) for name in ("first", "last")]
        given = [value for value in sizes if value is not None]
        return max(given) if given else self.limits.default_page

    def page_argument(self, node: FieldNode, name: str) -> int | None:
        value: Any = None
        for argument in node.arguments or ():
            if argument.name.value == name:
                if isinstance(argument.value, IntValueNode):
                    value = int(argument.value.value)
                elif isinstance(argument.value, VariableNode):
                    value = self.variables.get(argument.value.name.value)
        if type(value) is not int or value < 0:
            return None
        return min(value, self.limits.max_page)


def measure(
    schema: GraphQLSchema, limits: Limits, document: DocumentNode, operation_name: str | None, variables: Any
) -> _Measure:
    """Depth, aliases and estimated rows of the operation that would run."""
    walk = _Walk(schema, limits, document, variables)
    total = _Measure()
    for operation in _operations(document, operation_name):
        total.add(walk.operation(operation))
    return total


def _operations(document: DocumentNode, operation_name: str | None) -> list[OperationDefinitionNode]:
    """The operation that would run; every operation when the name leaves it open (the checks
    then cover them all, so no choice of execution can slip past them)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations
    return [o for o in operations if o.name is not None and o.name.value == operation_name]


def single_operation(document: DocumentNode, operation_name: str | None) -> OperationDefinitionNode | None:
    """The operation `operation_name` picks, when it picks exactly one."""
    operations = _operations(document, operation_name)
    return operations[0] if len(operations) == 1 else None


def root_selections(document: DocumentNode, operation_name: str | None) -> Iterator[FieldNode]:
    """The root fields of the operation in document order, through fragments; each fragment is
    entered once, as execution does (so doubling fragments cannot multiply the walk)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    entered: set[str] = set()
    stack = [iter(o.selection_set.selections) for o in reversed(_operations(document, operation_name))]
    while stack:
        selection = next(stack[-1], None)
        if selection is None:
            stack.pop()
        elif isinstance(selection, FieldNode):
            yield selection
        elif isinstance(selection, InlineFragmentNode):
            stack.append(iter(selection.selection_set.selections))
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in entered:
            entered.add(selection.name.value)
            if (fragment := fragments.get(selection.name.value)) is not None:
                stack.append(iter(fragment.selection_set.selections))


def root_fields(document: DocumentNode, operation_name: str | None) -> int:
    """How many root fields the operation executes: distinct response keys, as execution merges
    fields of the same key."""
    return len({(f.alias or f.name).value for f in root_selections(document, operation_name)})


def limit_errors(limits: Limits, measured: _Measure) -> list[GraphQLError]:
    if measured.depth > limits.max_depth:
        return [GraphQLError(f"Query exceeds the maximum depth of {limits.max_depth}.")]
    if measured.aliases > limits.max_aliases:
        return [GraphQLError(f"{measured.aliases} aliases found; at most {limits.max_aliases} allowed.")]
    limit, unit = (limits.max_event_cost, " per event") if measured.subscription else (limits.max_cost, "")
    if measured.cost > limit:
        return [
            GraphQLError(
                f"Query is too complex: it may touch about {measured.cost} rows{unit}"
                f" (the limit is {limit}).",
                extensions={
                    "code": ErrorCode.QUERY_TOO_COMPLEX.value,
                    "estimate": measured.cost,
                    "limit": limit,
                },
            )
        ]
    return []


def _unnamed_operation() -> GraphQLError:
    """The GraphQL spec's GetOperation: a document of several operations runs only the one
    `operationName` names, and none when it names none. Refused here, before anything is
    measured or run, over HTTP and the socket alike (Strawberry would run the first operation)."""
    return GraphQLError(
        "Must provide operationName: the document contains several operations.",
        extensions={"code": ErrorCode.GRAPHQL_VALIDATION_FAILED.value},
    )


def _variable_key(variables: Any) -> tuple[Any, ...]:
    """The variable values a document's page sizes may depend on (only integers can)."""
    if not isinstance(variables, dict) or not variables:
        return ()
    return tuple(sorted((k, v) for k, v in variables.items() if type(v) is int))


@dataclass
class _Entry:
    document: DocumentNode | None
    size: int
    validation: list[GraphQLError] | None = None
    checks: dict[tuple[Any, ...], list[GraphQLError]] = field(default_factory=dict)


class Documents:
    """A bounded LRU of documents with their parse, validation and limit results."""

    MAX_CHECKS_PER_DOCUMENT = 32

    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        *,
        introspection: bool,
        hide_suggestions: bool,
        max_entries: int = 1000,
        max_chars: int = 8 * 1024 * 1024,
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.hide_suggestions = hide_suggestions
        self.rules = (*specified_rules, MaybeNullValidationRule, OneOfInputValidationRule) + (
            () if introspection else (NoSchemaIntrospectionCustomRule,)
        )
        self.max_entries = max_entries
        self.max_chars = max_chars
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._chars = 0
        # Counted for tests and metrics: how often the expensive steps really ran.
        self.parses = 0
        self.validations = 0

    def __len__(self) -> int:
        return len(self._entries)

    def document(self, query: str) -> DocumentNode | None:
        """The parsed document, or None when it does not parse (Strawberry then reports why)."""
        return self._entry(query).document

    def errors(self, query: str, operation_name: str | None, variables: Any) -> list[GraphQLError]:
        """Validation and limit errors of running `operation_name` of `query` (empty: it may run)."""
        entry = self._entry(query)
        if entry.document is None:
            return [GraphQLError("Syntax Error: the document does not parse.")]
        key = (operation_name, _variable_key(variables))
        cached = entry.checks.get(key)
        if cached is None:
            cached = self._check(entry, operation_name, variables)
            if len(entry.checks) < self.MAX_CHECKS_PER_DOCUMENT:
                entry.checks[key] = cached
        return list(cached)

    def _check(self, entry: _Entry, operation_name: str | None, variables: Any) -> list[GraphQLError]:
        assert entry.document is not None
        if operation_name is None and len(_operations(entry.document, None)) > 1:
            return [_unnamed_operation()]
        measured = measure(self.schema, self.limits, entry.document, operation_name, variables)
        if refused := limit_errors(self.limits, measured):
            return refused  # before validation, which is the costlier of the two
        if entry.validation is None:
            self.validations += 1
            entry.validation = validate(
                self.schema, entry.document, self.rules, hide_suggestions=self.hide_suggestions
            )
        return entry.validation

    def _entry(self, query: str) -> _Entry:
        entry = self._entries.get(query)
        if entry is not None:
            self._entries.move_to_end(query)
            return entry
        self.parses += 1
        try:
            document: DocumentNode | None = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLError:
            document = None
        entry = _Entry(document=document, size=len(query))
        if entry.size <= MAX_CACHED_DOCUMENT_CHARS:
            self._entries[query] = entry
            self._chars += entry.size
            while len(self._entries) > self.max_entries or self._chars > self.max_chars:
                _, old = self._entries.popitem(last=False)
                self._chars -= old.size
        return entry


class Guard(SchemaExtension):
    """Serves parse and validation from the worker's `Documents`, limits included."""

    def __init__(self, documents: Documents) -> None:
        self.documents = documents

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        # A document that does not parse is left to Strawberry's parse, which reports the error.
        context.parse_options["max_tokens"] = self.documents.limits.max_tokens
        if context.query and context.graphql_document is None:
            context.graphql_document = self.documents.document(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if context.query:
            context.pre_execution_errors = self.documents.errors(
                context.query, _provided_operation_name(context), context.variables
            )
        yield


def _provided_operation_name(context: Any) -> str | None:
    """The operationName the client sent. Strawberry's `operation_name` falls back to the first
    operation's name, which would run the first of several operations when the client named
    none; the spec refuses that (Documents._check)."""
    return getattr(context, "_provided_operation_name", context.operation_name)  # type: ignore[no-any-return]
