"""Sending, editing and deleting messages; callback query answers."""

from typing import Any

from botter.sandbox.core import Call, Handler
from botter.sandbox.errors import CHAT_NOT_FOUND, QUERY_TOO_OLD, bad_request
from botter.sandbox.world import Chat, Message, User, now_s

MAX_TEXT_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64


def validate_reply_markup(markup: Any) -> dict[str, Any] | None:
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return markup
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request(
            'field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays'
        )
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise bad_request('can\'t find field "text" in InlineKeyboardButton')
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                raise bad_request("BUTTON_DATA_INVALID")
    return markup


def command_entities(text: str) -> list[dict[str, Any]] | None:
    """The bot_command entity Telegram puts on a message that starts with a command."""
    if not text.startswith("/") or len(text) < 2:
        return None
    command = text.split(maxsplit=1)[0]
    return [{"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}]


def message_text(call: Call) -> str:
    text = call.params.opt_string("text")
    if "text" not in call.params.raw:
        raise bad_request('parameter "text" is required')
    if text is None or not text.strip():
        raise bad_request("message text is empty")
    if len(text) > MAX_TEXT_LENGTH:
        raise bad_request("message is too long")
    return text


def target_messages(
    call: Call, chat_id: int | str
) -> tuple[list[Message], Chat | None, User | None]:
    """The message list of the chat a bot addresses: a private chat, a group or a channel."""
    if isinstance(chat_id, int) and chat_id > 0:
        user = call.world.users.get(chat_id)
        if user is None or user.is_bot:
            raise bad_request(CHAT_NOT_FOUND)
        return call.world.private_chat(call.bot.id, chat_id).messages, None, user
    chat = call.world.chat_for_bot(call.bot, chat_id)
    return chat.messages, chat, None


def post(call: Call, chat_id: int | str, **content: Any) -> Message:
    if isinstance(chat_id, int) and chat_id > 0:
        user, _ = call.sandbox.conversation_for_sending(call.bot, chat_id)
        call.sandbox.spend_send_budget(call.bot, chat_id, is_group=False)
        message, _ = call.sandbox.post_private(call.bot, user, call.bot.user, **content)
        return message
    chat = call.world.chat_for_bot(call.bot, chat_id)
    if chat.type == "channel" and not chat.admin_right(call.bot.id, "can_post_messages"):
        raise bad_request("need administrator rights in the channel chat")
    call.sandbox.spend_send_budget(call.bot, chat.id, is_group=True)
    message = Message(
        message_id=len(chat.messages) + 1,
        date=now_s(),
        chat=chat.to_api(),
        sender=None if chat.type == "channel" else call.bot.user,
        **content,
    )
    chat.messages.append(message)
    return message


async def send_message(call: Call) -> dict[str, Any]:
    chat_id = call.params.chat_id()
    text = message_text(call)
    markup = validate_reply_markup(call.params.opt_json("reply_markup"))
    return post(call, chat_id, text=text, reply_markup=markup).to_api()


def find_message(call: Call, verb: str) -> Message:
    chat_id = call.params.chat_id()
    message_id = call.params.integer("message_id")
    messages, _, _ = target_messages(call, chat_id)
    for message in messages:
        if message.message_id == message_id and not message.deleted:
            return message
    raise bad_request(f"message to {verb} not found")


def apply_edit(message: Message, text: str | None, markup: dict[str, Any] | None) -> None:
    new_text = message.text if text is None else text
    if new_text == message.text and markup == message.reply_markup:
        raise bad_request(
            "message is not modified: specified new message content and reply markup are "
            "exactly the same as a current content and reply markup of the message"
        )
    message.text = new_text
    message.reply_markup = markup
    message.edit_date = now_s()


async def edit_message_text(call: Call) -> dict[str, Any]:
    message = find_message(call, "edit")
    if message.text is None:
        raise bad_request("there is no text in the message to edit")
    text = message_text(call)
    apply_edit(message, text, validate_reply_markup(call.params.opt_json("reply_markup")))
    return message.to_api()


async def edit_message_reply_markup(call: Call) -> dict[str, Any]:
    message = find_message(call, "edit")
    apply_edit(message, None, validate_reply_markup(call.params.opt_json("reply_markup")))
    return message.to_api()


async def delete_message(call: Call) -> bool:
    find_message(call, "delete").deleted = True
    return True


async def answer_callback_query(call: Call) -> bool:
    query_id = call.params.string("callback_query_id")
    entry = call.world.callback_queries.get(query_id)
    if entry is None or entry[0] != call.bot.id or entry[1]:
        raise bad_request(QUERY_TOO_OLD)
    text = call.params.opt_string("text")
    if text is not None and len(text) > 200:
        raise bad_request("MESSAGE_TOO_LONG")
    call.world.callback_queries[query_id] = (call.bot.id, True)
    return True


HANDLERS: dict[str, Handler] = {
    "sendMessage": send_message,
    "editMessageText": edit_message_text,
    "editMessageReplyMarkup": edit_message_reply_markup,
    "deleteMessage": delete_message,
    "answerCallbackQuery": answer_callback_query,
}
