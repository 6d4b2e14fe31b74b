"""Presence: who is viewing a project right now, and what they look at or edit. Ephemeral: held
in memory by every worker that uses it, carried between workers on one broker channel
(topics.presence(), in the hub's namespace), never written to the database and never replayed.

Each presence subscription is an *entry* of the worker holding its socket. Workers tell each
other what changed:

    up     an entry joined or changed (its whole state)
    down   an entry left: its subscription ended (completed, socket closed)
    set    a user's setPresence, applied by the worker(s) holding that user's entries there
    beat   a worker's whole list of entries, every ttl/3: it replaces what others knew of that
           worker, so a lost message is mended; a worker not heard from for ttl (it died) is
           forgotten with its entries
    sync   a worker that starts listening asks every other one to beat at once

A worker publishes from one task, in order, and the broker delivers one publisher's messages on
a channel in order, so an entry's `down` never overtakes its `up`. A worker's own messages come
back through the broker and are ignored: it applies its changes at once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

from broadcaster import Broadcast

from pulseboard import telemetry
from pulseboard.errors import AppError
from pulseboard.subscriptions import topics

logger = logging.getLogger("pulseboard.presence")

SNAPSHOT, JOINED, CHANGED, LEFT = "SNAPSHOT", "JOINED", "CHANGED", "LEFT"
# How long a worker that starts listening waits for the others' beats before its first snapshot.
SYNC_SECONDS = 0.2
RETRY_SECONDS = 1.0
# Changes a subscriber may have waiting; past it they are replaced by one SNAPSHOT.
INBOX = 100


@dataclass(frozen=True)
class Entry:
    """One presence subscription: times are epoch seconds, comparable across hosts."""

    project: int
    user: int
    task: int | None
    editing: bool
    since: float
    changed: float


@dataclass(frozen=True)
class Viewer:
    """A user's presence in a project, merged over their entries (tabs, sockets, workers)."""

    user_id: int
    task_id: int | None
    editing: bool
    since: dt.datetime


@dataclass(frozen=True)
class Change:
    """What subscribers receive: `viewers` is everyone present after the change; `user_id` the one
    who joined, changed or left (None on SNAPSHOT)."""

    type: str
    user_id: int | None
    viewers: tuple[Viewer, ...]


def merge(entries: Iterable[Entry]) -> tuple[Viewer, ...]:
    """One viewer per user: what they look at is their entry edited most recently, or else the one
    changed most recently (a user editing in one tab and reading in another is editing); `since`
    is their earliest entry's. Ordered by arrival."""
    by_user: dict[int, list[Entry]] = {}
    for entry in entries:
        by_user.setdefault(entry.user, []).append(entry)
    viewers = []
    for user, own in by_user.items():
        lead = max(own, key=lambda e: (e.editing, e.changed))
        since = dt.datetime.fromtimestamp(min(e.since for e in own), dt.UTC)
        viewers.append(Viewer(user, lead.task, lead.editing, since))
    return tuple(sorted(viewers, key=lambda v: (v.since, v.user_id)))


def changes(before: tuple[Viewer, ...], after: tuple[Viewer, ...]) -> list[Change]:
    old = {v.user_id: v for v in before}
    new = {v.user_id: v for v in after}
    found = [Change(LEFT, user, after) for user in old if user not in new]
    for user, viewer in new.items():
        if user not in old:
            found.append(Change(JOINED, user, after))
        elif old[user] != viewer:
            found.append(Change(CHANGED, user, after))
    return found


class Inbox:
    """One subscriber's changes, in order. A reader that falls INBOX behind gets one SNAPSHOT of
    how things are instead; an inbox ended with an error raises it (the viewer lost access)."""

    def __init__(self, first: Change) -> None:
        self._changes: deque[Change] = deque([first])
        self._ready = asyncio.Event()
        self._ready.set()
        self._error: AppError | None = None

    def offer(self, change: Change) -> None:
        if len(self._changes) >= INBOX:
            self._changes.clear()
            change = Change(SNAPSHOT, None, change.viewers)
        self._changes.append(change)
        self._ready.set()

    def end(self, error: AppError) -> None:
        self._error = error
        self._ready.set()

    async def next(self) -> Change:
        while True:
            if self._error is not None:
                raise self._error
            if self._changes:
                return self._changes.popleft()
            self._ready.clear()
            await self._ready.wait()


class PresenceTable:
    """This worker's view of every presence entry of the deployment, and its own entries' beats."""

    def __init__(self, broadcast: Broadcast, *, namespace: str, ttl: float, publish_timeout: float) -> None:
        self._broadcast = broadcast
        self._channel = namespace + topics.presence()
        self.ttl = ttl
        self._publish_timeout = publish_timeout
        self.worker = uuid.uuid4().hex
        self._ids = itertools.count(1)
        self._entries: dict[tuple[str, int], Entry] = {}
        self._heard: dict[str, float] = {}  # other workers: when last heard (monotonic)
        self._inboxes: dict[int, set[Inbox]] = {}
        self._outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()  # listening, and the others' beats had SYNC_SECONDS to come

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._listen_forever()),
            asyncio.create_task(self._publish_forever()),
            asyncio.create_task(self._beat_forever()),
        ]

    async def close(self) -> None:
        """Tells the others this worker's entries are gone (within one publish timeout), then stops."""
        self._entries = {key: e for key, e in self._entries.items() if key[0] != self.worker}
        self._beat()  # an empty one
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._publish_timeout):
                await self._outgoing.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def viewers(self, project: int) -> tuple[Viewer, ...]:
        return merge(e for e in self._entries.values() if e.project == project)

    def present(self, project: int, user: int) -> bool:
        return any(e.project == project and e.user == user for e in self._entries.values())

    @asynccontextmanager
    async def join(self, project: int, user: int) -> AsyncIterator[Inbox]:
        """`user`'s presence in `project` for the duration of the block; the inbox starts with a
        SNAPSHOT of everyone present (`user` included)."""
        await self.ready.wait()
        key = (self.worker, next(self._ids))
        now = time.time()
        self._put(key, Entry(project, user, None, False, now, now))
        inbox = Inbox(Change(SNAPSHOT, None, self.viewers(project)))
        self._inboxes.setdefault(project, set()).add(inbox)
        try:
            yield inbox
        finally:
            self._inboxes[project].discard(inbox)
            if not self._inboxes[project]:
                del self._inboxes[project]
            self._drop(key)

    async def set_state(self, project: int, user: int, task: int | None, editing: bool) -> bool:
        """Sets what `user` looks at in `project`, on every worker holding their entries there;
        False (and nothing done) when they have none anywhere."""
        await self.ready.wait()
        if not self.present(project, user):
            return False
        self._send({"kind": "set", "project": project, "user": user, "task": task, "editing": editing})
        self._apply_set(project, user, task, editing)
        return True

    def _put(self, key: tuple[str, int], entry: Entry) -> None:
        self._update([key], {key: entry})
        self._send({"kind": "up", "id": key[1], "entry": asdict(entry)})

    def _drop(self, key: tuple[str, int]) -> None:
        self._update([key], {})
        self._send({"kind": "down", "id": key[1]})

    def _apply_set(self, project: int, user: int, task: int | None, editing: bool) -> None:
        now = time.time()
        for key, entry in list(self._entries.items()):
            if key[0] == self.worker and entry.project == project and entry.user == user:
                self._put(key, replace(entry, task=task, editing=editing, changed=now))

    def _update(self, removed: Iterable[tuple[str, int]], added: dict[tuple[str, int], Entry]) -> None:
        """Removes and adds entries, then tells the subscribers of their projects what changed."""
        removed = [key for key in removed if key in self._entries]
        projects = {self._entries[key].project for key in removed} | {e.project for e in added.values()}
        before = {p: self.viewers(p) for p in projects if p in self._inboxes}
        for key in removed:
            del self._entries[key]
        self._entries.update(added)
        for project, old in before.items():
            for change in changes(old, self.viewers(project)):
                for inbox in list(self._inboxes.get(project, ())):
                    inbox.offer(change)

    # The broker side.

    def _send(self, message: dict[str, Any]) -> None:
        self._outgoing.put_nowait({**message, "worker": self.worker})

    def _beat(self) -> None:
        own = [(key[1], asdict(e)) for key, e in self._entries.items() if key[0] == self.worker]
        self._send({"kind": "beat", "entries": own})

    async def _publish_forever(self) -> None:
        while True:
            message = await self._outgoing.get()
            try:
                async with asyncio.timeout(self._publish_timeout):
                    await self._broadcast.publish(self._channel, json.dumps(message))
            except Exception as error:  # the next beat says it again
                telemetry.log_limited(logger, "presence publish", "publishing presence failed: %r", error)
            finally:
                self._outgoing.task_done()

    async def _beat_forever(self) -> None:
        """Beats every ttl/3 and forgets workers silent for ttl, checking every ttl/6."""
        for tick in itertools.count():
            await asyncio.sleep(self.ttl / 6)
            if tick % 2:
                self._beat()
            silent = {w for w, heard in self._heard.items() if time.monotonic() - heard > self.ttl}
            for worker in silent:
                del self._heard[worker]
            self._update(self._keys_of(silent), {})

    async def _listen_forever(self) -> None:
        while True:
            try:
                async with self._broadcast.subscribe(self._channel) as subscriber:
                    self._send({"kind": "sync"})
                    await asyncio.sleep(SYNC_SECONDS)
                    self.ready.set()
                    async for event in subscriber:  # type: ignore[union-attr]
                        if event is None:
                            break
                        self._receive(event.message)
            except Exception as error:
                telemetry.log_limited(logger, "presence listen", "listening for presence failed: %r", error)
            finally:
                self.ready.set()  # never wait on a broker that is down: local presence still works
            await asyncio.sleep(RETRY_SECONDS)

    def _receive(self, text: str) -> None:
        try:
            message = json.loads(text)
            worker, kind = str(message["worker"]), message["kind"]
            if worker == self.worker:
                return
            self._heard[worker] = time.monotonic()
            if kind == "up":
                key = (worker, int(message["id"]))
                self._update([key], {key: Entry(**message["entry"])})
            elif kind == "down":
                self._update([(worker, int(message["id"]))], {})
            elif kind == "set":
                self._apply_set(message["project"], message["user"], message["task"], message["editing"])
            elif kind == "beat":
                entries = {(worker, int(i)): Entry(**e) for i, e in message["entries"]}
                self._update(self._keys_of({worker}), entries)
            elif kind == "sync":
                self._beat()
        except (ValueError, KeyError, TypeError):
            logger.warning("dropped a malformed presence message")

    def _keys_of(self, workers: set[str]) -> list[tuple[str, int]]:
        return [key for key in self._entries if key[0] in workers]
