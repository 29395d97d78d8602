"""Telegram refusing, users blocking the bot, and workers dying: nothing paid is lost."""

import time

from sqlalchemy import text

from botter.telegram import texts
from tests.e2e.conftest import Shop, Stack, eventually, open_shop
from tests.sandbox.conftest import Telegram


def outcomes(shop: Shop, method: str) -> list[int | None]:
    return [call.get("error_code") for call in shop.calls(method)]


def test_telegram_429_on_send_message_is_waited_out(shop: Shop) -> None:
    shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    shop.fault(method="sendMessage", error_code=429, retry_after=2, times=1)
    sent_at = time.monotonic()
    sam.send("/start")

    menu = sam.next_message(0, timeout_s=15)
    assert menu["text"] == "Choose a plan to get access:"
    assert time.monotonic() - sent_at >= 2, "retry_after was not honoured"
    assert outcomes(shop, "sendMessage") == [429, None]


def test_a_user_who_blocked_the_bot_is_recorded_not_retried(shop: Shop) -> None:
    shop.add_plan("Monthly", 5, period_s=30 * 86400)
    eve = shop.subscriber("Eve")
    eve.send("/start")
    eve.next_message(0)
    shop.tg.control(f"/users/{eve.user_id}/block", {"bot_id": shop.bot_id})
    plain = shop.tg.control(f"/chats/{shop.chat_id}/links")["invite_link"]

    eve.join(plain)
    eventually(lambda: shop.members()[eve.user_id] == "left", what="Eve removed")
    eventually(lambda: outcomes(shop, "sendMessage")[-1:] == [403], what="the 403")
    blocked = eventually(
        lambda: shop.stack.scalar(
            "SELECT bot_blocked FROM subscribers WHERE bot_id = :bot AND user_id = :user",
            bot=shop.bot_id,
            user=eve.user_id,
        ),
        what="bot_blocked recorded",
    )
    assert blocked is True
    time.sleep(1.5)  # a retry would come after 1 s of backoff
    assert outcomes(shop, "sendMessage") == [None, 403]
    dead = shop.stack.scalar(
        "SELECT count(*) FROM jobs WHERE status = 'dead' AND (args->>'bot_id')::bigint = :bot",
        bot=shop.bot_id,
    )
    assert dead == 0


def test_a_worker_killed_between_payment_and_link_delivery(live: Stack, tg: Telegram) -> None:
    shop = open_shop(live, tg)
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    invoice = sam.choose_plan(plan_id)
    # Telegram holds the link back long enough for the worker to die holding the job.
    shop.fault(method="createChatInviteLink", error_code=429, retry_after=3, times=1)

    assert sam.pay(invoice)["status"] == "paid"
    eventually(lambda: outcomes(shop, "createChatInviteLink") == [429], what="the 429")
    live.kill_workers()
    assert sam.invite_links() == []
    paid = live.scalar("SELECT count(*) FROM payments WHERE bot_id = :bot", bot=shop.bot_id)
    assert paid == 1

    live.start_worker()
    link = sam.wait_for_link(timeout_s=90)  # a fresh worker starts slowly on a busy machine
    assert sam.join(link) == {"status": "member"}
    assert outcomes(shop, "createChatInviteLink") == [429, None]


def test_join_request_chats_approve_payers_and_decline_others(live: Stack, tg: Telegram) -> None:
    shop = open_shop(live, tg, join_by="join_request")
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber("Sam")
    eve = shop.subscriber("Eve")
    eve.send("/start")

    link = sam.buy(plan_id)["invite_link"]
    [created] = [call for call in shop.calls("createChatInviteLink") if call["ok"]]
    assert created["params"]["creates_join_request"] in (True, "true")
    assert sam.join(link) == {"status": "pending"}
    eventually(lambda: shop.members().get(sam.user_id) == "member", what="Sam approved")
    assert "was approved" in sam.wait_for_text("was approved")["text"]

    assert eve.join(link) == {"status": "pending"}
    eve.wait_for_text("needs an active plan")
    assert eve.user_id not in shop.members() or shop.members()[eve.user_id] == "left"
    assert [call["params"]["user_id"] for call in shop.calls("declineChatJoinRequest")] == [
        eve.user_id
    ]


def test_the_sweeper_removes_whoever_outlived_their_access(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    sam.join(sam.buy(plan_id)["invite_link"])
    eventually(
        lambda: shop.stack.scalar(
            "SELECT count(*) FROM chat_members m JOIN managed_chats c ON c.id = m.managed_chat_id"
            " WHERE c.bot_id = :bot AND m.user_id = :user AND m.status = 'member'",
            bot=shop.bot_id,
            user=sam.user_id,
        ),
        what="Sam recorded as a member",
    )
    # As if the expiry job had been lost: the grant ends now with nothing scheduled.
    with shop.stack.db.begin() as conn:
        conn.execute(
            text(
                "UPDATE access_grants SET expires_at = now() - interval '1 second'"
                " WHERE managed_chat_id = :chat"
            ),
            {"chat": shop.managed_chat_id},
        )
        conn.execute(
            text(
                "UPDATE jobs SET status = 'cancelled' WHERE kind IN ('expire_access', 'remind')"
                " AND status = 'queued' AND (args->>'grant_id')::bigint IN"
                " (SELECT id FROM access_grants WHERE managed_chat_id = :chat)"
            ),
            {"chat": shop.managed_chat_id},
        )
    eventually(lambda: shop.members()[sam.user_id] == "left", what="the sweeper's removal")


def test_a_flood_of_commands_is_limited_but_never_a_payment(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    invoice = sam.choose_plan(plan_id)  # two actions: /start and the button
    sent = [sam.send("/start") for _ in range(12)]

    def handled() -> bool:
        done = shop.stack.scalar(
            "SELECT count(*) FROM update_inbox WHERE bot_id = :bot AND update_id = ANY(:ids)"
            " AND status = 'done'",
            bot=shop.bot_id,
            ids=[update["update_id"] for update in sent],
        )
        return bool(done == len(sent))

    eventually(handled, what="the flood processed")
    assert sam.pay(invoice)["status"] == "paid"
    sam.wait_for_link(timeout_s=30)

    def texts_queued(text: str) -> int:
        return int(
            shop.stack.scalar(
                "SELECT count(*) FROM jobs WHERE kind = 'send_message'"
                " AND (args->>'bot_id')::bigint = :bot AND args->>'text' = :text",
                bot=shop.bot_id,
                text=text,
            )
        )

    assert texts_queued(texts.CHOOSE_PLAN) == 10 - 1  # the budget, less the button press
    assert texts_queued(texts.FLOOD) == 1  # told once, not once per command
