"""What subscribers can do in a creator's bot, as aiogram handlers.

Handlers run inside the transaction that marks their update done: they change state and
enqueue jobs for everything that calls Telegram, except the pre-checkout answer, which
has a 10 s deadline and is answered directly.
"""

import logging
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandStart
from aiogram.types import (
    CallbackQuery,
    ChatJoinRequest,
    ChatMemberUpdated,
    Message,
    PreCheckoutQuery,
)

from botter.access import service as access
from botter.access.decisions import has_access, joined
from botter.billing import service as billing
from botter.billing.payload import order_id_of
from botter.billing.settle import settle_payment
from botter.metrics import PAYMENTS
from botter.runtime import button, keyboard
from botter.telegram import texts
from botter.telegram.context import UpdateContext
from botter.telegram.errors import QueryTooOld

logger = logging.getLogger("botter.telegram.handlers")
router = Router(name="botter.subscribers")

PLAN_PREFIX = "plan:"


async def offer_plans(ctx: UpdateContext, chat_id: int) -> None:
    plans = await billing.active_plans(ctx.conn, ctx.bot_id)
    if not plans:
        await ctx.send(chat_id, texts.NO_PLANS)
        return
    rows = [
        [button(texts.plan_button(p.title, p.price_stars, p.period_s), f"{PLAN_PREFIX}{p.id}")]
        for p in plans
    ]
    await ctx.send(chat_id, texts.CHOOSE_PLAN, keyboard(*rows))


async def remember(ctx: UpdateContext, message: Message) -> int:
    assert message.from_user is not None
    user = message.from_user.model_dump(exclude_none=True)
    return await access.upsert_subscriber(ctx.conn, ctx.creator_id, ctx.bot_id, user)


@router.message(CommandStart())
async def on_start(message: Message, ctx: UpdateContext) -> None:
    await remember(ctx, message)
    await offer_plans(ctx, message.chat.id)


@router.message(Command("renew"))
async def on_renew(message: Message, ctx: UpdateContext) -> None:
    await remember(ctx, message)
    await offer_plans(ctx, message.chat.id)


@router.message(Command("status"))
async def on_status(message: Message, ctx: UpdateContext) -> None:
    assert message.from_user is not None
    grants = await access.subscriber_grants(ctx.conn, ctx.bot_id, message.from_user.id)
    if not grants:
        await ctx.send(message.chat.id, texts.NO_ACCESS)
        return
    now = access.utcnow()
    lines = [texts.status_line(title, until, has_access(until, now)) for title, until in grants]
    if any(has_access(until, now) for _, until in grants):
        lines.append(texts.NEW_LINK_HINT)
    await ctx.send(message.chat.id, "\n".join(lines))


@router.message(Command("link"))
async def on_link(message: Message, ctx: UpdateContext) -> None:
    """A fresh invite link into every chat the person has access to but is not in."""
    assert message.from_user is not None
    user_id = message.from_user.id
    chats = await access.chats_with_access(ctx.conn, ctx.bot_id, user_id, access.utcnow())
    if not chats:
        await ctx.send(message.chat.id, texts.NO_ACCESS)
        return
    for managed_chat_id in chats:
        await ctx.job("reissue_link", {"managed_chat_id": managed_chat_id, "user_id": user_id})


@router.message(Command("terms"))
async def on_terms(message: Message, ctx: UpdateContext) -> None:
    await ctx.send(message.chat.id, texts.DEFAULT_TERMS)


@router.message(Command("paysupport"))
async def on_paysupport(message: Message, ctx: UpdateContext) -> None:
    await ctx.send(message.chat.id, texts.DEFAULT_SUPPORT)


@router.callback_query(F.data.startswith(PLAN_PREFIX))
async def on_plan_chosen(query: CallbackQuery, ctx: UpdateContext) -> None:
    await ctx.job(
        "answer_callback", {"bot_id": ctx.bot_id, "callback_query_id": query.id}, priority=0
    )
    plan_id = (query.data or "").removeprefix(PLAN_PREFIX)
    plan = (
        await billing.plan_of_bot(ctx.conn, ctx.bot_id, int(plan_id))
        if plan_id.isdigit()
        else None
    )
    if plan is None or not plan.active:
        await ctx.send(query.from_user.id, texts.PLAN_GONE)
        return
    user = query.from_user.model_dump(exclude_none=True)
    subscriber_id = await access.upsert_subscriber(ctx.conn, ctx.creator_id, ctx.bot_id, user)
    order_id = await billing.create_order(ctx.conn, plan, subscriber_id)
    await ctx.job(
        "send_invoice",
        {"bot_id": ctx.bot_id, "chat_id": query.from_user.id, "order_id": order_id},
        priority=0,
    )


@router.pre_checkout_query()
async def on_pre_checkout(query: PreCheckoutQuery, ctx: UpdateContext) -> None:
    order_id = order_id_of(query.invoice_payload, ctx.runtime.keyring)
    problem = await billing.checkout_problem(
        ctx.conn, ctx.bot_id, order_id, query.total_amount, query.currency
    )
    token = await ctx.token()
    try:
        await ctx.runtime.telegram.answer_pre_checkout_query(
            token, query.id, ok=problem is None, error_message=problem
        )
    except QueryTooOld:
        # Answered already (a retry after our commit was cut short) or past Telegram's
        # 10 s: either way nothing is left to do, and trying again cannot help.
        logger.info("payment.pre_checkout_expired bot_id=%s order_id=%s", ctx.bot_id, order_id)
        return
    logger.info("payment.pre_checkout bot_id=%s order_id=%s ok=%s", ctx.bot_id, order_id,
                problem is None)  # fmt: skip


@router.message(F.successful_payment)
async def on_successful_payment(message: Message, ctx: UpdateContext) -> None:
    payment = message.successful_payment
    assert payment is not None
    assert message.from_user is not None
    settled = await settle_payment(
        ctx.conn,
        ctx.runtime.keyring,
        creator_id=ctx.creator_id,
        bot_id=ctx.bot_id,
        user=message.from_user.model_dump(exclude_none=True),
        successful_payment=payment.model_dump(exclude_none=True),
    )
    if settled is None:
        logger.info("payment.duplicate bot_id=%s update_id=%s", ctx.bot_id, ctx.update_id)


@router.message(F.refunded_payment)
async def on_refunded_payment(message: Message, ctx: UpdateContext) -> None:
    """A refund, made by us or by the creator through the Bot API, takes the access back."""
    refunded = message.refunded_payment
    assert refunded is not None
    assert message.from_user is not None
    refund = await billing.record_refund(ctx.conn, ctx.bot_id, refunded.telegram_payment_charge_id)
    if refund is None:
        return
    PAYMENTS.labels("refunded").inc()
    logger.info("payment.refunded bot_id=%s payment_id=%s", ctx.bot_id, refund.payment_id)
    if not refund.granted or refund.order_id is None:
        return
    order = await billing.order_of_bot(ctx.conn, ctx.bot_id, refund.order_id)
    if order is None:
        return
    user_id = message.from_user.id
    for chat in await access.revoke_for_refund(ctx.conn, order, user_id, refund.payment_id):
        await ctx.job(
            "enforce", {"managed_chat_id": chat.id, "user_id": user_id, "reason": "refunded"}
        )


def presence(member: Any) -> str:
    """The member's status as far as being in the chat goes: a restricted person who is not
    a member any more is recorded as "left", since Telegram keeps the restriction only."""
    if member.status == "restricted" and not getattr(member, "is_member", True):
        return "left"
    return str(member.status)


@router.chat_member()
async def on_chat_member(event: ChatMemberUpdated, ctx: UpdateContext) -> None:
    chat = await access.managed_chat(ctx.conn, ctx.bot_id, event.chat.id)
    user = event.new_chat_member.user
    if chat is None or user.is_bot:
        return
    old_status = presence(event.old_chat_member)
    new_status = presence(event.new_chat_member)
    if not await access.record_member(ctx.conn, chat, user.id, new_status, ctx.update_id):
        logger.info("member.stale_update bot_id=%s update_id=%s", ctx.bot_id, ctx.update_id)
        return
    if joined(old_status, new_status):
        await ctx.job(
            "enforce", {"managed_chat_id": chat.id, "user_id": user.id, "reason": "joined"}
        )
    await access.audit(
        ctx.conn, ctx.creator_id, "member.changed", managed_chat_id=chat.id,
        user_id=user.id, old=old_status, new=new_status,
    )  # fmt: skip


@router.chat_join_request()
async def on_join_request(request: ChatJoinRequest, ctx: UpdateContext) -> None:
    chat = await access.managed_chat(ctx.conn, ctx.bot_id, request.chat.id)
    if chat is None:
        return
    await ctx.job(
        "answer_join_request",
        {"managed_chat_id": chat.id, "user_id": request.from_user.id,
         "user_chat_id": request.user_chat_id},
        priority=0,
    )  # fmt: skip


@router.my_chat_member(F.chat.type == "private")
async def on_bot_blocked_or_restarted(event: ChatMemberUpdated, ctx: UpdateContext) -> None:
    blocked = event.new_chat_member.status == "kicked"
    await access.set_bot_blocked(ctx.conn, ctx.bot_id, event.chat.id, blocked)
