"""Update delivery as Telegram does it: a webhook with retries, or getUpdates polling.

Each bot keeps its undelivered updates in arrival order. With a webhook set, every chat
gets a lane that delivers that chat's updates one at a time, in order, retrying the
head with growing delays until the target answers 2xx; lanes of different chats (and of
different bots) run side by side, so one hanging target stalls only its own chat.
"""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from botter.sandbox.config import SandboxConfig
from botter.sandbox.errors import BotApiError
from botter.sandbox.params import decode_body
from botter.sandbox.world import Bot, now_s

logger = logging.getLogger("botter.sandbox.delivery")

# Telegram's default when allowed_updates is not given.
DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

MethodRunner = Callable[[Bot, str, dict[str, Any]], Awaitable[Any]]


@dataclass
class PendingUpdate:
    update_id: int
    kind: str
    body: dict[str, Any]
    chat_key: int
    created_at: float = field(default_factory=time.monotonic)


@dataclass
class BotUpdates:
    next_update_id: int
    pending: list[PendingUpdate] = field(default_factory=list)
    history: dict[int, PendingUpdate] = field(default_factory=dict)
    lanes: dict[int, "asyncio.Task[None]"] = field(default_factory=dict)
    connections: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(40))
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    poller: object | None = None

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class PollConflictError(Exception):
    """A newer getUpdates call took over from this one."""


def allows(bot: Bot, kind: str) -> bool:
    if bot.allowed_updates:
        return kind in bot.allowed_updates
    return kind not in DEFAULT_EXCLUDED_UPDATES


class Delivery:
    def __init__(self, config: SandboxConfig, run_method: MethodRunner) -> None:
        self.config = config
        self.run_method = run_method
        self._bots: dict[int, BotUpdates] = {}
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.webhook_timeout_s),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )

    async def stop(self) -> None:
        for updates in self._bots.values():
            for task in updates.lanes.values():
                task.cancel()
        if self._client is not None:
            await self._client.aclose()

    def of(self, bot: Bot) -> BotUpdates:
        if bot.id not in self._bots:
            self._bots[bot.id] = BotUpdates(next_update_id=random.randint(10**8, 9 * 10**8))
        return self._bots[bot.id]

    # producing

    def enqueue(self, bot: Bot, kind: str, content: dict[str, Any], chat_key: int) -> int | None:
        """Queue an update for the bot; None when its allowed_updates leave it out."""
        if not allows(bot, kind):
            return None
        updates = self.of(bot)
        update_id = updates.next_update_id
        updates.next_update_id += 1
        update = PendingUpdate(update_id, kind, {"update_id": update_id, kind: content}, chat_key)
        updates.history[update_id] = update
        self._push(bot, update)
        return update_id

    def redeliver(self, bot: Bot, update_id: int, new_update_id: bool) -> int:
        updates = self.of(bot)
        original = updates.history.get(update_id)
        if original is None:
            raise KeyError(update_id)
        if not new_update_id:
            self._push(
                bot, PendingUpdate(update_id, original.kind, original.body, original.chat_key)
            )
            return update_id
        fresh_id = updates.next_update_id
        updates.next_update_id += 1
        body = {**original.body, "update_id": fresh_id}
        copy = PendingUpdate(fresh_id, original.kind, body, original.chat_key)
        updates.history[fresh_id] = copy
        self._push(bot, copy)
        return fresh_id

    def _push(self, bot: Bot, update: PendingUpdate) -> None:
        updates = self.of(bot)
        updates.pending.append(update)
        if bot.webhook_url:
            self._ensure_lane(bot, update.chat_key)
        updates.notify()

    # webhook mode

    def webhook_changed(self, bot: Bot, drop_pending: bool) -> None:
        """Restart delivery after setWebhook or deleteWebhook."""
        updates = self.of(bot)
        for task in updates.lanes.values():
            task.cancel()
        updates.lanes.clear()
        if drop_pending:
            updates.pending.clear()
        updates.connections = asyncio.Semaphore(bot.webhook_max_connections)
        if bot.webhook_url:
            for chat_key in {update.chat_key for update in updates.pending}:
                self._ensure_lane(bot, chat_key)
        updates.notify()

    def _ensure_lane(self, bot: Bot, chat_key: int) -> None:
        updates = self.of(bot)
        lane = updates.lanes.get(chat_key)
        if lane is None or lane.done():
            updates.lanes[chat_key] = asyncio.create_task(self._run_lane(bot, chat_key))

    async def _run_lane(self, bot: Bot, chat_key: int) -> None:
        updates = self.of(bot)
        try:
            while True:
                head = next((u for u in updates.pending if u.chat_key == chat_key), None)
                if head is None:
                    return
                await self._deliver_until_done(bot, updates, head)
                with contextlib.suppress(ValueError):
                    updates.pending.remove(head)
                updates.notify()
        finally:
            if updates.lanes.get(chat_key) is asyncio.current_task():
                del updates.lanes[chat_key]

    async def _deliver_until_done(
        self, bot: Bot, updates: BotUpdates, update: PendingUpdate
    ) -> None:
        delay_s = self.config.webhook_retry_base_s
        while time.monotonic() - update.created_at < self.config.update_ttl_s:
            async with updates.connections:
                error = await self._post(bot, update)
            if error is None:
                return
            bot.last_error_date = now_s()
            bot.last_error_message = error
            logger.info(
                "webhook delivery failed bot_id=%s update_id=%s: %s",
                bot.id,
                update.update_id,
                error,
            )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, self.config.webhook_retry_max_s)

    async def _post(self, bot: Bot, update: PendingUpdate) -> str | None:
        """POST one update; None on success, else Telegram's wording of the failure."""
        assert self._client is not None
        headers = {"Content-Type": "application/json"}
        if bot.webhook_secret:
            headers["X-Telegram-Bot-Api-Secret-Token"] = bot.webhook_secret
        try:
            response = await self._client.post(
                bot.webhook_url, content=orjson.dumps(update.body), headers=headers
            )
        except httpx.TimeoutException:
            return "Read timeout expired"
        except httpx.HTTPError as error:
            return f"Connection failed: {type(error).__name__}"
        if not 200 <= response.status_code < 300:
            return (
                f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"
            )
        await self._run_reply_method(bot, response)
        return None

    async def _run_reply_method(self, bot: Bot, response: httpx.Response) -> None:
        # A webhook may answer with a Bot API call in its body; Telegram runs it.
        try:
            params = decode_body(response.headers.get("content-type", ""), response.content)
        except BotApiError:
            return
        method = params.pop("method", None)
        if isinstance(method, str) and method:
            with contextlib.suppress(BotApiError):
                await self.run_method(bot, method, params)

    # polling mode

    async def get_updates(
        self, bot: Bot, offset: int | None, limit: int, timeout_s: float
    ) -> list[dict[str, Any]]:
        updates = self.of(bot)
        if offset is not None:
            self._confirm(updates, offset)
        token = object()
        updates.poller = token
        updates.notify()  # an older waiting call wakes, sees it lost, and answers 409
        deadline = time.monotonic() + min(timeout_s, self.config.long_poll_max_s)
        while True:
            ready = self._ready(updates, offset, limit)
            remaining_s = deadline - time.monotonic()
            if ready or remaining_s <= 0:
                return [update.body for update in ready]
            changed = updates.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining_s)
            if updates.poller is not token:
                raise PollConflictError
            if bot.webhook_url:
                return []

    def _confirm(self, updates: BotUpdates, offset: int) -> None:
        if offset < 0:
            keep = updates.pending[offset:]
            updates.pending[:] = keep
            return
        updates.pending[:] = [u for u in updates.pending if u.update_id >= offset]

    def _ready(self, updates: BotUpdates, offset: int | None, limit: int) -> list[PendingUpdate]:
        fresh = time.monotonic() - self.config.update_ttl_s
        updates.pending[:] = [u for u in updates.pending if u.created_at >= fresh]
        chosen = sorted(updates.pending, key=lambda u: u.update_id)
        if offset is not None and offset > 0:
            chosen = [u for u in chosen if u.update_id >= offset]
        return chosen[:limit]

    def pending_count(self, bot: Bot) -> int:
        return len(self.of(bot).pending)

    def take_over_polling(self, bot: Bot) -> None:
        """Wake any waiting getUpdates call so it notices a newer one or a webhook."""
        updates = self.of(bot)
        updates.poller = None
        updates.notify()
