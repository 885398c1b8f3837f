"""A real PostgreSQL server for the tests: the one already running, or a throwaway cluster.

Order of preference:
1. ``LEDGER_TEST_PG`` (a libpq URL to a server where we may create databases);
2. a server on 127.0.0.1:5432 (user ``postgres``, trust auth), started with
   ``pg_ctlcluster`` if the cluster exists but is down;
3. a throwaway cluster made with ``initdb`` and ``pg_ctl`` in a temporary
   directory on a free port, removed at the end.
If none of these works the PostgreSQL tests fail loudly: they are never skipped.
"""

from __future__ import annotations

import glob
import os
import queue
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres_user(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root; run them as the `postgres` account.
    if os.geteuid() == 0:
        runuser = shutil.which("runuser")
        if runuser is None:
            raise RuntimeError("running as root and no `runuser` to start PostgreSQL as `postgres`")
        return [runuser, "-u", "postgres", "--", *cmd]
    return cmd


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield an admin URL (``postgresql://user@host:port/postgres``) for a live server."""
    env_url = os.environ.get("LEDGER_TEST_PG")
    if env_url:
        if not _reachable(env_url):
            raise RuntimeError(f"LEDGER_TEST_PG={env_url} is not reachable")
        yield env_url
        return
    default = "postgresql://postgres@127.0.0.1:5432/postgres"
    if _reachable(default):
        yield default
        return
    ctlcluster = shutil.which("pg_ctlcluster")
    if ctlcluster and glob.glob("/etc/postgresql/*/main"):
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run([ctlcluster, "--skip-systemctl-redirect", version, "main", "start"],
                       capture_output=True, check=False, timeout=60)
        for _ in range(30):
            if _reachable(default):
                yield default
                return
            time.sleep(0.5)
    with _throwaway_cluster() as url:
        yield url


@contextmanager
def _throwaway_cluster() -> Iterator[str]:
    with throwaway_cluster() as cluster:
        yield cluster.url


class Cluster:
    """A throwaway cluster of a test's own: it may be stopped and started again (same port, same data)."""

    def __init__(self, pg_ctl: str, root: str, port: int) -> None:
        self.pg_ctl, self.root, self.port = pg_ctl, root, port
        self.data = os.path.join(root, "data")
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def start(self) -> None:
        sock = os.path.join(self.root, "sock")
        opts = f"-p {self.port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(_as_postgres_user([self.pg_ctl, "-D", self.data, "-o", opts, "-l",
                                          os.path.join(self.root, "log"), "-w", "start"]),
                       check=True, capture_output=True, timeout=120)

    def stop(self, mode: str = "fast") -> None:
        """``fast``: every session is ended and the server shuts down, as in a restart."""
        subprocess.run(_as_postgres_user([self.pg_ctl, "-D", self.data, "-m", mode, "-w", "stop"]),
                       check=False, capture_output=True, timeout=60)


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A new cluster made with ``initdb`` and ``pg_ctl`` in a temporary directory on a free port."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if not initdb or not pg_ctl:
        raise RuntimeError("no PostgreSQL server reachable and no initdb/pg_ctl to start one")
    root = tempfile.mkdtemp(prefix="ledger-pg-")
    os.chmod(root, 0o755)
    sock = os.path.join(root, "sock")
    os.mkdir(sock)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(sock, "postgres", "postgres")
    cluster = Cluster(pg_ctl, root, _free_port())
    try:
        subprocess.run(_as_postgres_user([initdb, "-D", cluster.data, "-U", "postgres", "-A", "trust",
                                          "--no-sync", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)
        cluster.start()
        if not _reachable(cluster.url):
            raise RuntimeError(f"throwaway PostgreSQL cluster on port {cluster.port} did not come up")
        yield cluster
    finally:
        cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def with_db(admin_url: str, dbname: str) -> str:
    """The admin URL pointed at another database."""
    return admin_url.rsplit("/", 1)[0] + "/" + dbname


def terminate_sessions(admin_url: str, dbname: str) -> None:
    """End every session on a database (a template may have none when it is copied)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,))


def _drop(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class DatabasePool:
    """Fresh databases made ahead of the tests that take them, and dropped behind them, by one thread.

    A test's database is as new as ``scratch_database``'s (made for it alone, never reused), but
    ``CREATE DATABASE`` and ``DROP DATABASE`` run on the server while the previous test runs, not in
    the test's own time (they were about a third of a PostgreSQL test's wall time). With
    ``template``, each database is a copy of it (``CREATE DATABASE ... TEMPLATE``).
    """

    AHEAD = 2

    def __init__(self, admin_url: str, template: str | None = None) -> None:
        self.admin_url, self.template = admin_url, template
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=self.AHEAD)
        self._used: queue.Queue[str] = queue.Queue()
        self._stop = threading.Event()
        self._failed: list[str] = []
        self._thread = threading.Thread(target=self._work, name="pg-database-pool", daemon=True)
        self._thread.start()

    def _create(self) -> str:
        name = "ledger_test_" + uuid.uuid4().hex[:12]
        clause = f' TEMPLATE "{self.template}"' if self.template else ""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{clause}')
        return name

    def _work(self) -> None:
        while not self._stop.is_set():
            try:  # drop what the tests gave back before making more
                while True:
                    used = self._used.get_nowait()
                    try:
                        _drop(self.admin_url, used)
                    except psycopg.Error:
                        self._failed.append(used)  # close() tries again
            except queue.Empty:
                pass
            if self._ready.full():
                time.sleep(0.01)
                continue
            try:
                made: str | BaseException = self._create()
            except BaseException as exc:  # handed to the test that takes it: it fails, loudly
                made = exc
            self._ready.put(made)

    @contextmanager
    def database(self) -> Iterator[str]:
        made = self._ready.get(timeout=120)
        if isinstance(made, BaseException):
            raise made
        try:
            yield with_db(self.admin_url, made)
        finally:
            self._used.put(made)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        leftovers = list(self._failed)
        while not self._ready.empty():
            made = self._ready.get_nowait()
            if isinstance(made, str):
                leftovers.append(made)
        while not self._used.empty():
            leftovers.append(self._used.get_nowait())
        for name in leftovers:
            _drop(self.admin_url, name)


@contextmanager
def scratch_database(admin_url: str, options: str = "") -> Iterator[str]:
    """A uniquely named database (``options`` appended to its CREATE DATABASE), dropped afterwards."""
    name = "ledger_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" {options}')
    try:
        yield with_db(admin_url, name)
    finally:
        _drop(admin_url, name)


@contextmanager
def hot_standby(primary: Cluster) -> Iterator[Cluster]:
    """A streaming replica of ``primary``: ``pg_basebackup -R`` into a temporary directory, another port."""
    basebackup, pg_ctl = _bin("pg_basebackup"), _bin("pg_ctl")
    if not basebackup or not pg_ctl:
        raise RuntimeError("no pg_basebackup/pg_ctl to start a hot standby")
    root = tempfile.mkdtemp(prefix="ledger-pg-standby-")
    os.chmod(root, 0o755)
    os.mkdir(os.path.join(root, "sock"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(os.path.join(root, "sock"), "postgres", "postgres")
    standby = Cluster(pg_ctl, root, _free_port())
    try:
        # -R writes standby.signal and primary_conninfo: the copy starts as a hot standby.
        subprocess.run(_as_postgres_user([basebackup, "-h", "127.0.0.1", "-p", str(primary.port), "-U",
                                          "postgres", "-D", standby.data, "-R", "-X", "stream",
                                          "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        standby.start()
        if not _reachable(standby.url):
            raise RuntimeError(f"hot standby on port {standby.port} did not come up")
        yield standby
    finally:
        standby.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def wait_for_replay(primary_url: str, standby_url: str, timeout: float = 30.0) -> None:
    """Return once the standby has replayed everything the primary has written so far."""
    with psycopg.connect(primary_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    assert row is not None
    deadline = time.monotonic() + timeout
    with psycopg.connect(standby_url, autocommit=True) as conn:
        while True:
            done = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],)).fetchone()
            if done is not None and done[0]:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby did not replay up to {row[0]} in {timeout} s")
            time.sleep(0.05)
