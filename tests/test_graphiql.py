"""End to end in a real browser: the GraphiQL page, served offline from the package, runs a query
over HTTP and a subscription over graphql-ws with the dev token it was prefilled with, in
headless Chromium; and no request of the page leaves the host.

tests/graphiql/browser.mjs drives Debian's chromium through playwright-core (pinned in
tests/graphiql/package-lock.json). Without chromium, Node or those packages the test fails: it
must not be skipped silently."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from pulseboard import graphiql
from pulseboard.models import Role
from pulseboard.seed import ADMIN
from pulseboard.subscriptions import topics
from tests.live import LiveServer

HERE = Path(__file__).parent / "graphiql"
SCRIPT = HERE / "browser.mjs"
CHROMIUM = os.environ.get("PULSEBOARD_TEST_CHROMIUM", "/usr/bin/chromium")
TIMEOUT = 60.0
TITLE = "Seen in GraphiQL"

CREATE_PROJECT = "mutation($name: String!) { createProject(input: {name: $name}) { id } }"
CREATE_TASK = "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id } }"


def _tools() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: this test drives Chromium with playwright-core in Node 20+")
    if not (HERE / "node_modules" / "playwright-core").is_dir():
        pytest.fail("tests/graphiql/node_modules is missing: run `npm ci --prefix tests/graphiql`")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: run `apt-get install -y chromium` (or set PULSEBOARD_TEST_CHROMIUM)"
        )
    return node


async def test_page_is_served_from_the_package(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        page = await http.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"]
        assert graphiql.PLACEHOLDER not in page.text
        assert re.findall(r'(?:src|href)="([^"]*)"', page.text) == [
            "data:,",
            "/graphql/static/graphiql.css",
            "/graphql/static/graphiql.js",
        ]
        assert not re.search(r"\b(?:https?:)?//[a-z0-9.-]+", page.text)
        assert '"Authorization": "Bearer ' in page.text  # development: the dev token
        for asset, kind in (("graphiql.js", "javascript"), ("graphiql.css", "text/css")):
            response = await http.get(f"/graphql/static/{asset}")
            assert response.status_code == 200, asset
            assert kind in response.headers["content-type"]
        assert (await http.get("/graphql/static/index.html")).status_code == 404


async def test_query_and_subscription_in_chromium(live: LiveServer) -> None:
    node = _tools()
    token = live.token(ADMIN.email, Role.ADMIN)  # the dev token the page is prefilled with is Ada's
    project = (await live.gql(token, CREATE_PROJECT, name="GraphiQL"))["createProject"]["id"]
    screenshot = Path(tempfile.gettempdir()) / f"pulseboard-graphiql-{os.getpid()}.png"
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        "--url",
        live.url,
        "--email",
        ADMIN.email,
        "--project",
        project,
        "--title",
        TITLE,
        "--screenshot",
        str(screenshot),
        "--timeout-ms",
        str(int(TIMEOUT * 1000 / 2)),
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    stderr = asyncio.create_task(process.stderr.read())
    lines: dict[str, str] = {}
    try:
        async with asyncio.timeout(TIMEOUT):
            while raw := await process.stdout.readline():
                kind, _, rest = raw.decode().rstrip("\n").partition(" ")
                lines[kind] = rest
                if kind == "SUBSCRIBED":
                    await _listening(live, project)
                    await live.gql(token, CREATE_TASK, p=project, t=TITLE)
            await process.wait()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    report = f"exit {process.returncode}; stdout {lines}; stderr:\n{(await stderr).decode()}"
    assert process.returncode == 0, report
    print(f"GraphiQL screenshot: {screenshot}")

    assert "Bearer " in json.loads(lines["HEADERS"]), report
    assert ADMIN.email in json.loads(lines["QUERY"]), report
    event = json.loads(lines["EVENT"])
    assert TITLE in event and "CREATED" in event, report
    requests = json.loads(lines["REQUESTS"])
    assert f"{live.url}/graphql/static/graphiql.js" in requests, requests
    assert f"{live.url}/graphql/static/graphiql.css" in requests, requests
    assert live.ws_url in requests, requests  # the subscription went over graphql-ws
    assert json.loads(lines["EXTERNAL"]) == [], requests


async def _listening(live: LiveServer, project_id: str) -> None:
    """Until the server's stream for the project listens (the protocol does not acknowledge a
    subscribe message), so that the mutation's event reaches it."""
    topic = topics.project(int(project_id))
    for _ in range(int(TIMEOUT / 2 / 0.02)):
        if live.hub.topics.get(topic, 0) >= 1:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError(f"no listener on {topic}: {live.hub.topics}")
    await asyncio.sleep(0.2)  # the stream reads the topic's head right after it starts listening
