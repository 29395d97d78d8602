"""Calls to Redis for state that instances share but can live without for a while.

Pacing budgets, circuit breakers and rate-limit windows are shared through Redis so all
instances agree; none of them is the only copy of anything that matters. When Redis is
unreachable, callers get None and fall back to a local decision; the guard then skips
Redis for `retry_s` instead of paying a timeout on every call.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import RedisClusterException, RedisError

T = TypeVar("T")

# What an unreachable, failing or overloaded Redis looks like from a client. redis-py's
# Cluster client reports a cluster it cannot reach with an exception outside RedisError.
REDIS_ERRORS = (RedisError, RedisClusterException, TimeoutError, OSError)


class RedisGuard:
    """Runs Redis commands with a deadline; after a failure, answers None for a while."""

    def __init__(
        self, purpose: str, logger: logging.Logger, *, timeout_s: float = 1.0, retry_s: float = 5.0
    ) -> None:
        self.purpose = purpose
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.degraded = False
        self._logger = logger
        self._next_try = 0.0

    async def run(self, command: Callable[[], Awaitable[T]]) -> T | None:
        """The command's answer, or None when Redis is unreachable (the caller decides alone)."""
        if self.degraded and time.monotonic() < self._next_try:
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                answer = await command()
        except REDIS_ERRORS as error:
            self._degrade(error)
            return None
        if self.degraded:
            self.degraded = False
            self._logger.info("%s_restored", self.purpose)
        return answer

    def _degrade(self, error: Exception) -> None:
        self._next_try = time.monotonic() + self.retry_s
        if not self.degraded:
            self.degraded = True
            self._logger.warning(
                "%s_degraded error=%s retry_in_s=%s",
                self.purpose,
                type(error).__name__,
                self.retry_s,
            )
