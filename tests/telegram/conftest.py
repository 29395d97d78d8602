"""A sandbox world, a real Redis and a TelegramClient for the client layer's tests."""

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from botter.telegram.client import TelegramClient
from botter.telegram.pacing import Pacer
from tests.sandbox.conftest import Telegram, unique


@dataclass
class Scene:
    """A fresh bot, a user who started it, and a channel the bot administers fully."""

    tg: Telegram
    bot_id: int
    token: str
    user_id: int
    owner_id: int
    chat_id: int

    def fault(self, **fault: object) -> None:
        assert self.tg.control("/faults", {"bot_id": self.bot_id, **fault}) == {"ok": True}

    def started_user(self, first_name: str = "Ann") -> int:
        user_id = self.tg.user(first_name)
        self.tg.start(user_id, self.bot_id)
        return user_id

    def messages_to(self, user_id: int) -> list[dict[str, object]]:
        shown: list[dict[str, object]] = self.tg.look(
            f"/users/{user_id}/messages", bot_id=self.bot_id
        )
        return shown

    def outcomes(self, method: str) -> list[int | None]:
        """Per call of the method, in order: its error code, or None when it succeeded."""
        calls = self.tg.look("/calls", bot_id=self.bot_id, method=method)
        return [call.get("error_code") for call in calls]


@pytest.fixture
def scene(tg: Telegram) -> Scene:
    bot = tg.bot(unique("paywall") + "_bot")
    owner_id = tg.user("Olga")
    chat_id = tg.channel(owner_id, bot["id"])
    scene = Scene(tg, bot["id"], bot["token"], 0, owner_id, chat_id)
    scene.user_id = scene.started_user()
    return scene


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_timeout=5)
    yield client
    await client.aclose()


@pytest.fixture
def pacer(redis: Redis) -> Pacer:
    return Pacer(redis)


@pytest.fixture
async def client(sandbox_url: str, pacer: Pacer) -> AsyncIterator[TelegramClient]:
    async with TelegramClient(sandbox_url, pacer) as telegram:
        yield telegram
