"""Authorization: who may see and change what. What a viewer may not see is NOT_FOUND."""

from __future__ import annotations

from collections.abc import Iterable

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from pulseboard.errors import bad_input, forbidden, not_found
from pulseboard.models import (
    Project,
    ProjectMember,
    ProjectRole,
    Queue,
    Role,
    Task,
    TeamMember,
    Ticket,
    User,
)
from pulseboard.resolvers.batching import Batched


def parse_id(kind: str, value: object) -> int:
    """A GraphQL ID as our integer key; anything else cannot exist, so NOT_FOUND."""
    try:
        number = int(str(value))
    except ValueError:
        raise not_found(kind, value) from None
    if number <= 0 or number >= 2**31:
        raise not_found(kind, value)
    return number


def is_admin(user: User) -> bool:
    return user.role == Role.ADMIN


async def is_project_member(user: User, project_id: int) -> bool:
    return is_admin(user) or await ProjectMember.exists(project_id=project_id, user_id=user.id)


# Project roles. Admins may see and manage every project, but only a membership row makes anyone
# a member: it is what assignment and the project's member list count.


async def has_membership(user_id: int, project_id: int) -> bool:
    """A membership row, whatever the platform role: admins are not members unless added."""
    return await ProjectMember.exists(project_id=project_id, user_id=user_id)


async def manages_project(user: User, project_id: int) -> bool:
    """Owners and admins add and remove members and change their roles."""
    if is_admin(user):
        return True
    return await ProjectMember.exists(project_id=project_id, user_id=user.id, role=ProjectRole.OWNER)


async def require_project_manager(user: User, project_id: int) -> None:
    """For a viewer who may see the project (check that first: outsiders get NOT_FOUND)."""
    if not await manages_project(user, project_id):
        raise forbidden("Only the project's owners may manage its members.")


async def shares_with(viewer: User, user_id: int) -> bool:
    """Whether `user_id` shares a project or a team with `viewer` (admins: with everyone)."""
    if is_admin(viewer) or user_id == viewer.id:
        return True
    projects = ProjectMember.filter(user_id=viewer.id).values("project_id")
    if await ProjectMember.exists(user_id=user_id, project_id__in=Subquery(projects)):
        return True
    teams = TeamMember.filter(user_id=viewer.id).values("team_id")
    return await TeamMember.exists(user_id=user_id, team_id__in=Subquery(teams))


async def addable_user(viewer: User, user_id: object) -> User:
    """A user the viewer may add to a project: one they share a project or a team with, anyone
    for admins. Anyone else is NOT_FOUND exactly as an id that names nobody."""
    uid = parse_id("User", user_id)
    user = await User.get_or_none(id=uid) if await shares_with(viewer, uid) else None
    if user is None:
        raise not_found("User", user_id)
    return user


async def keep_an_owner(project_id: int, user_id: int, conn: BaseDBAsyncClient) -> None:
    """Refuses to remove or demote `user_id` when they are the project's last owner. Call it with
    the project row locked, so that two owners cannot each remove the other."""
    owners = (
        await ProjectMember.filter(project_id=project_id, role=ProjectRole.OWNER)
        .using_db(conn)
        .values_list("user_id", flat=True)
    )
    if list(owners) == [user_id]:
        raise bad_input(
            "userId", "A project must keep at least one owner: make another member an owner first."
        )


def sees_private_fields(viewer: User | None, user: User) -> bool:
    """A user's email and platform role: for the user themself and admins only. Everyone who can
    reach a user (through a project, task, ticket or event they may see) sees the id and name."""
    return viewer is not None and (viewer.id == user.id or is_admin(viewer))


def visible_projects(user: User) -> Q:
    """Filter on Project: the projects this user may see."""
    if is_admin(user):
        return Q()
    return Q(memberships__user_id=user.id)


def visible_tasks(user: User) -> Q:
    if is_admin(user):
        return Q()
    return Q(project__memberships__user_id=user.id)


async def project_for(user: User, project_id: object) -> Project:
    """The project if `user` may see it (one query: the row and the membership together)."""
    return _found(await _visible_project(user, parse_id("Project", project_id)), project_id)


async def subscribed_project(user: User, project_id: object) -> Project:
    """project_for for subscriptions, batched with the other sockets subscribing at once (so
    never inside a transaction: see resolvers/batching)."""
    return _found(await _seen.load((user, parse_id("Project", project_id))), project_id)


def _found(project: Project | None, project_id: object) -> Project:
    if project is None:
        raise not_found("Project", project_id)
    return project


async def _visible_project(user: User, pid: int) -> Project | None:
    return await Project.filter(visible_projects(user), id=pid).first()


async def _seen_projects(keys: list[tuple[User, int]]) -> list[Project | None]:
    """Per (viewer, project id): the project if the viewer may see it (visible_projects' rule,
    for a batch in two statements: the projects, then the memberships of the non-admins)."""
    if len(keys) == 1:  # alone in its batch: project_for's one query
        return [await _visible_project(*keys[0])]
    found = await Project.filter(id__in=list({pid for _, pid in keys}))
    projects = {project.id: project for project in found}
    members = {user.id for user, _ in keys if not is_admin(user)}
    memberships: set[tuple[int, int]] = set()
    if members and projects:
        pairs = ProjectMember.filter(project_id__in=list(projects), user_id__in=list(members))
        memberships = set(await pairs.values_list("project_id", "user_id"))  # type: ignore[arg-type]
    return [
        projects.get(pid) if is_admin(user) or (pid, user.id) in memberships else None for user, pid in keys
    ]


_seen = Batched(_seen_projects)


async def task_for(user: User, task_id: object) -> Task:
    """The task if `user` may see it (one query, as project_for)."""
    tid = parse_id("Task", task_id)
    task = await Task.filter(visible_tasks(user), id=tid).first()
    if task is None:
        raise not_found("Task", task_id)
    return task


async def agent_team_ids(user: User) -> list[int]:
    if user.role != Role.AGENT:
        return []
    return await TeamMember.filter(user_id=user.id).values_list("team_id", flat=True)  # type: ignore[return-value]


async def is_queue_agent(user: User, queue: Queue) -> bool:
    """Admins, and agents who belong to the queue's team."""
    if is_admin(user):
        return True
    return user.role == Role.AGENT and await TeamMember.exists(team_id=queue.team_id, user_id=user.id)


async def queue_for(user: User, queue_id: object) -> Queue:
    """Queues are a directory every signed-in user may read (to file tickets)."""
    qid = parse_id("Queue", queue_id)
    queue = await Queue.get_or_none(id=qid)
    if queue is None:
        raise not_found("Queue", queue_id)
    return queue


async def agent_queue_for(user: User, queue_id: object) -> Queue:
    queue = await queue_for(user, queue_id)
    if not await is_queue_agent(user, queue):
        raise forbidden("Only agents of this queue's team may do this.")
    return queue


async def visible_tickets(user: User) -> Q:
    """Filter on Ticket: admins see all; agents their teams' queues; everyone their own requests."""
    if is_admin(user):
        return Q()
    own = Q(requester_id=user.id)
    teams = await agent_team_ids(user)
    return Q(own, Q(queue__team_id__in=teams), join_type=Q.OR) if teams else own


async def ticket_for(user: User, ticket_id: object) -> tuple[Ticket, bool]:
    """The ticket and whether the viewer works it (agent/admin) rather than only requested it."""
    tid = parse_id("Ticket", ticket_id)
    ticket = await Ticket.get_or_none(id=tid).prefetch_related("queue")
    if ticket is None:
        raise not_found("Ticket", ticket_id)
    if await is_queue_agent(user, ticket.queue):
        return ticket, True
    if ticket.requester_id == user.id:
        return ticket, False
    raise not_found("Ticket", ticket_id)


async def ticket_for_agent(user: User, ticket_id: object) -> Ticket:
    ticket, agent = await ticket_for(user, ticket_id)
    if not agent:
        raise forbidden("Only agents of this ticket's queue may change it.")
    return ticket


def require_admin(user: User) -> None:
    if not is_admin(user):
        raise forbidden("Only administrators may do this.")


# --- access as of now: sets and subqueries for checks made where the rows are not at hand ---


def agent_queues(user: User) -> QuerySet[Queue]:
    """Filter on Queue: the queues whose tickets `user` works as an agent (none unless AGENT)."""
    if user.role != Role.AGENT:
        return Queue.filter(id__in=[])
    return Queue.filter(team__memberships__user_id=user.id)


def visible_ticket_ids(user: User) -> Subquery:
    """The ids of the tickets `user` may see, as visible_tickets, in one statement (a subquery)."""
    if is_admin(user):
        return Subquery(Ticket.all().values("id"))
    own = Q(requester_id=user.id)
    if user.role != Role.AGENT:
        return Subquery(Ticket.filter(own).values("id"))
    worked = Q(queue_id__in=Subquery(agent_queues(user).values("id")))
    return Subquery(Ticket.filter(Q(own, worked, join_type=Q.OR)).values("id"))


def visible_task_ids(user: User) -> Subquery:
    """The ids of the tasks `user` may see (a subquery)."""
    return Subquery(Task.filter(visible_tasks(user)).values("id"))


async def member_project_ids(user: User) -> frozenset[int]:
    """The projects `user` is a member of (admins see every project; this is membership only)."""
    ids = await ProjectMember.filter(user_id=user.id).values_list("project_id", flat=True)
    return frozenset(ids)  # type: ignore[arg-type]


async def agent_queue_ids(user: User) -> frozenset[int]:
    """The queues `user` works as an agent now (empty unless their role is AGENT)."""
    if user.role != Role.AGENT:
        return frozenset()
    return frozenset(await agent_queues(user).values_list("id", flat=True))  # type: ignore[arg-type]


async def worked_tickets(user_id: int, ticket_ids: Iterable[int]) -> set[int]:
    """Those of `ticket_ids` in a queue of one of the user's teams, and the user an agent (one query)."""
    ids = list(ticket_ids)
    if not ids:
        return set()
    rows = await Ticket.filter(
        id__in=ids,
        queue__team__memberships__user_id=user_id,
        queue__team__memberships__user__role=Role.AGENT,
    ).values_list("id", flat=True)
    return set(rows)  # type: ignore[arg-type]
