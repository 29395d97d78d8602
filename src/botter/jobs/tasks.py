"""The jobs: every call to Telegram that follows from a change of state.

Each job is safe to run twice: it re-reads the state it acts on (under the person's
lock where access is concerned) and does nothing when the work is already done or no
longer wanted. Telegram's answers decide what happens next: a 429 waits as told, a
hopeless answer (blocked, no rights, chat gone) is recorded and not retried.
"""

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from botter.access import service as access
from botter.access.decisions import has_access, is_present, must_remove
from botter.billing import service as billing
from botter.billing.payload import order_payload
from botter.db.schema import access_grants, invite_links, orders, plan_chats, plans, subscribers
from botter.jobs.queue import GiveUp, Job, JobHandler, RetryLater, enqueue
from botter.metrics import ACCESS_CHANGES
from botter.runtime import Runtime, button, keyboard
from botter.telegram import texts
from botter.telegram.breaker import CircuitOpen
from botter.telegram.errors import (
    BotBlocked,
    CantInitiateConversation,
    CantRemoveOwner,
    ChatNotFound,
    NotEnoughRights,
    QueryTooOld,
    TelegramBadRequest,
    TelegramError,
    TelegramRetryAfter,
    TelegramUnauthorized,
    UserIsAdministrator,
)

logger = logging.getLogger("botter.jobs")

Task = Callable[[Runtime, AsyncConnection, Job], Awaitable[None]]


def outcome_of(error: TelegramError) -> Exception:
    """What the job runner should do with a failed call."""
    if isinstance(error, TelegramRetryAfter):
        return RetryLater(error.retry_after_s, "telegram asked to retry later")
    if isinstance(error, CircuitOpen):
        # Waits in the queue, not counted as an attempt: the bot's calls resume together.
        return RetryLater(error.retry_after_s, "circuit open")
    if error.retryable:
        return error
    return GiveUp(f"telegram refused {error.method}: {type(error).__name__}")


async def send_message(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    args = job.args
    token = await runtime.token(conn, args["bot_id"])
    try:
        await runtime.telegram.send_message(
            token, args["chat_id"], args["text"], args.get("reply_markup")
        )
    except (BotBlocked, CantInitiateConversation) as error:
        # Hopeless until they come back: record it, and the job is finished, not failed.
        await access.set_bot_blocked(conn, args["bot_id"], args["chat_id"], True)
        logger.info("message.undeliverable bot_id=%s reason=%s", args["bot_id"],
                    type(error).__name__)  # fmt: skip
    except TelegramError as error:
        raise outcome_of(error) from None


async def send_invoice(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    args = job.args
    order = await billing.order_of_bot(conn, args["bot_id"], args["order_id"])
    if order is None or order.status == "paid":
        return
    plan = await billing.plan_of_bot(conn, order.bot_id, order.plan_id)
    if plan is None:
        return
    token = await runtime.token(conn, order.bot_id)
    if "text" in args:
        await call_or_raise(runtime.telegram.send_message(token, args["chat_id"], args["text"]))
    await call_or_raise(
        runtime.telegram.send_invoice(
            token,
            args["chat_id"],
            plan.title[:32],
            texts.invoice_description(plan.chat_titles, order.period_s),
            order_payload(order.id, runtime.keyring),
            order.price_stars,
        )
    )


async def call_or_raise(pending: Awaitable[Any]) -> Any:
    try:
        return await pending
    except TelegramError as error:
        raise outcome_of(error) from None


async def answer_callback(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    token = await runtime.token(conn, job.args["bot_id"])
    try:
        await runtime.telegram.answer_callback_query(
            token, job.args["callback_query_id"], text=job.args.get("text")
        )
    except QueryTooOld:
        return  # the button already stopped spinning; nothing left to do
    except TelegramError as error:
        raise outcome_of(error) from None


async def deliver_access(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    """Send the buyer what gets them in: a one-time link per chat, or a join-request link."""
    order_id, user_id = job.args["order_id"], job.args["user_id"]
    order = (await conn.execute(select(orders).where(orders.c.id == order_id))).first()
    if order is None:
        raise GiveUp(f"order {order_id} does not exist")
    token = await runtime.token(conn, order.bot_id)
    lines = []
    for chat in await access.plan_managed_chats(conn, order.plan_id):
        link = await invite_link_for(runtime, conn, token, order, chat, user_id)
        if link is not None:
            lines.append(link_text(runtime, chat, link))
    expiry = await access.subscriber_grants(conn, order.bot_id, user_id)
    header = texts.payment_received(max(until for _, until in expiry)) if expiry else ""
    await enqueue(
        conn, "send_message",
        {"bot_id": order.bot_id, "chat_id": user_id, "text": "\n\n".join([header, *lines])},
        creator_id=order.creator_id, priority=0,
    )  # fmt: skip


async def invite_link_for(
    runtime: Runtime,
    conn: AsyncConnection,
    token: str,
    order: Any,
    chat: access.ManagedChat,
    user_id: int,
) -> str | None:
    """The order's link into the chat: the one made before (a retried job), or a new one."""
    existing = await current_links(conn, order.id, chat.id)
    if existing:
        return existing[-1]
    return await create_link(runtime, conn, token, order, chat, f"order {order.id}")


async def current_links(conn: AsyncConnection, order_id: int, managed_chat_id: int) -> list[str]:
    """The order's links into the chat that no newer link replaced, oldest first."""
    query = (
        select(invite_links.c.invite_link)
        .where(
            invite_links.c.order_id == order_id,
            invite_links.c.managed_chat_id == managed_chat_id,
            invite_links.c.revoked_at.is_(None),
        )
        .order_by(invite_links.c.id)
    )
    return [str(link) for link in (await conn.execute(query)).scalars()]


async def create_link(
    runtime: Runtime,
    conn: AsyncConnection,
    token: str,
    order: Any,
    chat: access.ManagedChat,
    name: str,
) -> str | None:
    """A one-time link (or a join-request link) for the order's buyer; None when the bot
    cannot make links in the chat, which is reported to the creator."""
    expires_at = datetime.now(UTC) + timedelta(seconds=runtime.settings.invite_link_ttl_s)
    try:
        created = await runtime.telegram.create_chat_invite_link(
            token,
            chat.chat_id,
            name=name,
            expire_date=int(expires_at.timestamp()),
            member_limit=None if chat.join_by == "join_request" else 1,
            creates_join_request=chat.join_by == "join_request",
        )
    except (NotEnoughRights, ChatNotFound, TelegramUnauthorized) as error:
        await access.report_problem(
            conn, order.creator_id, order.bot_id, "invite_link.failed",
            f"could not create an invite link for order {order.id}: {type(error).__name__}",
            managed_chat_id=chat.id,
        )  # fmt: skip
        return None
    except TelegramError as error:
        raise outcome_of(error) from None
    link = str(created["invite_link"])
    await conn.execute(
        invite_links.insert().values(
            creator_id=order.creator_id, order_id=order.id, managed_chat_id=chat.id,
            subscriber_id=order.subscriber_id, invite_link=link, name=name,
            expires_at=expires_at,
        )
    )  # fmt: skip
    return link


def link_text(runtime: Runtime, chat: access.ManagedChat, link: str) -> str:
    if chat.join_by == "join_request":
        return texts.join_by_request(chat.title, link)
    return texts.invite(chat.title, link, runtime.settings.invite_link_ttl_s)


async def reissue_link(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    """A fresh link for someone whose access runs but who is not in the chat: their link
    was used by someone else, expired, or got lost. The links it replaces stop working."""
    chat = await access.managed_chat_by_id(conn, job.args["managed_chat_id"])
    user_id = job.args["user_id"]
    if chat is None:
        return
    await access.lock_person(conn, chat.id, user_id)
    if not has_access(await access.access_expiry(conn, chat.id, user_id), datetime.now(UTC)):
        return
    if is_present(await access.member_status(conn, chat.id, user_id)):
        await enqueue(
            conn, "send_message",
            {"bot_id": chat.bot_id, "chat_id": user_id,
             "text": texts.ALREADY_MEMBER.format(title=chat.title)},
            creator_id=chat.creator_id,
        )  # fmt: skip
        return
    order = await billing.last_paid_order(conn, chat.bot_id, user_id, chat.id)
    if order is None:
        return
    token = await runtime.token(conn, chat.bot_id)
    replaced = await current_links(conn, order.id, chat.id)
    link = await create_link(runtime, conn, token, order, chat, f"order {order.id} again")
    if link is None:
        return
    for old in replaced:
        await revoke_link(runtime, conn, token, chat, old)
    await enqueue(
        conn, "send_message",
        {"bot_id": chat.bot_id, "chat_id": user_id, "text": link_text(runtime, chat, link)},
        creator_id=chat.creator_id, priority=0,
    )  # fmt: skip


async def revoke_link(
    runtime: Runtime, conn: AsyncConnection, token: str, chat: access.ManagedChat, link: str
) -> None:
    try:
        await runtime.telegram.revoke_chat_invite_link(token, chat.chat_id, link)
    except TelegramBadRequest:
        pass  # already expired or revoked by an admin: it does not work either way
    except TelegramError as error:
        raise outcome_of(error) from None
    await conn.execute(
        invite_links.update()
        .where(invite_links.c.invite_link == link)
        .values(revoked_at=func.now())
    )


async def expire_access(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    grant = (
        await conn.execute(
            select(access_grants, subscribers.c.user_id)
            .select_from(access_grants.join(subscribers))
            .where(access_grants.c.id == job.args["grant_id"])
        )
    ).first()
    if grant is None or int(grant.expires_at.timestamp()) != job.args["expires_at"]:
        return  # renewed since: a later expiry has its own job
    await enforce_access(runtime, conn, grant.managed_chat_id, grant.user_id, "expired")


async def enforce(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    args = job.args
    await enforce_access(runtime, conn, args["managed_chat_id"], args["user_id"], args["reason"])


async def enforce_access(
    runtime: Runtime, conn: AsyncConnection, managed_chat_id: int, user_id: int, trigger: str
) -> None:
    """Remove the person if, right now and under their lock, they may not be in the chat.

    `trigger` says what queued the check (a join, an expiry, a refund, the sweeper); the
    reason given to the person is worked out from their access, under the same lock."""
    chat = await access.managed_chat_by_id(conn, managed_chat_id)
    if chat is None:
        return
    await access.lock_person(conn, chat.id, user_id)
    now = datetime.now(UTC)
    expiry = await access.access_expiry(conn, chat.id, user_id)
    status = await access.member_status(conn, chat.id, user_id)
    whitelisted = await access.is_whitelisted(conn, chat.id, user_id)
    if not must_remove(status, whitelisted, has_access(expiry, now)):
        return
    token = await runtime.token(conn, chat.bot_id)
    try:
        await runtime.telegram.ban_chat_member(token, chat.chat_id, user_id)
        await runtime.telegram.unban_chat_member(token, chat.chat_id, user_id, only_if_banned=True)
    except (UserIsAdministrator, CantRemoveOwner):
        await access.record_member(conn, chat, user_id, "administrator")
        return
    except (NotEnoughRights, ChatNotFound, TelegramUnauthorized) as error:
        await access.report_problem(
            conn, chat.creator_id, chat.bot_id, "removal.failed",
            f"could not remove user {user_id}: {type(error).__name__}", managed_chat_id=chat.id,
        )  # fmt: skip
        return
    except TelegramError as error:
        raise outcome_of(error) from None
    await access.record_member(conn, chat, user_id, "left")
    subscriber_id = await access.subscriber_id_of(conn, chat.bot_id, user_id)
    reason = await access.removal_cause(conn, chat.id, subscriber_id)
    await access.audit(
        conn, chat.creator_id, "access.revoked", subscriber_id=subscriber_id,
        managed_chat_id=chat.id, user_id=user_id, reason=reason, trigger=trigger,
    )  # fmt: skip
    ACCESS_CHANGES.labels("revoked").inc()
    logger.info("access.revoked managed_chat_id=%s reason=%s", chat.id, reason)
    await tell_removed(conn, chat, user_id, reason)


async def tell_removed(
    conn: AsyncConnection, chat: access.ManagedChat, user_id: int, reason: str
) -> None:
    if reason == "expired":
        plan_id = await renewal_plan(conn, chat.id, user_id)
        markup = keyboard([button("Renew", f"plan:{plan_id}")]) if plan_id else None
        text = texts.ACCESS_ENDED.format(title=chat.title)
    elif reason == "refunded":
        markup, text = None, texts.ACCESS_REFUNDED.format(title=chat.title)
    else:
        markup, text = None, texts.JOIN_WITHOUT_ACCESS.format(title=chat.title)
    args: dict[str, Any] = {"bot_id": chat.bot_id, "chat_id": user_id, "text": text}
    if markup:
        args["reply_markup"] = markup
    await enqueue(conn, "send_message", args, creator_id=chat.creator_id)


async def renewal_plan(conn: AsyncConnection, managed_chat_id: int, user_id: int) -> int | None:
    """The active plan to offer for renewal: the last one bought for this chat, or any."""
    query = (
        select(plans.c.id)
        .select_from(plans.join(plan_chats))
        .outerjoin(orders, (orders.c.plan_id == plans.c.id) & (orders.c.status == "paid"))
        .outerjoin(
            subscribers,
            (subscribers.c.id == orders.c.subscriber_id) & (subscribers.c.user_id == user_id),
        )
        .where(plan_chats.c.managed_chat_id == managed_chat_id, plans.c.active)
        .order_by(subscribers.c.id.is_(None), orders.c.id.desc().nulls_last())
        .limit(1)
    )
    return (await conn.execute(query)).scalar_one_or_none()


async def remind(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    """Before expiry: a note and an invoice, so renewing is one tap."""
    grant = (
        await conn.execute(
            select(access_grants, subscribers.c.user_id, subscribers.c.bot_id)
            .select_from(access_grants.join(subscribers))
            .where(access_grants.c.id == job.args["grant_id"])
        )
    ).first()
    now = datetime.now(UTC)
    if grant is None or int(grant.expires_at.timestamp()) != job.args["expires_at"]:
        return
    if not has_access(grant.expires_at, now):
        return
    plan_id = await renewal_plan(conn, grant.managed_chat_id, grant.user_id)
    chat = await access.managed_chat_by_id(conn, grant.managed_chat_id)
    plan = await billing.plan_of_bot(conn, grant.bot_id, plan_id) if plan_id else None
    if plan is None or chat is None:
        return
    order_id = await billing.create_order(conn, plan, grant.subscriber_id)
    text = texts.reminder(chat.title, grant.expires_at)
    await enqueue(
        conn, "send_invoice",
        {"bot_id": grant.bot_id, "chat_id": grant.user_id, "order_id": order_id, "text": text},
        creator_id=grant.creator_id,
    )  # fmt: skip
    ACCESS_CHANGES.labels("reminded").inc()
    await access.audit(
        conn, grant.creator_id, "access.reminded", subscriber_id=grant.subscriber_id,
        managed_chat_id=grant.managed_chat_id, offset_s=job.args["offset_s"],
    )  # fmt: skip


async def answer_join_request(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    chat = await access.managed_chat_by_id(conn, job.args["managed_chat_id"])
    if chat is None:
        return
    user_id = job.args["user_id"]
    await access.lock_person(conn, chat.id, user_id)
    allowed = has_access(await access.access_expiry(conn, chat.id, user_id), datetime.now(UTC))
    allowed = allowed or await access.is_whitelisted(conn, chat.id, user_id)
    token = await runtime.token(conn, chat.bot_id)
    telegram = runtime.telegram
    answer = telegram.approve_chat_join_request if allowed else telegram.decline_chat_join_request
    try:
        await answer(token, chat.chat_id, user_id)
    except TelegramError as error:
        if "HIDE_REQUESTER_MISSING" in error.description:
            return  # already answered, by us or by an admin
        raise outcome_of(error) from None
    text = texts.REQUEST_APPROVED if allowed else texts.REQUEST_DECLINED
    await enqueue(
        conn, "send_message",
        {"bot_id": chat.bot_id, "chat_id": job.args["user_chat_id"],
         "text": text.format(title=chat.title)},
        creator_id=chat.creator_id,
    )  # fmt: skip


async def refund(runtime: Runtime, conn: AsyncConnection, job: Job) -> None:
    args = job.args
    token = await runtime.token(conn, args["bot_id"])
    try:
        await runtime.telegram.refund_star_payment(token, args["user_id"], args["charge_id"])
    except TelegramError as error:
        if "CHARGE_ALREADY_REFUNDED" not in error.description:
            raise outcome_of(error) from None
    await billing.mark_refunded(conn, args["payment_id"], datetime.now(UTC))
    await enqueue(
        conn, "send_message",
        {"bot_id": args["bot_id"], "chat_id": args["user_id"], "text": texts.PAYMENT_REFUNDED},
        creator_id=job.creator_id,
    )  # fmt: skip


TASKS: dict[str, Task] = {
    "send_message": send_message,
    "send_invoice": send_invoice,
    "answer_callback": answer_callback,
    "deliver_access": deliver_access,
    "expire_access": expire_access,
    "enforce": enforce,
    "remind": remind,
    "answer_join_request": answer_join_request,
    "refund": refund,
    "reissue_link": reissue_link,
}


def job_handlers(runtime: Runtime) -> dict[str, JobHandler]:
    def bind(task: Task) -> JobHandler:
        async def handler(conn: AsyncConnection, job: Job) -> None:
            await task(runtime, conn, job)

        return handler

    return {kind: bind(task) for kind, task in TASKS.items()}
