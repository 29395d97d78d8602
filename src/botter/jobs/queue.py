"""A job queue in PostgreSQL: enqueued in the caller's transaction, run at least once.

Enqueueing inside the transaction that causes a job means the job exists exactly when
the change does. Workers claim due jobs with FOR UPDATE SKIP LOCKED and run each inside
the claiming transaction, so a job's own database effects commit together with its
"done" mark; a worker that dies mid-job leaves the row queued for another. Jobs that call
Telegram are written to be idempotent, because the call itself cannot be rolled back.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.contextvars import bound_contextvars

from botter.db.schema import jobs
from botter.errors import BotterError
from botter.metrics import JOBS_FINISHED

logger = logging.getLogger("botter.jobs")

MAX_ATTEMPTS = 10
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 300.0


class RetryLater(BotterError):
    """Raised by a job that should run again after `delay_s`, without counting as a failure."""

    def __init__(self, delay_s: float, reason: str) -> None:
        super().__init__(reason)
        self.delay_s = delay_s


class GiveUp(BotterError):
    """Raised by a job that can never succeed; it is marked dead at once."""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    args: dict[str, Any]
    attempts: int
    creator_id: int | None


JobHandler = Callable[[AsyncConnection, Job], Awaitable[None]]


async def enqueue(
    conn: AsyncConnection,
    kind: str,
    args: dict[str, Any],
    *,
    creator_id: int | None = None,
    dedupe_key: str | None = None,
    run_at: datetime | None = None,
    priority: int = 1,
) -> bool:
    """Add a job in the caller's transaction; False when its dedupe key was already used."""
    values: dict[str, Any] = {
        "kind": kind,
        "args": args,
        "creator_id": creator_id,
        "dedupe_key": dedupe_key,
        "priority": priority,
    }
    if run_at is not None:
        values["run_at"] = run_at
    statement = insert(jobs).values(**values)
    if dedupe_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["dedupe_key"])
    result = await conn.execute(statement.returning(jobs.c.id))
    return result.first() is not None


_CLAIM = text(
    """
    SELECT id, kind, args, attempts, creator_id FROM jobs
    WHERE status = 'queued' AND run_at <= now()
    ORDER BY priority, run_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
    """
)


def backoff_s(attempts: int) -> float:
    return float(min(BACKOFF_BASE_S * 2 ** max(attempts - 1, 0), BACKOFF_MAX_S))


class ConsumerPool:
    """A few concurrent consumers of work in PostgreSQL: each takes one item at a time,
    woken by NOTIFY (set `wakeup`) or polling. Stopping lets the items in hand finish."""

    claim_failed_event = "consumer.claim_failed"

    def __init__(
        self, *, concurrency: int, poll_interval_s: float = 0.5, stop_timeout_s: float = 10.0
    ) -> None:
        self.concurrency = concurrency
        self.poll_interval_s = poll_interval_s
        self.stop_timeout_s = stop_timeout_s
        self.wakeup = asyncio.Event()
        self._stopping = asyncio.Event()

    async def take_one(self) -> bool:
        """Process one item; False when none was ready."""
        raise NotImplementedError

    async def run(self) -> None:
        consumers = [asyncio.create_task(self._consume()) for _ in range(self.concurrency)]
        try:
            await self._stopping.wait()
            # Items in hand finish first: one cancelled after its Telegram call but before
            # its commit would be taken again and make that call twice.
            await asyncio.wait(consumers, timeout=self.stop_timeout_s)
        finally:
            for consumer in consumers:
                consumer.cancel()
            await asyncio.gather(*consumers, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()
        self.wakeup.set()

    async def _consume(self) -> None:
        while not self._stopping.is_set():
            try:
                took = await self.take_one()
            except Exception:
                # The database went away or similar: wait and try again, losing nothing.
                logger.exception(self.claim_failed_event)
                took = False
                await asyncio.sleep(1)
            if not took and not self._stopping.is_set():
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), self.poll_interval_s)


class JobRunner(ConsumerPool):
    """Runs queued jobs with a few concurrent consumers."""

    claim_failed_event = "jobs.claim_failed"

    def __init__(
        self,
        engine: AsyncEngine,
        handlers: dict[str, JobHandler],
        *,
        concurrency: int = 4,
        poll_interval_s: float = 0.5,
        stop_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(
            concurrency=concurrency,
            poll_interval_s=poll_interval_s,
            stop_timeout_s=stop_timeout_s,
        )
        self.engine = engine
        self.handlers = handlers

    async def take_one(self) -> bool:
        return await self.run_one()

    async def run_one(self) -> bool:
        """Claim and run one due job; False when none was due."""
        async with self.engine.connect() as conn, conn.begin():
            row = (await conn.execute(_CLAIM)).first()
            if row is None:
                return False
            job = Job(row.id, row.kind, row.args, row.attempts + 1, row.creator_id)
            # Every line logged while the job runs carries its id and kind.
            with bound_contextvars(job_id=job.id, job_kind=job.kind):
                await self._run(conn, job)
        return True

    async def _run(self, conn: AsyncConnection, job: Job) -> None:
        handler = self.handlers.get(job.kind)
        savepoint = await conn.begin_nested()
        try:
            if handler is None:
                raise GiveUp(f"no handler for job kind {job.kind}")
            await handler(conn, job)
        except RetryLater as later:
            await savepoint.rollback()
            await self._reschedule(conn, job, later.delay_s, str(later), count=False)
            JOBS_FINISHED.labels(job.kind, "later").inc()
            return
        except GiveUp as hopeless:
            await savepoint.rollback()
            await self._finish(conn, job, "dead", str(hopeless))
            JOBS_FINISHED.labels(job.kind, "dead").inc()
            logger.warning("job.dead job_id=%s kind=%s reason=%s", job.id, job.kind, hopeless)
            return
        except Exception as error:
            await savepoint.rollback()
            reason = f"{type(error).__name__}: {error}"[:500]
            if job.attempts >= MAX_ATTEMPTS:
                await self._finish(conn, job, "dead", reason)
                JOBS_FINISHED.labels(job.kind, "dead").inc()
                logger.error("job.dead job_id=%s kind=%s attempts=%s", job.id, job.kind,
                             job.attempts)  # fmt: skip
                return
            await self._reschedule(conn, job, backoff_s(job.attempts), reason, count=True)
            JOBS_FINISHED.labels(job.kind, "retry").inc()
            logger.warning("job.retry job_id=%s kind=%s attempts=%s error=%s", job.id, job.kind,
                           job.attempts, type(error).__name__)  # fmt: skip
            return
        await savepoint.commit()
        await self._finish(conn, job, "done", None)
        JOBS_FINISHED.labels(job.kind, "done").inc()
        logger.info("job.done job_id=%s kind=%s", job.id, job.kind)

    async def _finish(
        self, conn: AsyncConnection, job: Job, status: str, error: str | None
    ) -> None:
        await conn.execute(
            jobs.update()
            .where(jobs.c.id == job.id)
            .values(status=status, last_error=error, attempts=job.attempts, finished_at=func.now())
        )

    async def _reschedule(
        self, conn: AsyncConnection, job: Job, delay_s: float, reason: str, count: bool
    ) -> None:
        attempts = job.attempts if count else job.attempts - 1
        await conn.execute(
            jobs.update()
            .where(jobs.c.id == job.id)
            .values(
                attempts=attempts,
                last_error=reason[:500],
                run_at=func.now() + timedelta(seconds=delay_s),
            )
        )
