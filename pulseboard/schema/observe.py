"""Times every operation, counts it and its error codes, and logs one line for it."""

from __future__ import annotations

import time
from collections.abc import Iterator

from strawberry.extensions import SchemaExtension

from pulseboard import telemetry
from pulseboard.schema.errors import extensions_for


class Observe(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except Exception:  # the document did not parse: there is no operation
            kind = "unknown"
        errors = getattr(context.result, "errors", None) or context.pre_execution_errors or []
        viewer = getattr(context.context, "viewer", None)
        telemetry.observe_operation(
            kind=kind,
            name=context.operation_name,
            seconds=time.perf_counter() - started,
            codes=sorted({extensions_for(e)["code"] for e in errors}),
            user_id=viewer.id if viewer is not None else None,
        )
