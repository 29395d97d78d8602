"""The worker process: inbox consumers, job runners, and (on one worker) the scheduler.

Every worker consumes updates and jobs. One worker at a time is the leader, chosen by a
PostgreSQL advisory lock held on its own connection: it runs the periodic sweeper and
the getUpdates loops of polling-mode bots. When the leader dies, its connection closes,
the lock frees itself, and another worker takes over.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import select, text

from botter.billing import reconcile
from botter.db.engine import libpq_url
from botter.db.schema import bots
from botter.jobs import housekeeping
from botter.jobs.queue import JobRunner, enqueue
from botter.jobs.tasks import job_handlers
from botter.runtime import Runtime
from botter.telegram import health as bot_health
from botter.telegram.inbox import InboxConsumer
from botter.telegram.polling import LONG_POLL_S, poll_once

logger = logging.getLogger("botter.worker")

LEADER_LOCK = 7212003
SWEEP_RETRY_WINDOW_S = 600
# Metrics sampling and pruning: every Prometheus scrape (15 s) sees fresh numbers.
CHORES_INTERVAL_S = 15.0

_EXPIRED_BUT_PRESENT = text(
    """
    SELECT g.id, g.creator_id, g.expires_at FROM access_grants g
    JOIN subscribers s ON s.id = g.subscriber_id
    JOIN chat_members m ON m.managed_chat_id = g.managed_chat_id AND m.user_id = s.user_id
    WHERE g.expires_at <= now() AND m.status IN ('member', 'restricted')
    LIMIT 500
    """
)


class Worker:
    def __init__(self, runtime: Runtime, *, concurrency: int | None = None) -> None:
        self.runtime = runtime
        concurrency = concurrency or runtime.settings.worker_concurrency
        self.inbox = InboxConsumer(runtime, concurrency=concurrency)
        self.jobs = JobRunner(runtime.engine, job_handlers(runtime), concurrency=concurrency)
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        logger.info("worker.started")
        tasks = [
            asyncio.create_task(self.inbox.run()),
            asyncio.create_task(self.jobs.run()),
            asyncio.create_task(self._listen()),
            asyncio.create_task(self._lead()),
        ]
        try:
            await self._stopping.wait()
        finally:
            self.inbox.stop()
            self.jobs.stop()
            for task in tasks[2:]:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            logger.info("worker.stopped")

    def stop(self) -> None:
        self._stopping.set()

    async def _listen(self) -> None:
        """Wake consumers as soon as PostgreSQL says new work was inserted."""
        url = libpq_url(self.runtime.settings.database_url or "")
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    await conn.execute("LISTEN botter_inbox")
                    await conn.execute("LISTEN botter_jobs")
                    async for notice in conn.notifies():
                        wake = self.inbox if notice.channel == "botter_inbox" else self.jobs
                        wake.wakeup.set()
            except psycopg.Error:
                # Consumers still poll; this only costs latency until PostgreSQL is back.
                await asyncio.sleep(1)

    async def _lead(self) -> None:
        url = libpq_url(self.runtime.settings.database_url or "")
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                    query = "SELECT pg_try_advisory_lock(%s)"
                    row = await (await conn.execute(query, (LEADER_LOCK,))).fetchone()
                    if row and row[0]:
                        logger.info("worker.leader")
                        await self._while_leader(conn)
            except psycopg.Error:
                logger.warning("worker.leader_lost")
            except Exception:
                # Leadership must outlive any bug in a chore: give it up and take it again.
                logger.exception("worker.leader_failed")
            await asyncio.sleep(2)

    async def _while_leader(self, lock_conn: psycopg.AsyncConnection[object]) -> None:
        pollers: dict[int, asyncio.Task[None]] = {}
        next_chores = next_bot_check = 0.0
        next_reconcile = time.monotonic() + self.runtime.settings.reconcile_interval_s
        try:
            while True:
                await lock_conn.execute("SELECT 1")  # the lock lives as long as this connection
                await self._chore("sweep", self.sweep())
                await self._chore("pollers", self._keep_pollers(pollers))
                if time.monotonic() >= next_chores:
                    await self._chore("metrics", housekeeping.sample(self.runtime))
                    await self._chore("prune", housekeeping.prune(self.runtime.engine))
                    next_chores = time.monotonic() + CHORES_INTERVAL_S
                if time.monotonic() >= next_reconcile:
                    await self._chore("reconcile", reconcile.reconcile(self.runtime))
                    next_reconcile = time.monotonic() + self.runtime.settings.reconcile_interval_s
                if time.monotonic() >= next_bot_check:
                    await self._chore("bot_health", bot_health.check_bots(self.runtime))
                    next_bot_check = time.monotonic() + self.runtime.settings.bot_health_interval_s
                await asyncio.sleep(self.runtime.settings.sweep_interval_s)
        finally:
            for task in pollers.values():
                task.cancel()

    async def _chore(self, name: str, work: Coroutine[Any, Any, object]) -> None:
        """Run one of the leader's chores; a failing one is logged and the others go on
        (the sweep must not stop because, say, one bot's health check hit a bug)."""
        try:
            await work
        except psycopg.Error:
            raise  # the lock connection may be gone: let _lead find out
        except Exception:
            logger.exception("worker.chore_failed chore=%s", name)

    async def sweep(self) -> int:
        """The safety net: anyone still present after their access ended gets removed."""
        async with self.runtime.engine.begin() as conn:
            rows = (await conn.execute(_EXPIRED_BUT_PRESENT)).all()
            # Once per window, not once ever: a removal that failed (the bot had lost its
            # rights) is tried again after the creator has had time to fix them.
            window = int(time.time() // SWEEP_RETRY_WINDOW_S)
            for row in rows:
                stamp = int(row.expires_at.timestamp())
                await enqueue(
                    conn, "expire_access", {"grant_id": row.id, "expires_at": stamp},
                    creator_id=row.creator_id, dedupe_key=f"sweep:{row.id}:{stamp}:{window}",
                )  # fmt: skip
        if rows:
            logger.info("sweep.found count=%s at=%s", len(rows), datetime.now(UTC).isoformat())
        return len(rows)

    async def _keep_pollers(self, pollers: dict[int, asyncio.Task[None]]) -> None:
        async with self.runtime.engine.connect() as conn:
            query = select(bots.c.id, bots.c.creator_id).where(
                bots.c.delivery == "polling", bots.c.status == "active"
            )
            wanted = {row.id: row.creator_id for row in await conn.execute(query)}
        for bot_id, creator_id in wanted.items():
            if bot_id not in pollers or pollers[bot_id].done():
                pollers[bot_id] = asyncio.create_task(self._poll_forever(bot_id, creator_id))
        for bot_id in set(pollers) - set(wanted):
            pollers.pop(bot_id).cancel()

    async def _poll_forever(self, bot_id: int, creator_id: int) -> None:
        while True:
            try:
                await poll_once(self.runtime, bot_id, creator_id, LONG_POLL_S)
            except Exception:
                logger.exception("polling.crashed bot_id=%s", bot_id)
                await asyncio.sleep(1)


async def run_worker(runtime: Runtime, stop: asyncio.Event | None = None) -> None:
    worker = Worker(runtime)
    task = asyncio.create_task(worker.run())
    if stop is not None:
        await stop.wait()
        worker.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task
