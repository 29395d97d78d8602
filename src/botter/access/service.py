"""Grants, membership records and the audit trail: the database side of access."""

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from botter.access.decisions import expiry_after_refund, new_expiry, reminder_times
from botter.billing.service import Order, plan_of_bot
from botter.db.schema import (
    access_events,
    access_grants,
    bot_problems,
    chat_members,
    managed_chats,
    plan_chats,
    subscribers,
    whitelist,
)
from botter.jobs.queue import enqueue
from botter.metrics import ACCESS_CHANGES

# The high half of an advisory lock key names what is locked; the low half which one.
_PERSON_LOCK_SPACE = 7212002


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ManagedChat:
    id: int
    creator_id: int
    bot_id: int
    chat_id: int
    title: str
    join_by: str


@dataclass(frozen=True)
class Grant:
    id: int
    managed_chat: ManagedChat
    expires_at: datetime


def _managed_chat(row: Any) -> ManagedChat:
    return ManagedChat(row.id, row.creator_id, row.bot_id, row.chat_id, row.title, row.join_by)


async def upsert_subscriber(
    conn: AsyncConnection, creator_id: int, bot_id: int, user: dict[str, Any]
) -> int:
    statement = insert(subscribers).values(
        creator_id=creator_id,
        bot_id=bot_id,
        user_id=user["id"],
        first_name=user.get("first_name", ""),
        username=user.get("username"),
        language_code=user.get("language_code"),
    )
    upsert = statement.on_conflict_do_update(
        index_elements=["bot_id", "user_id"],
        set_={
            "first_name": statement.excluded.first_name,
            "username": statement.excluded.username,
            "language_code": statement.excluded.language_code,
        },
    ).returning(subscribers.c.id)
    return int((await conn.execute(upsert)).scalar_one())


async def subscriber_id_of(conn: AsyncConnection, bot_id: int, user_id: int) -> int | None:
    query = select(subscribers.c.id).where(
        subscribers.c.bot_id == bot_id, subscribers.c.user_id == user_id
    )
    return (await conn.execute(query)).scalar_one_or_none()


async def set_bot_blocked(conn: AsyncConnection, bot_id: int, user_id: int, blocked: bool) -> None:
    await conn.execute(
        subscribers.update()
        .where(subscribers.c.bot_id == bot_id, subscribers.c.user_id == user_id)
        .values(bot_blocked=blocked)
    )


async def managed_chat(conn: AsyncConnection, bot_id: int, chat_id: int) -> ManagedChat | None:
    query = select(managed_chats).where(
        managed_chats.c.bot_id == bot_id, managed_chats.c.chat_id == chat_id
    )
    row = (await conn.execute(query)).first()
    return _managed_chat(row) if row else None


async def managed_chat_by_id(conn: AsyncConnection, managed_chat_id: int) -> ManagedChat | None:
    row = (
        await conn.execute(select(managed_chats).where(managed_chats.c.id == managed_chat_id))
    ).first()
    return _managed_chat(row) if row else None


async def lock_person(conn: AsyncConnection, managed_chat_id: int, user_id: int) -> None:
    """Serialise every change of one person's access to one chat (payment vs removal)."""
    key = (_PERSON_LOCK_SPACE << 32) | zlib.crc32(f"{managed_chat_id}:{user_id}".encode())
    await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


async def access_expiry(
    conn: AsyncConnection, managed_chat_id: int, user_id: int
) -> datetime | None:
    query = (
        select(access_grants.c.expires_at)
        .select_from(access_grants.join(subscribers))
        .where(
            access_grants.c.managed_chat_id == managed_chat_id,
            subscribers.c.user_id == user_id,
        )
    )
    return (await conn.execute(query)).scalar_one_or_none()


async def is_whitelisted(conn: AsyncConnection, managed_chat_id: int, user_id: int) -> bool:
    query = select(whitelist.c.user_id).where(
        whitelist.c.managed_chat_id == managed_chat_id, whitelist.c.user_id == user_id
    )
    return (await conn.execute(query)).first() is not None


async def record_member(
    conn: AsyncConnection,
    chat: ManagedChat,
    user_id: int,
    status: str,
    update_id: int | None = None,
) -> bool:
    """Record where the person stands; False when `update_id` is older than what is known.

    Telegram delivers in parallel and retries, so a join can arrive after the leave that
    followed it. Comparing update ids keeps the newer fact. Our own changes (no update id)
    always apply and keep the last Telegram update id for later comparisons.
    """
    statement = insert(chat_members).values(
        creator_id=chat.creator_id,
        managed_chat_id=chat.id,
        user_id=user_id,
        status=status,
        last_update_id=update_id,
    )
    known = chat_members.c.last_update_id
    newer = statement.excluded.last_update_id
    upsert = statement.on_conflict_do_update(
        index_elements=["managed_chat_id", "user_id"],
        set_={
            "status": statement.excluded.status,
            "updated_at": func.now(),
            "last_update_id": func.coalesce(newer, known),
        },
        where=known.is_(None) | newer.is_(None) | (newer > known),
    )
    result = await conn.execute(upsert.returning(chat_members.c.user_id))
    return result.first() is not None


async def member_status(conn: AsyncConnection, managed_chat_id: int, user_id: int) -> str:
    query = select(chat_members.c.status).where(
        chat_members.c.managed_chat_id == managed_chat_id, chat_members.c.user_id == user_id
    )
    return (await conn.execute(query)).scalar_one_or_none() or "left"


async def audit(
    conn: AsyncConnection,
    creator_id: int,
    kind: str,
    *,
    subscriber_id: int | None = None,
    managed_chat_id: int | None = None,
    **detail: Any,
) -> None:
    await conn.execute(
        access_events.insert().values(
            creator_id=creator_id,
            kind=kind,
            subscriber_id=subscriber_id,
            managed_chat_id=managed_chat_id,
            detail=detail,
        )
    )


async def report_problem(
    conn: AsyncConnection,
    creator_id: int,
    bot_id: int,
    kind: str,
    detail: str,
    managed_chat_id: int | None = None,
) -> None:
    """Something the creator must fix (rights, a removed bot); shown to them, not retried."""
    await conn.execute(
        bot_problems.insert().values(
            creator_id=creator_id,
            bot_id=bot_id,
            managed_chat_id=managed_chat_id,
            kind=kind,
            detail=detail,
        )
    )


async def plan_managed_chats(conn: AsyncConnection, plan_id: int) -> list[ManagedChat]:
    query = (
        select(managed_chats)
        .select_from(managed_chats.join(plan_chats))
        .where(plan_chats.c.plan_id == plan_id)
        .order_by(managed_chats.c.id)
    )
    return [_managed_chat(row) for row in await conn.execute(query)]


async def grant_for_order(
    conn: AsyncConnection, order: Order, user_id: int, payment_id: int
) -> list[Grant]:
    """Extend access to every chat of the order's plan, and schedule what follows from it.

    Runs in the transaction that records the payment, so a payment never exists
    without its grant, its invite delivery and its expiry.
    """
    now = utcnow()
    plan = await plan_of_bot(conn, order.bot_id, order.plan_id)
    offsets_s = plan.reminder_offsets_s if plan else []
    granted = []
    for chat in await plan_managed_chats(conn, order.plan_id):
        await lock_person(conn, chat.id, user_id)
        current = await _grant_row(conn, order.subscriber_id, chat.id)
        expires_at = new_expiry(now, current.expires_at if current else None, order.period_s)
        grant_id = await _save_grant(conn, order, chat, expires_at)
        granted.append(Grant(grant_id, chat, expires_at))
        ACCESS_CHANGES.labels("granted").inc()
        await audit(
            conn, order.creator_id, "access.granted", subscriber_id=order.subscriber_id,
            managed_chat_id=chat.id, order_id=order.id, payment_id=payment_id,
            expires_at=expires_at.isoformat(),
        )  # fmt: skip
        await schedule_expiry(conn, order.creator_id, grant_id, expires_at, offsets_s, now)
    await enqueue(
        conn,
        "deliver_access",
        {"order_id": order.id, "user_id": user_id},
        creator_id=order.creator_id,
        dedupe_key=f"deliver:{payment_id}",
        priority=0,
    )
    return granted


async def _grant_row(conn: AsyncConnection, subscriber_id: int, managed_chat_id: int) -> Any:
    query = (
        select(access_grants)
        .where(
            and_(
                access_grants.c.subscriber_id == subscriber_id,
                access_grants.c.managed_chat_id == managed_chat_id,
            )
        )
        .with_for_update()
    )
    return (await conn.execute(query)).first()


async def _save_grant(
    conn: AsyncConnection, order: Order, chat: ManagedChat, expires_at: datetime
) -> int:
    statement = insert(access_grants).values(
        creator_id=order.creator_id,
        subscriber_id=order.subscriber_id,
        managed_chat_id=chat.id,
        expires_at=expires_at,
    )
    upsert = statement.on_conflict_do_update(
        index_elements=["subscriber_id", "managed_chat_id"],
        set_={"expires_at": statement.excluded.expires_at, "updated_at": func.now()},
    ).returning(access_grants.c.id)
    return int((await conn.execute(upsert)).scalar_one())


async def schedule_expiry(
    conn: AsyncConnection,
    creator_id: int,
    grant_id: int,
    expires_at: datetime,
    offsets_s: list[int],
    now: datetime,
) -> None:
    """Queue the removal at expiry and each reminder before it, once per expiry moment."""
    stamp = int(expires_at.timestamp())
    args = {"grant_id": grant_id, "expires_at": stamp}
    await enqueue(
        conn, "expire_access", args, creator_id=creator_id,
        dedupe_key=f"expire:{grant_id}:{stamp}", run_at=expires_at,
    )  # fmt: skip
    for offset_s, at in reminder_times(expires_at, offsets_s, now):
        await enqueue(
            conn, "remind", {**args, "offset_s": offset_s}, creator_id=creator_id,
            dedupe_key=f"remind:{grant_id}:{stamp}:{offset_s}", run_at=at,
        )  # fmt: skip


async def subscriber_grants(
    conn: AsyncConnection, bot_id: int, user_id: int
) -> list[tuple[str, datetime]]:
    query = (
        select(managed_chats.c.title, access_grants.c.expires_at)
        .select_from(access_grants.join(subscribers).join(managed_chats))
        .where(subscribers.c.bot_id == bot_id, subscribers.c.user_id == user_id)
        .order_by(access_grants.c.expires_at)
    )
    return [(row.title, row.expires_at) for row in await conn.execute(query)]


async def revoke_for_refund(
    conn: AsyncConnection, order: Order, user_id: int, payment_id: int
) -> list[ManagedChat]:
    """Take back the period a refunded payment bought; the chats where no access is left."""
    now = utcnow()
    plan = await plan_of_bot(conn, order.bot_id, order.plan_id)
    offsets_s = plan.reminder_offsets_s if plan else []
    ended = []
    for chat in await plan_managed_chats(conn, order.plan_id):
        await lock_person(conn, chat.id, user_id)
        current = await _grant_row(conn, order.subscriber_id, chat.id)
        if current is None:
            continue
        expires_at = expiry_after_refund(now, current.expires_at, order.period_s)
        await _save_grant(conn, order, chat, expires_at)
        await audit(
            conn, order.creator_id, "access.refunded", subscriber_id=order.subscriber_id,
            managed_chat_id=chat.id, order_id=order.id, payment_id=payment_id,
            expires_at=expires_at.isoformat(),
        )  # fmt: skip
        if expires_at <= now:
            ended.append(chat)
        else:
            await schedule_expiry(conn, order.creator_id, current.id, expires_at, offsets_s, now)
    return ended


async def chats_with_access(
    conn: AsyncConnection, bot_id: int, user_id: int, now: datetime
) -> list[int]:
    """Managed chat ids of the bot where the person's access is running."""
    query = (
        select(access_grants.c.managed_chat_id)
        .select_from(access_grants.join(subscribers))
        .where(
            subscribers.c.bot_id == bot_id,
            subscribers.c.user_id == user_id,
            access_grants.c.expires_at > now,
        )
        .order_by(access_grants.c.managed_chat_id)
    )
    return [int(chat_id) for chat_id in (await conn.execute(query)).scalars()]


async def removal_cause(
    conn: AsyncConnection, managed_chat_id: int, subscriber_id: int | None
) -> str:
    """Why someone without access is being removed, from what happened to their access:
    "refunded", "expired", or "joined" (never had any). The job that removes them may
    have been queued for another reason (the sweeper, a join) a moment before."""
    if subscriber_id is None:
        return "joined"
    query = (
        select(access_events.c.kind)
        .where(
            access_events.c.managed_chat_id == managed_chat_id,
            access_events.c.subscriber_id == subscriber_id,
            access_events.c.kind.in_(("access.granted", "access.refunded")),
        )
        .order_by(access_events.c.id.desc())
        .limit(1)
    )
    last = (await conn.execute(query)).scalar_one_or_none()
    return {"access.refunded": "refunded", "access.granted": "expired"}.get(last or "", "joined")
