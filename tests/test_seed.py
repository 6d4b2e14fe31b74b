"""The demo data `make run` creates is usable through the API with the printed tokens."""

from __future__ import annotations

from pulseboard.seed import ADMIN, CUSTOMER, seed
from tests.helpers import Api


async def test_seed_creates_a_usable_board_and_queue_once(api: Api) -> None:
    assert await seed(api.settings) is True
    assert await seed(api.settings) is False
    admin = api.token(ADMIN.email, ADMIN.role)
    data = await api.ok(
        admin,
        """{ projects { totalCount edges { node { id members { email } } } }
             queues { edges { node { id name } } } tickets { totalCount } }""",
    )
    project = data["projects"]["edges"][0]["node"]
    assert data["projects"]["totalCount"] == 1
    assert len(project["members"]) == 3
    assert data["tickets"]["totalCount"] == 2
    board = await api.ok(admin, "query($p: ID!) { tasks(projectId: $p) { totalCount } }", p=project["id"])
    assert board["tasks"]["totalCount"] == 5
    customer = api.token(CUSTOMER.email, CUSTOMER.role)
    mine = await api.ok(customer, "{ tickets { totalCount } projects { totalCount } }")
    assert mine == {"tickets": {"totalCount": 2}, "projects": {"totalCount": 0}}
