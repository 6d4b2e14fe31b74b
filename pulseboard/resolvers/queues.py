"""Support queues: a team's intake with its SLA targets."""

from __future__ import annotations

from pulseboard.errors import not_found
from pulseboard.models import Queue, Team
from pulseboard.resolvers import access
from pulseboard.resolvers.context import Context
from pulseboard.resolvers.pagination import Page, paginate
from pulseboard.resolvers.validation import int_range, text

SLA_MAX_MINUTES = 60 * 24 * 365


async def queue(ctx: Context, queue_id: object) -> Queue:
    return await access.queue_for(ctx.require_viewer(), queue_id)


async def queues(
    ctx: Context,
    *,
    first: int | None,
    after: str | None,
    last: int | None = None,
    before: str | None = None,
) -> Page[Queue]:
    ctx.require_viewer()
    return await paginate(
        Queue.all(), order=["id"], first=first, after=after, last=last, before=before, settings=ctx.settings
    )


async def create_queue(
    ctx: Context,
    *,
    team_id: object,
    name: str,
    sla_first_response_minutes: int,
    sla_resolution_minutes: int,
) -> Queue:
    access.require_admin(ctx.require_viewer())
    team = await Team.get_or_none(id=access.parse_id("Team", team_id))
    if team is None:
        raise not_found("Team", team_id)
    return await Queue.create(
        team_id=team.id,
        name=text("name", name),
        sla_first_response_minutes=int_range(
            "slaFirstResponseMinutes", sla_first_response_minutes, 1, SLA_MAX_MINUTES
        ),
        sla_resolution_minutes=int_range("slaResolutionMinutes", sla_resolution_minutes, 1, SLA_MAX_MINUTES),
    )
