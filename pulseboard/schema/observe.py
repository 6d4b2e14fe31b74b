"""Times every operation, counts it and its error codes, and logs one line for it."""

from __future__ import annotations

import time
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from pulseboard import telemetry
from pulseboard.schema.documents import root_selections
from pulseboard.schema.errors import extensions_for

INVALID = "invalid"


class Observe(SchemaExtension):
    # Set once validation passed: before that, field names in the document are the client's.
    validated = False

    def on_validate(self) -> Iterator[None]:
        yield
        self.validated = not self.execution_context.pre_execution_errors

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except Exception:  # the document did not parse: there is no operation
            kind = "unknown"
        document, field = context.graphql_document, INVALID
        if self.validated and document is not None:
            first = next(root_selections(document, context.operation_name), None)
            field = first.name.value if first is not None else INVALID
        errors = getattr(context.result, "errors", None) or context.pre_execution_errors or []
        viewer = getattr(context.context, "viewer", None)
        telemetry.observe_operation(
            kind=kind,
            name=context.operation_name,
            field=field,
            seconds=time.perf_counter() - started,
            codes=sorted({extensions_for(e)["code"] for e in errors}),
            user_id=viewer.id if viewer is not None else None,
        )
