"""HTTP batches, as Apollo's BatchHttpLink sends them: a JSON array of operations answered by an
array in the same order, run one after another, each a request of its own to the limits."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from pulseboard.settings import Settings, SettingsError, from_env
from tests.helpers import Api, Person, code, serving

CREATE_PROJECT = "mutation($n: String!) { createProject(input: {name: $n}) { id name } }"
COUNT = "{ projects { totalCount } }"
CREATE_TASK = (
    "mutation($p: ID!, $t: String!) { createTask(input: {projectId: $p, title: $t}) { id version } }"
)
RENAME = """mutation($id: ID!, $t: String!, $v: Int!) {
  updateTask(id: $id, input: {title: $t}, expectedVersion: $v) { title version }
}"""
GRAPHQL_RESPONSE = "application/graphql-response+json"


def op(query: str, **variables: Any) -> dict[str, Any]:
    return {"query": query, "variables": variables}


async def batch(api: Api, who: Person, operations: Any, **headers: str) -> httpx.Response:
    return await api.http.post(
        "/graphql", json=operations, headers={"authorization": f"Bearer {who.token}", **headers}
    )


async def projects(api: Api, who: Person) -> int:
    return (await api.ok(who, COUNT))["projects"]["totalCount"]  # type: ignore[no-any-return]


async def test_a_batch_is_answered_by_an_array_in_its_order(api: Api) -> None:
    alice = await api.person()
    response = await batch(
        api,
        alice,
        [
            op(COUNT),
            op(CREATE_PROJECT, n="one"),
            op(CREATE_PROJECT, n="two"),
            op(COUNT),
            op("{ viewer { id } }"),
        ],
    )
    assert response.status_code == 200
    answers = response.json()
    assert isinstance(answers, list) and len(answers) == 5
    assert answers[0] == {"data": {"projects": {"totalCount": 0}}}
    assert [a["data"]["createProject"]["name"] for a in answers[1:3]] == ["one", "two"]
    assert answers[3] == {"data": {"projects": {"totalCount": 2}}}  # after the mutations before it
    assert answers[4] == {"data": {"viewer": {"id": alice.id}}}


async def test_a_batch_of_mutations_runs_them_in_turn(api: Api) -> None:
    """Each rename expects the version the one before it leaves: only in order do all succeed."""
    alice = await api.person()
    project = (await api.ok(alice, CREATE_PROJECT, n="Board"))["createProject"]["id"]
    task = (await api.ok(alice, CREATE_TASK, p=project, t="v1"))["createTask"]
    renames = [op(RENAME, id=task["id"], t=f"v{v + 1}", v=v) for v in range(1, 9)]
    answers = (await batch(api, alice, renames)).json()
    assert [a.get("errors") for a in answers] == [None] * 8
    assert [a["data"]["updateTask"]["version"] for a in answers] == list(range(2, 10))
    assert (await api.ok(alice, "query($id: ID!) { task(id: $id) { title } }", id=task["id"]))["task"] == {
        "title": "v9"
    }


@pytest.mark.parametrize("size", [11, 30])
async def test_a_batch_over_the_limit_is_refused_with_nothing_run(api: Api, size: int) -> None:
    alice = await api.person()
    response = await batch(api, alice, [op(CREATE_PROJECT, n=f"P{i}") for i in range(size)])
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"}
    assert f"at most {api.settings.max_batch_size} operations ({size} sent)" in error["message"]
    assert await projects(api, alice) == 0
    full = await batch(api, alice, [op(CREATE_PROJECT, n=f"P{i}") for i in range(10)])
    assert full.status_code == 200 and len(full.json()) == 10  # the default limit itself passes


async def test_the_batch_limit_is_a_setting(settings: Settings) -> None:
    assert from_env({"PULSEBOARD_JWT_SECRET": "s" * 48, "PULSEBOARD_MAX_BATCH_SIZE": "3"}).max_batch_size == 3
    with pytest.raises(SettingsError, match="PULSEBOARD_MAX_BATCH_SIZE"):
        dataclasses.replace(settings, max_batch_size=-1).check()
    async with serving(dataclasses.replace(settings, max_batch_size=2)) as api:
        alice = await api.person()
        refused = await batch(api, alice, [op(CREATE_PROJECT, n=f"P{i}") for i in range(3)])
        assert refused.status_code == 400 and await projects(api, alice) == 0
        assert (await batch(api, alice, [op(COUNT), op(COUNT)])).status_code == 200
    async with serving(dataclasses.replace(settings, max_batch_size=0)) as api:
        alice = await api.person()
        off = await batch(api, alice, [op(COUNT)])
        assert off.status_code == 400 and "Batching is off" in off.json()["errors"][0]["message"]
        assert await projects(api, alice) == 0  # single operations still run


@pytest.mark.parametrize(
    ("operations", "words"),
    [
        ([], "empty"),
        (
            [op(CREATE_PROJECT, n="ran?"), "{ viewer { id } }"],
            "Operation 1 of the batch is not a JSON object",
        ),
        ([op(CREATE_PROJECT, n="ran?"), {"query": 7}], "`query` must be a str"),
        ([op(CREATE_PROJECT, n="ran?"), {"query": COUNT, "variables": [1]}], "`variables` must be a dict"),
        (
            [op(CREATE_PROJECT, n="ran?"), {"query": COUNT, "operationName": 1}],
            "`operationName` must be a str",
        ),
        ([op(CREATE_PROJECT, n="ran?"), {"query": COUNT, "extensions": "x"}], "`extensions` must be a dict"),
    ],
    ids=["empty", "not-an-object", "query", "variables", "operation-name", "extensions"],
)
async def test_a_malformed_batch_is_refused_with_nothing_run(api: Api, operations: list, words: str) -> None:
    alice = await api.person()
    response = await batch(api, alice, operations)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"} and words in error["message"]
    assert await projects(api, alice) == 0


async def test_a_batch_with_an_idempotency_key_is_refused(api: Api) -> None:
    alice = await api.person()
    operations = [op(CREATE_PROJECT, n="one"), op(CREATE_PROJECT, n="two")]
    response = await batch(api, alice, operations, **{"idempotency-key": "key-1"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}
    assert await projects(api, alice) == 0


async def test_a_batch_that_is_not_json_is_refused(api: Api) -> None:
    alice = await api.person()
    response = await api.http.post(
        "/graphql",
        content=b'[{"query": "{ viewer { id } }"}',
        headers={"authorization": f"Bearer {alice.token}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"] == {"code": "BAD_REQUEST"}


async def test_one_bad_operation_is_its_own_error_and_the_others_run(api: Api) -> None:
    alice = await api.person()
    operations = [
        op(CREATE_PROJECT, n="first"),
        {"query": "{ viewer { id "},
        {"query": "query A { viewer { id } }", "operationName": "B"},
        {"variables": {}},
        {"query": "query A { viewer { id } } query B { viewer { id } }"},
        op(CREATE_PROJECT, n="last"),
    ]
    for accept in ("application/json", GRAPHQL_RESPONSE):
        response = await batch(api, alice, operations, accept=accept)
        assert response.status_code == 200
        answers = response.json()
        assert answers[0]["data"]["createProject"]["name"] == "first"
        assert [code(a["errors"][0]) for a in answers[1:5]] == [
            "GRAPHQL_PARSE_FAILED",
            "BAD_REQUEST",
            "BAD_REQUEST",
            "GRAPHQL_VALIDATION_FAILED",
        ]
        assert answers[5]["data"]["createProject"]["name"] == "last"
        assert ("data" in answers[1]) is (accept == "application/json")
    assert await projects(api, alice) == 4


async def test_each_operation_counts_against_the_mutation_rate_on_its_own(settings: Settings) -> None:
    async with serving(dataclasses.replace(settings, mutations_per_second=0.001, mutation_burst=3)) as api:
        alice = await api.person()
        two = (
            'mutation { a: createProject(input: {name: "a"}) { id }'
            ' b: createProject(input: {name: "b"}) { id } }'
        )
        answers = (
            await batch(api, alice, [op(two), op(CREATE_PROJECT, n="c"), op(CREATE_PROJECT, n="d")])
        ).json()
        assert answers[0].get("errors") is None and answers[1].get("errors") is None
        assert code(answers[2]["errors"][0]) == "RATE_LIMITED"
        assert await projects(api, alice) == 3


async def test_each_operation_is_held_to_the_cost_limit_on_its_own(settings: Settings) -> None:
    async with serving(dataclasses.replace(settings, max_query_cost=60)) as api:
        alice = await api.person()
        cheap = "{ projects(first: 50) { edges { node { id } } } }"  # 50 rows
        answers = (
            await batch(api, alice, [op(cheap), op(cheap), op("{ projects(first: 100) { totalCount } }")])
        ).json()
        assert [a.get("errors") for a in answers[:2]] == [None, None]  # 100 rows together, 50 each
        assert code(answers[2]["errors"][0]) == "QUERY_TOO_COMPLEX"
