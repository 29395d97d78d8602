"""The sandbox itself: the world, update delivery, budgets, faults and the call log."""

import asyncio
import collections
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botter.sandbox.config import SandboxConfig
from botter.sandbox.delivery import Delivery
from botter.sandbox.errors import BotApiError, bad_request, forbidden, too_many_requests
from botter.sandbox.faults import FaultPlan
from botter.sandbox.members import chat_member_api, full_rights
from botter.sandbox.params import Params
from botter.sandbox.ratelimit import SendBudget
from botter.sandbox.world import (
    Bot,
    Chat,
    InviteLink,
    Membership,
    Message,
    PrivateChat,
    User,
    World,
    now_s,
)


@dataclass
class Call:
    """One Bot API call in progress: who calls, with what."""

    sandbox: "Sandbox"
    bot: Bot
    params: Params

    @property
    def world(self) -> World:
        return self.sandbox.world


Handler = Callable[[Call], Awaitable[Any]]


class Sandbox:
    def __init__(self, config: SandboxConfig, methods: dict[str, tuple[str, Handler]]) -> None:
        self.config = config
        self.world = World()
        self.delivery = Delivery(config, self.run_reply_method)
        self.budget = SendBudget(
            config.bot_messages_per_s,
            config.chat_messages_per_s,
            config.chat_burst,
            config.group_messages_per_min,
        )
        self.faults = FaultPlan()
        self.calls: collections.deque[dict[str, Any]] = collections.deque(maxlen=config.calls_kept)
        self._methods = methods

    # Bot API entry

    async def call(self, token: str, method: str, raw: dict[str, Any]) -> Any:
        bot = self.world.bots_by_token.get(token)
        if bot is None:
            raise BotApiError(401, "Unauthorized")
        return await self._run(bot, method, raw)

    async def run_reply_method(self, bot: Bot, method: str, raw: dict[str, Any]) -> Any:
        return await self._run(bot, method, raw)

    async def _run(self, bot: Bot, method: str, raw: dict[str, Any]) -> Any:
        entry = self._methods.get(method.lower())
        name = entry[0] if entry else method
        record: dict[str, Any] = {"bot_id": bot.id, "method": name, "params": raw, "ok": True}
        self.calls.append(record)
        try:
            if entry is None:
                raise BotApiError(404, "Not Found")
            fault = self.faults.take(bot.id, name)
            if fault is not None:
                if fault.delay_s:
                    await asyncio.sleep(fault.delay_s)
                raise fault.error()
            return await entry[1](Call(self, bot, Params(raw)))
        except BotApiError as error:
            record["ok"] = False
            record["error_code"] = error.error_code
            raise

    def spend_send_budget(self, bot: Bot, chat_id: int, is_group: bool) -> None:
        """Count one outgoing message; past Telegram's budget, answer 429 like Telegram."""
        if not self.config.rate_limits:
            return
        retry_after_s = self.budget.try_send(bot.id, chat_id, is_group)
        if retry_after_s:
            raise too_many_requests(retry_after_s)

    # private conversations

    def conversation_for_sending(self, bot: Bot, user_id: int) -> tuple[User, PrivateChat]:
        """The private chat a bot may write to, or the error Telegram gives."""
        user = self.world.users.get(user_id)
        if user is None or user.is_bot:
            raise bad_request("chat not found")
        conversation = self.world.private_chat(bot.id, user.id)
        if conversation.blocked:
            raise forbidden("bot was blocked by the user")
        if not conversation.started and conversation.may_write_until < now_s():
            raise forbidden("bot can't initiate conversation with a user")
        return user, conversation

    def post_private(
        self, bot: Bot, user: User, sender: User, *, emit: bool = False, **content: Any
    ) -> tuple[Message, int | None]:
        """Add a message to a bot's chat with a user; with emit, the bot gets it as an update."""
        conversation = self.world.private_chat(bot.id, user.id)
        message = Message(
            message_id=conversation.next_message_id(),
            date=now_s(),
            chat=user.private_chat_api(),
            sender=sender,
            **content,
        )
        conversation.messages.append(message)
        update_id = None
        if emit:
            update_id = self.delivery.enqueue(bot, "message", message.to_api(), user.id)
        return message, update_id

    # groups and channels

    def admin_bots(self, chat: Chat) -> list[Bot]:
        return [
            self.world.bots[user_id]
            for user_id, membership in chat.members.items()
            if user_id in self.world.bots and membership.status == "administrator"
        ]

    def change_member(
        self,
        chat: Chat,
        user: User,
        status: str,
        *,
        actor: User,
        invite_link: InviteLink | None = None,
        via_join_request: bool = False,
        until_date: int = 0,
        rights: dict[str, bool] | None = None,
    ) -> None:
        """Move a user to a new status and tell the bots that watch the chat."""
        at = now_s()
        old = chat.members.get(user.id)
        old_api = chat_member_api(chat, user, old, at)
        granted = full_rights(chat) | (rights or {}) if status == "administrator" else {}
        new = Membership(user_id=user.id, status=status, rights=granted, until_date=until_date)
        chat.members[user.id] = new
        if old is not None and old.effective_status(at) == status and status != "administrator":
            return
        new_api = chat_member_api(chat, user, new, at)
        watchers = self.admin_bots(chat)
        if user.id in self.world.bots and self.world.bots[user.id] not in watchers:
            watchers.append(self.world.bots[user.id])
        for bot in watchers:
            update: dict[str, Any] = {
                "chat": chat.to_api(),
                "from": actor.to_api(),
                "date": at,
                "old_chat_member": old_api,
                "new_chat_member": new_api,
            }
            if invite_link is not None:
                update["invite_link"] = invite_link.to_api(chat, bot.id)
            if via_join_request:
                update["via_join_request"] = True
            kind = "my_chat_member" if bot.id == user.id else "chat_member"
            self.delivery.enqueue(bot, kind, update, chat.id)
