"""Plans, orders and the payments ledger: the database side of selling access."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from botter.db.schema import managed_chats, orders, payments, plan_chats, plans, subscribers
from botter.telegram import texts

STARS = "XTR"
STARS_PROVIDER = "telegram_stars"


@dataclass(frozen=True)
class Plan:
    id: int
    creator_id: int
    bot_id: int
    title: str
    price_stars: int
    period_s: int
    reminder_offsets_s: list[int]
    active: bool
    chat_titles: list[str]


@dataclass(frozen=True)
class Order:
    id: int
    creator_id: int
    bot_id: int
    subscriber_id: int
    plan_id: int
    price_stars: int
    period_s: int
    currency: str
    status: str


def _plan_query() -> Any:
    titles = (
        select(func.coalesce(func.array_agg(managed_chats.c.title), text("'{}'::text[]")))
        .select_from(plan_chats.join(managed_chats))
        .where(plan_chats.c.plan_id == plans.c.id)
        .scalar_subquery()
    )
    return select(*plans.c, titles.label("chat_titles"))


def _plan(row: Any) -> Plan:
    return Plan(
        id=row.id,
        creator_id=row.creator_id,
        bot_id=row.bot_id,
        title=row.title,
        price_stars=row.price_stars,
        period_s=row.period_s,
        reminder_offsets_s=list(row.reminder_offsets_s),
        active=row.active,
        chat_titles=list(row.chat_titles),
    )


async def active_plans(conn: AsyncConnection, bot_id: int) -> list[Plan]:
    query = _plan_query().where(plans.c.bot_id == bot_id, plans.c.active).order_by(plans.c.id)
    return [_plan(row) for row in await conn.execute(query)]


async def plan_of_bot(conn: AsyncConnection, bot_id: int, plan_id: int) -> Plan | None:
    query = _plan_query().where(plans.c.bot_id == bot_id, plans.c.id == plan_id)
    row = (await conn.execute(query)).first()
    return _plan(row) if row else None


async def create_order(conn: AsyncConnection, plan: Plan, subscriber_id: int) -> int:
    statement = (
        insert(orders)
        .values(
            creator_id=plan.creator_id,
            bot_id=plan.bot_id,
            subscriber_id=subscriber_id,
            plan_id=plan.id,
            price_stars=plan.price_stars,
            period_s=plan.period_s,
            currency=STARS,
        )
        .returning(orders.c.id)
    )
    return int((await conn.execute(statement)).scalar_one())


async def order_of_bot(conn: AsyncConnection, bot_id: int, order_id: int) -> Order | None:
    row = (
        await conn.execute(
            select(orders).where(orders.c.id == order_id, orders.c.bot_id == bot_id)
        )
    ).first()
    if row is None:
        return None
    return Order(
        row.id, row.creator_id, row.bot_id, row.subscriber_id, row.plan_id, row.price_stars,
        row.period_s, row.currency, row.status,
    )  # fmt: skip


async def checkout_problem(
    conn: AsyncConnection, bot_id: int, order_id: int | None, amount: int, currency: str
) -> str | None:
    """Why a pre_checkout_query must be refused, in words for the buyer; None to accept."""
    order = await order_of_bot(conn, bot_id, order_id) if order_id is not None else None
    if order is None:
        return texts.ORDER_UNKNOWN
    if order.status == "paid":
        return texts.ORDER_PAID
    plan = await plan_of_bot(conn, bot_id, order.plan_id)
    if plan is None or not plan.active or not plan.chat_titles:
        return texts.PLAN_GONE
    if currency != order.currency or amount != order.price_stars:
        return texts.PRICE_CHANGED
    if plan.price_stars != order.price_stars or plan.period_s != order.period_s:
        return texts.PRICE_CHANGED
    return None


@dataclass(frozen=True)
class Payment:
    id: int
    matches_order: bool


async def record_payment(
    conn: AsyncConnection,
    *,
    creator_id: int,
    bot_id: int,
    subscriber_id: int,
    order: Order | None,
    successful_payment: dict[str, Any],
) -> Payment | None:
    """Add the payment to the ledger once; None when this charge was already recorded."""
    amount = int(successful_payment["total_amount"])
    currency = str(successful_payment["currency"])
    matches = (
        order is not None
        and order.subscriber_id == subscriber_id
        and amount == order.price_stars
        and currency == order.currency
    )
    statement = (
        insert(payments)
        .values(
            creator_id=creator_id,
            bot_id=bot_id,
            order_id=order.id if order else None,
            subscriber_id=subscriber_id,
            provider=STARS_PROVIDER,
            telegram_payment_charge_id=successful_payment["telegram_payment_charge_id"],
            provider_payment_charge_id=successful_payment.get("provider_payment_charge_id"),
            amount_stars=amount,
            currency=currency,
            status="completed" if matches else "mismatch",
            is_recurring=bool(successful_payment.get("is_recurring", False)),
        )
        .on_conflict_do_nothing(index_elements=["provider", "telegram_payment_charge_id"])
        .returning(payments.c.id)
    )
    payment_id = (await conn.execute(statement)).scalar_one_or_none()
    if payment_id is None:
        return None
    if matches and order is not None:
        await conn.execute(
            orders.update()
            .where(orders.c.id == order.id)
            .values(status="paid", paid_at=func.now())
        )
    return Payment(payment_id, matches)


async def mark_refunded(conn: AsyncConnection, payment_id: int, at: datetime) -> None:
    await conn.execute(
        payments.update()
        .where(payments.c.id == payment_id)
        .values(status="refunded", refunded_at=at)
    )


@dataclass(frozen=True)
class Refund:
    payment_id: int
    order_id: int | None
    granted: bool  # the payment had given access, which the refund now takes back


async def record_refund(conn: AsyncConnection, bot_id: int, charge_id: str) -> Refund | None:
    """Mark the charge refunded once; None when it is unknown or was already refunded."""
    row = (
        await conn.execute(
            select(payments.c.id, payments.c.order_id, payments.c.status)
            .where(
                payments.c.bot_id == bot_id,
                payments.c.provider == STARS_PROVIDER,
                payments.c.telegram_payment_charge_id == charge_id,
            )
            .with_for_update()
        )
    ).first()
    if row is None or row.status == "refunded":
        return None
    await conn.execute(
        payments.update()
        .where(payments.c.id == row.id)
        .values(status="refunded", refunded_at=func.now())
    )
    return Refund(row.id, row.order_id, granted=row.status == "completed")


async def last_paid_order(
    conn: AsyncConnection, bot_id: int, user_id: int, managed_chat_id: int
) -> Order | None:
    """The person's most recent paid order whose plan covers the chat."""
    query = (
        select(orders.c.id)
        .select_from(
            orders.join(subscribers).join(plan_chats, plan_chats.c.plan_id == orders.c.plan_id)
        )
        .where(
            orders.c.bot_id == bot_id,
            orders.c.status == "paid",
            subscribers.c.user_id == user_id,
            plan_chats.c.managed_chat_id == managed_chat_id,
        )
        .order_by(orders.c.paid_at.desc(), orders.c.id.desc())
        .limit(1)
    )
    order_id = (await conn.execute(query)).scalar_one_or_none()
    return await order_of_bot(conn, bot_id, order_id) if order_id is not None else None
