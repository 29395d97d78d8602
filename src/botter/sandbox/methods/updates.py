"""Identity and update delivery: getMe, webhooks, getUpdates, commands."""

import re
from typing import Any

from botter.sandbox.core import Call, Handler
from botter.sandbox.delivery import PollConflictError
from botter.sandbox.errors import BotApiError, bad_request

SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
KNOWN_UPDATE_TYPES = frozenset(
    {
        "message",
        "edited_message",
        "channel_post",
        "edited_channel_post",
        "business_connection",
        "business_message",
        "edited_business_message",
        "deleted_business_messages",
        "message_reaction",
        "message_reaction_count",
        "inline_query",
        "chosen_inline_result",
        "callback_query",
        "shipping_query",
        "pre_checkout_query",
        "purchased_paid_media",
        "poll",
        "poll_answer",
        "my_chat_member",
        "chat_member",
        "chat_join_request",
        "chat_boost",
        "removed_chat_boost",
    }
)


async def get_me(call: Call) -> dict[str, Any]:
    return {
        **call.bot.user.to_api(),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


def allowed_updates(call: Call) -> list[str] | None:
    value = call.params.opt_json("allowed_updates")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(kind, str) for kind in value):
        raise bad_request("can't parse allowed updates")
    return [kind for kind in value if kind in KNOWN_UPDATE_TYPES]


async def set_webhook(call: Call) -> bool:
    bot = call.bot
    url = call.params.raw.get("url")
    if url is None:
        raise bad_request('parameter "url" is required')
    url = str(url)
    if url and not re.match(r"https?://[^/\s]+", url):
        raise bad_request("bad webhook: invalid webhook URL specified")
    secret = call.params.opt_string("secret_token")
    if secret is not None and not SECRET_TOKEN.fullmatch(secret):
        raise bad_request("secret token contains unallowed characters")
    max_connections = call.params.opt_integer("max_connections") or 40
    if not 1 <= max_connections <= 100:
        raise bad_request("bad webhook: max_connections must be between 1 and 100")
    updates = allowed_updates(call)
    if updates is not None:
        bot.allowed_updates = updates
    bot.webhook_url = url
    bot.webhook_secret = secret if url else None
    bot.webhook_max_connections = max_connections
    bot.last_error_date = None
    bot.last_error_message = None
    call.sandbox.delivery.webhook_changed(bot, call.params.boolean("drop_pending_updates"))
    return True


async def delete_webhook(call: Call) -> bool:
    call.bot.webhook_url = ""
    call.bot.webhook_secret = None
    call.sandbox.delivery.webhook_changed(call.bot, call.params.boolean("drop_pending_updates"))
    return True


async def get_webhook_info(call: Call) -> dict[str, Any]:
    bot = call.bot
    info: dict[str, Any] = {
        "url": bot.webhook_url,
        "has_custom_certificate": False,
        "pending_update_count": call.sandbox.delivery.pending_count(bot),
    }
    if bot.webhook_url:
        info["max_connections"] = bot.webhook_max_connections
        if bot.last_error_date is not None:
            info["last_error_date"] = bot.last_error_date
            info["last_error_message"] = bot.last_error_message
    if bot.allowed_updates is not None:
        info["allowed_updates"] = bot.allowed_updates
    return info


async def get_updates(call: Call) -> list[dict[str, Any]]:
    if call.bot.webhook_url:
        raise BotApiError(
            409,
            "Conflict: can't use getUpdates method while webhook is active; "
            "use deleteWebhook to delete the webhook first",
        )
    limit = call.params.opt_integer("limit") or 100
    timeout_s = call.params.opt_integer("timeout") or 0
    updates = allowed_updates(call)
    if updates is not None:
        call.bot.allowed_updates = updates
    try:
        return await call.sandbox.delivery.get_updates(
            call.bot, call.params.opt_integer("offset"), max(1, min(limit, 100)), max(0, timeout_s)
        )
    except PollConflictError:
        raise BotApiError(
            409,
            "Conflict: terminated by other getUpdates request; make sure that only one bot "
            "instance is running",
        ) from None


async def set_my_commands(call: Call) -> bool:
    commands = call.params.json("commands")
    if not isinstance(commands, list) or not all(
        isinstance(c, dict) and c.get("command") and c.get("description") for c in commands
    ):
        raise bad_request("can't parse commands JSON object")
    call.bot.commands = commands
    return True


async def get_my_commands(call: Call) -> list[dict[str, Any]]:
    return call.bot.commands


HANDLERS: dict[str, Handler] = {
    "getMe": get_me,
    "setWebhook": set_webhook,
    "deleteWebhook": delete_webhook,
    "getWebhookInfo": get_webhook_info,
    "getUpdates": get_updates,
    "setMyCommands": set_my_commands,
    "getMyCommands": get_my_commands,
}
