"""Running the server: the graceful uvicorn server, and the supervisor of `serve --workers N`.

uvicorn starts each worker with the spawn method: a fresh interpreter that unpickles the Config
and builds `uvicorn.supervisors.multiprocess.Server(config)`. Module globals set in the
supervisor do not reach it; what a worker needs is done in the worker, from WorkerConfig (this
module is importable there, unlike `__main__`)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import uvicorn
from prometheus_client import multiprocess as prometheus_multiprocess
from uvicorn.supervisors import multiprocess

from pulseboard import telemetry
from pulseboard.subscriptions.protocol import ProtocolHandler

logger = logging.getLogger("pulseboard")


class GracefulServer(uvicorn.Server):
    """Closes this worker's GraphQL sockets with 1001 (going away) before uvicorn's own shutdown,
    which would close them with 1012; then in-flight requests finish, and the lifespan closes
    the database and the broker."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for handler in list(ProtocolHandler.open):
            with contextlib.suppress(Exception):
                await handler.close(1001, "Server shutting down")
        await super().shutdown(sockets)


class WorkerConfig(uvicorn.Config):
    """uvicorn calls configure_logging first thing in every spawned worker, before it builds the
    worker's server: there, make that server a GracefulServer. (The app factory configures the
    worker's logging, from the same environment as the supervisor's.)"""

    def configure_logging(self) -> None:
        super().configure_logging()
        multiprocess.Server = GracefulServer  # type: ignore[misc]


class Supervisor(multiprocess.Multiprocess):
    """uvicorn's supervisor, forgetting the live gauges of each worker that is gone (killed,
    restarted or retired), so that `livesum` gauges count the workers alive only."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket], metrics_dir: str) -> None:
        super().__init__(config, sockets)
        self.metrics_dir = metrics_dir

    def _forgetting(self) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def forgetting() -> Iterator[None]:
            before = {process.pid for process in self.processes}
            try:
                yield
            finally:
                for pid in before - {process.pid for process in self.processes}:
                    if pid is not None:
                        prometheus_multiprocess.mark_process_dead(pid, self.metrics_dir)

        return forgetting()

    def terminate_all(self) -> None:
        # The workers stop listening as their shutdown begins; this process holds the listening
        # socket too, and would keep it open (connections queueing, to be reset at exit) until
        # every worker has drained. Closed now, new connections are refused at once.
        for sock in self.sockets:
            sock.close()
        super().terminate_all()

    def keep_subprocess_alive(self) -> None:
        with self._forgetting():
            super().keep_subprocess_alive()

    def handle_signals(self) -> None:
        with self._forgetting():
            super().handle_signals()


@contextlib.contextmanager
def shared_metrics() -> Iterator[str]:
    """A fresh PROMETHEUS_MULTIPROC_DIR for this server run, in the environment the workers are
    spawned with (the supervisor's own metrics stay in memory: prometheus_client chose so when
    it was imported); removed when the run ends."""
    directory = tempfile.mkdtemp(prefix="pulseboard-metrics-")
    previous = os.environ.get(telemetry.MULTIPROC_DIR)
    os.environ[telemetry.MULTIPROC_DIR] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(telemetry.MULTIPROC_DIR, None)
        else:
            os.environ[telemetry.MULTIPROC_DIR] = previous
        shutil.rmtree(directory, ignore_errors=True)


def run_workers(config: WorkerConfig) -> None:
    with shared_metrics() as directory:
        Supervisor(config, sockets=[config.bind_socket()], metrics_dir=directory).run()
