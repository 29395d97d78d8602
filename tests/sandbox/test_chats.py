"""Channels and supergroups: invite links, joins, join requests, bans, member lookups."""

import time
from typing import Any

from tests.sandbox.conftest import Telegram, World, unique

WATCH_MEMBERS = ["message", "chat_member", "chat_join_request", "my_chat_member"]


def poll_members(world: World) -> None:
    """Ask for chat_member updates, which Telegram leaves out by default."""
    world.tg.updates(world.token, allowed_updates=WATCH_MEMBERS)


def join(tg: Telegram, user_id: int, link: str) -> dict[str, Any]:
    answer: dict[str, Any] = tg.control(f"/users/{user_id}/join", {"invite_link": link})
    return answer


def members(world: World) -> dict[int, str]:
    listed = world.tg.look(f"/chats/{world.chat_id}/members")
    return {entry["user_id"]: entry["status"] for entry in listed}


def one_time_link(world: World, **fields: Any) -> dict[str, Any]:
    link: dict[str, Any] = world.tg.ok(
        world.token, "createChatInviteLink", chat_id=world.chat_id, member_limit=1, **fields
    )
    return link


def test_chat_ids_are_negative_like_telegram(world: World) -> None:
    assert world.chat_id < -(10**12)


def test_one_time_link_admits_exactly_one(world: World) -> None:
    poll_members(world)
    expire_date = int(time.time()) + 86_400
    link = one_time_link(world, name="order-17", expire_date=expire_date)
    assert link["invite_link"].startswith("https://t.me/+")
    assert link["member_limit"] == 1
    assert link["name"] == "order-17"
    assert link["expire_date"] == expire_date
    assert link["creator"]["id"] == world.bot_id
    assert link["is_revoked"] is False
    assert join(world.tg, world.user_id, link["invite_link"]) == {"status": "member"}
    stranger = world.tg.user("Sam")
    refused = join(world.tg, stranger, link["invite_link"])
    assert refused["status"] == "rejected"
    assert "limit" in refused["reason"]
    assert members(world)[world.user_id] == "member"
    assert stranger not in members(world)


def test_join_fires_chat_member_with_the_link_used(world: World) -> None:
    poll_members(world)
    link = one_time_link(world, name="order-1")
    join(world.tg, world.user_id, link["invite_link"])
    [update] = world.tg.drain(world.token)
    change = update["chat_member"]
    assert change["chat"]["id"] == world.chat_id
    assert change["old_chat_member"]["status"] == "left"
    assert change["new_chat_member"]["status"] == "member"
    assert change["new_chat_member"]["user"]["id"] == world.user_id
    assert change["invite_link"]["invite_link"] == link["invite_link"]


def test_chat_member_updates_need_allowed_updates(world: World) -> None:
    link = one_time_link(world)
    join(world.tg, world.user_id, link["invite_link"])
    assert world.tg.drain(world.token) == []


def test_other_admins_links_are_masked(world: World) -> None:
    poll_members(world)
    plain = world.tg.control(f"/chats/{world.chat_id}/links")["invite_link"]
    join(world.tg, world.user_id, plain)
    [update] = world.tg.drain(world.token)
    shown = update["chat_member"]["invite_link"]["invite_link"]
    assert shown.endswith("...")
    assert shown != plain


def test_expired_and_revoked_links_are_refused(world: World) -> None:
    soon = one_time_link(world, expire_date=int(time.time()) + 1)
    revoked = one_time_link(world)
    answer = world.tg.ok(
        world.token,
        "revokeChatInviteLink",
        chat_id=world.chat_id,
        invite_link=revoked["invite_link"],
    )
    assert answer["is_revoked"] is True
    assert join(world.tg, world.user_id, revoked["invite_link"])["status"] == "rejected"
    time.sleep(1.1)
    refused = join(world.tg, world.user_id, soon["invite_link"])
    assert refused == {"status": "rejected", "reason": "invite link has expired"}


def test_unknown_link_is_rejected(world: World) -> None:
    answer = join(world.tg, world.user_id, "https://t.me/+doesnotexist")
    assert answer["status"] == "rejected"


def test_link_rules(world: World) -> None:
    both = world.tg.error(
        world.token,
        "createChatInviteLink",
        chat_id=world.chat_id,
        member_limit=1,
        creates_join_request=True,
    )
    assert both[0] == 400
    long_name = world.tg.error(
        world.token, "createChatInviteLink", chat_id=world.chat_id, name="n" * 33
    )
    assert long_name == (400, "Bad Request: invite link name is too long")
    limit = world.tg.error(
        world.token, "createChatInviteLink", chat_id=world.chat_id, member_limit=100_000
    )
    assert limit == (400, "Bad Request: USAGE_LIMIT_INVALID")
    past = world.tg.error(
        world.token, "createChatInviteLink", chat_id=world.chat_id, expire_date=1000
    )
    assert past == (400, "Bad Request: EXPIRE_DATE_INVALID")


def test_edit_invite_link(world: World) -> None:
    link = one_time_link(world)
    edited = world.tg.ok(
        world.token,
        "editChatInviteLink",
        chat_id=world.chat_id,
        invite_link=link["invite_link"],
        name="renamed",
        member_limit=5,
    )
    assert (edited["name"], edited["member_limit"]) == ("renamed", 5)


def test_bot_without_admin_rights_cannot_make_links(tg: Telegram) -> None:
    bot = tg.bot(unique("plain") + "_bot")
    owner = tg.user("Olga")
    chat_id = tg.channel(owner)
    code, description = tg.error(bot["token"], "createChatInviteLink", chat_id=chat_id)
    assert (code, description) == (400, "Bad Request: chat not found")


def test_join_request_link_then_approve(world: World) -> None:
    poll_members(world)
    link = world.tg.ok(
        world.token, "createChatInviteLink", chat_id=world.chat_id, creates_join_request=True
    )
    assert join(world.tg, world.user_id, link["invite_link"]) == {"status": "pending"}
    [update] = world.tg.drain(world.token)
    request = update["chat_join_request"]
    assert request["from"]["id"] == world.user_id
    assert request["user_chat_id"] == world.user_id
    assert request["invite_link"]["pending_join_request_count"] == 1
    # A join request lets the bot write to someone who never started it.
    assert world.tg.ok(world.token, "sendMessage", chat_id=world.user_id, text="Pay first")
    assert world.tg.ok(
        world.token, "approveChatJoinRequest", chat_id=world.chat_id, user_id=world.user_id
    )
    assert members(world)[world.user_id] == "member"
    [joined] = world.tg.drain(world.token)
    assert joined["chat_member"]["via_join_request"] is True
    again = world.tg.error(
        world.token, "approveChatJoinRequest", chat_id=world.chat_id, user_id=world.user_id
    )
    assert again == (400, "Bad Request: HIDE_REQUESTER_MISSING")


def test_join_request_decline(world: World) -> None:
    link = world.tg.ok(
        world.token, "createChatInviteLink", chat_id=world.chat_id, creates_join_request=True
    )
    join(world.tg, world.user_id, link["invite_link"])
    assert world.tg.ok(
        world.token, "declineChatJoinRequest", chat_id=world.chat_id, user_id=world.user_id
    )
    assert world.user_id not in members(world)


def test_ban_then_unban_lets_them_come_back(world: World) -> None:
    poll_members(world)
    join(world.tg, world.user_id, one_time_link(world)["invite_link"])
    ids = {"chat_id": world.chat_id, "user_id": world.user_id}
    assert world.tg.ok(world.token, "banChatMember", **ids) is True
    assert members(world)[world.user_id] == "kicked"
    banned = world.tg.ok(world.token, "getChatMember", **ids)
    assert banned == {"status": "kicked", "user": banned["user"], "until_date": 0}
    refused = join(world.tg, world.user_id, one_time_link(world)["invite_link"])
    assert refused["status"] == "rejected"
    assert world.tg.ok(world.token, "unbanChatMember", **ids, only_if_banned=True) is True
    assert members(world)[world.user_id] == "left"
    assert join(world.tg, world.user_id, one_time_link(world)["invite_link"]) == {
        "status": "member"
    }
    statuses = [
        (
            u["chat_member"]["old_chat_member"]["status"],
            u["chat_member"]["new_chat_member"]["status"],
        )
        for u in world.tg.drain(world.token)
    ]
    assert statuses == [
        ("left", "member"),
        ("member", "kicked"),
        ("kicked", "left"),
        ("left", "member"),
    ]


def test_unban_only_if_banned_leaves_members_alone(world: World) -> None:
    join(world.tg, world.user_id, one_time_link(world)["invite_link"])
    ids = {"chat_id": world.chat_id, "user_id": world.user_id}
    world.tg.ok(world.token, "unbanChatMember", **ids, only_if_banned=True)
    assert members(world)[world.user_id] == "member"
    # Without the flag, Telegram's unban removes a current member.
    world.tg.ok(world.token, "unbanChatMember", **ids)
    assert members(world)[world.user_id] == "left"


def test_owner_and_admins_cannot_be_banned(world: World) -> None:
    owner = world.tg.error(
        world.token, "banChatMember", chat_id=world.chat_id, user_id=world.owner_id
    )
    assert owner == (400, "Bad Request: can't remove chat owner")
    admin = world.tg.user("Adam")
    world.tg.control(f"/chats/{world.chat_id}/admins", {"user_id": admin})
    refused = world.tg.error(world.token, "banChatMember", chat_id=world.chat_id, user_id=admin)
    assert refused == (400, "Bad Request: user is an administrator of the chat")


def test_ban_needs_the_right(world: World) -> None:
    bot = world.tg.bot(unique("weak") + "_bot")
    rights = {"can_restrict_members": False}
    world.tg.control(f"/chats/{world.chat_id}/admins", {"user_id": bot["id"], "rights": rights})
    me = world.tg.ok(bot["token"], "getChatMember", chat_id=world.chat_id, user_id=bot["id"])
    assert me["can_restrict_members"] is False
    refused = world.tg.error(
        bot["token"], "banChatMember", chat_id=world.chat_id, user_id=world.user_id
    )
    assert refused == (400, "Bad Request: not enough rights to restrict/unrestrict chat member")


def test_bot_outside_the_chat_sees_chat_not_found(world: World) -> None:
    bot = world.tg.bot(unique("outsider") + "_bot")
    refused = world.tg.error(
        bot["token"], "banChatMember", chat_id=world.chat_id, user_id=world.user_id
    )
    assert refused == (400, "Bad Request: chat not found")


def test_private_chat_ids_are_refused_by_chat_methods(world: World) -> None:
    refused = world.tg.error(
        world.token, "banChatMember", chat_id=world.user_id, user_id=world.user_id
    )
    assert refused == (
        400,
        "Bad Request: method is available for supergroup and channel chats only",
    )


def test_member_lookups(world: World) -> None:
    join(world.tg, world.user_id, one_time_link(world)["invite_link"])
    chat = world.tg.ok(world.token, "getChat", chat_id=world.chat_id)
    assert (chat["id"], chat["type"], chat["title"]) == (world.chat_id, "channel", "Premium")
    assert "accent_color_id" in chat
    owner = world.tg.ok(
        world.token, "getChatMember", chat_id=world.chat_id, user_id=world.owner_id
    )
    assert owner["status"] == "creator"
    me = world.tg.ok(world.token, "getChatMember", chat_id=world.chat_id, user_id=world.bot_id)
    assert me["status"] == "administrator"
    assert me["can_invite_users"] is True
    assert me["can_restrict_members"] is True
    admins = world.tg.ok(world.token, "getChatAdministrators", chat_id=world.chat_id)
    assert {a["user"]["id"] for a in admins} == {world.owner_id, world.bot_id}
    assert world.tg.ok(world.token, "getChatMemberCount", chat_id=world.chat_id) == 3
    stranger = world.tg.user("Sam")
    left = world.tg.ok(world.token, "getChatMember", chat_id=world.chat_id, user_id=stranger)
    assert left["status"] == "left"


def test_leave_fires_chat_member(world: World) -> None:
    poll_members(world)
    join(world.tg, world.user_id, one_time_link(world)["invite_link"])
    world.tg.control(f"/users/{world.user_id}/leave", {"chat_id": world.chat_id})
    changes = [u["chat_member"]["new_chat_member"]["status"] for u in world.tg.drain(world.token)]
    assert changes == ["member", "left"]
    assert world.tg.control(
        f"/users/{world.user_id}/leave", {"chat_id": world.chat_id}, status=400
    )["error"]


def test_subscription_invite_link(world: World) -> None:
    link = world.tg.ok(
        world.token,
        "createChatSubscriptionInviteLink",
        chat_id=world.chat_id,
        subscription_period=2_592_000,
        subscription_price=50,
    )
    assert (link["subscription_period"], link["subscription_price"]) == (2_592_000, 50)
    before = world.tg.http.get(f"/sandbox/users/{world.user_id}").json()["stars"]
    assert join(world.tg, world.user_id, link["invite_link"]) == {"status": "member"}
    after = world.tg.http.get(f"/sandbox/users/{world.user_id}").json()["stars"]
    assert before - after == 50
    wrong = world.tg.error(
        world.token,
        "createChatSubscriptionInviteLink",
        chat_id=world.chat_id,
        subscription_period=86_400,
        subscription_price=50,
    )
    assert wrong == (400, "Bad Request: SUBSCRIPTION_PERIOD_INVALID")
