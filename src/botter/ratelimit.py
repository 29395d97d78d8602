"""Rate limits counted in Redis, so every instance spends the same budget.

A limit that protects people from a nuisance (a subscriber flooding a bot) fails open when
Redis is away: admitting a few extra commands harms nobody. A limit that is part of
keeping something safe (guessing logins or tokens) fails closed: LimiterUnavailable,
which the web layer answers 503. Payments are never rate limited.
"""

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from limits import RateLimitItem, parse
from limits.aio.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from botter.errors import BotterError
from botter.redis_client import parse_redis_url
from botter.shared_state import RedisGuard

logger = logging.getLogger("botter.ratelimit")

KEY_PREFIX: Final = "botter:limit"
LIMITS_TIMEOUT_S: Final = 1.0

Endpoint = Callable[[Request], Awaitable[Response]]


class LimiterUnavailable(BotterError):
    """A fail-closed limit could not be checked; refuse rather than admit unchecked."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0


def limits_storage(redis_url: str) -> RedisStorage:
    """`limits`' asynchronous Redis storage on redis-py, for the same Redis as REDIS_URL:
    one server, a Sentinel service's master, or a Cluster."""
    target = parse_redis_url(redis_url)
    options: dict[str, Any] = {"key_prefix": KEY_PREFIX, "socket_timeout": LIMITS_TIMEOUT_S}
    if target.kind == "cluster":
        return RedisClusterStorage(
            f"async+redis+cluster://{target.locations()}",
            implementation="redispy", **target.credentials(), **options,
        )  # fmt: skip
    if target.kind == "sentinel":
        # The windows are read where they are written: a replica's copy may lag.
        return RedisSentinelStorage(
            f"async+redis+sentinel://{target.locations()}",
            implementation="redispy", service_name=target.service_name, use_replicas=False,
            sentinel_kwargs=target.sentinel_kwargs(LIMITS_TIMEOUT_S), db=target.db,
            **target.credentials(), **options,
        )  # fmt: skip
    scheme, _, rest = redis_url.partition("://")
    uri = {"redis": "async+redis", "rediss": "async+rediss", "unix": "async+redis+unix"}[
        scheme
    ] + f"://{rest}"
    storage = storage_from_string(uri, implementation="redispy", **options)
    assert isinstance(storage, RedisStorage)
    return storage


class RateLimiter:
    """One named limit, like "10/10 seconds", counted per identifiers (a user, an address)."""

    def __init__(self, storage: RedisStorage, name: str, limit: str, *, fail_closed: bool) -> None:
        self.name = name
        self.item: RateLimitItem = parse(limit)
        self.fail_closed = fail_closed
        self._strategy = MovingWindowRateLimiter(storage)
        self._guard = RedisGuard(f"ratelimit.{name}", logger)

    async def hit(self, *identifiers: str | int) -> Verdict:
        """Spend one unit; allowed, or refused with how long until one is free again."""
        keys = [self.name, *(str(part) for part in identifiers)]
        allowed = await self._guard.run(lambda: self._strategy.hit(self.item, *keys))
        if allowed is None:
            if self.fail_closed:
                raise LimiterUnavailable(f"the {self.name} limit cannot be checked right now")
            return Verdict(True)
        if allowed:
            return Verdict(True)
        stats = await self._guard.run(lambda: self._strategy.get_window_stats(self.item, *keys))
        retry_after_s = max(0.0, stats.reset_time - time.time()) if stats else 1.0
        return Verdict(False, round(retry_after_s, 3))


def rate_limited(
    limiter: RateLimiter, key: Callable[[Request], str]
) -> Callable[[Endpoint], Endpoint]:
    """Guard an endpoint: 429 with Retry-After over the limit, 503 when it cannot be checked
    and the limiter fails closed. `key` picks who is counted (a token, request.client.host)."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        async def guarded(request: Request) -> Response:
            try:
                verdict = await limiter.hit(key(request))
            except LimiterUnavailable:
                return JSONResponse({"error": "temporarily unavailable"}, status_code=503)
            if not verdict.allowed:
                retry_after = str(max(1, round(verdict.retry_after_s)))
                return JSONResponse(
                    {"error": "too many requests"},
                    status_code=429,
                    headers={"Retry-After": retry_after},
                )
            return await endpoint(request)

        return guarded

    return decorate
