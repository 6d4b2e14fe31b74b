"""Node scripts driven by tests: find node and the script's npm packages, run it, read its lines.

A script prints one line per step, `KIND` or `KIND <json>`; stdin may tell it to go on."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 30.0


def node_for(folder: Path, packages: Sequence[str]) -> str:
    """The node binary, failing (never skipping) when it or the folder's packages are missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: these tests run npm clients in Node 20+")
    missing = [p for p in packages if not (folder / "node_modules" / p / "package.json").is_file()]
    if missing:
        pytest.fail(f"{folder.name}/node_modules lacks {missing}: run `make test` (it runs npm ci there)")
    return node


class NodeScript:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        assert process.stderr is not None
        self._stderr = asyncio.create_task(process.stderr.read())

    async def line(self) -> tuple[str, str]:
        """The next line as (kind, rest)."""
        assert self.process.stdout is not None
        try:
            raw = await asyncio.wait_for(self.process.stdout.readline(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no output from the script within {TIMEOUT} s") from None
        if not raw:
            await self.process.wait()
            raise AssertionError(f"script exited ({self.process.returncode}) early: {await self.stderr()}")
        kind, _, rest = raw.decode().rstrip("\n").partition(" ")
        return kind, rest

    async def expect(self, kind: str) -> Any:
        """The JSON value of the next line, which must be of this kind."""
        got, rest = await self.line()
        assert got == kind, (kind, got, rest)
        return json.loads(rest) if rest else None

    async def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()

    async def exit_code(self) -> int:
        try:
            code = await asyncio.wait_for(self.process.wait(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"the script did not exit within {TIMEOUT} s") from None
        await self._stderr
        return code

    async def stderr(self) -> str:
        return (await self._stderr).decode()


@asynccontextmanager
async def run_script(
    node: str, script: Path, *args: str, timeout_ms: int = int(TIMEOUT * 1000)
) -> AsyncIterator[NodeScript]:
    """The script, running; `timeout_ms` is its own deadline (its --timeout-ms)."""
    process = await asyncio.create_subprocess_exec(
        node,
        str(script),
        *args,
        "--timeout-ms",
        str(timeout_ms),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=script.parent,
    )
    running = NodeScript(process)
    try:
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await running._stderr
