"""How a shop is wired to Telegram, what is said when Telegram refuses, and what is never
written down."""

import time
from dataclasses import replace
from typing import Any

from botter import admin
from botter.runtime import Runtime
from botter.sandbox.members import RESTRICTED_PERMISSIONS
from botter.telegram import texts
from tests.e2e.conftest import Shop, Stack, eventually
from tests.e2e.test_money import KEYRING, webhook_post
from tests.sandbox.conftest import Telegram, unique

WANTED_UPDATES = {
    "message",
    "callback_query",
    "pre_checkout_query",
    "chat_member",
    "chat_join_request",
    "my_chat_member",
}


def test_bot_add_sets_the_webhook_with_a_fresh_secret_and_the_updates_it_needs(
    shop: Shop,
) -> None:
    [call] = shop.calls("setWebhook")
    params = call["params"]
    assert params["url"] == f"{shop.stack.web_url}/webhook/telegram/{shop.bot_id}"
    assert set(params["allowed_updates"]) >= WANTED_UPDATES
    stored = shop.stack.scalar(
        "SELECT webhook_secret_ciphertext FROM bots WHERE id = :bot", bot=shop.bot_id
    )
    assert KEYRING.decrypt(stored) == params["secret_token"]
    assert len(params["secret_token"]) >= 32
    info = shop.tg.ok(shop.token, "getWebhookInfo")
    assert info["url"] == params["url"]


def test_a_removal_without_rights_is_reported_to_the_creator_not_retried(shop: Shop) -> None:
    shop.add_plan("Monthly", 5, period_s=30 * 86400)
    shop.fault(
        method="banChatMember",
        error_code=400,
        description="Bad Request: not enough rights to restrict/unrestrict chat member",
        times=1,
    )
    stranger = shop.subscriber("Eve")
    plain = shop.tg.control(f"/chats/{shop.chat_id}/links")["invite_link"]
    stranger.join(plain)

    detail = eventually(
        lambda: shop.stack.scalar(
            "SELECT detail FROM bot_problems WHERE bot_id = :bot AND kind = 'removal.failed'",
            bot=shop.bot_id,
        ),
        what="the problem recorded for the creator",
    )
    assert "NotEnoughRights" in detail
    listed = shop.stack.run(lambda runtime: admin.list_problems(runtime, shop.bot_id))
    assert [problem["kind"] for problem in listed] == ["removal.failed"]
    assert listed[0]["chat_id"] == shop.chat_id
    time.sleep(1.5)  # a retry would come after 1 s of backoff
    assert [call.get("error_code") for call in shop.calls("banChatMember")] == [400]
    assert shop.members()[stranger.user_id] == "member"


def test_updates_of_one_chat_run_in_update_id_order_whatever_the_arrival(shop: Shop) -> None:
    shop.add_plan("Monthly", 5, period_s=30 * 86400)
    user = {"id": 4_200_000_001, "is_bot": False, "first_name": "Lou"}
    chat = {"id": shop.chat_id, "type": "channel", "title": "Premium"}
    base = 700_000_000 + int(time.time()) % 1_000_000

    def member_update(update_id: int, old: str, new: str) -> dict[str, object]:
        return {
            "update_id": update_id,
            "chat_member": {
                "chat": chat,
                "from": user,
                "date": int(time.time()),
                "old_chat_member": {"status": old, "user": user},
                "new_chat_member": {"status": new, "user": user},
            },
        }

    # The leave arrives first, as a retried delivery can make it: the join is older.
    assert webhook_post(shop, member_update(base + 1, "member", "left")).status_code == 200
    assert webhook_post(shop, member_update(base, "left", "member")).status_code == 200

    def processed() -> bool:
        done = shop.stack.scalar(
            "SELECT count(*) FROM update_inbox WHERE bot_id = :bot AND update_id >= :base"
            " AND status = 'done'",
            bot=shop.bot_id,
            base=base,
        )
        return bool(done == 2)

    eventually(processed, what="both updates processed")
    changes = shop.stack.rows(
        "SELECT detail->>'new' AS new FROM access_events WHERE kind = 'member.changed'"
        " AND managed_chat_id = :chat AND (detail->>'user_id')::bigint = :user ORDER BY id",
        chat=shop.managed_chat_id,
        user=user["id"],
    )
    assert [row.new for row in changes] == ["left"]  # the late join was recognised as stale
    assert shop.calls("banChatMember") == []
    status = shop.stack.scalar(
        "SELECT status FROM chat_members WHERE managed_chat_id = :chat AND user_id = :user",
        chat=shop.managed_chat_id,
        user=user["id"],
    )
    assert status == "left"


def test_p9_no_token_or_secret_in_the_logs(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    sam.join(sam.buy(plan_id)["invite_link"])
    shop.fault(method="sendMessage", error_code=429, retry_after=1, times=1)
    sam.send("/status")
    sam.wait_for_text("active until")

    secret = KEYRING.decrypt(
        shop.stack.scalar(
            "SELECT webhook_secret_ciphertext FROM bots WHERE id = :bot", bot=shop.bot_id
        )
    )
    payload = shop.stack.scalar(
        "SELECT convert_from(body, 'UTF8')::jsonb"
        " #>> '{message,successful_payment,invoice_payload}' FROM update_inbox WHERE bot_id = :bot"
        " AND convert_from(body, 'UTF8') LIKE '%successful_payment%'",
        bot=shop.bot_id,
    )
    logs = shop.stack.logs()
    assert "update.processed" in logs  # the logs are there to be searched
    assert shop.token not in logs
    assert shop.token.split(":")[1] not in logs
    assert secret not in logs
    assert payload is not None
    assert payload not in logs


def test_without_a_public_url_the_bot_is_polled_into_the_same_inbox(
    live: Stack, tg: Telegram
) -> None:
    bot = tg.bot(unique("polled") + "_bot")

    async def add_polled_bot(runtime: Runtime) -> dict[str, Any]:
        no_url = runtime.settings.model_copy(update={"public_url": None})
        polled = replace(runtime, settings=no_url)
        creator_id = await admin.default_creator(runtime, unique("creator"))
        return await admin.add_bot(polled, bot["token"], creator_id)

    added = live.run(add_polled_bot)
    assert added["delivery"] == "polling"
    sam_id = tg.user("Sam")
    tg.start(sam_id, bot["id"])

    def replies() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = tg.look(f"/users/{sam_id}/messages", bot_id=bot["id"])
        return found

    [reply] = eventually(replies, what="the polled bot's answer")
    assert reply["text"] == texts.NO_PLANS
    assert tg.look("/calls", bot_id=bot["id"], method="getUpdates")


def test_a_restricted_person_outside_the_chat_is_not_counted_as_present(shop: Shop) -> None:
    shop.add_plan("Monthly", 5, period_s=30 * 86400)
    user = {"id": 4_300_000_001, "is_bot": False, "first_name": "Rae"}
    chat = {"id": shop.chat_id, "type": "channel", "title": "Premium"}
    restricted_outside = {
        "status": "restricted",
        "user": user,
        "is_member": False,
        "until_date": 0,
        **dict.fromkeys(RESTRICTED_PERMISSIONS, False),
    }
    update_id = 710_000_000 + int(time.time()) % 1_000_000
    update = {
        "update_id": update_id,
        "chat_member": {
            "chat": chat,
            "from": user,
            "date": int(time.time()),
            "old_chat_member": {"status": "left", "user": user},
            "new_chat_member": restricted_outside,
        },
    }
    assert webhook_post(shop, update).status_code == 200
    status = eventually(
        lambda: shop.stack.scalar(
            "SELECT status FROM chat_members WHERE managed_chat_id = :chat AND user_id = :user",
            chat=shop.managed_chat_id,
            user=user["id"],
        ),
        what="the change recorded",
    )
    assert status == "left"
    time.sleep(1)
    assert shop.calls("banChatMember") == []


def test_a_revoked_token_is_flagged_for_the_creator_and_cleared_by_bot_add(shop: Shop) -> None:
    shop.fault(method="getWebhookInfo", error_code=401, description="Unauthorized", times=1)

    def status() -> str:
        return str(shop.stack.scalar("SELECT status FROM bots WHERE id = :bot", bot=shop.bot_id))

    eventually(lambda: status() == "unauthorized", what="the bot flagged")
    problem = shop.stack.scalar(
        "SELECT detail FROM bot_problems WHERE bot_id = :bot AND kind = 'bot.unauthorized'",
        bot=shop.bot_id,
    )
    assert "botter bot add" in problem
    assert shop.token not in problem

    async def add_again(runtime: Runtime) -> dict[str, Any]:
        creator_id = shop.stack.scalar(
            "SELECT creator_id FROM bots WHERE id = :bot", bot=shop.bot_id
        )
        return await admin.add_bot(runtime, shop.token, creator_id)

    shop.stack.run(add_again)
    assert status() == "active"
