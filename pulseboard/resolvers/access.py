"""Authorization: who may see and change what. What a viewer may not see is NOT_FOUND."""

from __future__ import annotations

from tortoise.expressions import Q

from pulseboard.errors import forbidden, not_found
from pulseboard.models import (
    Project,
    ProjectMember,
    Queue,
    Role,
    Task,
    TeamMember,
    Ticket,
    User,
)


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
    pid = parse_id("Project", project_id)
    project = await Project.filter(visible_projects(user), id=pid).first()
    if project is None:
        raise not_found("Project", project_id)
    return project


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
