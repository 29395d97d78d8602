"""The web service served by uvicorn on a loopback port, bots registered straight in the
database, and helpers to post updates and read the inbox.

Test modules here run in one event loop per module (`LOOP`), so one app serves a whole
module; tests that break a dependency start their own app.
"""

import asyncio
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
import orjson
import psycopg
import pytest
import pytest_asyncio
import uvicorn
from psycopg.rows import TupleRow

from botter.config import Settings, load_settings
from botter.crypto import Keyring
from botter.db.engine import libpq_url
from botter.web.app import create_app
from botter.web.ingest import SECRET_HEADER
from tests.conftest import free_port

SECRET_KEYS: Final = ("web-tests-secret-key-0123456789-abcdefghijklmnop",)
BODY_LIMIT_BYTES: Final = 4096
STARTUP_TIMEOUT_S: Final = 10.0
LOOP: Final = pytest.mark.asyncio(loop_scope="module")

# Random bases: tests share one database per worker, and a rerun must not meet old rows.
_bot_ids = itertools.count(secrets.randbelow(2**40) * 1000 + 10**12)
_update_ids = itertools.count(secrets.randbelow(2**40) * 1000 + 10**9)


def next_update_id() -> int:
    return next(_update_ids)


def unknown_bot_id() -> int:
    """A bot id no test registers."""
    return next(_bot_ids)


def message_update(update_id: int, chat_id: int = 1234, text: str = "hi") -> dict[str, Any]:
    user = {"id": 1234, "is_bot": False, "first_name": "Ann"}
    chat = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"}
    message = {"message_id": 1, "date": 1_700_000_000, "chat": chat, "from": user, "text": text}
    return {"update_id": update_id, "message": message}


@dataclass(frozen=True)
class Bot:
    id: int
    creator_id: int
    token: str
    webhook_secret: str


@dataclass(frozen=True)
class InboxRow:
    creator_id: int
    update_id: int
    lane: str
    priority: int
    body: bytes
    status: str


class Database:
    """A direct connection to the test database, bypassing anything a test cuts."""

    def __init__(self, connection: psycopg.AsyncConnection[TupleRow]) -> None:
        self.connection = connection
        self._keyring = Keyring(SECRET_KEYS)

    async def register_bot(self) -> Bot:
        bot_id = next(_bot_ids)
        token = f"{bot_id}:{secrets.token_urlsafe(27)}"
        webhook_secret = secrets.token_urlsafe(32)
        cursor = await self.connection.execute(
            "INSERT INTO creators (name) VALUES (%s) RETURNING id", (f"creator of {bot_id}",)
        )
        found = await cursor.fetchone()
        assert found is not None
        creator_id = int(found[0])
        await self.connection.execute(
            "INSERT INTO bots (id, creator_id, username, token_ciphertext,"
            " webhook_secret_ciphertext, delivery) VALUES (%s, %s, %s, %s, %s, 'webhook')",
            (
                bot_id,
                creator_id,
                f"shop{bot_id}_bot",
                self._keyring.encrypt(token),
                self._keyring.encrypt(webhook_secret),
            ),
        )
        return Bot(bot_id, creator_id, token, webhook_secret)

    async def inbox(self, bot_id: int) -> list[InboxRow]:
        cursor = await self.connection.execute(
            "SELECT creator_id, update_id, lane, priority, body, status FROM update_inbox"
            " WHERE bot_id = %s ORDER BY update_id",
            (bot_id,),
        )
        return [InboxRow(*row) for row in await cursor.fetchall()]

    async def count(self, *, bot_id: int | None = None, update_id: int | None = None) -> int:
        """Inbox rows of a bot, of an update_id under any bot, or of both."""
        assert bot_id is not None or update_id is not None
        cursor = await self.connection.execute(
            "SELECT count(*) FROM update_inbox"
            " WHERE (%(bot_id)s::bigint IS NULL OR bot_id = %(bot_id)s)"
            " AND (%(update_id)s::bigint IS NULL OR update_id = %(update_id)s)",
            {"bot_id": bot_id, "update_id": update_id},
        )
        found = await cursor.fetchone()
        assert found is not None
        return int(found[0])


@dataclass
class Web:
    """A running web service and an HTTP client for it."""

    url: str
    http: httpx.AsyncClient

    async def post(
        self, bot_id: int | str, body: bytes, secret: str | None, **headers: str
    ) -> httpx.Response:
        if secret is not None:
            headers[SECRET_HEADER] = secret
        headers.setdefault("content-type", "application/json")
        return await self.http.post(f"/webhook/telegram/{bot_id}", content=body, headers=headers)

    async def deliver(self, bot: Bot, update: dict[str, Any]) -> httpx.Response:
        """Post `update` as Telegram does, with the bot's secret."""
        return await self.post(bot.id, orjson.dumps(update), bot.webhook_secret)


def web_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        botter_secret_keys=SECRET_KEYS,
        webhook_body_limit_bytes=BODY_LIMIT_BYTES,
        # These tests forge on purpose, all from 127.0.0.1; the limit has its own test.
        webhook_auth_failures_limit="100000/minute",
        **overrides,
    )


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Web]:
    """The web app under uvicorn, in this event loop, on a free port; its lifespan runs."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, lifespan="on", log_level="warning"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if serving.done():
            serving.result()
            raise RuntimeError("uvicorn stopped while starting")
        assert time.monotonic() < deadline, "the web app did not start"
        await asyncio.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Web(url, http)
    finally:
        server.should_exit = True
        await serving


async def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.02)


async def eventually(
    attempt: Callable[[], Awaitable[httpx.Response]],
    accept: Callable[[httpx.Response], bool],
    timeout_s: float = 15,
) -> tuple[httpx.Response, list[httpx.Response]]:
    """Repeat `attempt` until `accept` likes its answer; the answer and the ones before it."""
    deadline = time.monotonic() + timeout_s
    before: list[httpx.Response] = []
    while True:
        response = await attempt()
        if accept(response):
            return response, before
        before.append(response)
        if time.monotonic() > deadline:
            raise AssertionError(f"no accepted answer in {timeout_s} s; last: {response.text}")
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture(loop_scope="module")
async def db(database_url: str) -> AsyncIterator[Database]:
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as connection:
        yield Database(connection)


@pytest_asyncio.fixture(loop_scope="module")
async def bot(db: Database) -> Bot:
    return await db.register_bot()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def web(database_url: str, redis_url: str) -> AsyncIterator[Web]:
    """One app for the module; tests use fresh bots, so they do not meet each other."""
    async with serve(web_settings(database_url, redis_url)) as running:
        yield running
