"""Liveness, readiness and metrics, and how the service rides out PostgreSQL or Redis
going away: each is put behind a TCP proxy that is cut or blackholed, never restarted."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from redis.asyncio import Redis

from botter import redis_keys
from botter.web.health import CHECK_TIMEOUT_S
from tests.proxy import TcpProxy
from tests.web.conftest import (
    LOOP,
    Bot,
    Database,
    Web,
    eventually,
    message_update,
    next_update_id,
    serve,
    wait_for,
    web_settings,
)

pytestmark = LOOP

POOL_SIZE = 4
# A readiness answer may take the check's deadline plus this much; PostgreSQL on a silent
# network otherwise takes psycopg's cancellation time (about 10 s).
ANSWER_SLACK_S = 2.0
WEBHOOK_ROUTE = 'route="/webhook/telegram/{bot_id}"'
# What an exception leaking into an answer would look like.
EXCEPTION_WORDS = ("error", "exception", "traceback", "psycopg", "connection", "refused", "reset")


@dataclass
class Outage:
    """A web service whose PostgreSQL or Redis is reached through `proxy`."""

    web: Web
    proxy: TcpProxy

    async def wait_until_connected(self, connections: int) -> None:
        """Until the app holds `connections` live connections through the proxy."""
        what = f"{connections} connections through the proxy"
        await wait_for(lambda: self.proxy.live >= connections, what)


async def redeliver_until_200(web: Web, bot: Bot, update: dict[str, Any]) -> list[int]:
    """Deliver `update` again until it is taken, as Telegram does; the statuses before."""
    _, before = await eventually(
        lambda: web.deliver(bot, update), lambda response: response.status_code == 200
    )
    return [response.status_code for response in before]


def is_ok(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.json()["status"] == "ok"


async def ready(web: Web) -> dict[str, Any]:
    response = await web.http.get("/ready")
    answer: dict[str, Any] = response.json()
    answer["http_status"] = response.status_code
    return answer


@pytest_asyncio.fixture(loop_scope="module")
async def postgres_outage(database_url: str, redis_url: str) -> AsyncIterator[Outage]:
    async with TcpProxy.in_front_of(database_url) as proxy:
        settings = web_settings(proxy.url(database_url), redis_url, db_pool_size=POOL_SIZE)
        async with serve(settings) as web:
            outage = Outage(web, proxy)
            await outage.wait_until_connected(POOL_SIZE)
            await eventually(lambda: web.http.get("/ready"), is_ok)
            yield outage


@pytest_asyncio.fixture(loop_scope="module")
async def redis_outage(database_url: str, redis_url: str) -> AsyncIterator[Outage]:
    async with TcpProxy.in_front_of(redis_url) as proxy:
        settings = web_settings(database_url, proxy.url(redis_url), db_pool_size=POOL_SIZE)
        async with serve(settings) as web:
            await eventually(lambda: web.http.get("/ready"), is_ok)
            yield Outage(web, proxy)


async def test_health_is_ok(web: Web) -> None:
    response = await web.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_is_ok_with_both_checks_up(web: Web) -> None:
    answer = await ready(web)
    assert answer["http_status"] == 200
    assert answer["status"] == "ok"
    for check in ("postgres", "redis"):
        assert answer["checks"][check]["status"] == "ok"
        assert answer["checks"][check]["latency_ms"] >= 0


# PostgreSQL away: nothing can be recorded, so nothing is acknowledged.


async def test_p5_postgres_away_webhook_answers_503_and_loses_nothing(
    postgres_outage: Outage, bot: Bot, db: Database
) -> None:
    web, proxy = postgres_outage.web, postgres_outage.proxy
    assert (await web.deliver(bot, message_update(next_update_id()))).status_code == 200
    newcomer = await db.register_bot()  # its secret is not cached: the lookup fails too
    update = message_update(next_update_id())
    newcomer_update = message_update(next_update_id())

    proxy.cut()
    refused, refused_newcomer = await asyncio.gather(
        web.deliver(bot, update), web.deliver(newcomer, newcomer_update)
    )

    assert refused.status_code == 503
    assert refused.json() == {"error": "unavailable"}
    # Not 401: while the database is away, a real bot must not look unknown.
    assert refused_newcomer.status_code == 503
    assert refused_newcomer.json() == {"error": "unavailable"}
    assert await db.count(update_id=update["update_id"]) == 0
    assert await db.count(bot_id=newcomer.id) == 0

    # Telegram delivers again; once PostgreSQL is reachable, the same app takes it.
    proxy.restore()
    for target, redelivered in ((bot, update), (newcomer, newcomer_update)):
        assert set(await redeliver_until_200(web, target, redelivered)) <= {503}
        assert await db.count(update_id=redelivered["update_id"]) == 1
    assert (await web.deliver(bot, update)).status_code == 200  # a duplicate now
    assert await db.count(update_id=update["update_id"]) == 1


async def test_postgres_away_makes_ready_503_without_saying_why(postgres_outage: Outage) -> None:
    web, proxy = postgres_outage.web, postgres_outage.proxy

    proxy.cut()
    response = await web.http.get("/ready")

    assert response.status_code == 503
    answer = response.json()
    assert answer["status"] == "unavailable"
    assert answer["checks"]["postgres"]["status"] == "down"
    assert answer["checks"]["redis"]["status"] == "ok"
    assert set(answer["checks"]["postgres"]) == {"status", "latency_ms"}
    assert not [word for word in EXCEPTION_WORDS if word in response.text.lower()]

    proxy.restore()
    await eventually(lambda: web.http.get("/ready"), is_ok)


async def test_health_stays_ok_while_postgres_is_away(postgres_outage: Outage) -> None:
    postgres_outage.proxy.cut()
    assert (await postgres_outage.web.http.get("/ready")).status_code == 503
    response = await postgres_outage.web.http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_p5_after_an_outage_no_dead_connection_fails_a_request(
    postgres_outage: Outage, bot: Bot
) -> None:
    """The pool learns a connection is dead only by using it: one failure must be enough
    to replace them all, or each dead idle connection fails one more request after
    PostgreSQL is back (and one readiness probe each, keeping the instance out of
    rotation for pool-size probe periods)."""
    web, proxy = postgres_outage.web, postgres_outage.proxy

    proxy.cut()
    assert (await web.http.get("/ready")).status_code == 503
    proxy.restore()
    await postgres_outage.wait_until_connected(POOL_SIZE)

    for _ in range(POOL_SIZE):
        assert (await ready(web))["status"] == "ok"
        assert (await web.deliver(bot, message_update(next_update_id()))).status_code == 200


async def test_ready_keeps_its_deadline_while_postgres_is_silent(postgres_outage: Outage) -> None:
    web, proxy = postgres_outage.web, postgres_outage.proxy

    proxy.blackhole()
    started_s = time.monotonic()
    answer = await ready(web)
    elapsed_s = time.monotonic() - started_s

    assert answer["http_status"] == 503
    assert answer["checks"]["postgres"]["status"] == "down"
    assert elapsed_s < CHECK_TIMEOUT_S + ANSWER_SLACK_S

    proxy.restore()
    await eventually(lambda: web.http.get("/ready"), is_ok)


async def test_p5_no_200_while_the_commit_cannot_happen(
    postgres_outage: Outage, bot: Bot, db: Database
) -> None:
    web, proxy = postgres_outage.web, postgres_outage.proxy
    assert (await web.deliver(bot, message_update(next_update_id()))).status_code == 200
    update = message_update(next_update_id())

    proxy.blackhole()
    delivery = asyncio.create_task(web.deliver(bot, update))
    await asyncio.sleep(0.3)
    assert not delivery.done(), f"answered before any commit: {(await delivery).status_code}"
    assert await db.count(update_id=update["update_id"]) == 0

    proxy.restore()
    response = await delivery
    if response.status_code != 200:  # refused without acknowledging: Telegram retries
        assert response.status_code == 503
        await redeliver_until_200(web, bot, update)
    assert await db.count(update_id=update["update_id"]) == 1


# Redis away: sessions and limits suffer, updates still land in PostgreSQL.


async def test_redis_away_degrades_ready_but_webhooks_still_land(
    redis_outage: Outage, bot: Bot, db: Database
) -> None:
    web, proxy = redis_outage.web, redis_outage.proxy

    proxy.cut()
    answer = await ready(web)
    assert answer["http_status"] == 200
    assert answer["status"] == "degraded"
    assert answer["checks"]["redis"]["status"] == "down"
    assert answer["checks"]["postgres"]["status"] == "ok"

    update = message_update(next_update_id())
    assert (await web.deliver(bot, update)).status_code == 200
    assert await db.count(update_id=update["update_id"]) == 1

    proxy.restore()
    await eventually(lambda: web.http.get("/ready"), is_ok)


async def test_ready_keeps_its_deadline_while_redis_is_silent(
    redis_outage: Outage, bot: Bot
) -> None:
    web, proxy = redis_outage.web, redis_outage.proxy

    proxy.blackhole()
    started_s = time.monotonic()
    answer = await ready(web)
    elapsed_s = time.monotonic() - started_s

    assert (answer["http_status"], answer["status"]) == (200, "degraded")
    assert answer["checks"]["redis"]["status"] == "down"
    assert elapsed_s < CHECK_TIMEOUT_S + ANSWER_SLACK_S
    assert (await web.deliver(bot, message_update(next_update_id()))).status_code == 200

    proxy.restore()
    await eventually(lambda: web.http.get("/ready"), is_ok)


# Metrics: Prometheus text, labelled by route template.


async def test_metrics_label_requests_by_route_template_never_the_raw_path(
    web: Web, bot: Bot
) -> None:
    assert (await web.deliver(bot, message_update(next_update_id()))).status_code == 200
    assert (await web.http.get(f"/no/such/{bot.id}")).status_code == 404

    response = await web.http.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "botter_updates_received_total" in text
    assert 'botter_updates_received_total{outcome="stored"}' in text
    durations = [
        line
        for line in text.splitlines()
        if line.startswith("botter_http_request_duration_seconds")
    ]
    assert any(WEBHOOK_ROUTE in line and 'status="200"' in line for line in durations)
    assert any('route="unmatched"' in line and 'status="404"' in line for line in durations)
    assert str(bot.id) not in text
    assert "/no/such" not in text


async def test_ready_reports_open_breakers_without_leaving_rotation(
    web: Web, redis_url: str
) -> None:
    redis = Redis.from_url(redis_url)
    stuck_bot = f"9{time.time_ns() % 10**12}"
    await redis.zadd(redis_keys.breakers_open(), {stuck_bot: time.time()})
    try:
        answer = await web.http.get("/ready")
    finally:
        await redis.zrem(redis_keys.breakers_open(), stuck_bot)
        await redis.aclose()
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "ok"
    assert body["checks"]["telegram"]["status"] == "degraded"
    assert body["checks"]["telegram"]["open_breakers"] >= 1


async def test_metrics_show_the_database_pool(web: Web) -> None:
    text = (await web.http.get("/metrics")).text
    in_use = [line for line in text.splitlines() if line.startswith("botter_db_pool_connections")]
    states = {line.split('state="')[1].split('"')[0] for line in in_use}
    assert states == {"in_use", "idle", "waiting"}
