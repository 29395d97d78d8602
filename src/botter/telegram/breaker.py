"""A circuit breaker per bot around the Bot API, its state shared by every instance.

closed: calls go through; `failure_threshold` consecutive failures (5xx or no answer)
open it. open: calls fail at once with CircuitOpen for `open_s`, so jobs wait in the
queue instead of hammering a Telegram that is down. half_open: one probe call at a time
is let through; `close_after` successes in a row close the breaker, one failure opens it
again for twice as long (up to `max_open_s`).

A 4xx answer proves Telegram is up and counts as a success; a 429 is pacing's business.
When Redis is unreachable the breaker admits every call: it protects Telegram and our
queue from waste, it is not what makes anything correct.
"""

import logging
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from botter import redis_keys
from botter.metrics import TELEGRAM_BREAKER_TRANSITIONS
from botter.shared_state import RedisGuard
from botter.telegram.errors import (
    TelegramError,
    TelegramNetworkError,
    TelegramServerError,
)

logger = logging.getLogger("botter.telegram")

# KEYS[1]: the bot's breaker hash. ARGV[1]: how long a probe holds the half-open slot (ms).
# Answers {wait_ms, state, failures}: wait_ms 0 admits the call.
ADMIT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = tonumber(redis.call('HGET', KEYS[1], 'failures') or 0)
if state == 'closed' then
  return {0, state, failures}
end
if state == 'open' then
  local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until'))
  if now < open_until then
    return {open_until - now, state, failures}
  end
  state = 'half_open'
  redis.call('HSET', KEYS[1], 'state', state, 'successes', 0, 'probe_until', 0)
end
local probe_until = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or 0)
if now < probe_until then
  return {probe_until - now, state, failures}
end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[1]))
return {0, state, failures}
"""

# KEYS[1]: the bot's breaker hash. ARGV: outcome ('ok' or 'failed'), failure_threshold,
# open_ms, max_open_ms, close_after, ttl_ms. Answers the transition: '', 'open', 'closed'.
RECORD_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local transition = ''
local function open(open_ms)
  redis.call('HSET', KEYS[1], 'state', 'open', 'open_until', now + open_ms,
             'open_ms', open_ms, 'successes', 0, 'probe_until', 0)
  transition = 'open'
end
if state == 'closed' then
  if ARGV[1] == 'ok' then
    redis.call('HSET', KEYS[1], 'failures', 0)
  else
    local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
    if failures >= tonumber(ARGV[2]) then
      open(tonumber(ARGV[3]))
    end
  end
elseif state == 'half_open' then
  if ARGV[1] == 'ok' then
    local successes = redis.call('HINCRBY', KEYS[1], 'successes', 1)
    redis.call('HSET', KEYS[1], 'probe_until', 0)
    if successes >= tonumber(ARGV[5]) then
      redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', 0, 'successes', 0)
      transition = 'closed'
    end
  else
    local last_ms = tonumber(redis.call('HGET', KEYS[1], 'open_ms') or ARGV[3])
    open(math.min(last_ms * 2, tonumber(ARGV[4])))
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])
return transition
"""

STATE_TTL_MS = 24 * 3600 * 1000


class CircuitOpen(TelegramError):
    """The bot's breaker is open: Telegram was failing; try again after retry_after_s."""

    retryable = True

    def __init__(self, method: str, retry_after_s: float) -> None:
        super().__init__(method, None, "circuit open: Telegram has been failing for this bot")
        self.retry_after_s = retry_after_s


def counts_as_failure(error: TelegramError) -> bool:
    """Only Telegram being down or unreachable trips a breaker, never a refusal."""
    return isinstance(error, TelegramServerError | TelegramNetworkError)


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 5
    open_s: float = 10.0
    max_open_s: float = 300.0
    close_after: int = 3
    probe_s: float = 15.0


@dataclass(frozen=True)
class Admission:
    state: str
    failures: int


class Breaker:
    def __init__(
        self,
        redis: Redis | None,
        settings: BreakerSettings | None = None,
        *,
        timeout_s: float = 1.0,
    ) -> None:
        self.settings = settings or BreakerSettings()
        self._redis = redis
        self._guard = RedisGuard("telegram.breaker", logger, timeout_s=timeout_s)
        self._admit = redis.register_script(ADMIT_SCRIPT) if redis is not None else None
        self._record = redis.register_script(RECORD_SCRIPT) if redis is not None else None

    async def admit(self, bot_id: int, method: str) -> Admission:
        """Let the call go, or raise CircuitOpen saying how long to wait."""
        if self._admit is None:
            return Admission("closed", 0)
        admit, keys = self._admit, [redis_keys.breaker(bot_id)]
        probe_ms = int(self.settings.probe_s * 1000)
        answer: Any = await self._guard.run(lambda: admit(keys=keys, args=[probe_ms]))
        if answer is None:
            return Admission("closed", 0)
        wait_ms, state, failures = int(answer[0]), _text(answer[1]), int(answer[2])
        if wait_ms > 0:
            raise CircuitOpen(method, wait_ms / 1000)
        return Admission(state, failures)

    async def record(self, bot_id: int, admission: Admission, ok: bool) -> None:
        """Note how an admitted call went; a closed breaker with no failures needs no note."""
        if self._record is None or (ok and admission == Admission("closed", 0)):
            return
        record, keys = self._record, [redis_keys.breaker(bot_id)]
        settings = self.settings
        args = [
            "ok" if ok else "failed",
            settings.failure_threshold,
            int(settings.open_s * 1000),
            int(settings.max_open_s * 1000),
            settings.close_after,
            STATE_TTL_MS,
        ]
        transition = _text(await self._guard.run(lambda: record(keys=keys, args=args)) or "")
        if transition:
            await self._note(bot_id, transition)

    async def open_bots(self) -> int | None:
        """How many bots' breakers are not closed, as all instances see it; None without Redis."""
        redis = self._redis
        if redis is None:
            return None
        key = redis_keys.breakers_open()
        stale = time.time() - STATE_TTL_MS / 1000

        async def count() -> int:
            # A breaker nobody called for a day has expired with its hash.
            await redis.zremrangebyscore(key, 0, stale)
            return int(await redis.zcard(key))

        return await self._guard.run(count)

    async def _note(self, bot_id: int, transition: str) -> None:
        TELEGRAM_BREAKER_TRANSITIONS.labels(transition).inc()
        redis = self._redis
        assert redis is not None
        key = redis_keys.breakers_open()
        if transition == "open":
            logger.warning("telegram.breaker_opened bot_id=%s", bot_id)
            await self._guard.run(lambda: redis.zadd(key, {str(bot_id): time.time()}))
        else:
            logger.info("telegram.breaker_closed bot_id=%s", bot_id)
            await self._guard.run(lambda: redis.zrem(key, str(bot_id)))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
