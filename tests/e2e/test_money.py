"""The money path: one payment, one grant, whatever Telegram redelivers or a buyer tries."""

import concurrent.futures
import time
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from botter.billing.payload import order_payload
from botter.billing.reconcile import reconcile_bot
from botter.crypto import Keyring
from botter.telegram import texts
from tests.e2e.conftest import SECRET_KEY, Shop, Subscriber, eventually

KEYRING = Keyring((SECRET_KEY,))


def webhook_post(shop: Shop, update: dict[str, Any], web_url: str | None = None) -> httpx.Response:
    """Deliver an update the way Telegram does: to our webhook, with the bot's secret."""
    ciphertext = shop.stack.scalar(
        "SELECT webhook_secret_ciphertext FROM bots WHERE id = :bot", bot=shop.bot_id
    )
    return httpx.post(
        f"{web_url or shop.stack.web_url}/webhook/telegram/{shop.bot_id}",
        content=orjson.dumps(update),
        headers={
            "X-Telegram-Bot-Api-Secret-Token": KEYRING.decrypt(ciphertext),
            "Content-Type": "application/json",
        },
    )


def grant_expiry(shop: Shop, user: Subscriber) -> Any:
    return shop.stack.scalar(
        "SELECT g.expires_at FROM access_grants g JOIN subscribers s ON s.id = g.subscriber_id"
        " WHERE s.bot_id = :bot AND s.user_id = :user",
        bot=shop.bot_id,
        user=user.user_id,
    )


def queued_jobs(shop: Shop, kind: str) -> int:
    return int(
        shop.stack.scalar(
            "SELECT count(*) FROM jobs WHERE kind = :kind AND status = 'queued'"
            " AND creator_id = (SELECT creator_id FROM bots WHERE id = :bot)",
            kind=kind,
            bot=shop.bot_id,
        )
    )


def wait_processed(shop: Shop, update_id: int) -> None:
    eventually(
        lambda: shop.stack.scalar(
            "SELECT status = 'done' FROM update_inbox WHERE bot_id = :bot AND update_id = :id",
            bot=shop.bot_id,
            id=update_id,
        ),
        what=f"update {update_id} processed",
    )


def payment_statuses(shop: Shop) -> list[str]:
    rows = shop.stack.rows(
        "SELECT status FROM payments WHERE bot_id = :bot ORDER BY id", bot=shop.bot_id
    )
    return [row.status for row in rows]


def test_p3_the_same_update_redelivered_and_concurrent_acts_once(shop: Shop) -> None:
    shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    start = sam.send("/start")
    sam.next_message(0)
    shop.tg.control(
        f"/bots/{shop.bot_id}/redeliver", {"update_id": start["update_id"], "new_update_id": False}
    )
    stored_update = shop.stack.scalar(
        "SELECT body FROM update_inbox WHERE bot_id = :bot AND update_id = :id",
        bot=shop.bot_id,
        id=start["update_id"],
    )
    update = orjson.loads(stored_update)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: webhook_post(shop, update).status_code, range(16)))
    assert answers == [200] * 16

    time.sleep(1.5)  # long enough for a second menu to arrive, were it ever sent
    assert len(sam.messages()) == 1
    inbox = shop.stack.scalar(
        "SELECT count(*) FROM update_inbox WHERE bot_id = :bot AND lane = :lane",
        bot=shop.bot_id,
        lane=f"chat:{sam.user_id}",
    )
    assert inbox == 1


def test_p3_the_same_payment_under_a_new_update_id_grants_once(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    paid = sam.buy(plan_id)
    expiry = grant_expiry(shop, sam)

    copy = shop.tg.control(
        f"/bots/{shop.bot_id}/redeliver", {"update_id": paid["update_id"], "new_update_id": True}
    )
    assert copy["update_id"] != paid["update_id"]
    wait_processed(shop, copy["update_id"])
    assert payment_statuses(shop) == ["completed"]
    assert grant_expiry(shop, sam) == expiry
    assert len([call for call in shop.calls("createChatInviteLink") if call["ok"]]) == 1
    assert len(sam.invite_links()) == 1


def open_order(shop: Shop, sam: Subscriber, plan_id: int) -> tuple[dict[str, Any], int]:
    invoice = sam.choose_plan(plan_id)
    order_id = shop.stack.scalar(
        "SELECT max(id) FROM orders WHERE bot_id = :bot AND plan_id = :plan",
        bot=shop.bot_id,
        plan=plan_id,
    )
    return invoice, int(order_id)


def forged_payment(
    shop: Shop, sam: Subscriber, payload: str, amount: int, currency: str = "XTR"
) -> dict[str, Any]:
    user = {"id": sam.user_id, "is_bot": False, "first_name": "Sam"}
    return {
        "update_id": 900_000_000 + int(time.time_ns() % 99_999_999),
        "message": {
            "message_id": 999,
            "date": int(time.time()),
            "chat": {"id": sam.user_id, "type": "private", "first_name": "Sam"},
            "from": user,
            "successful_payment": {
                "currency": currency,
                "total_amount": amount,
                "invoice_payload": payload,
                "telegram_payment_charge_id": f"forged-{time.time_ns()}",
                "provider_payment_charge_id": "",
            },
        },
    }


def test_a_payment_that_does_not_match_its_order_grants_nothing(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    _, order_id = open_order(shop, sam, plan_id)
    payload = order_payload(order_id, KEYRING)
    updates = [
        forged_payment(shop, sam, payload, amount=1),
        forged_payment(shop, sam, payload, amount=5, currency="USD"),
        forged_payment(shop, sam, "o1.not-a-real-signature", amount=5),
    ]
    for update in updates:
        assert webhook_post(shop, update).status_code == 200

    eventually(lambda: len(payment_statuses(shop)) == 3, what="three ledger rows")
    assert payment_statuses(shop) == ["mismatch"] * 3
    assert grant_expiry(shop, sam) is None
    order_status = shop.stack.scalar("SELECT status FROM orders WHERE id = :id", id=order_id)
    assert order_status == "open"
    eventually(lambda: len(shop.calls("refundStarPayment")) == 3, what="refunds attempted")
    problems = shop.stack.scalar(
        "SELECT count(*) FROM bot_problems WHERE bot_id = :bot AND kind = 'payment.mismatch'",
        bot=shop.bot_id,
    )
    assert problems == 3


def test_a_plan_deactivated_after_the_invoice_is_declined_at_checkout(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    invoice, _ = open_order(shop, sam, plan_id)
    shop.stack.run(lambda runtime: deactivate(runtime, plan_id))

    answer = sam.pay(invoice)
    assert answer == {"status": "declined", "error_message": texts.PLAN_GONE}
    assert payment_statuses(shop) == []


def test_a_plan_repriced_after_the_invoice_is_declined_at_checkout(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    invoice, _ = open_order(shop, sam, plan_id)
    shop.stack.run(lambda runtime: reprice(runtime, plan_id, 7))

    answer = sam.pay(invoice)
    assert answer == {"status": "declined", "error_message": texts.PRICE_CHANGED}
    assert payment_statuses(shop) == []
    stars = shop.tg.look(f"/users/{sam.user_id}")["stars"]
    assert stars == 10_000


async def deactivate(runtime: Any, plan_id: int) -> None:
    async with runtime.engine.begin() as conn:
        await conn.exec_driver_sql("UPDATE plans SET active = false WHERE id = %s", (plan_id,))


async def reprice(runtime: Any, plan_id: int, price_stars: int) -> None:
    async with runtime.engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE plans SET price_stars = %s WHERE id = %s", (price_stars, plan_id)
        )


def test_p6_a_renewal_one_second_before_removal_wins(shop: Shop) -> None:
    plan_id = shop.add_plan("Short", 2, period_s=6)
    sam = shop.subscriber()
    sam.join(sam.buy(plan_id)["invite_link"])
    first_expiry = grant_expiry(shop, sam)
    renewal = sam.choose_plan(plan_id)

    while time.time() < first_expiry.timestamp() - 1:
        time.sleep(0.05)
    assert sam.pay(renewal)["status"] == "paid"

    time.sleep(max(0.0, first_expiry.timestamp() + 2 - time.time()))
    assert shop.members()[sam.user_id] == "member"
    assert shop.calls("banChatMember") == []
    assert (grant_expiry(shop, sam) - first_expiry).total_seconds() == 6


def test_a_refund_takes_the_access_back_once(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    paid = sam.buy(plan_id)
    assert sam.join(paid["invite_link"]) == {"status": "member"}
    eventually(lambda: not queued_jobs(shop, "enforce"), what="the join checked")

    # The creator refunds through the Bot API, outside botter; Telegram tells the bot.
    shop.tg.ok(
        shop.token,
        "refundStarPayment",
        user_id=sam.user_id,
        telegram_payment_charge_id=paid["telegram_payment_charge_id"],
    )
    eventually(lambda: payment_statuses(shop) == ["refunded"], what="the ledger to say refunded")
    eventually(lambda: shop.members()[sam.user_id] == "left", what="Sam removed")
    told = sam.wait_for_text("was refunded")
    assert told["text"] == texts.ACCESS_REFUNDED.format(title="Premium")
    assert grant_expiry(shop, sam).timestamp() <= time.time()
    refunded_update = shop.stack.scalar(
        "SELECT update_id FROM update_inbox WHERE bot_id = :bot"
        " AND convert_from(body, 'UTF8') LIKE '%refunded_payment%'",
        bot=shop.bot_id,
    )
    copy = shop.tg.control(
        f"/bots/{shop.bot_id}/redeliver", {"update_id": refunded_update, "new_update_id": True}
    )
    wait_processed(shop, copy["update_id"])
    events = shop.stack.scalar(
        "SELECT count(*) FROM access_events WHERE kind = 'access.refunded'"
        " AND managed_chat_id = :chat",
        chat=shop.managed_chat_id,
    )
    assert events == 1


def test_p4_a_payment_whose_update_was_lost_is_found_and_settled(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    paid = sam.buy(plan_id)
    # As if the last commits were lost in a failover after Telegram got its 200: the
    # ledger row and the grant are gone, Telegram still lists the transaction.
    with shop.stack.db.begin() as conn:
        order_id = conn.execute(
            text("DELETE FROM payments WHERE bot_id = :bot RETURNING order_id"),
            {"bot": shop.bot_id},
        ).scalar_one()
        conn.execute(text("UPDATE orders SET status = 'open' WHERE id = :id"), {"id": order_id})
        conn.execute(
            text("DELETE FROM access_grants WHERE managed_chat_id = :chat"),
            {"chat": shop.managed_chat_id},
        )
    assert grant_expiry(shop, sam) is None

    settled = shop.stack.run(lambda runtime: reconcile_bot(runtime, shop.bot_id, creator_of(shop)))
    assert settled == 1
    assert payment_statuses(shop) == ["completed"]
    charge = shop.stack.scalar(
        "SELECT telegram_payment_charge_id FROM payments WHERE bot_id = :bot", bot=shop.bot_id
    )
    assert charge == paid["telegram_payment_charge_id"]
    assert grant_expiry(shop, sam) is not None
    again = shop.stack.run(lambda runtime: reconcile_bot(runtime, shop.bot_id, creator_of(shop)))
    assert again == 0  # settled once, whoever looks again


def creator_of(shop: Shop) -> int:
    return int(shop.stack.scalar("SELECT creator_id FROM bots WHERE id = :bot", bot=shop.bot_id))
