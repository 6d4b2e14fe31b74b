"""The red-team review's attacks, each reproduced against the real app: documents that cost
more than they look, persisted-query flooding, token leaks through GraphiQL, aliased mutations
past the rate limit, idle anonymous sockets, and schema hints in production errors."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from pulseboard.models import Role, TaskComment
from pulseboard.settings import Settings
from tests.helpers import Api, code
from tests.live import TIMEOUT, LiveServer, serve, worker_process, ws
from tests.test_errors import serving

PROJECT = 'mutation { createProject(input: {name: "P"}) { id } }'
TASK = 'mutation($p: ID!) { createTask(input: {projectId: $p, title: "T"}) { id } }'
PRODUCTION_SECRET = "p" * 48


def doubling_fragments(k: int, field: str = "__typename") -> str:
    """~40 bytes a level; naively expanded, it selects `field` 2**k times."""
    levels = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(k))
    return f"{{ __typename ...F0 }} {levels} fragment F{k} on Query {{ {field} }}"


def comments_bomb(aliases: int, first: int = 100) -> str:
    one = (
        f"tasks(projectId: $p, first: {first}) {{ edges {{ node {{ comments(first: {first}) {{ totalCount"
        " edges { node { body author { email } } } } } } }"
    )
    return "query($p: ID!) { " + " ".join(f"a{i}: {one}" for i in range(aliases)) + " }"


# --- documents that cost more than they look ----------------------------------------------------


async def test_doubling_fragments_are_answered_at_once_without_a_token(live: LiveServer) -> None:
    # 150 levels: 2**150 selections if fragments were expanded at every spread, as Strawberry's
    # depth and alias limiters do (k=30 cost them more than 80 s of CPU).
    bomb = doubling_fragments(150)
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        posted, health = await asyncio.gather(
            http.post(live.url + "/graphql", json={"query": bomb}), http.get(live.url + "/healthz")
        )
        got = await http.get(live.url + "/graphql", params={"query": bomb})
    assert health.status_code == 200
    assert posted.json() == {"data": {"__typename": "Query"}}
    assert got.json() == {"data": {"__typename": "Query"}}


async def test_doubling_fragments_of_aliases_are_counted_not_expanded(api: Api) -> None:
    error = await api.error(None, doubling_fragments(150, field="a: __typename"))
    assert code(error) == "GRAPHQL_VALIDATION_FAILED"
    assert f"{2**150} aliases found" in error["message"]


async def test_a_document_over_the_cost_limit_is_refused_before_execution(api: Api) -> None:
    member = await api.person()
    project = (await api.ok(member, PROJECT))["createProject"]["id"]
    await api.ok(member, TASK, p=project)
    # 10 aliases fit the token limit; each is 100 tasks, and per task 100 comments, 100 authors
    # and a count.
    with_comments = await api.error(member, comments_bomb(10), p=project)
    assert code(with_comments) == "QUERY_TOO_COMPLEX"
    assert with_comments["extensions"] == {"code": "QUERY_TOO_COMPLEX", "estimate": 202_000, "limit": 5000}
    assert "202000 rows" in with_comments["message"]
    # One small page of the same shape runs.
    page = await api.ok(member, comments_bomb(1, first=10), p=project)
    assert page["a0"]["edges"][0]["node"]["comments"]["totalCount"] == 0


async def test_page_sizes_given_as_variables_count_with_their_values(api: Api) -> None:
    member = await api.person()
    project = (await api.ok(member, PROJECT))["createProject"]["id"]
    query = (
        "query($p: ID!, $n: Int) { tasks(projectId: $p, first: $n) { edges { node {"
        " comments(first: $n) { edges { node { author { name } } } } } } } }"
    )
    assert (await api.ok(member, query, p=project, n=10))["tasks"]["edges"] == []
    refused = await api.error(member, query, p=project, n=100)  # same document, larger pages
    assert refused["extensions"]["estimate"] == 100 + 100 * (100 + 100)
    # Absent, a page is the default size (20): 20 + 20 x (20 + 20) = 820 rows.
    assert (await api.ok(member, query, p=project))["tasks"]["edges"] == []


async def test_the_cost_limit_is_a_setting(settings: Settings) -> None:
    async with serving(dataclasses.replace(settings, max_query_cost=10)) as api:
        member = await api.person()
        error = await api.error(member, "{ projects(first: 11) { totalCount } }")
        assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "estimate": 11 + 1, "limit": 10}
        assert (await api.ok(member, "{ projects(first: 4) { totalCount } }"))["projects"]["totalCount"] == 0


async def test_a_subscription_is_limited_per_event_and_its_socket_stays_open(live: LiveServer) -> None:
    token = live.token("sub@example.test")
    project = (await live.gql(token, PROJECT))["createProject"]["id"]
    heavy = (
        "subscription($p: ID!) { taskEvents(projectId: $p) { task { comments(first: 100) {"
        " edges { node { body author { email } } } } } } }"
    )
    async with ws(live, token) as client:
        await client.subscribe("1", heavy, p=project)
        refused = await client.receive()
        assert refused["type"] == "error" and refused["id"] == "1", refused
        assert refused["payload"][0]["extensions"] == {
            "code": "QUERY_TOO_COMPLEX",
            "estimate": 1 + 1 + 100 + 100,  # the event, its task, 100 comments and their authors
            "limit": live.settings.max_subscription_event_cost,
        }
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}


async def test_each_distinct_document_is_parsed_and_validated_once(api: Api) -> None:
    member = await api.person()
    documents = api.app.state.documents
    query = "query Board($p: ID!) { tasks(projectId: $p, first: 50) { totalCount } }"
    project = (await api.ok(member, PROJECT))["createProject"]["id"]
    parses, validations = documents.parses, documents.validations
    for _ in range(5):
        await api.ok(member, query, p=project)
    assert (documents.parses - parses, documents.validations - validations) == (1, 1)
    assert code(await api.error(member, query, p="424242")) == "NOT_FOUND"  # other variables
    assert (documents.parses - parses, documents.validations - validations) == (1, 1)


# --- automatic persisted queries ----------------------------------------------------------------


def _persist(query: str) -> dict:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"query": query, "extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}


async def test_only_documents_that_would_run_are_persisted(api: Api) -> None:
    store = api.app.state.persisted
    refused = [
        "{ viewer { id ",  # does not parse
        "{ nothingHere }",  # does not validate
        doubling_fragments(40, field="a: __typename"),  # over the alias limit
        "{ "
        + " ".join(
            f"p{i}: projects(first: 100) {{ edges {{ node {{ members {{ id }} }} }} }}" for i in range(3)
        )
        + " }",
    ]
    for query in refused:
        body = (await api.http.post("/graphql", json=_persist(query))).json()
        assert code(body["errors"][0]) != "UNAUTHENTICATED", body  # refused before it could run
    assert len(store) == 0
    await api.http.post("/graphql", json=_persist("{ __typename }"))
    assert len(store) == 1


async def test_the_persisted_store_is_bounded_by_bytes_and_document_size(settings: Settings) -> None:
    bounded = dataclasses.replace(settings, persisted_queries_max_bytes=2000, persisted_query_max_bytes=500)
    async with serving(bounded) as api:
        store = api.app.state.persisted
        for i in range(40):  # ~100 bytes each, 4000 in all
            query = "{ " + f"n{i}: __typename " * 6 + "}"
            assert (await api.http.post("/graphql", json=_persist(query))).json()["data"]
        assert 0 < store.bytes <= 2000 and len(store) < 40
        large = "{ __typename }\n# " + "padding " * 70  # comments count as bytes, not tokens
        before = len(store)
        assert (await api.http.post("/graphql", json=_persist(large))).json()["data"]  # still answered
        assert len(store) == before


# --- GraphiQL's development token ---------------------------------------------------------------


async def _graphiql(url: str, host: str | None = None) -> str:
    headers = {"accept": "text/html"} | ({"host": host} if host else {})
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        page = await http.get(url + "/graphql", headers=headers)
    assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:200]
    return page.text


async def test_graphiql_prefills_a_token_only_for_a_loopback_host_header(live: LiveServer) -> None:
    port = live.url.rsplit(":", 1)[1]
    assert '"Authorization": "Bearer ' in await _graphiql(live.url)
    assert '"Authorization": "Bearer ' in await _graphiql(live.url, host=f"localhost:{port}")
    # A DNS-rebinding page reaches the loopback server under its own name.
    assert "Bearer" not in await _graphiql(live.url, host=f"rebind.attacker.example:{port}")


@pytest.mark.parametrize("how", ["flag", "environment"])
async def test_graphiql_prefills_no_token_when_listening_beyond_loopback(
    settings: Settings, how: str
) -> None:
    args, env = (("--host", "0.0.0.0"), {}) if how == "flag" else ((), {"PULSEBOARD_HOST": "0.0.0.0"})
    with worker_process(settings, args=args, env=env) as server:
        page = await _graphiql(server.url)  # even asked from this machine
    assert "Bearer" not in page


# --- the mutation rate limit --------------------------------------------------------------------


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[Api]:
    async with serving(dataclasses.replace(settings, mutations_per_second=0.5, mutation_burst=20)) as api:
        yield api


def _comments(task: str, count: int) -> str:
    fields = " ".join(f'c{i}: addTaskComment(taskId: "{task}", body: "spam") {{ id }}' for i in range(count))
    return "mutation { " + fields + " }"


async def test_every_aliased_mutation_counts_against_the_rate_limit(limited: Api) -> None:
    member = await limited.person()
    project = (await limited.ok(member, PROJECT))["createProject"]["id"]
    task = (await limited.ok(member, TASK, p=project))["createTask"]["id"]
    assert len(await limited.ok(member, _comments(task, 15))) == 15  # 17 of 20 taken
    refused = await limited.error(member, _comments(task, 15))
    assert code(refused) == "RATE_LIMITED" and refused["extensions"]["retryAfterSeconds"] > 0
    # Through a fragment on Mutation, the same fields count as well.
    spread = "mutation { ...M } fragment M on Mutation " + _comments(task, 10).removeprefix("mutation ")
    assert code(await limited.error(member, spread)) == "RATE_LIMITED"
    assert await TaskComment.filter(task_id=int(task)).count() == 15


async def test_more_mutations_in_one_request_than_the_burst_are_refused_whole(limited: Api) -> None:
    member = await limited.person()
    project = (await limited.ok(member, PROJECT))["createProject"]["id"]
    task = (await limited.ok(member, TASK, p=project))["createTask"]["id"]
    refused = await limited.error(member, _comments(task, 21))
    assert code(refused) == "RATE_LIMITED" and "At most 20 mutations" in refused["message"]
    assert await TaskComment.filter(task_id=int(task)).count() == 0


# --- anonymous sockets --------------------------------------------------------------------------


@pytest.fixture
async def strict_sockets(settings: Settings) -> AsyncIterator[LiveServer]:
    bounded = dataclasses.replace(
        settings, anonymous_connections_per_address=3, anonymous_socket_idle_seconds=1.0
    )
    async with serve(bounded) as server:
        yield server


async def test_anonymous_sockets_are_counted_per_address(strict_sockets: LiveServer) -> None:
    async with (
        ws(strict_sockets) as a,
        ws(strict_sockets) as b,
        ws(strict_sockets) as c,
        ws(strict_sockets) as d,
    ):
        for client in (a, b, c):
            await client.init()
        await d.send({"type": "connection_init", "payload": {}})
        assert (await d.closed())[0] == 4403
        # A token is not anonymous: its socket is counted per user instead.
        async with ws(strict_sockets, strict_sockets.token("t@example.test")) as signed:
            await signed.send({"type": "ping"})
            assert await signed.receive() == {"type": "pong"}
    async with ws(strict_sockets) as again:  # the closed ones were released
        await again.init()


async def test_an_idle_anonymous_socket_is_closed_and_a_signed_one_is_not(strict_sockets: LiveServer) -> None:
    token = strict_sockets.token("kept@example.test")
    async with ws(strict_sockets) as anonymous, ws(strict_sockets, token) as signed:
        await anonymous.init()
        await anonymous.subscribe("1", "{ viewer { id } }")  # allowed, answers UNAUTHENTICATED
        answer = await anonymous.receive()
        assert answer["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", answer
        assert await anonymous.closed(within=5) == (4403, "Authentication required")
        await signed.send({"type": "ping"})
        assert await signed.receive() == {"type": "pong"}


# --- production errors --------------------------------------------------------------------------


async def test_production_errors_suggest_no_schema_names(settings: Settings) -> None:
    production = dataclasses.replace(
        settings, env="production", jwt_secret=PRODUCTION_SECRET, introspection=False
    )
    for mode, expect_hints in ((settings, True), (production, False)):
        async with serving(mode) as api:
            member = await api.person(Role.MEMBER)
            typo = await api.error(member, "{ tickts { totalCount } }")
            enum = await api.error(
                member, "query($s: TaskStatus) { tasks(projectId: 1, status: $s) { totalCount } }", s="DON"
            )
            assert code(typo) == "GRAPHQL_VALIDATION_FAILED" and code(enum) == "BAD_USER_INPUT"
            assert ("Did you mean" in typo["message"]) is expect_hints, typo
            assert ("Did you mean" in enum["message"]) is expect_hints, enum
