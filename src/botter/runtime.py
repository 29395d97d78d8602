"""What a running process shares: settings, the database, Redis, keys, the Telegram client."""

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from botter.config import Settings
from botter.crypto import Keyring
from botter.db.engine import make_engine
from botter.db.schema import bots
from botter.errors import BotterError
from botter.ratelimit import RateLimiter, limits_storage
from botter.redis_client import connect_redis
from botter.shared_state import RedisGuard
from botter.telegram.breaker import Breaker, BreakerSettings
from botter.telegram.client import TelegramClient
from botter.telegram.pacing import Pacer


class UnknownBot(BotterError):
    def __init__(self, bot_id: int) -> None:
        super().__init__(f"bot {bot_id} is not registered")
        self.bot_id = bot_id


TOKEN_TTL_S = 60.0

# Telling someone to slow down once per half minute is enough.
FLOOD_NOTICES_LIMIT = "1/30 seconds"


@dataclass(frozen=True)
class Limits:
    """The rate limits a worker applies while processing updates."""

    subscriber_actions: RateLimiter
    flood_notices: RateLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        storage = limits_storage(settings.redis_url or "")
        return cls(
            subscriber_actions=RateLimiter(
                storage, "subscriber_actions", settings.subscriber_actions_limit, fail_closed=False
            ),
            flood_notices=RateLimiter(
                storage, "flood_notices", FLOOD_NOTICES_LIMIT, fail_closed=False
            ),
        )


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    redis: Redis
    keyring: Keyring
    telegram: TelegramClient
    limits: Limits
    # DATABASE_REPLICA_URL's engine, for reads that may be seconds stale; see reader().
    replica_engine: AsyncEngine | None = None
    # bot id → (monotonic deadline, token): a token changed by `botter bot add` on another
    # process is picked up within TOKEN_TTL_S.
    _tokens: dict[int, tuple[float, str]] = field(default_factory=dict)
    _redis_guard: RedisGuard = field(
        default_factory=lambda: RedisGuard("runtime.redis", logging.getLogger("botter"))
    )

    @classmethod
    def start(cls, settings: Settings) -> "Runtime":
        if not settings.database_url or not settings.redis_url:
            raise BotterError("DATABASE_URL and REDIS_URL must be resolved before starting")
        redis = connect_redis(
            settings.redis_url, timeout_s=1.0, max_connections=settings.redis_max_connections
        )
        breaker = Breaker(
            redis,
            BreakerSettings(
                failure_threshold=settings.breaker_failure_threshold,
                open_s=settings.breaker_open_s,
                max_open_s=settings.breaker_max_open_s,
                close_after=settings.breaker_close_after,
            ),
        )
        return cls(
            settings=settings,
            engine=make_engine(settings.database_url, settings.db_pool_size),
            redis=redis,
            keyring=Keyring(settings.keys_or_generated()),
            telegram=TelegramClient(settings.telegram_api_url, Pacer(redis), breaker=breaker),
            limits=Limits.from_settings(settings),
            replica_engine=(
                make_engine(settings.database_replica_url, settings.db_pool_size)
                if settings.database_replica_url
                else None
            ),
        )

    async def close(self) -> None:
        await self.telegram.aclose()
        await self.redis.aclose()
        await self.engine.dispose()
        if self.replica_engine is not None:
            await self.replica_engine.dispose()

    def reader(self) -> AsyncEngine:
        """Where reads that may be seconds stale go: the replica when DATABASE_REPLICA_URL is
        set, else the primary. Only listings use it; whatever decides about money or access
        reads through `engine`, which sees every commit."""
        return self.replica_engine or self.engine

    async def token(self, conn: AsyncConnection, bot_id: int) -> str:
        """The bot's token, decrypted at most once per TOKEN_TTL_S."""
        cached = self._tokens.get(bot_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        row = (
            await conn.execute(select(bots.c.token_ciphertext).where(bots.c.id == bot_id))
        ).first()
        if row is None:
            raise UnknownBot(bot_id)
        token = self.keyring.decrypt(row.token_ciphertext)
        self._tokens[bot_id] = (time.monotonic() + TOKEN_TTL_S, token)
        return token

    async def redis_info(self, section: str) -> dict[str, Any] | None:
        """Redis's INFO section, or None while Redis is unreachable."""
        redis = self.redis
        info: dict[str, Any] | None = await self._redis_guard.run(lambda: redis.info(section))
        return info

    def forget_token(self, bot_id: int) -> None:
        self._tokens.pop(bot_id, None)


def button(text: str, callback_data: str) -> dict[str, Any]:
    return {"text": text, "callback_data": callback_data}


def keyboard(*rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inline_keyboard": list(rows)}
