"""Services of a test's own, for tests that stop, pause or restart them.

The shared PostgreSQL (5432) and Redis (6379) serve every other test of the run, so a test that
breaks a service on purpose starts its own instance here, on a free port, and removes it afterwards.
(The tests of one module take turns with one PostgreSQL cluster: see private_postgres.)

The fixtures private_postgres and private_redis reach every test once tests/conftest.py imports
them (with module_postgres and postgres_template, which private_postgres takes); a test module that
imported them itself would have ruff flag each test taking one (F811).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.live import free_port

__all__ = [
    "PostgresCluster",
    "RedisServer",
    "module_postgres",
    "postgres_template",
    "private_postgres",
    "private_redis",
]


class RedisServer:
    """A redis-server of this test's own, on its own port, that the test can kill and restart."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for the broker fault tests"
        self.binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start on self.port, which stays the same across restarts so clients can reconnect."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # No retries of its own: redis-py's default backs off for seconds between attempts.
        client = redis.Redis(host="127.0.0.1", port=self.port, retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    # An early exit (say, the port was taken meanwhile) fails now, not after 10 s.
                    assert self.process.poll() is None, f"redis-server exited ({self.process.returncode})"
                    assert time.monotonic() < deadline, "redis-server did not start"
                    time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the broker dies without a word, as in a crash."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        """SIGTERM: an orderly shutdown that closes its clients' connections."""
        assert self.process is not None
        if self.process.poll() is None:
            # A stopped process would hold the SIGTERM pending until it is continued.
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            self.process.wait()

    def restart(self) -> None:
        """Stop, then start again on the same port; the data is gone (no persistence)."""
        if self.running:
            self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the server hangs; connections stay open but nothing is answered."""
        assert self.running and self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.running and self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        """Remove the server whatever state the test left it in; SIGKILL works on a paused one too."""
        if self.running:
            self.kill()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# Clusters are named pbtest_<pid of the pytest process>_<random>: unique per run, and a cluster
# whose pytest died without teardown (SIGKILL, power cut) can be recognised and dropped later.
CLUSTER_PREFIX = "pbtest_"


def _pg_env() -> dict[str, str]:
    # PG* variables of the caller (PGCLUSTER, PGSSLMODE, PGPORT...) would redirect Debian's
    # wrappers or psql away from the cluster named on the command line.
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def _run(*args: str) -> str:
    result = subprocess.run(
        args, capture_output=True, text=True, env=_pg_env(), stdin=subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def _run_as(uid: int, gid: int, *args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    """`args` run as the user `uid` (pg_ctl and initdb refuse to run as root), unchecked."""
    return subprocess.run(
        args,
        user=uid,
        group=gid,
        extra_groups=os.getgrouplist(pwd.getpwuid(uid).pw_name, gid),
        cwd=cwd,
        env=_pg_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )


def _clusters() -> list[dict[str, object]]:
    return list(json.loads(_run("pg_lsclusters", "--json") or "[]"))


def _installed_version() -> str:
    """The newest PostgreSQL version with clusters configured (usually the only one, as .ci/run assumes)."""
    etc = Path("/etc/postgresql")
    versions = [path.name for path in etc.iterdir()] if etc.is_dir() else []
    assert versions, "PostgreSQL (Debian's postgresql-common) is needed for a private cluster"
    return max(versions, key=lambda version: [int(part) for part in version.split(".")])


class PostgresCluster:
    """A PostgreSQL cluster of this test's own, made with Debian's pg_createcluster.

    We run as root: Debian's tools create the files as, and switch to, the postgres user
    themselves, so no sudo is needed. Authentication is trust (loopback only), so a URL
    without a password connects as postgres.
    """

    def __init__(
        self, name: str | None = None, version: str | None = None, template: Path | None = None
    ) -> None:
        """`template`: a data directory of initdb_template()'s to copy rather than run initdb."""
        for tool in ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "pg_lsclusters", "psql"):
            assert shutil.which(tool), f"{tool} is needed for a private PostgreSQL cluster"
        self.version = version or _installed_version()
        self.name = name or f"{CLUSTER_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        self.port = free_port()
        self.template = template

    # -- lifecycle ---------------------------------------------------------------------------------

    def create(self) -> None:
        if self.template is None:
            self._createcluster()
        else:
            # initdb is most of pg_createcluster's 2 s. Given a data directory that initdb made,
            # pg_createcluster configures it as the cluster's instead (the initdb options unused).
            data = Path("/var/lib/postgresql", self.version, self.name)
            _run("cp", "--archive", str(self.template), str(data))  # the owner's, as initdb made it
            try:
                self._createcluster("--datadir", str(data))
            except BaseException:
                shutil.rmtree(data, ignore_errors=True)
                raise
        # Appended to postgresql.conf (later lines win) rather than passed with -o, which writes
        # 127.0.0.1 unquoted, which PostgreSQL rejects; and rather than a conf.d file, which
        # pg_dropcluster would not know of and would leave behind in the cluster's directory.
        with self.info_path("configdir", "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests/services.py: a throwaway cluster for tests\n"
                "listen_addresses = '127.0.0.1'\n"
                # Durability costs time and the data dies with the test anyway.
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                # createcluster.conf turns SSL on; on loopback it is only a slower handshake.
                "ssl = off\n"
            )

    def _createcluster(self, *options: str) -> None:
        _run(
            "pg_createcluster",
            self.version,
            self.name,
            *options,
            "-p",
            str(self.port),
            # Never started at boot: a cluster that outlives its test must not come back by itself.
            "--start-conf",
            "manual",
            "--",
            "--auth=trust",
            "--no-sync",  # no fsync of initdb's files: the cluster is dropped after its tests
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections (pg_ctl -w).

        pg_ctl directly rather than `pg_ctlcluster start`, which after pg_ctl sleeps half a second
        and then wants three psql probes half a second apart: some 2 s per start (against 0.1 s)
        that a test restarting its cluster would pay each time. pg_ctl refuses to run as root,
        so it runs as the cluster's owner; it starts the server in a session of its own.
        """
        info = self._info()
        assert info is not None, f"cluster {self.version}/{self.name} does not exist"
        uid, gid = int(str(info["owneruid"])), int(str(info["ownergid"]))
        pgdata, configdir = str(info["pgdata"]), str(info["configdir"])
        pg_ctl = f"/usr/lib/postgresql/{self.version}/bin/pg_ctl"
        result = _run_as(
            uid,
            gid,
            pg_ctl,
            "start",
            "--wait",
            "--silent",
            f"--pgdata={pgdata}",
            f"--log={info['logfile']}",
            f"--options=-c config_file={configdir}/postgresql.conf",
            cwd=pgdata,
        )
        if result.returncode != 0:
            log = Path(str(info["logfile"]))
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start of {self.name} failed: {result.stderr.strip()}\n{tail}")

    def stop(self) -> None:
        """Fast shutdown: open transactions are rolled back and clients disconnected."""
        self._continue()  # a stopped postmaster would hold the shutdown signal pending
        # --skip-systemctl-redirect: as root, pg_ctlcluster would hand the cluster to systemd,
        # which is not running in containers; .ci/run starts the main cluster the same way.
        self._ctl("stop", "--mode", "fast")

    def restart(self) -> None:
        """Stop and start again, same port and data; as `pg_ctlcluster restart`, minus its 2 s."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP the postmaster and its children: connections hang instead of failing.

        The postmaster is stopped first so it forks no new backend between the listing of its
        children and their stopping.
        """
        postmaster = self._postmaster_pid()
        assert postmaster is not None, f"cluster {self.name} is not running"
        os.kill(postmaster, signal.SIGSTOP)
        for pid in self._children(postmaster):
            os.kill(pid, signal.SIGSTOP)

    def resume(self) -> None:
        self._continue()

    def ensure_started(self) -> None:
        """Running and answering, whatever a test left it in: made again if it was removed,
        continued if paused, started if stopped."""
        if not self.exists():
            self.create()
        self._continue()
        if not self.running:
            self.start()

    def remove(self) -> None:
        """Stop the cluster if it runs and delete its data, configuration and log."""
        if not self.exists():
            return
        self._continue()  # as in stop()
        _run("pg_dropcluster", "--stop", self.version, self.name)

    def __enter__(self) -> PostgresCluster:
        try:
            self.create()
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()

    # -- use ---------------------------------------------------------------------------------------

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create a database and return its URL. Synchronous (psql), so it works in any fixture."""
        self._psql(f"CREATE DATABASE {_quoted(name)}")
        return self.url(name)

    def created_databases(self) -> list[str]:
        """The databases made since initdb (which makes postgres, template0 and template1)."""
        listed = self._psql(
            "SELECT datname FROM pg_database WHERE datname NOT IN ('postgres', 'template0', 'template1')"
        )
        return listed.splitlines()

    def drop_created_databases(self) -> None:
        """Drop every database made since initdb, connections to them and all."""
        for name in self.created_databases():
            self._psql(f"DROP DATABASE {_quoted(name)} WITH (FORCE)")

    def _psql(self, sql: str) -> str:
        """What one statement prints, unaligned and without headers, as the postgres user."""
        return _run(
            "psql",
            "--no-psqlrc",
            "--quiet",
            "--tuples-only",
            "--no-align",
            "--set=ON_ERROR_STOP=1",
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--username=postgres",
            "--dbname=postgres",
            f"--command={sql}",
        )

    # -- state -------------------------------------------------------------------------------------

    def _info(self) -> dict[str, object] | None:
        for cluster in _clusters():
            if cluster.get("cluster") == self.name and str(cluster.get("version")) == self.version:
                return cluster
        return None

    def info_path(self, key: str, *parts: str) -> Path:
        info = self._info()
        assert info is not None, f"cluster {self.version}/{self.name} does not exist"
        return Path(str(info[key]), *parts)

    @staticmethod
    def listed_names() -> list[str]:
        """The names pg_lsclusters lists, of every version."""
        return [str(cluster.get("cluster")) for cluster in _clusters()]

    def exists(self) -> bool:
        return self._info() is not None

    @property
    def running(self) -> bool:
        info = self._info()
        return info is not None and bool(info.get("running"))

    def _ctl(self, *action: str) -> None:
        _run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *action)

    def _postmaster_pid(self) -> int | None:
        try:
            first_line = self.info_path("pgdata", "postmaster.pid").read_text().split("\n", 1)[0]
        except FileNotFoundError:
            return None
        pid = int(first_line)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None  # a stale file left by a crash
        return pid

    @staticmethod
    def _children(parent: int) -> list[int]:
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                # The fields after "(comm)" are: state, ppid, ...; comm itself may hold spaces.
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue  # the process exited while we looked
            if int(fields[1]) == parent:
                children.append(int(stat.parent.name))
        return children

    def _continue(self) -> None:
        """SIGCONT everything; harmless on processes that are not stopped."""
        postmaster = self._postmaster_pid()
        if postmaster is None:
            return
        for pid in self._children(postmaster):
            os.kill(pid, signal.SIGCONT)
        os.kill(postmaster, signal.SIGCONT)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def process_gone(pid: int) -> bool:
    """Whether no process has `pid` (one that does runs on: a concurrent pytest, say)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, under another user
    return False


def _orphaned(name: str) -> bool:
    """Whether `name` is a pbtest_<pid>_... one whose pytest process is gone."""
    if not name.startswith(CLUSTER_PREFIX):
        return False
    try:
        pid = int(name.removeprefix(CLUSTER_PREFIX).split("_", 1)[0])
    except ValueError:
        return False
    return process_gone(pid)


def drop_orphaned_clusters() -> None:
    """Drop pbtest_ clusters and templates whose pytest process is gone, left by a run that never
    tore down."""
    for info in _clusters():
        name = str(info.get("cluster", ""))
        if _orphaned(name):
            PostgresCluster(name=name, version=str(info["version"])).remove()
    for template in Path(tempfile.gettempdir()).glob(f"{CLUSTER_PREFIX}*"):
        if _orphaned(template.name):
            shutil.rmtree(template, ignore_errors=True)


def initdb_template(directory: Path, version: str) -> Path:
    """A data directory made in `directory` by initdb, run as pg_createcluster runs it (as the
    postgres user, with the options PostgresCluster.create passes), for clusters to copy."""
    owner = pwd.getpwnam("postgres")
    os.chown(directory, owner.pw_uid, owner.pw_gid)
    data = directory / "data"
    initdb = f"/usr/lib/postgresql/{version}/bin/initdb"
    result = _run_as(
        owner.pw_uid,
        owner.pw_gid,
        initdb,
        f"--pgdata={data}",
        "--auth=trust",
        "--no-sync",
        "--no-instructions",
        cwd=str(directory),
    )
    if result.returncode != 0:
        raise RuntimeError(f"initdb exited {result.returncode}: {result.stderr.strip()}")
    return data


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[Path]:
    """The data directory that the private clusters of this run start as copies of: initdb
    runs once per run, not once per cluster."""
    drop_orphaned_clusters()
    with tempfile.TemporaryDirectory(prefix=f"{CLUSTER_PREFIX}{os.getpid()}_template_") as directory:
        yield initdb_template(Path(directory), _installed_version())


@pytest.fixture(scope="module")
def module_postgres(postgres_template: Path) -> Iterator[PostgresCluster]:
    """The cluster that the tests of one module take turns with (see private_postgres), dropped
    after the module's last test even if tests failed."""
    with PostgresCluster(template=postgres_template) as cluster:
        yield cluster


@pytest.fixture
def private_postgres(module_postgres: PostgresCluster) -> Iterator[PostgresCluster]:
    """A started PostgreSQL cluster of this test's own, which it may stop, pause or remove.

    No other test uses it meanwhile, but the tests of one module take turns with one cluster:
    making one costs seconds (initdb above all). So each test gets it running and without the
    databases of the test before (a removed one is made again), and leaves it running."""
    module_postgres.ensure_started()
    yield module_postgres
    if module_postgres.exists():
        module_postgres.ensure_started()  # continued and started, to drop what the test made
        module_postgres.drop_created_databases()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A started redis-server of this test's own, killed afterwards even if the test fails."""
    with RedisServer() as server:
        yield server
