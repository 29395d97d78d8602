"""Telegram's send budgets, emulated with token buckets."""

import math
import time
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate_per_s: float
    capacity: float
    tokens: float = -1.0
    updated_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def _refill(self, at: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (at - self.updated_at) * self.rate_per_s)
        self.updated_at = at

    def wait_s(self) -> float:
        """Seconds until one token is available; 0 when one is available now."""
        self._refill(time.monotonic())
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate_per_s

    def take(self) -> None:
        self.tokens -= 1


class SendBudget:
    """Per bot and per chat message budgets; a send needs a token from every bucket."""

    def __init__(
        self, bot_per_s: int, chat_per_s: int, chat_burst: int, group_per_min: int
    ) -> None:
        self.bot_per_s = bot_per_s
        self.chat_per_s = chat_per_s
        self.chat_burst = chat_burst
        self.group_per_min = group_per_min
        self._buckets: dict[tuple[str, int, int], TokenBucket] = {}

    def _bucket(self, kind: str, bot_id: int, chat_id: int) -> TokenBucket:
        key = (kind, bot_id, chat_id)
        if key not in self._buckets:
            if kind == "bot":
                bucket = TokenBucket(self.bot_per_s, self.bot_per_s)
            elif kind == "chat":
                bucket = TokenBucket(self.chat_per_s, self.chat_burst)
            else:
                bucket = TokenBucket(self.group_per_min / 60, self.group_per_min)
            self._buckets[key] = bucket
        return self._buckets[key]

    def try_send(self, bot_id: int, chat_id: int, is_group: bool) -> int:
        """Spend one send; answer 0, or the whole seconds to wait (Telegram's retry_after)."""
        buckets = [self._bucket("bot", bot_id, 0), self._bucket("chat", bot_id, chat_id)]
        if is_group:
            buckets.append(self._bucket("group", bot_id, chat_id))
        wait_s = max(bucket.wait_s() for bucket in buckets)
        if wait_s > 0:
            return max(1, math.ceil(wait_s))
        for bucket in buckets:
            bucket.take()
        return 0
