"""The per-bot circuit breaker: opens on Telegram failing, waits, probes, closes; shared."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from botter import redis_keys
from botter.jobs.queue import RetryLater
from botter.jobs.tasks import outcome_of
from botter.telegram.breaker import Breaker, BreakerSettings, CircuitOpen
from botter.telegram.client import TelegramClient
from botter.telegram.errors import ChatNotFound, TelegramServerError
from botter.telegram.pacing import Pacer
from tests.conftest import free_port
from tests.telegram.conftest import Scene

FAST = BreakerSettings(failure_threshold=3, open_s=0.5, max_open_s=5, close_after=2, probe_s=5)


@pytest.fixture
async def guarded(sandbox_url: str, redis: Redis) -> AsyncIterator[TelegramClient]:
    async with TelegramClient(sandbox_url, Pacer(redis), breaker=Breaker(redis, FAST)) as client:
        yield client


async def fail_three_times(client: TelegramClient, scene: Scene) -> None:
    scene.fault(method="sendMessage", error_code=500, times=3)
    for _ in range(3):
        with pytest.raises(TelegramServerError):
            await client.send_message(scene.token, scene.user_id, "hello")


async def is_listed_open(redis: Redis, bot_id: int) -> bool:
    return await redis.zscore(redis_keys.breakers_open(), str(bot_id)) is not None


async def test_consecutive_failures_open_it_and_calls_stop_reaching_telegram(
    guarded: TelegramClient, scene: Scene, redis: Redis
) -> None:
    await fail_three_times(guarded, scene)

    with pytest.raises(CircuitOpen) as raised:
        await guarded.send_message(scene.token, scene.user_id, "hello")
    assert 0 < raised.value.retry_after_s <= FAST.open_s
    assert scene.outcomes("sendMessage") == [500, 500, 500]
    assert await is_listed_open(redis, scene.bot_id)
    assert guarded.breaker is not None
    assert (await guarded.breaker.open_bots() or 0) >= 1


async def test_after_open_s_probes_close_it_again(
    guarded: TelegramClient, scene: Scene, redis: Redis
) -> None:
    await fail_three_times(guarded, scene)
    await asyncio.sleep(FAST.open_s + 0.1)

    await guarded.send_message(scene.token, scene.user_id, "probe one")
    assert await is_listed_open(redis, scene.bot_id)  # half-open: one success is not enough
    await guarded.send_message(scene.token, scene.user_id, "probe two")
    assert not await is_listed_open(redis, scene.bot_id)
    await guarded.send_message(scene.token, scene.user_id, "business as usual")
    assert scene.outcomes("sendMessage") == [500, 500, 500, None, None, None]


async def test_a_failed_probe_opens_it_for_twice_as_long(
    guarded: TelegramClient, scene: Scene
) -> None:
    await fail_three_times(guarded, scene)
    await asyncio.sleep(FAST.open_s + 0.1)
    scene.fault(method="sendMessage", error_code=502, times=1)

    with pytest.raises(TelegramServerError):
        await guarded.send_message(scene.token, scene.user_id, "probe")
    with pytest.raises(CircuitOpen) as raised:
        await guarded.send_message(scene.token, scene.user_id, "too soon")
    assert FAST.open_s < raised.value.retry_after_s <= 2 * FAST.open_s


async def test_refusals_prove_telegram_is_up_and_never_open_it(
    guarded: TelegramClient, scene: Scene
) -> None:
    scene.fault(
        method="sendMessage", error_code=400, description="Bad Request: chat not found", times=5
    )
    for _ in range(5):
        with pytest.raises(ChatNotFound):
            await guarded.send_message(scene.token, scene.user_id, "hello")
    await guarded.send_message(scene.token, scene.user_id, "still admitted")


async def test_every_instance_sees_the_same_breaker(
    guarded: TelegramClient, scene: Scene, sandbox_url: str, redis: Redis
) -> None:
    await fail_three_times(guarded, scene)
    async with TelegramClient(sandbox_url, None, breaker=Breaker(redis, FAST)) as other:
        with pytest.raises(CircuitOpen):
            await other.get_chat(scene.token, scene.chat_id)


async def test_the_pre_checkout_answer_is_never_held_back(
    guarded: TelegramClient, scene: Scene
) -> None:
    await fail_three_times(guarded, scene)
    # Telegram then says the query is unknown: the call went out despite the open breaker.
    with pytest.raises(Exception, match="query") as raised:
        await guarded.answer_pre_checkout_query(scene.token, "no-such-query", ok=True)
    assert not isinstance(raised.value, CircuitOpen)


async def test_without_redis_every_call_is_admitted(sandbox_url: str, scene: Scene) -> None:
    gone = Redis(port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2)
    async with TelegramClient(sandbox_url, None, breaker=Breaker(gone, FAST)) as client:
        scene.fault(method="sendMessage", error_code=500, times=4)
        for _ in range(4):
            with pytest.raises(TelegramServerError):
                await client.send_message(scene.token, scene.user_id, "hello")
        await client.send_message(scene.token, scene.user_id, "through")
    await gone.aclose()


def test_jobs_wait_in_the_queue_while_it_is_open() -> None:
    later = outcome_of(CircuitOpen("sendMessage", 7.5))
    assert isinstance(later, RetryLater)
    assert later.delay_s == 7.5
