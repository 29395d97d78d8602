"""A subscriber's whole life in a shop, and the people the paywall must leave alone."""

from tests.e2e.conftest import Shop, eventually


def test_buy_join_reminded_removed_renew_rejoin(shop: Shop) -> None:
    plan_id = shop.add_plan("Quick look", 3, period_s=8, remind_s=[4])
    sam = shop.subscriber("Sam")

    menu_seen = len(sam.messages())
    sam.send("/start")
    menu = sam.next_message(menu_seen)
    assert menu["text"] == "Choose a plan to get access:"
    [[button]] = menu["reply_markup"]["inline_keyboard"]
    assert button["callback_data"] == f"plan:{plan_id}"
    assert "3 ⭐" in button["text"]

    sam.press(menu["message_id"], button["callback_data"])
    invoice = sam.wait_for_invoice(0)
    assert invoice["invoice"]["currency"] == "XTR"
    assert invoice["invoice"]["total_amount"] == 3
    paid = sam.pay(invoice)
    assert paid["status"] == "paid"
    link = sam.wait_for_link()
    assert "Payment received" in sam.wait_for_text("Your personal invite link")["text"]
    [created] = [call for call in shop.calls("createChatInviteLink") if call["ok"]]
    assert created["params"]["member_limit"] == 1
    assert created["params"]["chat_id"] == shop.chat_id

    assert sam.join(link) == {"status": "member"}
    assert shop.members()[sam.user_id] == "member"

    reminder = sam.wait_for_text("Renew now with one tap", timeout_s=10)
    assert sam.wait_for_invoice(1)["date"] >= reminder["date"]

    ended = sam.wait_for_text("has ended", timeout_s=15)
    assert shop.members()[sam.user_id] == "left"
    [[renew]] = ended["reply_markup"]["inline_keyboard"]
    assert renew["callback_data"] == f"plan:{plan_id}"
    assert [call["params"]["user_id"] for call in shop.calls("banChatMember")] == [sam.user_id]
    unban = shop.calls("unbanChatMember")[0]["params"]
    assert unban["only_if_banned"] in (True, "true")

    invoices_before = len(sam.invoices())
    sam.press(ended["message_id"], renew["callback_data"])
    assert sam.pay(sam.wait_for_invoice(invoices_before))["status"] == "paid"
    second_link = sam.wait_for_link(links_before=1)
    assert second_link != link
    assert sam.join(second_link) == {"status": "member"}

    status_seen = len(sam.messages())
    sam.send("/status")
    assert "active until" in sam.next_message(status_seen)["text"]
    payments = shop.stack.scalar(
        "SELECT count(*) FROM payments WHERE bot_id = :bot AND status = 'completed'",
        bot=shop.bot_id,
    )
    assert payments == 2


def test_a_stranger_with_a_shared_plain_link_is_removed_and_told(shop: Shop) -> None:
    shop.add_plan("Monthly", 50, period_s=30 * 86400)
    stranger = shop.subscriber("Eve")
    stranger.send("/start")  # has talked to the bot, so it can tell her why
    plain = shop.tg.control(f"/chats/{shop.chat_id}/links")["invite_link"]

    assert stranger.join(plain) == {"status": "member"}
    eventually(lambda: shop.members()[stranger.user_id] == "left", what="the stranger removed")
    assert "without an active plan" in stranger.wait_for_text("you were removed")["text"]


def test_the_owner_and_admins_are_never_removed(shop: Shop) -> None:
    shop.add_plan("Monthly", 50, period_s=30 * 86400)
    admin_id = shop.tg.user("Ada")
    shop.tg.control(f"/chats/{shop.chat_id}/admins", {"user_id": admin_id})
    stranger = shop.subscriber("Eve")
    plain = shop.tg.control(f"/chats/{shop.chat_id}/links")["invite_link"]
    stranger.join(plain)
    eventually(lambda: shop.members()[stranger.user_id] == "left", what="the stranger removed")

    members = shop.members()
    assert members[shop.owner_id] == "creator"
    assert members[admin_id] == "administrator"
    banned = {call["params"]["user_id"] for call in shop.calls("banChatMember")}
    assert banned == {stranger.user_id}


def test_paysupport_terms_and_status_answer(shop: Shop) -> None:
    sam = shop.subscriber()
    for command, expected in [
        ("/paysupport", "Refunds are possible"),
        ("/terms", "paid in Telegram Stars"),
        ("/status", "no active access"),
    ]:
        seen = len(sam.messages())
        sam.send(command)
        assert expected in sam.next_message(seen, what=command)["text"]


def test_a_buyer_whose_link_was_used_by_someone_else_gets_a_fresh_one(shop: Shop) -> None:
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber("Sam")
    eve = shop.subscriber("Eve")
    link = sam.buy(plan_id)["invite_link"]
    assert eve.join(link) == {"status": "member"}  # Sam shared it, or it leaked
    eventually(lambda: shop.members()[eve.user_id] == "left", what="Eve removed")
    assert sam.join(link)["status"] == "rejected"  # member_limit 1: used up

    status_seen = len(sam.messages())
    sam.send("/status")
    assert "/link" in sam.next_message(status_seen)["text"]
    sam.send("/link")
    fresh = sam.wait_for_link(links_before=1)
    assert fresh != link
    assert sam.join(fresh) == {"status": "member"}
    revoked = [call["params"]["invite_link"] for call in shop.calls("revokeChatInviteLink")]
    assert revoked == [link]

    seen = len(sam.messages())
    sam.send("/link")
    assert "already in" in sam.next_message(seen)["text"]
