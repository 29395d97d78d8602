"""TelegramClient against the real sandbox: results, every error class, tokens kept secret."""

import logging
import time
import traceback

import pytest

from botter.telegram.client import (
    TelegramClient,
    TokenRedactionFilter,
    bot_id_of,
    install_token_redaction,
    redact_tokens,
)
from botter.telegram.errors import (
    BotBlocked,
    CantInitiateConversation,
    CantRemoveOwner,
    ChatNotFound,
    MessageNotModified,
    NotEnoughRights,
    QueryTooOld,
    TelegramConflict,
    TelegramError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorized,
    UserIsAdministrator,
    UserNotFound,
)
from tests.conftest import free_port
from tests.telegram.conftest import Scene

# results


async def test_get_me_answers_the_bot(client: TelegramClient, scene: Scene) -> None:
    me = await client.get_me(scene.token)
    assert (me["id"], me["is_bot"]) == (scene.bot_id, True)


async def test_send_and_edit_a_message(client: TelegramClient, scene: Scene) -> None:
    markup = {"inline_keyboard": [[{"text": "Renew", "callback_data": "renew:1"}]]}
    sent = await client.send_message(scene.token, scene.user_id, "Hello", reply_markup=markup)
    edited = await client.edit_message_text(
        scene.token, scene.user_id, sent["message_id"], "Hello again"
    )
    assert edited["text"] == "Hello again"
    assert [m["text"] for m in scene.messages_to(scene.user_id)] == ["Hello again"]


async def test_stars_invoice_and_invoice_link(client: TelegramClient, scene: Scene) -> None:
    message = await client.send_invoice(
        scene.token, scene.user_id, "Premium", "30 days of access", "order-1", 250
    )
    link = await client.create_invoice_link(
        scene.token, "Premium", "Monthly", "order-2", 100, subscription_period_s=2_592_000
    )
    invoice = message["invoice"]
    assert (invoice["currency"], invoice["total_amount"]) == ("XTR", 250)
    assert link.startswith("https://t.me/")
    transactions = await client.get_star_transactions(scene.token, offset=0, limit=10)
    assert transactions == {"transactions": []}


async def test_invite_links_and_members(client: TelegramClient, scene: Scene) -> None:
    expire_date = int(time.time()) + 86_400
    link = await client.create_chat_invite_link(
        scene.token, scene.chat_id, name="order-1", expire_date=expire_date, member_limit=1
    )
    revoked = await client.revoke_chat_invite_link(scene.token, scene.chat_id, link["invite_link"])
    assert (link["member_limit"], revoked["is_revoked"]) == (1, True)
    owner = await client.get_chat_member(scene.token, scene.chat_id, scene.owner_id)
    admins = await client.get_chat_administrators(scene.token, scene.chat_id)
    chat = await client.get_chat(scene.token, scene.chat_id)
    assert owner["status"] == "creator"
    assert {admin["user"]["id"] for admin in admins} == {scene.owner_id, scene.bot_id}
    assert chat["id"] == scene.chat_id


async def test_ban_then_unban_only_if_banned(client: TelegramClient, scene: Scene) -> None:
    assert await client.ban_chat_member(scene.token, scene.chat_id, scene.user_id)
    assert await client.unban_chat_member(scene.token, scene.chat_id, scene.user_id)
    member = await client.get_chat_member(scene.token, scene.chat_id, scene.user_id)
    assert member["status"] == "left"


async def test_webhook_lifecycle(client: TelegramClient, scene: Scene) -> None:
    url = "https://botter.example/webhook/telegram/1"
    allowed = ["message", "chat_member", "chat_join_request"]
    assert await client.set_webhook(scene.token, url, "s3cret", allowed, 40, True)
    info = await client.get_webhook_info(scene.token)
    assert (info["url"], info["allowed_updates"]) == (url, allowed)
    assert await client.delete_webhook(scene.token)
    assert await client.get_updates(scene.token) == []  # dropped with the webhook
    scene.tg.start(scene.user_id, scene.bot_id, "/help")
    updates = await client.get_updates(scene.token, offset=None, timeout_s=1)
    assert [u["message"]["text"] for u in updates] == ["/help"]


async def test_call_answers_any_method(client: TelegramClient, scene: Scene) -> None:
    result = await client.call(scene.token, "getChatMemberCount", {"chat_id": scene.chat_id})
    assert result == 2


# every error class from a real answer


async def test_403_before_the_user_started_the_bot(client: TelegramClient, scene: Scene) -> None:
    stranger = scene.tg.user("Ben")
    with pytest.raises(CantInitiateConversation) as caught:
        await client.send_message(scene.token, stranger, "hi")
    assert (caught.value.error_code, caught.value.retryable) == (403, False)


async def test_403_after_the_user_blocked_the_bot(client: TelegramClient, scene: Scene) -> None:
    scene.tg.control(f"/users/{scene.user_id}/block", {"bot_id": scene.bot_id})
    with pytest.raises(BotBlocked):
        await client.send_message(scene.token, scene.user_id, "hi")


async def test_chat_not_found(client: TelegramClient, scene: Scene) -> None:
    with pytest.raises(ChatNotFound) as caught:
        await client.get_chat(scene.token, -100_999_999_999)
    assert caught.value.method == "getChat"


async def test_user_not_found(client: TelegramClient, scene: Scene) -> None:
    with pytest.raises(UserNotFound):
        await client.ban_chat_member(scene.token, scene.chat_id, 999_999_999)


async def test_cant_remove_chat_owner(client: TelegramClient, scene: Scene) -> None:
    with pytest.raises(CantRemoveOwner):
        await client.ban_chat_member(scene.token, scene.chat_id, scene.owner_id)


async def test_user_is_an_administrator(client: TelegramClient, scene: Scene) -> None:
    admin_id = scene.tg.user("Ada")
    scene.tg.control(f"/chats/{scene.chat_id}/admins", {"user_id": admin_id})
    with pytest.raises(UserIsAdministrator):
        await client.ban_chat_member(scene.token, scene.chat_id, admin_id)


async def test_not_enough_rights(client: TelegramClient, scene: Scene) -> None:
    weak = scene.tg.bot(f"weak{scene.bot_id}_bot")
    rights = {"can_restrict_members": False}
    scene.tg.control(f"/chats/{scene.chat_id}/admins", {"user_id": weak["id"], "rights": rights})
    with pytest.raises(NotEnoughRights) as caught:
        await client.ban_chat_member(weak["token"], scene.chat_id, scene.user_id)
    assert caught.value.retryable is False


async def test_message_not_modified(client: TelegramClient, scene: Scene) -> None:
    sent = await client.send_message(scene.token, scene.user_id, "same")
    with pytest.raises(MessageNotModified):
        await client.edit_message_text(scene.token, scene.user_id, sent["message_id"], "same")


async def test_query_too_old(client: TelegramClient, scene: Scene) -> None:
    with pytest.raises(QueryTooOld):
        await client.answer_callback_query(scene.token, "404404404", text="late")
    with pytest.raises(QueryTooOld):
        await client.answer_pre_checkout_query(scene.token, "404404404", ok=True)


async def test_401_with_a_bad_token(client: TelegramClient, scene: Scene) -> None:
    with pytest.raises(TelegramUnauthorized) as caught:
        await client.get_me(f"{scene.bot_id}:not-the-secret")
    assert (caught.value.error_code, caught.value.retryable) == (401, False)


async def test_404_for_an_unknown_method(client: TelegramClient, scene: Scene) -> None:
    with pytest.raises(TelegramNotFound):
        await client.call(scene.token, "sendTelepathy", {})


async def test_409_polling_while_a_webhook_is_set(client: TelegramClient, scene: Scene) -> None:
    await client.set_webhook(scene.token, "https://botter.example/hook", "s3cret")
    with pytest.raises(TelegramConflict):
        await client.get_updates(scene.token)


async def test_429_raises_retry_after(client: TelegramClient, scene: Scene) -> None:
    scene.fault(method="sendMessage", error_code=429, retry_after=7, times=1)
    with pytest.raises(TelegramRetryAfter) as caught:
        await client.send_message(scene.token, scene.user_id, "hi")
    assert (caught.value.retry_after_s, caught.value.retryable) == (7, True)
    assert scene.outcomes("sendMessage") == [429]


async def test_retry_429_retries_in_place_after_retry_after(
    client: TelegramClient, scene: Scene
) -> None:
    scene.fault(method="getChat", error_code=429, retry_after=1, times=1)
    chat = await client.call(scene.token, "getChat", {"chat_id": scene.chat_id}, retry_429=1)
    assert chat["id"] == scene.chat_id
    assert scene.outcomes("getChat") == [429, None]


async def test_500_is_a_retryable_server_error(client: TelegramClient, scene: Scene) -> None:
    scene.fault(method="getMe", error_code=500, times=1)
    with pytest.raises(TelegramServerError) as caught:
        await client.get_me(scene.token)
    assert (caught.value.error_code, caught.value.retryable) == (500, True)


async def test_an_answer_that_is_no_envelope(sandbox_url: str, scene: Scene) -> None:
    async with TelegramClient(f"{sandbox_url}/sandbox", None) as misdirected:
        with pytest.raises(TelegramError) as caught:
            await misdirected.get_me(scene.token)
    assert caught.value.error_code == 404


async def test_network_error_against_a_closed_port(scene: Scene) -> None:
    async with TelegramClient(f"http://127.0.0.1:{free_port()}", None) as nowhere:
        with pytest.raises(TelegramNetworkError) as caught:
            await nowhere.get_me(scene.token)
    assert (caught.value.error_code, caught.value.retryable) == (None, True)
    assert "127.0.0.1" not in str(caught.value)


async def test_timeout_is_a_network_error(sandbox_url: str, scene: Scene) -> None:
    scene.fault(method="getMe", error_code=504, delay_s=3, times=1)
    async with TelegramClient(sandbox_url, None, timeout_s=0.5) as impatient:
        with pytest.raises(TelegramNetworkError) as caught:
            await impatient.get_me(scene.token)
    assert caught.value.description == "no answer within 0.5 s"


# tokens


def test_malformed_tokens_are_refused_without_being_echoed() -> None:
    with pytest.raises(ValueError, match="form") as caught:
        bot_id_of("no-colon-secret")
    assert "no-colon-secret" not in str(caught.value)
    assert bot_id_of("123:abc") == 123


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("POST http://h/bot123:AbC-d_e/getMe", "POST http://h/bot123:***/getMe"),
        ("http://h/bot123%3AAbC/getMe", "http://h/bot123%3A***/getMe"),
        ("url=/bot42:xyz", "url=/bot42:***"),
        ("/bot/setWebhook and /botter:prefix stay", "/bot/setWebhook and /botter:prefix stay"),
    ],
)
def test_redact_tokens(text: str, redacted: str) -> None:
    assert redact_tokens(text) == redacted


def test_the_filter_rewrites_message_and_arguments() -> None:
    record = logging.LogRecord(
        "httpx", logging.INFO, __file__, 1, "HTTP Request: %s %s (%d)", None, None
    )
    record.args = ("POST", "http://h/bot7:SECRET/getMe", 200)
    assert TokenRedactionFilter().filter(record)
    assert record.getMessage() == "HTTP Request: POST http://h/bot7:***/getMe (200)"


def test_install_token_redaction_adds_one_filter_per_logger() -> None:
    install_token_redaction()
    install_token_redaction()
    for name in ("httpx", "httpcore", "httpcore.http11"):
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, TokenRedactionFilter) for f in filters) == 1


async def test_p9_the_token_never_reaches_logs_or_errors(
    client: TelegramClient, scene: Scene, sandbox_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = scene.token.partition(":")[2]
    scene.fault(method="getChat", error_code=429, retry_after=1, times=1)
    raised: list[TelegramError] = []
    await client.get_me(scene.token)
    for attempt in (
        client.get_chat(scene.token, scene.chat_id),
        client.get_chat(scene.token, -1),
        client.call(scene.token, "sendTelepathy", {}),
    ):
        with pytest.raises(TelegramError) as caught:
            await attempt
        raised.append(caught.value)
    async with TelegramClient(f"http://127.0.0.1:{free_port()}", None) as nowhere:
        with pytest.raises(TelegramNetworkError) as no_answer:
            await nowhere.get_me(scene.token)
    raised.append(no_answer.value)

    shown = [str(e) + repr(e) + "".join(traceback.format_exception(e)) for e in raised]
    assert all(secret not in text for text in shown)
    assert secret not in caplog.text
    assert any(r.name == "httpx" for r in caplog.records), "httpx logged nothing to redact"
    assert f"/bot{scene.bot_id}:***/getMe" in caplog.text
    failures = [r.getMessage() for r in caplog.records if "telegram.call_failed" in r.msg]
    assert failures[0] == (
        "telegram.call_failed method=getChat error_code=429 "
        f"bot_id={scene.bot_id} error=TelegramRetryAfter "
        "description=Too Many Requests: retry after 1"
    )
    assert len(failures) == 4
