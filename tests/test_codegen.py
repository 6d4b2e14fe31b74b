"""Typed clients: schema.graphql plus examples/operations/*.graphql generate TypeScript types with
GraphQL Code Generator (typescript + typescript-operations), and examples/client.ts, a small typed
client, compiles against them with `tsc --noEmit` (strict). Field names in the types are the wire
names (camelCase).

The npm packages are pinned in examples/package-lock.json and installed by `make test`
(`npm ci --prefix examples`). Without Node or those packages these tests fail: they must not be
skipped silently."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BIN = EXAMPLES / "node_modules" / ".bin"
GENERATED = EXAMPLES / "generated"
TIMEOUT = 120

# Used by client.ts or the operations: each must appear in the generated types as on the wire.
CAMEL_CASE = ["unreadCount", "oldestOpenAgeSeconds", "expectedVersion", "dueAt", "endCursor", "quietHours"]
SNAKE_CASE = re.compile(r"\b[a-z][a-zA-Z0-9]*_[a-zA-Z0-9_]*\b")  # unread_count; not TASK_ASSIGNED

# Compiled in a temporary project next to (not inside) examples/: every line must be rejected.
WRONG_USAGE = """\
import type {{ MoveTaskMutationVariables, NotificationsQuery }} from "{generated}/graphql";

export function badge(data: NotificationsQuery): number {{
  return data.notifications.unread_count;
}}

export const move: MoveTaskMutationVariables = {{
  id: "1", status: "DONE", position: 0, expected_version: 3,
}};
"""


@dataclass
class Run:
    args: list[str]
    returncode: int
    output: str

    def report(self) -> str:
        return f"$ {' '.join(self.args)}\nexit {self.returncode}\n{self.output}"


def _tool(name: str) -> str:
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: these tests run GraphQL Code Generator and tsc in Node 20+")
    path = BIN / name
    if not path.exists():
        pytest.fail("examples/node_modules is missing: run `make test` (it runs `npm ci --prefix examples`)")
    return str(path)


def _start(args: list[str]) -> subprocess.Popen[str]:
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    return subprocess.Popen(
        args, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _finish(process: subprocess.Popen[str], args: list[str]) -> Run:
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        output += f"\n(killed after {TIMEOUT} s)"
    return Run(args, process.returncode, output)


@dataclass
class Results:
    codegen: Run
    types: str
    typecheck: Run
    wrong_usage: Run


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Results:
    """Codegen once, from scratch; then both type checks at the same time (they are independent)."""
    codegen, tsc = _tool("graphql-codegen"), _tool("tsc")
    shutil.rmtree(GENERATED, ignore_errors=True)  # a stale file must not pass for a fresh one
    args = [codegen, "--config", "examples/codegen.ts"]
    generated = _finish(_start(args), args)
    types = (GENERATED / "graphql.ts").read_text() if (GENERATED / "graphql.ts").is_file() else ""

    project = tmp_path_factory.mktemp("wrong-usage")
    (project / "wrong.ts").write_text(
        WRONG_USAGE.format(generated=Path(os.path.relpath(GENERATED, project)).as_posix())
    )
    (project / "tsconfig.json").write_text(
        f'{{"extends": "{(EXAMPLES / "tsconfig.json").as_posix()}", "include": ["wrong.ts"]}}\n'
    )
    typecheck_args = [tsc, "--noEmit", "-p", "examples"]
    wrong_usage_args = [tsc, "--noEmit", "--pretty", "false", "-p", str(project)]
    typecheck, wrong_usage = _start(typecheck_args), _start(wrong_usage_args)
    return Results(
        generated, types, _finish(typecheck, typecheck_args), _finish(wrong_usage, wrong_usage_args)
    )


def test_codegen_generates_the_operation_types(results: Results) -> None:
    assert results.codegen.returncode == 0, results.codegen.report()
    for name in ["BoardQuery", "MoveTaskMutationVariables", "TaskEventsSubscription", "TaskFieldsFragment"]:
        assert f"export type {name} =" in results.types, name


def test_generated_field_names_are_the_wire_names(results: Results) -> None:
    assert results.codegen.returncode == 0, results.codegen.report()
    for name in CAMEL_CASE:
        assert re.search(rf"\b{name}\??:", results.types), f"{name} is not a field of the generated types"
    schema_types = (GENERATED / "schema.ts").read_text()
    assert not SNAKE_CASE.findall(results.types + schema_types)
    assert "unread_count" not in results.types


def test_typed_client_compiles(results: Results) -> None:
    assert results.codegen.returncode == 0, results.codegen.report()
    assert results.typecheck.returncode == 0, results.typecheck.report()


def test_wrong_usage_does_not_compile(results: Results) -> None:
    """The types are precise, not `any`: a misspelled (snake_case) field is an error. client.ts
    holds such lines too, under `@ts-expect-error`, which tsc rejects when they are not errors."""
    assert results.codegen.returncode == 0, results.codegen.report()
    run = results.wrong_usage
    assert run.returncode != 0, run.report()
    errors = [line for line in run.output.splitlines() if ": error TS" in line]
    assert len(errors) == 2, run.report()
    assert "'unread_count' does not exist" in errors[0], run.report()
    assert "'expected_version'" in errors[1], run.report()
