"""Liveness, readiness and metrics endpoints for load balancers, Kubernetes and Prometheus."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import Response

from botter.metrics import DB_POOL_CONNECTIONS
from botter.telegram.breaker import Breaker
from botter.web.ingest import Pool

log = logging.getLogger("botter.web")

CHECK_TIMEOUT_S: Final = 1.0


def _json(status: int, content: dict[str, Any]) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


async def health(request: Request) -> Response:
    """Liveness: the process answers. Touches no dependency, so a database outage does not
    get healthy instances restarted."""
    return _json(200, {"status": "ok"})


class Metrics:
    """`GET /metrics`: the process's registry, with the pool's state read at scrape time."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def handle(self, request: Request) -> Response:
        stats = self._pool.get_stats()
        size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
        DB_POOL_CONNECTIONS.labels("in_use").set(size - idle)
        DB_POOL_CONNECTIONS.labels("idle").set(idle)
        DB_POOL_CONNECTIONS.labels("waiting").set(stats.get("requests_waiting", 0))
        body = generate_latest(REGISTRY)
        return Response(body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def readiness_verdict(postgres_ok: bool, redis_ok: bool) -> tuple[str, int]:
    """(status, HTTP status). Without PostgreSQL no update can be recorded; without Redis
    updates still land, only sessions and limits suffer."""
    if not postgres_ok:
        return "unavailable", 503
    if not redis_ok:
        return "degraded", 200
    return "ok", 200


# Checks still finishing after their answer was given; held so they are not collected.
_lingering: set["asyncio.Future[object]"] = set()


def _forget(checking: "asyncio.Future[object]") -> None:
    _lingering.discard(checking)
    if not checking.cancelled():
        checking.exception()  # retrieved: its failure was already answered as "down"


async def probe(name: str, check: Callable[[], Awaitable[object]]) -> dict[str, Any]:
    """Run one check with a deadline; report only up or down and how long it took.

    The answer keeps the deadline even when the check does not stop at once: psycopg
    cancels a query on a silent network by asking the server, and waits up to 10 s for
    that. Such a check finishes in the background."""
    started_s = time.perf_counter()
    checking = asyncio.ensure_future(check())
    try:
        await asyncio.wait_for(asyncio.shield(checking), CHECK_TIMEOUT_S)
        status = "ok"
    except Exception as error:  # the reason stays in the log, never in the answer
        log.info("ready.check_failed check=%s error=%s", name, type(error).__name__)
        status = "down"
    finally:
        if not checking.done():
            checking.cancel()
            _lingering.add(checking)
            checking.add_done_callback(_forget)
    latency_ms = round((time.perf_counter() - started_s) * 1000, 1)
    return {"status": status, "latency_ms": latency_ms}


class Readiness:
    """`GET /ready`: can this instance do its work right now?"""

    def __init__(self, pool: Pool, redis: "Redis", breaker: Breaker) -> None:
        self._pool = pool
        self._redis = redis
        self._breaker = breaker

    async def handle(self, request: Request) -> Response:
        postgres, redis = await asyncio.gather(
            probe("postgres", self._ping_postgres), probe("redis", self._ping_redis)
        )
        status, http_status = readiness_verdict(
            postgres["status"] == "ok", redis["status"] == "ok"
        )
        checks = {"postgres": postgres, "redis": redis}
        if redis["status"] == "ok":
            checks["telegram"] = await self._telegram()
        return _json(http_status, {"status": status, "checks": checks})

    async def _telegram(self) -> dict[str, Any]:
        """Open breakers mean Telegram fails for some bots: their work waits in the queue.
        Reported, but no reason to take this instance out of rotation."""
        open_bots = await self._breaker.open_bots()
        if open_bots is None:
            return {"status": "unknown"}
        return {"status": "degraded" if open_bots else "ok", "open_breakers": open_bots}

    async def _ping_postgres(self) -> None:
        async with self._pool.connection(timeout=CHECK_TIMEOUT_S) as connection:
            await connection.execute("SELECT 1")

    async def _ping_redis(self) -> None:
        await cast(Awaitable[bool], self._redis.ping())
