"""Send pacing shared by every botter instance through Redis.

Each budget is a GCRA bucket: a theoretical arrival time (TAT) per key, advanced by one
interval per send, with a tolerance of `burst` sends. One Lua script checks every bucket
of a send at once and spends them all or none, so instances never race each other.
When Redis cannot be reached, each process paces on its own with the same numbers, so
N instances may then send up to N times a budget; Telegram answers the excess with 429s,
which the callers honour.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from redis.asyncio import Redis

from botter import redis_keys
from botter.shared_state import RedisGuard

logger = logging.getLogger("botter.telegram")

T = TypeVar("T")

US_PER_S = 1_000_000
US_PER_MS = 1_000

# KEYS[1]: the bot's cooldown key; KEYS[2..]: bucket keys.
# ARGV: interval_us and burst of each bucket, in the order of its key.
# Answers 0 when the send may go now (all buckets spent), else the milliseconds to wait.
# TIME in a script that writes needs effects replication, the default since Redis 5.
PACE_SCRIPT = """
local cooldown_ms = redis.call('PTTL', KEYS[1])
if cooldown_ms > 0 then
  return cooldown_ms
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local wait = 0
local tats = {}
for i = 2, #KEYS do
  local interval = tonumber(ARGV[2 * i - 3])
  local burst = tonumber(ARGV[2 * i - 2])
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then
    tat = now
  end
  local allow_at = tat + interval - interval * burst
  if allow_at - now > wait then
    wait = allow_at - now
  end
  tats[i] = tat + interval
end
if wait > 0 then
  return math.ceil(wait / 1000)
end
for i = 2, #KEYS do
  redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil((tats[i] - now) / 1000) + 1)
end
return 0
"""

# KEYS[1]: the bot's cooldown key; ARGV[1]: its length in ms. Never shortens a cooldown.
COOLDOWN_SCRIPT = """
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0
"""


@dataclass(frozen=True)
class Bucket:
    """One send every interval_us on average, up to burst sends at once."""

    interval_us: int
    burst: int

    @classmethod
    def per_s(cls, rate_per_s: float, burst: int) -> "Bucket":
        return cls(math.ceil(US_PER_S / rate_per_s), burst)


@dataclass(frozen=True)
class PaceLimits:
    """Telegram's budgets, each burst kept below Telegram's own tolerance.

    Bursts smaller than Telegram's leave room for the jitter between our clock and the
    moment a request reaches Telegram.
    """

    bot_per_s: float = 30
    bot_burst: int = 10
    chat_per_s: float = 1
    chat_burst: int = 2
    group_per_min: float = 20
    group_burst: int = 3

    def buckets(self, bot_id: int, chat_id: int | str) -> list[tuple[str, Bucket]]:
        """The keys and buckets one send to this chat spends."""
        bot = Bucket.per_s(self.bot_per_s, self.bot_burst)
        chat = Bucket.per_s(self.chat_per_s, self.chat_burst)
        buckets = [(redis_keys.bot_pace(bot_id), bot)]
        buckets.append((redis_keys.chat_pace(bot_id, chat_id), chat))
        if is_group(chat_id):
            group = Bucket.per_s(self.group_per_min / 60, self.group_burst)
            buckets.append((redis_keys.group_pace(bot_id, chat_id), group))
        return buckets


def is_group(chat_id: int | str) -> bool:
    """Groups and channels have negative ids, or are addressed by @username."""
    return isinstance(chat_id, str) or chat_id < 0


def decide(
    now_us: int, tats: Sequence[int | None], buckets: Sequence[Bucket]
) -> tuple[int, list[int]]:
    """GCRA over several buckets.

    Answers (0, the buckets' new TATs) when a send may go now, else (wait_us, []).
    """
    wait_us = 0
    new_tats = []
    for tat, bucket in zip(tats, buckets, strict=True):
        start = now_us if tat is None else max(tat, now_us)
        allow_at = start + bucket.interval_us - bucket.interval_us * bucket.burst
        wait_us = max(wait_us, allow_at - now_us)
        new_tats.append(start + bucket.interval_us)
    return (wait_us, []) if wait_us > 0 else (0, new_tats)


def ms_of(duration_us: int) -> int:
    return math.ceil(duration_us / US_PER_MS)


class LocalPacer:
    """The same budgets in this process only: the fallback while Redis is unreachable."""

    max_keys = 100_000

    def __init__(self, clock_us: Callable[[], int] | None = None) -> None:
        self._clock_us = clock_us or (lambda: time.monotonic_ns() // 1000)
        self._tats: dict[str, int] = {}
        self._cooldown_until_us: dict[int, int] = {}

    def try_acquire(self, bot_id: int, buckets: Sequence[tuple[str, Bucket]]) -> int:
        """0 when a send may go now (and is counted), else the milliseconds to wait."""
        now_us = self._clock_us()
        cooldown_us = self._cooldown_until_us.get(bot_id, 0) - now_us
        if cooldown_us > 0:
            return ms_of(cooldown_us)
        keys = [key for key, _ in buckets]
        wait_us, new_tats = decide(
            now_us, [self._tats.get(key) for key in keys], [b for _, b in buckets]
        )
        if wait_us:
            return ms_of(wait_us)
        self._tats.update(zip(keys, new_tats, strict=True))
        self._forget_idle(now_us)
        return 0

    def cool_down(self, bot_id: int, retry_after_s: float) -> None:
        until_us = self._clock_us() + int(retry_after_s * US_PER_S)
        self._cooldown_until_us[bot_id] = max(until_us, self._cooldown_until_us.get(bot_id, 0))

    def cooldown_ms(self, bot_id: int) -> int:
        return max(0, ms_of(self._cooldown_until_us.get(bot_id, 0) - self._clock_us()))

    def _forget_idle(self, now_us: int) -> None:
        # A TAT in the past means the same as no TAT: a full bucket.
        if len(self._tats) > self.max_keys:
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now_us}


class Pacer:
    """Paces every bot's sends across all instances; never raises for Redis trouble."""

    def __init__(
        self,
        redis: Redis | None,
        limits: PaceLimits | None = None,
        *,
        redis_timeout_s: float = 1.0,
        redis_retry_s: float = 5.0,
    ) -> None:
        self.limits = limits or PaceLimits()
        self.local = LocalPacer()
        self._redis = redis
        self._shared = RedisGuard(
            "telegram.pacing", logger, timeout_s=redis_timeout_s, retry_s=redis_retry_s
        ).run
        self._pace = redis.register_script(PACE_SCRIPT) if redis is not None else None
        self._cooldown = redis.register_script(COOLDOWN_SCRIPT) if redis is not None else None

    async def acquire(self, bot_id: int, chat_id: int | str) -> None:
        """Wait until the bot may send one message to the chat, and count it."""
        while True:
            wait_ms = await self.try_acquire(bot_id, chat_id)
            if wait_ms <= 0:
                return
            await asyncio.sleep(wait_ms / 1000)

    async def try_acquire(self, bot_id: int, chat_id: int | str) -> int:
        """Count a send and answer 0 if it may go now; else the milliseconds to wait."""
        buckets = self.limits.buckets(bot_id, chat_id)
        keys = [redis_keys.bot_cooldown(bot_id), *(key for key, _ in buckets)]
        args = [value for _, b in buckets for value in (b.interval_us, b.burst)]
        if self._pace is not None:
            pace = self._pace
            answer = await self._shared(lambda: pace(keys=keys, args=args))
            if answer is not None:
                return int(answer)
        return self.local.try_acquire(bot_id, buckets)

    async def cool_down(self, bot_id: int, retry_after_s: float) -> None:
        """Hold every send of the bot, on every instance, for retry_after_s."""
        self.local.cool_down(bot_id, retry_after_s)
        if self._cooldown is not None:
            cooldown = self._cooldown
            keys = [redis_keys.bot_cooldown(bot_id)]
            length_ms = max(1, math.ceil(retry_after_s * 1000))
            await self._shared(lambda: cooldown(keys=keys, args=[length_ms]))

    async def cooldown_ms(self, bot_id: int) -> int:
        """How long the bot's cooldown still runs, as every instance sees it."""
        local_ms = self.local.cooldown_ms(bot_id)
        redis = self._redis
        if redis is None:
            return local_ms
        shared_ms = await self._shared(lambda: redis.pttl(redis_keys.bot_cooldown(bot_id)))
        return max(local_ms, int(shared_ms or 0))
