"""Send pacing: the GCRA decision, Redis-shared budgets and cooldowns, and the local fallback."""

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from botter import redis_keys
from botter.telegram.client import TelegramClient
from botter.telegram.errors import TelegramRetryAfter
from botter.telegram.pacing import Bucket, LocalPacer, PaceLimits, Pacer, decide, is_group
from tests.conftest import free_port
from tests.telegram.conftest import Scene

SECOND_US = 1_000_000

# decisions


def test_a_bucket_allows_its_burst_then_one_per_interval() -> None:
    bucket = Bucket(interval_us=SECOND_US, burst=2)
    tat: int | None = None
    answers = []
    for _ in range(3):
        wait_us, tats = decide(0, [tat], [bucket])
        answers.append(wait_us)
        tat = tats[0] if tats else tat
    assert answers == [0, 0, SECOND_US]
    assert decide(SECOND_US, [tat], [bucket])[0] == 0


def test_a_send_spends_every_bucket_or_none() -> None:
    roomy = Bucket(interval_us=10, burst=100)
    full = Bucket(interval_us=SECOND_US, burst=1)
    assert decide(0, [None, 5 * SECOND_US], [roomy, full]) == (5 * SECOND_US, [])
    assert decide(0, [None, None], [roomy, full]) == (0, [10, SECOND_US])


def test_groups_and_channels_get_a_per_minute_bucket() -> None:
    limits = PaceLimits()
    private = limits.buckets(7, 42)
    group = limits.buckets(7, -100_123)
    assert [key for key, _ in private] == ["botter:{bot:7}:pace", "botter:{bot:7}:pace:chat:42"]
    assert group[-1] == ("botter:{bot:7}:pace:group:-100123", Bucket(3_000_000, 3))
    assert (is_group(42), is_group(-5), is_group("@premium")) == (False, True, True)


def test_every_key_is_prefixed_and_a_bot_keeps_to_one_hash_slot() -> None:
    keys = [
        redis_keys.bot_pace(9),
        redis_keys.chat_pace(9, 1),
        redis_keys.group_pace(9, -1),
        redis_keys.bot_cooldown(9),
    ]
    assert all(key.startswith("botter:{bot:9}:") for key in keys)
    assert len(set(keys)) == len(keys)


def test_local_pacer_paces_and_cools_down() -> None:
    now_us = [0]
    local = LocalPacer(clock_us=lambda: now_us[0])
    buckets = PaceLimits().buckets(7, 42)
    assert [local.try_acquire(7, buckets) for _ in range(3)] == [0, 0, 1000]
    now_us[0] = SECOND_US
    assert local.try_acquire(7, buckets) == 0
    local.cool_down(7, 2.5)
    local.cool_down(7, 1)  # a shorter retry_after never shortens a cooldown
    assert local.try_acquire(7, buckets) == local.cooldown_ms(7) == 2500


# shared through Redis


async def test_two_pacers_share_one_budget(redis: Redis, scene: Scene) -> None:
    first, second = Pacer(redis), Pacer(redis)
    assert await first.try_acquire(scene.bot_id, 42) == 0
    assert await second.try_acquire(scene.bot_id, 42) == 0
    assert 0 < await first.try_acquire(scene.bot_id, 42) <= 1000
    assert await second.try_acquire(scene.bot_id, 43) == 0


async def test_a_cooldown_holds_sends_and_is_never_shortened(redis: Redis, scene: Scene) -> None:
    first, second = Pacer(redis), Pacer(redis)
    await first.cool_down(scene.bot_id, 30)
    await first.cool_down(scene.bot_id, 1)
    assert 1000 < await second.cooldown_ms(scene.bot_id) <= 30_000
    assert await second.try_acquire(scene.bot_id, 42) > 1000


@pytest.fixture
async def cleanup_cooldown(redis: Redis, scene: Scene) -> AsyncIterator[None]:
    yield
    await redis.delete(redis_keys.bot_cooldown(scene.bot_id))


@pytest.mark.usefixtures("cleanup_cooldown")
async def test_a_429_is_seen_by_another_instance(
    client: TelegramClient, redis: Redis, sandbox_url: str, scene: Scene
) -> None:
    scene.fault(method="sendMessage", error_code=429, retry_after=30, times=1)
    with pytest.raises(TelegramRetryAfter):
        await client.send_message(scene.token, scene.user_id, "hi")
    async with TelegramClient(sandbox_url, Pacer(redis)) as other:
        assert other.pacer is not None
        assert 0 < await other.pacer.cooldown_ms(scene.bot_id) <= 30_000
        assert await other.pacer.try_acquire(scene.bot_id, scene.user_id) > 0


# against the sandbox's 429 budgets


@pytest.mark.slow
async def test_paced_sends_to_one_chat_all_succeed(client: TelegramClient, scene: Scene) -> None:
    for number in range(8):
        await client.send_message(scene.token, scene.user_id, f"message {number}")
    assert len(scene.messages_to(scene.user_id)) == 8
    assert scene.outcomes("sendMessage") == [None] * 8


async def test_unpaced_sends_to_one_chat_hit_429(sandbox_url: str, scene: Scene) -> None:
    """The control for the test above: without a pacer the same burst is refused."""
    async with TelegramClient(sandbox_url, None) as unpaced:
        results = await asyncio.gather(
            *(unpaced.send_message(scene.token, scene.user_id, "hi") for _ in range(6)),
            return_exceptions=True,
        )
    assert any(isinstance(result, TelegramRetryAfter) for result in results)


@pytest.mark.slow
async def test_two_instances_sending_at_once_share_the_chat_budget(
    redis: Redis, sandbox_url: str, scene: Scene
) -> None:
    async with (
        TelegramClient(sandbox_url, Pacer(redis)) as first,
        TelegramClient(sandbox_url, Pacer(redis)) as second,
    ):
        await asyncio.gather(
            *(
                instance.send_message(scene.token, scene.user_id, f"{name} {number}")
                for number in range(3)
                for name, instance in (("first", first), ("second", second))
            )
        )
    assert scene.outcomes("sendMessage") == [None] * 6


async def test_a_burst_across_many_chats_keeps_under_the_bot_budget(
    client: TelegramClient, scene: Scene
) -> None:
    users = [scene.started_user(f"Fan{number}") for number in range(40)]
    await asyncio.gather(*(client.send_message(scene.token, user, "news") for user in users))
    assert scene.outcomes("sendMessage") == [None] * 40


# Redis unreachable


@pytest.mark.slow
async def test_sends_still_work_and_pace_when_redis_is_down(
    sandbox_url: str, scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    closed = Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1)
    async with TelegramClient(sandbox_url, Pacer(closed)) as client:
        for number in range(5):
            await client.send_message(scene.token, scene.user_id, f"message {number}")
    await closed.aclose()
    assert scene.outcomes("sendMessage") == [None] * 5
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage().split()[0] for r in warnings] == ["telegram.pacing_degraded"]


async def test_a_silent_redis_does_not_block_forever(caplog: pytest.LogCaptureFixture) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # accept and never answer

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = Redis(host="127.0.0.1", port=port)
    pacer = Pacer(silent, redis_timeout_s=0.2)
    try:
        assert await pacer.try_acquire(1, 42) == 0
        await pacer.cool_down(1, 5)
        assert 0 < await pacer.try_acquire(1, 42) <= 5000
    finally:
        await silent.aclose()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert "telegram.pacing_degraded error=TimeoutError" in caplog.text
