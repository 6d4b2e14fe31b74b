"""The people directory, users(search) and user(id): whom a viewer finds, how search matches,
that e-mail addresses stay private, and that it pages like every other list."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from pulseboard.auth import mint_token
from pulseboard.models import Role
from tests.helpers import Api, Person, code, count_queries
from tests.test_membership import board, team_of
from tests.test_pagination import Listing, walk, walk_back

_serial = itertools.count(1)
PAGE_INFO = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor }"
USERS = f"""
query($search: String, $first: Int, $after: String) {{
  users(search: $search, first: $first, after: $after) {{
    totalCount edges {{ cursor node {{ id name email role }} }} {PAGE_INFO}
  }}
}}
"""
USER = "query($id: ID!) { user(id: $id) { id name email role } }"


async def named(api: Api, name: str, email: str | None = None, role: Role = Role.MEMBER) -> Person:
    """A user with a name of our choosing (Api.person names people after their address)."""
    email = email or f"directory{next(_serial)}@example.test"
    token = mint_token(
        api.settings.jwt_secret, sub=email, email=email, name=name, role=role, ttl=dt.timedelta(hours=1)
    )
    data = await api.ok(token, "{ viewer { id } }")
    return Person(id=data["viewer"]["id"], email=email, role=role, token=token)


async def found(api: Api, who: Person, search: str | None = None) -> list[str]:
    """The ids of everyone `who` finds (one page of up to 100)."""
    page = (await api.ok(who, USERS, search=search, first=100))["users"]
    assert page["totalCount"] == len(page["edges"])
    return [edge["node"]["id"] for edge in page["edges"]]


# --- whom a viewer finds ---------------------------------------------------------------------


async def test_a_member_finds_themself_and_whoever_shares_a_project_or_a_team(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    alice, bob, carol, dave, erin = [await api.person() for _ in range(5)]
    await board(api, alice, bob)  # a project of alice's, bob added by an admin
    await team_of(api, admin, alice, carol)
    await board(api, dave, erin)  # dave and erin share nothing with alice
    assert await found(api, alice) == [alice.id, bob.id, carol.id]
    assert await found(api, bob) == [alice.id, bob.id]
    assert await found(api, carol) == [alice.id, carol.id]
    assert await found(api, dave) == [dave.id, erin.id]
    for person in (alice, bob, carol):
        assert (await api.ok(alice, USER, id=person.id))["user"]["id"] == person.id


async def test_someone_who_shares_nothing_finds_only_themself(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    await board(api, bob)
    assert await found(api, alice) == [alice.id]
    assert (await api.ok(alice, USER, id=alice.id))["user"] == {
        "id": alice.id,
        "name": alice.email.split("@")[0],
        "email": alice.email,
        "role": "MEMBER",
    }


async def test_admins_find_everyone(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    admin = await api.person(Role.ADMIN)
    assert await found(api, admin) == [alice.id, bob.id, admin.id]
    assert (await api.ok(admin, USER, id=bob.id))["user"]["email"] == bob.email


async def test_someone_out_of_reach_is_not_found_exactly_as_nobody(api: Api) -> None:
    alice, stranger = await api.person(), await api.person()
    hidden = await api.error(alice, USER, id=stranger.id)
    nobody = await api.error(alice, USER, id="424242")
    assert code(hidden) == code(nobody) == "NOT_FOUND"
    # Word for word the same answer, but for the id asked about.
    assert hidden["message"].replace(stranger.id, "ID") == nobody["message"].replace("424242", "ID")
    assert {**hidden, "message": ""} == {**nobody, "message": ""}
    assert code(await api.error(alice, USER, id="not-a-number")) == "NOT_FOUND"


async def test_a_page_is_one_statement(api: Api) -> None:
    """The visibility filter, the page and its totalCount: one SQL statement, whatever the count."""
    alice = await api.person()
    await board(api, alice, *[await api.person() for _ in range(4)])
    await api.ok(alice, USERS, first=2)  # the viewer is read once, then remembered
    with count_queries() as statements:
        page = (await api.ok(alice, USERS, first=2, search="member"))["users"]
    assert page["totalCount"] == 5 and len(page["edges"]) == 2
    assert len(statements) == 1, statements


# --- search ----------------------------------------------------------------------------------


async def test_search_matches_the_start_of_a_name_or_of_a_word_of_it_ignoring_case(api: Api) -> None:
    ada = await named(api, "Ada Lovelace")
    adam = await named(api, "adam smith")
    grace = await named(api, "Grace Hopper")
    await board(api, ada, adam, grace)
    assert await found(api, ada, "ad") == [ada.id, adam.id]
    assert await found(api, ada, "AD") == [ada.id, adam.id]
    assert await found(api, ada, "LOVE") == [ada.id]
    assert await found(api, ada, "  hopper ") == [grace.id]  # trimmed
    assert await found(api, ada, "ada l") == [ada.id]
    assert await found(api, ada, "lace") == []  # inside a word
    assert await found(api, ada, "a%") == []  # % and _ are taken literally
    assert await found(api, ada, "_da") == []


async def test_an_empty_search_filters_nothing(api: Api) -> None:
    alice, bob = await api.person(), await api.person()
    await board(api, alice, bob)
    for search in ("", "   ", "\u200b"):
        assert await found(api, alice, search) == [alice.id, bob.id], repr(search)


@pytest.mark.parametrize("search", ["x" * 101, "ada\nlovelace", "ada\u0000"])
async def test_a_bad_search_is_bad_input(api: Api, search: str) -> None:
    alice = await api.person()
    err = await api.error(alice, USERS, search=search)
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", "search")
    assert await found(api, alice, "x" * 100) == []  # the longest search allowed


async def test_searches_combine_with_pagination(api: Api) -> None:
    people = [await named(api, f"Ann {i}") for i in range(5)]
    await board(api, people[0], *people[1:], await named(api, "Bob"))
    ids = await walk(api, people[0], USERS, "users", 2, search="ann")
    assert ids == [person.id for person in people]


# --- e-mail addresses are private --------------------------------------------------------------


async def test_others_emails_and_roles_are_null_in_the_directory(api: Api) -> None:
    alice, bob = await api.person(), await api.person(Role.AGENT)
    await board(api, alice, bob)
    admin = await api.person(Role.ADMIN)
    seen = (await api.ok(alice, USERS))["users"]["edges"]
    assert [(e["node"]["email"], e["node"]["role"]) for e in seen] == [(alice.email, "MEMBER"), (None, None)]
    assert (await api.ok(alice, USER, id=bob.id))["user"]["email"] is None
    by_admin = (await api.ok(admin, USERS))["users"]["edges"]  # board()'s admin among them
    emails = [e["node"]["email"] for e in by_admin]
    assert emails[:2] == [alice.email, bob.email] and emails[-1] == admin.email and None not in emails


async def test_a_member_finds_someone_by_their_whole_email_only(api: Api) -> None:
    """Whoever knows an address may look its owner up; no prefix of it finds anyone, so an
    address cannot be learnt letter by letter. The answer still shows no email."""
    alice = await api.person()
    ada = await named(api, "Ada Lovelace", "countess@example.test")
    await board(api, alice, ada)
    for search in ("countess@example.test", "COUNTESS@Example.Test", " countess@example.test "):
        page = (await api.ok(alice, USERS, search=search))["users"]
        assert [(e["node"]["id"], e["node"]["email"]) for e in page["edges"]] == [(ada.id, None)], search
    address = "countess@example.test"
    for end in range(1, len(address)):
        assert await found(api, alice, address[:end]) == [], address[:end]
    assert await found(api, alice, "countess@example.tes%") == []


async def test_a_whole_email_finds_no_one_out_of_reach(api: Api) -> None:
    alice, stranger = await api.person(), await api.person()
    assert await found(api, alice, stranger.email) == []


async def test_admins_find_people_by_the_start_of_their_email(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    ada = await named(api, "Ada Lovelace", "countess@example.test")
    await named(api, "Count Basie", "basie@example.test")
    assert await found(api, admin, "COUNTESS@") == [ada.id]
    assert await found(api, admin, "countess@example.test") == [ada.id]


# --- pagination --------------------------------------------------------------------------------


async def test_paging_visits_every_visible_user_once_both_ways(api: Api) -> None:
    admin = await api.person(Role.ADMIN)
    alice = await api.person()
    mates = [await api.person() for _ in range(4)]
    team = [await api.person() for _ in range(2)]
    await api.person()  # shares nothing with alice
    await board(api, alice, *mates[:2])
    await board(api, mates[2], alice, mates[3], team[0])  # team[0] is also a team mate
    await team_of(api, admin, alice, *team)
    visible = sorted([alice.id, *(person.id for person in mates + team)], key=int)
    for first in (1, 3, 100):
        assert await walk(api, alice, USERS, "users", first) == visible, first
    listed = Listing("users", alice, {}, visible)
    for last in (1, 3, 100):
        assert await walk_back(api, listed, last) == visible, last


@pytest.mark.parametrize(
    ("arguments", "field"),
    [({"first": -1}, "first"), ({"first": 101}, "first"), ({"after": "garbage"}, "after")],
)
async def test_page_arguments_out_of_range_are_bad_input(
    api: Api, arguments: dict[str, object], field: str
) -> None:
    alice = await api.person()
    err = await api.error(alice, USERS, **arguments)
    assert (code(err), err["extensions"]["field"]) == ("BAD_USER_INPUT", field)


async def test_the_directory_needs_a_signed_in_viewer(api: Api) -> None:
    alice = await api.person()
    assert code(await api.error(None, USERS)) == "UNAUTHENTICATED"
    assert code(await api.error(None, USER, id=alice.id)) == "UNAUTHENTICATED"
