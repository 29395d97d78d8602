"""Anti-flood for subscribers: commands and button presses beyond a budget are answered
with a polite note instead of work. Payments are never held back."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject

from botter.telegram import texts
from botter.telegram.context import UpdateContext

logger = logging.getLogger("botter.telegram.flood")

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


def exempt(event: TelegramObject) -> bool:
    """Money and anything outside a private chat with the bot is never limited here."""
    if isinstance(event, Message):
        if event.successful_payment is not None or event.refunded_payment is not None:
            return True
        return event.chat.type != "private" or event.from_user is None
    return not isinstance(event, CallbackQuery)


class FloodGuard(BaseMiddleware):
    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        ctx: UpdateContext = data["ctx"]
        if exempt(event):
            return await handler(event, data)
        user_id = event.from_user.id  # type: ignore[attr-defined]
        limits = ctx.runtime.limits
        verdict = await limits.subscriber_actions.hit(ctx.bot_id, user_id)
        if verdict.allowed:
            return await handler(event, data)
        logger.info("subscriber.flood_limited bot_id=%s update_id=%s", ctx.bot_id, ctx.update_id)
        if isinstance(event, CallbackQuery):
            args = {"bot_id": ctx.bot_id, "callback_query_id": event.id, "text": texts.FLOOD}
            await ctx.job("answer_callback", args, priority=0)
        elif (await limits.flood_notices.hit(ctx.bot_id, user_id)).allowed:
            await ctx.send(user_id, texts.FLOOD)
        return None
