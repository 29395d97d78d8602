"""Groups and channels: invite links, join requests, bans, member lookups."""

from typing import Any

from botter.sandbox.core import Call, Handler
from botter.sandbox.errors import bad_request
from botter.sandbox.members import chat_member_api
from botter.sandbox.world import ADMIN_STATUSES, Chat, InviteLink, now_s

MAX_LINK_NAME = 32
MAX_MEMBER_LIMIT = 99_999
SUBSCRIPTION_PERIOD_S = 2_592_000
MAX_SUBSCRIPTION_PRICE = 10_000
# Telegram treats a ban shorter than 30 s or longer than 366 days as forever.
BAN_FOREVER_BELOW_S = 30
BAN_FOREVER_ABOVE_S = 366 * 86_400


def managed_chat(call: Call, right: str, rights_error: str) -> Chat:
    chat_id = call.params.chat_id()
    if isinstance(chat_id, int) and chat_id > 0:
        raise bad_request("method is available for supergroup and channel chats only")
    chat = call.world.chat_for_bot(call.bot, chat_id)
    if not chat.admin_right(call.bot.id, right):
        raise bad_request(rights_error)
    return chat


def link_chat(call: Call) -> Chat:
    return managed_chat(call, "can_invite_users", "not enough rights to manage chat invite link")


def link_fields(call: Call, link: InviteLink | None) -> dict[str, Any]:
    """Name, expiry, limit and approval mode of a link, validated as Telegram does."""
    params = call.params
    name = params.opt_string("name") if params.has("name") else (link.name if link else None)
    if name is not None and len(name) > MAX_LINK_NAME:
        raise bad_request("invite link name is too long")
    expire_date = params.opt_integer("expire_date")
    if expire_date is None and link is not None:
        expire_date = link.expire_date
    if expire_date is not None and expire_date != 0 and expire_date <= now_s():
        raise bad_request("EXPIRE_DATE_INVALID")
    member_limit = params.opt_integer("member_limit")
    if member_limit is None and link is not None:
        member_limit = link.member_limit
    if member_limit is not None and not 1 <= member_limit <= MAX_MEMBER_LIMIT:
        raise bad_request("USAGE_LIMIT_INVALID")
    creates_join_request = params.boolean(
        "creates_join_request", link.creates_join_request if link else False
    )
    if creates_join_request and member_limit:
        raise bad_request(
            "member limit can't be specified for links requiring administrator approval"
        )
    return {
        "name": name,
        "expire_date": expire_date or None,
        "member_limit": member_limit,
        "creates_join_request": creates_join_request,
    }


async def create_chat_invite_link(call: Call) -> dict[str, Any]:
    chat = link_chat(call)
    link = call.world.new_invite_link(chat, call.bot.user, **link_fields(call, None))
    return link.to_api(chat, call.bot.id)


def own_link(call: Call, chat: Chat) -> InviteLink:
    link = chat.invite_links.get(call.params.string("invite_link"))
    if link is None or link.creator.id != call.bot.id:
        raise bad_request("INVITE_HASH_EXPIRED")
    return link


async def edit_chat_invite_link(call: Call) -> dict[str, Any]:
    chat = link_chat(call)
    link = own_link(call, chat)
    if link.is_revoked:
        raise bad_request("INVITE_HASH_EXPIRED")
    if link.subscription_period is not None:
        link.name = link_fields(call, link)["name"]
    else:
        for key, value in link_fields(call, link).items():
            setattr(link, key, value)
    return link.to_api(chat, call.bot.id)


async def revoke_chat_invite_link(call: Call) -> dict[str, Any]:
    chat = link_chat(call)
    link = own_link(call, chat)
    link.is_revoked = True
    # Requests that came through a revoked link stay pending, as in Telegram.
    return link.to_api(chat, call.bot.id)


async def export_chat_invite_link(call: Call) -> str:
    chat = link_chat(call)
    for link in chat.invite_links.values():
        if link.is_primary and link.creator.id == call.bot.id:
            link.is_revoked = True
            link.is_primary = False
    return call.world.new_invite_link(chat, call.bot.user, is_primary=True).invite_link


async def create_chat_subscription_invite_link(call: Call) -> dict[str, Any]:
    chat = link_chat(call)
    if chat.type != "channel":
        raise bad_request("subscription invite links can be created only in channels")
    period_s = call.params.integer("subscription_period")
    if period_s != SUBSCRIPTION_PERIOD_S:
        raise bad_request("SUBSCRIPTION_PERIOD_INVALID")
    price = call.params.integer("subscription_price")
    if not 1 <= price <= MAX_SUBSCRIPTION_PRICE:
        raise bad_request("SUBSCRIPTION_PRICE_INVALID")
    name = call.params.opt_string("name")
    if name is not None and len(name) > MAX_LINK_NAME:
        raise bad_request("invite link name is too long")
    link = call.world.new_invite_link(
        chat, call.bot.user, name=name, subscription_period=period_s, subscription_price=price
    )
    return link.to_api(chat, call.bot.id)


async def approve_chat_join_request(call: Call) -> bool:
    chat = link_chat(call)
    user = call.world.user(call.params.integer("user_id"))
    request = chat.join_requests.pop(user.id, None)
    if request is None:
        raise bad_request("HIDE_REQUESTER_MISSING")
    if chat.is_active_member(user.id):
        raise bad_request("USER_ALREADY_PARTICIPANT")
    call.sandbox.change_member(
        chat,
        user,
        "member",
        actor=call.bot.user,
        invite_link=request.invite_link,
        via_join_request=True,
    )
    if request.invite_link is not None:
        request.invite_link.usage_count += 1
    return True


async def decline_chat_join_request(call: Call) -> bool:
    chat = link_chat(call)
    user = call.world.user(call.params.integer("user_id"))
    if chat.join_requests.pop(user.id, None) is None:
        raise bad_request("HIDE_REQUESTER_MISSING")
    return True


def restrict_target(call: Call) -> tuple[Chat, int]:
    chat = managed_chat(
        call, "can_restrict_members", "not enough rights to restrict/unrestrict chat member"
    )
    user_id = call.params.integer("user_id")
    if user_id == chat.owner_id:
        raise bad_request("can't remove chat owner")
    if chat.status_of(user_id) in ADMIN_STATUSES:
        raise bad_request("user is an administrator of the chat")
    return chat, user_id


async def ban_chat_member(call: Call) -> bool:
    chat, user_id = restrict_target(call)
    user = call.world.user(user_id)
    until_date = call.params.opt_integer("until_date") or 0
    span_s = until_date - now_s()
    if until_date and not BAN_FOREVER_BELOW_S <= span_s <= BAN_FOREVER_ABOVE_S:
        until_date = 0
    chat.join_requests.pop(user.id, None)
    call.sandbox.change_member(chat, user, "kicked", actor=call.bot.user, until_date=until_date)
    return True


async def unban_chat_member(call: Call) -> bool:
    chat, user_id = restrict_target(call)
    user = call.world.user(user_id)
    status = chat.status_of(user.id)
    if status == "kicked":
        call.sandbox.change_member(chat, user, "left", actor=call.bot.user)
    elif status != "left" and not call.params.boolean("only_if_banned"):
        # Without only_if_banned, "unbanning" a member removes them from the chat.
        call.sandbox.change_member(chat, user, "left", actor=call.bot.user)
    return True


async def get_chat(call: Call) -> dict[str, Any]:
    chat_id = call.params.chat_id()
    if isinstance(chat_id, int) and chat_id > 0:
        user = call.world.users.get(chat_id)
        if user is None or not call.world.private_chat(call.bot.id, chat_id).started:
            raise bad_request("chat not found")
        base = user.private_chat_api()
    else:
        base = call.world.chat_for_bot(call.bot, chat_id).to_api()
    return {
        **base,
        "accent_color_id": 0,
        "max_reaction_count": 11,
        "accepted_gift_types": {
            "unlimited_gifts": False,
            "limited_gifts": False,
            "unique_gifts": False,
            "premium_subscription": False,
            "gifts_from_channels": False,
        },
    }


def member_chat(call: Call) -> Chat:
    chat_id = call.params.chat_id()
    if isinstance(chat_id, int) and chat_id > 0:
        raise bad_request("method is available for supergroup and channel chats only")
    return call.world.chat_for_bot(call.bot, chat_id)


async def get_chat_member(call: Call) -> dict[str, Any]:
    chat = member_chat(call)
    user = call.world.user(call.params.integer("user_id"))
    return chat_member_api(chat, user, chat.members.get(user.id), now_s())


async def get_chat_administrators(call: Call) -> list[dict[str, Any]]:
    chat = member_chat(call)
    at = now_s()
    return [
        chat_member_api(chat, call.world.users[membership.user_id], membership, at)
        for membership in chat.members.values()
        if membership.status in ADMIN_STATUSES
    ]


async def get_chat_member_count(call: Call) -> int:
    chat = member_chat(call)
    return sum(1 for user_id in chat.members if chat.is_active_member(user_id))


async def leave_chat(call: Call) -> bool:
    chat = member_chat(call)
    if chat.owner_id == call.bot.id:
        raise bad_request("chat owner can't leave the chat")
    call.sandbox.change_member(chat, call.bot.user, "left", actor=call.bot.user)
    return True


HANDLERS: dict[str, Handler] = {
    "createChatInviteLink": create_chat_invite_link,
    "editChatInviteLink": edit_chat_invite_link,
    "revokeChatInviteLink": revoke_chat_invite_link,
    "exportChatInviteLink": export_chat_invite_link,
    "createChatSubscriptionInviteLink": create_chat_subscription_invite_link,
    "approveChatJoinRequest": approve_chat_join_request,
    "declineChatJoinRequest": decline_chat_join_request,
    "banChatMember": ban_chat_member,
    "unbanChatMember": unban_chat_member,
    "getChat": get_chat,
    "getChatMember": get_chat_member,
    "getChatAdministrators": get_chat_administrators,
    "getChatMemberCount": get_chat_member_count,
    "leaveChat": leave_chat,
}
