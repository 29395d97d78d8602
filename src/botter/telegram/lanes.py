"""Which lane an update waits in, and how urgent it is, decided from the raw update.

Workers run the updates of one lane one at a time, in update_id order, so the updates of
one chat never race each other. The web process decides the lane while the update is
ingested, from the decoded JSON, without building a model of the whole update.
"""

from typing import Any

PRIORITY_URGENT = 0
PRIORITY_NORMAL = 1
BOT_LANE = "bot"

# Update kinds whose object names the chat it happened in, as `chat.id`.
_CHAT_UPDATES = (
    "message",
    "edited_message",
    "channel_post",
    "edited_channel_post",
    "business_message",
    "edited_business_message",
    "chat_member",
    "my_chat_member",
    "chat_join_request",
    "message_reaction",
    "message_reaction_count",
    "chat_boost",
    "removed_chat_boost",
)

# Update kinds that come from one user outside any chat; they share the lane of that
# user's private chat, whose id is the user's id.
_USER_UPDATES = ("inline_query", "chosen_inline_result", "shipping_query")


def lane_of(update: dict[str, Any]) -> tuple[str, int]:
    """The (lane, priority) of a decoded update; unknown shapes go to the bot's own lane."""
    if "pre_checkout_query" in update:
        # Telegram drops the payment unless this is answered within 10 s, so it never
        # waits behind a chat's backlog.
        update_id = update.get("update_id")
        if isinstance(update_id, int) and not isinstance(update_id, bool):
            return f"pcq:{update_id}", PRIORITY_URGENT
        return BOT_LANE, PRIORITY_URGENT
    chat_id = _chat_id(update)
    if chat_id is None:
        return BOT_LANE, PRIORITY_NORMAL
    return f"chat:{chat_id}", PRIORITY_NORMAL


def _chat_id(update: dict[str, Any]) -> int | None:
    for kind in _CHAT_UPDATES:
        if kind in update:
            return _id_at(update[kind], "chat")
    if "callback_query" in update:
        return _callback_chat_id(update["callback_query"])
    for kind in _USER_UPDATES:
        if kind in update:
            return _id_at(update[kind], "from")
    return None


def _callback_chat_id(query: object) -> int | None:
    if not isinstance(query, dict):
        return None
    # A button under an inline-mode message has no message: the user's private chat it is.
    message = query.get("message")
    if message is not None:
        return _id_at(message, "chat")
    return _id_at(query, "from")


def _id_at(value: object, key: str) -> int | None:
    """`value[key]["id"]` when it is an integer, else None."""
    if not isinstance(value, dict):
        return None
    holder = value.get(key)
    if not isinstance(holder, dict):
        return None
    found = holder.get("id")
    if isinstance(found, int) and not isinstance(found, bool):
        return found
    return None
