"""Reconciliation: Telegram's list of a bot's Star transactions against the ledger.

A successful_payment update can be lost after Telegram got its 200, for instance with the
last commits of a primary that failed over asynchronously. Telegram still lists the
transaction, and its id is the payment's telegram_payment_charge_id: any incoming payment
the ledger lacks is settled here, exactly as the update would have settled it.
"""

import logging
from typing import Any, Final

from sqlalchemy import select

from botter.billing.service import STARS, STARS_PROVIDER
from botter.billing.settle import settle_payment
from botter.db.schema import bots, payments
from botter.errors import BotterError
from botter.runtime import Runtime
from botter.telegram.errors import TelegramError

logger = logging.getLogger("botter.billing")

PAGE_SIZE: Final = 100  # Telegram's maximum
# Telegram lists transactions oldest first; a run reads at most this many per bot.
MAX_PAGES: Final = 50


def incoming_payments(transactions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transactions that are a user paying an invoice (not refunds, not withdrawals)."""
    found = []
    for transaction in transactions:
        source = transaction.get("source")
        if not isinstance(source, dict) or source.get("type") != "user":
            continue
        if source.get("transaction_type", "invoice_payment") != "invoice_payment":
            continue
        if isinstance(source.get("user"), dict) and isinstance(transaction.get("id"), str):
            found.append(transaction)
    return found


async def star_transactions(runtime: Runtime, token: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = []
    for page in range(MAX_PAGES):
        answer = await runtime.telegram.get_star_transactions(
            token, offset=page * PAGE_SIZE, limit=PAGE_SIZE
        )
        batch = answer.get("transactions", [])
        listed.extend(batch)
        if len(batch) < PAGE_SIZE:
            break
    return listed


async def reconcile_bot(runtime: Runtime, bot_id: int, creator_id: int) -> int:
    """Settle every payment Telegram lists for the bot that the ledger lacks; how many."""
    async with runtime.engine.connect() as conn:
        token = await runtime.token(conn, bot_id)
    paid = incoming_payments(await star_transactions(runtime, token))
    if not paid:
        return 0
    async with runtime.engine.connect() as conn:
        known = set(
            (
                await conn.execute(
                    select(payments.c.telegram_payment_charge_id).where(
                        payments.c.bot_id == bot_id,
                        payments.c.provider == STARS_PROVIDER,
                        payments.c.telegram_payment_charge_id.in_([t["id"] for t in paid]),
                    )
                )
            ).scalars()
        )
    repaired = 0
    for transaction in paid:
        if transaction["id"] in known:
            continue
        source = transaction["source"]
        successful_payment = {
            "currency": STARS,
            "total_amount": transaction["amount"],
            "invoice_payload": source.get("invoice_payload", ""),
            "telegram_payment_charge_id": transaction["id"],
        }
        async with runtime.engine.begin() as conn:
            settled = await settle_payment(
                conn, runtime.keyring, creator_id=creator_id, bot_id=bot_id,
                user=source["user"], successful_payment=successful_payment,
            )  # fmt: skip
        if settled is not None:
            repaired += 1
            logger.warning("payment.reconciled bot_id=%s payment_id=%s", bot_id, settled.id)
    return repaired


async def reconcile(runtime: Runtime) -> int:
    """Reconcile every active bot; a bot Telegram or the keyring fails for is skipped."""
    async with runtime.engine.connect() as conn:
        watched = (
            await conn.execute(
                select(bots.c.id, bots.c.creator_id).where(bots.c.status == "active")
            )
        ).all()
    repaired = 0
    for row in watched:
        try:
            repaired += await reconcile_bot(runtime, row.id, row.creator_id)
        except (TelegramError, BotterError) as error:
            logger.info("payment.reconcile_skipped bot_id=%s error=%s", row.id,
                        type(error).__name__)  # fmt: skip
    return repaired
