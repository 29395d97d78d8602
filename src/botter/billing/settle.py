"""Settling a Stars payment: the one place a payment becomes a ledger row and what it bought.

The webhook's successful_payment handler and the reconciliation against Telegram's own
list of Star transactions both come here, so a payment is settled the same way whichever
sees it first, and exactly once: the ledger's unique charge id decides.
"""

import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from botter.access import service as access
from botter.billing import service as billing
from botter.billing.payload import order_id_of
from botter.crypto import Keyring
from botter.jobs.queue import enqueue
from botter.metrics import PAYMENTS, REVENUE_STARS

logger = logging.getLogger("botter.billing")


async def settle_payment(
    conn: AsyncConnection,
    keyring: Keyring,
    *,
    creator_id: int,
    bot_id: int,
    user: dict[str, Any],
    successful_payment: dict[str, Any],
) -> billing.Payment | None:
    """Record the payment once and grant its order; refund it when it matches no order.
    None when this charge was settled before."""
    subscriber_id = await access.upsert_subscriber(conn, creator_id, bot_id, user)
    order_id = order_id_of(str(successful_payment.get("invoice_payload", "")), keyring)
    order = await billing.order_of_bot(conn, bot_id, order_id) if order_id else None
    recorded = await billing.record_payment(
        conn,
        creator_id=creator_id,
        bot_id=bot_id,
        subscriber_id=subscriber_id,
        order=order,
        successful_payment=successful_payment,
    )
    if recorded is None:
        return None
    PAYMENTS.labels("completed" if recorded.matches_order else "mismatch").inc()
    logger.info("payment.recorded bot_id=%s payment_id=%s order_id=%s", bot_id,
                recorded.id, order_id)  # fmt: skip
    if not recorded.matches_order or order is None:
        # Money that matches no order goes back: granting it could give away the wrong plan.
        await access.report_problem(
            conn, creator_id, bot_id, "payment.mismatch",
            f"payment {recorded.id} matched no order and is being refunded",
        )  # fmt: skip
        charge_id = successful_payment["telegram_payment_charge_id"]
        await enqueue(
            conn, "refund",
            {"bot_id": bot_id, "user_id": user["id"], "charge_id": charge_id,
             "payment_id": recorded.id},
            creator_id=creator_id, priority=0,
        )  # fmt: skip
        return recorded
    REVENUE_STARS.inc(int(successful_payment["total_amount"]))
    await access.grant_for_order(conn, order, int(user["id"]), recorded.id)
    return recorded
