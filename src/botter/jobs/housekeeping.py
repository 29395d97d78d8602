"""The leader's periodic chores besides the sweep: numbers for the dashboards, and keeping
the inbox and the job table from growing without end."""

import logging
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from botter.metrics import (
    INBOX_DEAD,
    INBOX_OLDEST_AGE_SECONDS,
    INBOX_PENDING,
    JOBS_DEAD,
    JOBS_OLDEST_AGE_SECONDS,
    JOBS_QUEUED,
    PAYMENTS_WITHOUT_GRANT,
    REDIS_USED_MEMORY_BYTES,
    TELEGRAM_BREAKERS_OPEN,
)
from botter.runtime import Runtime

logger = logging.getLogger("botter.worker")

# Done work is kept this long for investigations, then deleted in small batches.
RETENTION_DAYS: Final = 7
DELETE_BATCH: Final = 5000

_QUEUES = text(
    """
    SELECT
      (SELECT count(*) FROM update_inbox WHERE status = 'pending') AS inbox_pending,
      (SELECT coalesce(extract(epoch FROM now() - min(received_at)), 0)
         FROM update_inbox WHERE status = 'pending') AS inbox_oldest_s,
      (SELECT count(*) FROM update_inbox WHERE status = 'dead') AS inbox_dead,
      (SELECT count(*) FROM jobs WHERE status = 'dead') AS jobs_dead
    """
)
_DUE_JOBS = text(
    """
    SELECT CASE WHEN priority = 0 THEN 'urgent' ELSE 'normal' END AS queue,
           count(*) AS queued,
           coalesce(extract(epoch FROM now() - min(run_at)), 0) AS oldest_s
    FROM jobs WHERE status = 'queued' AND run_at <= now()
    GROUP BY 1
    """
)
# A completed payment whose grant was never recorded: the one thing that must never be.
# Recent payments only, so the check stays cheap; older ones were checked when recent.
_PAYMENTS_WITHOUT_GRANT = text(
    """
    SELECT count(*) FROM payments p
    WHERE p.status = 'completed'
      AND p.created_at BETWEEN now() - interval '1 day' AND now() - interval '1 minute'
      AND NOT EXISTS (
        SELECT 1 FROM access_events e
        WHERE e.creator_id = p.creator_id AND e.kind = 'access.granted'
          AND (e.detail ->> 'payment_id')::bigint = p.id
      )
    """
)
_PRUNE = {
    "update_inbox": text(
        f"""
        DELETE FROM update_inbox WHERE id IN (
          SELECT id FROM update_inbox
          WHERE status = 'done' AND processed_at < now() - interval '{RETENTION_DAYS} days'
          LIMIT {DELETE_BATCH})
        """  # noqa: S608 - constants, not input
    ),
    "jobs": text(
        f"""
        DELETE FROM jobs WHERE id IN (
          SELECT id FROM jobs
          WHERE status IN ('done', 'cancelled')
            AND finished_at < now() - interval '{RETENTION_DAYS} days'
          LIMIT {DELETE_BATCH})
        """  # noqa: S608 - constants, not input
    ),
}


async def sample(runtime: Runtime) -> None:
    """Set the gauges that describe the whole deployment, as the leader sees it."""
    async with runtime.engine.connect() as conn:
        queues = (await conn.execute(_QUEUES)).one()
        due = {row.queue: row for row in await conn.execute(_DUE_JOBS)}
        without_grant = (await conn.execute(_PAYMENTS_WITHOUT_GRANT)).scalar_one()
    INBOX_PENDING.set(queues.inbox_pending)
    INBOX_OLDEST_AGE_SECONDS.set(float(queues.inbox_oldest_s))
    INBOX_DEAD.set(queues.inbox_dead)
    JOBS_DEAD.set(queues.jobs_dead)
    for queue in ("urgent", "normal"):
        row: Any = due.get(queue)
        JOBS_QUEUED.labels(queue).set(row.queued if row else 0)
        JOBS_OLDEST_AGE_SECONDS.labels(queue).set(float(row.oldest_s) if row else 0.0)
    PAYMENTS_WITHOUT_GRANT.set(without_grant)
    if without_grant:
        logger.error("payment.without_grant count=%s", without_grant)
    breaker = runtime.telegram.breaker
    open_bots = await breaker.open_bots() if breaker else None
    if open_bots is not None:
        TELEGRAM_BREAKERS_OPEN.set(open_bots)
    memory = await runtime.redis_info("memory")
    if memory is not None:
        REDIS_USED_MEMORY_BYTES.set(float(memory.get("used_memory", 0)))


async def prune(engine: AsyncEngine) -> int:
    """Delete one batch of old finished work per table; the number of rows deleted."""
    deleted = 0
    async with engine.begin() as conn:
        for statement in _PRUNE.values():
            deleted += (await conn.execute(statement)).rowcount
    if deleted:
        logger.info("housekeeping.pruned rows=%s", deleted)
    return deleted
