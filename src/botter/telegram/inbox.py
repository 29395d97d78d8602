"""Processing the update inbox: in order per lane, once, inside one transaction each.

A consumer claims the oldest pending update of a lane whose earlier updates are all done,
locks it (FOR UPDATE SKIP LOCKED, so other consumers move on to other lanes), runs it
through the aiogram dispatcher and marks it done in the same transaction as everything
the handlers changed. A failure rolls the handlers back and schedules a retry with
backoff; after MAX_ATTEMPTS the update is dead and its lane moves on.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Update
from pydantic import ValidationError
from sqlalchemy import func, text
from sqlalchemy.ext.asyncio import AsyncConnection
from structlog.contextvars import bound_contextvars

from botter.db.schema import update_inbox
from botter.jobs.queue import ConsumerPool
from botter.metrics import UPDATE_LAG_SECONDS, UPDATES_PROCESSED
from botter.runtime import Runtime
from botter.telegram.context import UpdateContext
from botter.telegram.flood import FloodGuard
from botter.telegram.handlers import router

logger = logging.getLogger("botter.telegram.inbox")

MAX_ATTEMPTS = 8

_CLAIM = text(
    """
    WITH heads AS (
        SELECT DISTINCT ON (bot_id, lane) id FROM update_inbox
        WHERE status = 'pending'
        ORDER BY bot_id, lane, update_id
    )
    SELECT u.id, u.creator_id, u.bot_id, u.update_id, u.body, u.attempts, u.priority,
           u.received_at
    FROM update_inbox u JOIN heads ON heads.id = u.id
    WHERE u.status = 'pending' AND u.available_at <= now()
    ORDER BY u.priority, u.id
    LIMIT 1
    FOR UPDATE OF u SKIP LOCKED
    """
)


@dataclass(frozen=True)
class InboxRow:
    id: int
    creator_id: int
    bot_id: int
    update_id: int
    body: bytes
    attempts: int
    priority: int
    received_at: datetime


def retry_delay_s(attempts: int, priority: int) -> float:
    # A pre-checkout answer is useless after 10 s, so its retries come fast.
    base_s = 0.2 if priority == 0 else 1.0
    return float(min(base_s * 2 ** (attempts - 1), 300.0))


def make_dispatcher() -> Dispatcher:
    dispatcher = Dispatcher()
    guard = FloodGuard()
    dispatcher.message.outer_middleware(guard)
    dispatcher.callback_query.outer_middleware(guard)
    dispatcher.include_router(router)
    return dispatcher


class InboxConsumer(ConsumerPool):
    """Processes recorded updates, in order per lane, with a few concurrent consumers."""

    claim_failed_event = "inbox.claim_failed"

    def __init__(self, runtime: Runtime, *, concurrency: int = 4, poll_interval_s: float = 0.5):
        super().__init__(concurrency=concurrency, poll_interval_s=poll_interval_s)
        self.runtime = runtime
        self.dispatcher = make_dispatcher()
        self._bots: dict[int, Bot] = {}

    async def run(self) -> None:
        try:
            await super().run()
        finally:
            for bot in self._bots.values():
                await bot.session.close()

    async def take_one(self) -> bool:
        return await self.process_one()

    async def process_one(self) -> bool:
        """Claim and process one update; False when none is ready."""
        async with self.runtime.engine.connect() as conn, conn.begin():
            found = (await conn.execute(_CLAIM)).first()
            if found is None:
                return False
            row = InboxRow(*found)
            # Every line logged while this update is handled carries its ids.
            with bound_contextvars(bot_id=row.bot_id, update_id=row.update_id):
                await self._process(conn, row)
        return True

    async def _process(self, conn: AsyncConnection, row: InboxRow) -> None:
        attempts = row.attempts + 1
        savepoint = await conn.begin_nested()
        try:
            await self._feed(conn, row)
        except ValidationError as error:
            await savepoint.rollback()
            # A body Telegram would never send: retrying cannot help.
            await self._mark(
                conn, row, "dead", attempts, f"malformed update: {error.error_count()} errors"
            )
            UPDATES_PROCESSED.labels("dead").inc()
            logger.warning("update.malformed bot_id=%s update_id=%s", row.bot_id, row.update_id)
            return
        except Exception as error:
            await savepoint.rollback()
            reason = f"{type(error).__name__}: {error}"[:500]
            if attempts >= MAX_ATTEMPTS:
                await self._mark(conn, row, "dead", attempts, reason)
                UPDATES_PROCESSED.labels("dead").inc()
                logger.error("update.dead bot_id=%s update_id=%s", row.bot_id, row.update_id)
                return
            await self._retry(conn, row, attempts, reason)
            UPDATES_PROCESSED.labels("retry").inc()
            logger.warning("update.retry bot_id=%s update_id=%s attempts=%s error=%s",
                           row.bot_id, row.update_id, attempts, type(error).__name__)  # fmt: skip
            return
        await savepoint.commit()
        await self._mark(conn, row, "done", attempts, None)
        UPDATES_PROCESSED.labels("done").inc()
        UPDATE_LAG_SECONDS.observe((datetime.now(UTC) - row.received_at).total_seconds())
        logger.info("update.processed bot_id=%s update_id=%s", row.bot_id, row.update_id)

    async def _feed(self, conn: AsyncConnection, row: InboxRow) -> None:
        bot = await self._bot(conn, row.bot_id)
        update = Update.model_validate(orjson.loads(row.body), context={"bot": bot})
        ctx = UpdateContext(conn, self.runtime, row.bot_id, row.creator_id, row.update_id)
        await self.dispatcher.feed_update(bot, update, ctx=ctx)

    async def _bot(self, conn: AsyncConnection, bot_id: int) -> Bot:
        # aiogram wants a Bot to bind updates to; handlers never call through it, since
        # every outbound call goes through botter's own client and job queue.
        if bot_id not in self._bots:
            token = await self.runtime.token(conn, bot_id)
            server = TelegramAPIServer.from_base(self.runtime.settings.telegram_api_url)
            self._bots[bot_id] = Bot(token, session=AiohttpSession(api=server))
        return self._bots[bot_id]

    async def _mark(
        self, conn: AsyncConnection, row: InboxRow, status: str, attempts: int, error: str | None
    ) -> None:
        await conn.execute(
            update_inbox.update()
            .where(update_inbox.c.id == row.id)
            .values(status=status, attempts=attempts, last_error=error, processed_at=func.now())
        )

    async def _retry(
        self, conn: AsyncConnection, row: InboxRow, attempts: int, error: str
    ) -> None:
        delay = timedelta(seconds=retry_delay_s(attempts, row.priority))
        await conn.execute(
            update_inbox.update()
            .where(update_inbox.c.id == row.id)
            .values(attempts=attempts, last_error=error, available_at=func.now() + delay)
        )
