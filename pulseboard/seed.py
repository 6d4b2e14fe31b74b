"""Demo data, created once through the resolvers so events and notifications are real."""

from __future__ import annotations

from dataclasses import dataclass

from pulseboard.auth import Claims
from pulseboard.models import Role, TaskPriority, TaskStatus, TicketPriority, TicketStatus, User
from pulseboard.resolvers import projects, queues, tasks, tickets, users
from pulseboard.resolvers.context import Context
from pulseboard.settings import Settings


@dataclass(frozen=True)
class DemoUser:
    email: str
    name: str
    role: Role


ADMIN = DemoUser("ada@demo.pulseboard.dev", "Ada Admin", Role.ADMIN)
AGENT = DemoUser("sam@demo.pulseboard.dev", "Sam Agent", Role.AGENT)
MEMBER = DemoUser("mia@demo.pulseboard.dev", "Mia Member", Role.MEMBER)
CUSTOMER = DemoUser("carl@demo.pulseboard.dev", "Carl Customer", Role.MEMBER)
DEMO_USERS = (ADMIN, AGENT, MEMBER, CUSTOMER)


async def _user(demo: DemoUser) -> User:
    return await users.upsert_from_claims(Claims(demo.email, demo.email, demo.name, demo.role, None))


async def seed(settings: Settings) -> bool:
    """Creates the demo data unless it exists; returns whether it did."""
    if await User.exists(sub=ADMIN.email):
        return False
    admin, agent, member, customer = [await _user(d) for d in DEMO_USERS]

    def as_(user: User) -> Context:
        return Context(settings=settings, viewer=user)

    team = await users.create_team(as_(admin), name="Support")
    await users.add_team_member(as_(admin), team_id=team.id, user_id=agent.id)
    queue = await queues.create_queue(
        as_(admin),
        team_id=team.id,
        name="Customer support",
        sla_first_response_minutes=60,
        sla_resolution_minutes=8 * 60,
    )
    project = await projects.create_project(
        as_(admin), name="Website relaunch", description="The new marketing site."
    )
    for person in (agent, member):
        await projects.add_project_member(as_(admin), project_id=project.id, user_id=person.id)
    board = [
        ("Write the launch announcement", TaskStatus.TODO, TaskPriority.MEDIUM, member),
        ("Pick the hero image", TaskStatus.TODO, TaskPriority.LOW, None),
        ("Migrate the blog posts", TaskStatus.IN_PROGRESS, TaskPriority.HIGH, member),
        ("Set up redirects", TaskStatus.IN_REVIEW, TaskPriority.URGENT, agent),
        ("Choose the CMS", TaskStatus.DONE, TaskPriority.MEDIUM, admin),
    ]
    for title, status, priority, assignee in board:
        await tasks.create_task(
            as_(admin),
            project_id=project.id,
            title=title,
            description="",
            status=status,
            priority=priority,
            assignee_id=assignee.id if assignee else None,
            due_at=None,
        )
    first = await tickets.create_ticket(
        as_(customer),
        queue_id=queue.id,
        title="I cannot log in",
        description="The login page says my password is wrong.",
        priority=TicketPriority.HIGH,
    )
    await tickets.create_ticket(
        as_(customer),
        queue_id=queue.id,
        title="Invoice address is wrong",
        description="Please change it to our new office.",
        priority=TicketPriority.NORMAL,
    )
    await tickets.assign_ticket(as_(admin), ticket_id=first.id, assignee_id=agent.id, expected_version=None)
    await tickets.add_comment(as_(agent), ticket_id=first.id, body="Looking into it now.")
    await tickets.set_status(as_(agent), ticket_id=first.id, status=TicketStatus.OPEN, expected_version=None)
    return True
