"""The bot health monitor: how Telegram sees each bot's webhook, and tokens it rejects.

Run by the worker's leader every BOT_HEALTH_INTERVAL_S. A bot whose token Telegram
refuses (the creator revoked it in @BotFather) is marked "unauthorized" and reported to
its creator; `botter bot add` with the new token makes it active again.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Final

from sqlalchemy import func, select

from botter.access import service as access
from botter.db.schema import bots
from botter.errors import BotterError
from botter.metrics import (
    BOT_WEBHOOK_ERROR_AGE_SECONDS_MIN,
    BOT_WEBHOOK_PENDING_UPDATES_MAX,
    BOTS_UNAUTHORIZED,
)
from botter.runtime import Runtime
from botter.telegram.errors import TelegramError, TelegramUnauthorized

logger = logging.getLogger("botter.telegram.health")

CONCURRENT_CHECKS: Final = 8
# What the error-age gauge says when no bot has had a delivery error: "a very long time".
NO_ERROR_AGE_S: Final = 10**9


@dataclass(frozen=True)
class WebhookHealth:
    pending_update_count: int
    last_error_age_s: float | None


async def check_bots(runtime: Runtime) -> None:
    """Ask Telegram about every active webhook bot; set the gauges; flag revoked tokens."""
    async with runtime.engine.connect() as conn:
        query = select(bots.c.id, bots.c.creator_id).where(
            bots.c.status == "active", bots.c.delivery == "webhook"
        )
        watched = (await conn.execute(query)).all()
    limit = asyncio.Semaphore(CONCURRENT_CHECKS)

    async def check(bot_id: int, creator_id: int) -> WebhookHealth | None:
        async with limit:
            return await check_bot(runtime, bot_id, creator_id)

    found = await asyncio.gather(*(check(row.id, row.creator_id) for row in watched))
    healths = [health for health in found if health is not None]
    BOT_WEBHOOK_PENDING_UPDATES_MAX.set(max((h.pending_update_count for h in healths), default=0))
    ages = [h.last_error_age_s for h in healths if h.last_error_age_s is not None]
    BOT_WEBHOOK_ERROR_AGE_SECONDS_MIN.set(min(ages, default=NO_ERROR_AGE_S))
    async with runtime.engine.connect() as conn:
        count = select(func.count()).select_from(bots).where(bots.c.status == "unauthorized")
        unauthorized = (await conn.execute(count)).scalar_one()
    BOTS_UNAUTHORIZED.set(unauthorized)


async def check_bot(runtime: Runtime, bot_id: int, creator_id: int) -> WebhookHealth | None:
    try:
        async with runtime.engine.connect() as conn:
            token = await runtime.token(conn, bot_id)
        info = await runtime.telegram.get_webhook_info(token)
    except TelegramUnauthorized:
        await flag_unauthorized(runtime, bot_id, creator_id)
        return None
    except (TelegramError, BotterError) as error:
        # Telegram failing, or a token no key in BOTTER_SECRET_KEYS opens: nothing to learn.
        logger.info("bot.health_unknown bot_id=%s error=%s", bot_id, type(error).__name__)
        return None
    last_error = info.get("last_error_date")
    age_s = time.time() - last_error if isinstance(last_error, int) and last_error else None
    pending = info.get("pending_update_count", 0)
    return WebhookHealth(pending if isinstance(pending, int) else 0, age_s)


async def flag_unauthorized(runtime: Runtime, bot_id: int, creator_id: int) -> None:
    async with runtime.engine.begin() as conn:
        changed = await conn.execute(
            bots.update()
            .where(bots.c.id == bot_id, bots.c.status == "active")
            .values(status="unauthorized")
        )
        if changed.rowcount:
            await access.report_problem(
                conn, creator_id, bot_id, "bot.unauthorized",
                "Telegram rejects this bot's token (revoked in @BotFather?); "
                "run `botter bot add --token NEW_TOKEN` with the new one",
            )  # fmt: skip
            logger.warning("bot.unauthorized bot_id=%s", bot_id)
    runtime.forget_token(bot_id)
