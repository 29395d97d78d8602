"""Private conversations: who may be written to, messages, buttons, callback queries."""

from tests.sandbox.conftest import World

BUY = {"inline_keyboard": [[{"text": "Buy", "callback_data": "plan:1"}]]}


def test_bot_cannot_write_first(world: World) -> None:
    code, description = world.tg.error(
        world.token, "sendMessage", chat_id=world.user_id, text="hello"
    )
    assert (code, description) == (403, "Forbidden: bot can't initiate conversation with a user")


def test_start_opens_the_conversation_with_a_command_entity(world: World) -> None:
    sent = world.tg.start(world.user_id, world.bot_id, "/start promo42")
    [update] = world.tg.drain(world.token)
    assert update["update_id"] == sent["update_id"]
    message = update["message"]
    assert message["text"] == "/start promo42"
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]
    assert message["from"]["id"] == world.user_id
    assert message["chat"] == {"id": world.user_id, "type": "private", "first_name": "Ann"}
    result = world.tg.ok(world.token, "sendMessage", chat_id=world.user_id, text="Welcome")
    assert result["from"]["id"] == world.bot_id
    assert result["chat"]["id"] == world.user_id


def test_blocked_bot_gets_403_and_a_my_chat_member_update(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    world.tg.control(f"/users/{world.user_id}/block", {"bot_id": world.bot_id})
    code, description = world.tg.error(
        world.token, "sendMessage", chat_id=world.user_id, text="renew?"
    )
    assert (code, description) == (403, "Forbidden: bot was blocked by the user")
    kinds = [next(k for k in u if k != "update_id") for u in world.tg.drain(world.token)]
    assert kinds == ["message", "my_chat_member"]


def test_writing_again_unblocks(world: World) -> None:
    world.tg.control(f"/users/{world.user_id}/block", {"bot_id": world.bot_id})
    world.tg.start(world.user_id, world.bot_id)
    assert world.tg.ok(world.token, "sendMessage", chat_id=world.user_id, text="back")


def test_unknown_user_is_chat_not_found(world: World) -> None:
    code, description = world.tg.error(world.token, "sendMessage", chat_id=999, text="hi")
    assert (code, description) == (400, "Bad Request: chat not found")


def test_empty_and_overlong_text(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    assert world.tg.error(world.token, "sendMessage", chat_id=world.user_id) == (
        400,
        'Bad Request: parameter "text" is required',
    )
    assert world.tg.error(world.token, "sendMessage", chat_id=world.user_id, text=" ") == (
        400,
        "Bad Request: message text is empty",
    )
    assert world.tg.error(world.token, "sendMessage", chat_id=world.user_id, text="x" * 4097) == (
        400,
        "Bad Request: message is too long",
    )


def test_callback_data_over_64_bytes_is_refused(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    markup = {"inline_keyboard": [[{"text": "Buy", "callback_data": "x" * 65}]]}
    code, description = world.tg.error(
        world.token, "sendMessage", chat_id=world.user_id, text="Plans", reply_markup=markup
    )
    assert (code, description) == (400, "Bad Request: BUTTON_DATA_INVALID")


def test_edit_and_delete(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    sent = world.tg.ok(
        world.token, "sendMessage", chat_id=world.user_id, text="Plans", reply_markup=BUY
    )
    ids = {"chat_id": world.user_id, "message_id": sent["message_id"]}
    edited = world.tg.ok(world.token, "editMessageText", **ids, text="Plans (updated)")
    assert edited["text"] == "Plans (updated)"
    assert "reply_markup" not in edited
    assert "edit_date" in edited
    same = world.tg.error(world.token, "editMessageText", **ids, text="Plans (updated)")
    assert same[0] == 400
    assert same[1].startswith("Bad Request: message is not modified")
    marked = world.tg.ok(world.token, "editMessageReplyMarkup", **ids, reply_markup=BUY)
    assert marked["reply_markup"] == BUY
    assert world.tg.ok(world.token, "deleteMessage", **ids) is True
    assert world.tg.error(world.token, "deleteMessage", **ids) == (
        400,
        "Bad Request: message to delete not found",
    )
    messages = world.tg.look(f"/users/{world.user_id}/messages", bot_id=world.bot_id)
    assert messages == []


def test_press_and_answer_a_callback_query(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    sent = world.tg.ok(
        world.token, "sendMessage", chat_id=world.user_id, text="Plans", reply_markup=BUY
    )
    world.tg.drain(world.token)
    pressed = world.tg.control(
        f"/users/{world.user_id}/press",
        {"bot_id": world.bot_id, "message_id": sent["message_id"], "callback_data": "plan:1"},
    )
    [update] = world.tg.drain(world.token)
    assert update["update_id"] == pressed["update_id"]
    query = update["callback_query"]
    assert query["data"] == "plan:1"
    assert query["message"]["message_id"] == sent["message_id"]
    assert query["chat_instance"]
    assert world.tg.ok(world.token, "answerCallbackQuery", callback_query_id=query["id"])
    again = world.tg.error(world.token, "answerCallbackQuery", callback_query_id=query["id"])
    assert again[0] == 400


def test_press_needs_a_real_button(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    sent = world.tg.ok(
        world.token, "sendMessage", chat_id=world.user_id, text="Plans", reply_markup=BUY
    )
    body = {"bot_id": world.bot_id, "message_id": sent["message_id"], "callback_data": "forged"}
    answer = world.tg.control(f"/users/{world.user_id}/press", body, status=400)
    assert "error" in answer


def test_messages_listing_shows_what_the_bot_sent(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    world.tg.ok(world.token, "sendMessage", chat_id=world.user_id, text="one", reply_markup=BUY)
    world.tg.ok(world.token, "sendMessage", chat_id=world.user_id, text="two")
    listed = world.tg.look(f"/users/{world.user_id}/messages", bot_id=world.bot_id)
    assert [m["text"] for m in listed] == ["one", "two"]
    assert listed[0]["reply_markup"] == BUY
    assert set(listed[1]) == {"message_id", "date", "text"}


def test_rate_budget_answers_429_with_retry_after(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    answers = [
        world.tg.api(world.token, "sendMessage", chat_id=world.user_id, text=f"n{n}")
        for n in range(6)
    ]
    limited = [a for a in answers if not a["ok"]]
    assert limited, "a burst into one chat must hit the per-chat budget"
    assert limited[0]["error_code"] == 429
    assert limited[0]["parameters"]["retry_after"] >= 1
    assert limited[0]["description"].startswith("Too Many Requests: retry after ")


def test_set_my_commands(world: World) -> None:
    commands = [{"command": "start", "description": "Plans"}]
    assert world.tg.ok(world.token, "setMyCommands", commands=commands) is True
    assert world.tg.ok(world.token, "getMyCommands") == commands
