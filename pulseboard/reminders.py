"""The worker's reminder sweeper: every PULSEBOARD_REMINDER_INTERVAL_SECONDS it sends the due-date
reminders that have fallen due (resolvers/reminders says which, and makes each go out once
across workers)."""

from __future__ import annotations

from pulseboard.periodic import Periodic
from pulseboard.resolvers import reminders
from pulseboard.settings import Settings


class Sweeper(Periodic):
    name = "reminders"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.reminder_interval_seconds)

    async def step(self) -> int:
        return await reminders.sweep()
