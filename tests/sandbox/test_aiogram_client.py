"""aiogram 3, unchanged, against the sandbox: typed methods, typed errors, polling, webhooks."""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.methods import SendMessage
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    ChatFullInfo,
    ChatInviteLink,
    ChatJoinRequest,
    ChatMemberAdministrator,
    ChatMemberBanned,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
    StarTransactions,
    TransactionPartnerUser,
    Update,
    User,
    WebhookInfo,
)
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from pydantic import BaseModel

from tests.conftest import free_port
from tests.sandbox.conftest import Telegram, World, unique

SUBSCRIPTION_PERIOD_S = 2_592_000
DEADLINE_S = 5.0


def aiogram_bot(sandbox_url: str, token: str) -> Bot:
    return Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(sandbox_url)))


def assert_fully_known(value: Any, path: str = "result") -> None:
    """aiogram keeps unknown fields as extras: any extra is a field its Bot API lacks."""
    if isinstance(value, BaseModel):
        assert not value.model_extra, (
            f"{path} has fields aiogram does not know: {value.model_extra}"
        )
        for name in type(value).model_fields:
            assert_fully_known(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            assert_fully_known(item, f"{path}[{index}]")


async def eventually(
    probe: Callable[[], Awaitable[Any]], timeout_s: float = DEADLINE_S, what: str = "condition"
) -> Any:
    """Poll until probe answers something truthy; answer it."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.05)


@dataclass
class Control:
    """The control API from inside the event loop, so aiogram keeps running meanwhile."""

    http: httpx.AsyncClient

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        response = await self.http.post(f"/sandbox{path}", json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def messages(self, user_id: int, bot_id: int) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"/sandbox/users/{user_id}/messages", params={"bot_id": bot_id}
        )
        assert response.status_code == 200, response.text
        shown: list[dict[str, Any]] = response.json()
        return shown

    async def reply_text(self, user_id: int, bot_id: int, text: str) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            sent = await self.messages(user_id, bot_id)
            return next((m for m in sent if m.get("text") == text), None)

        found: dict[str, Any] = await eventually(probe, what=f"bot reply {text!r}")
        return found


@pytest.fixture
async def control(sandbox_url: str) -> AsyncIterator[Control]:
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=30) as http:
        yield Control(http)


@pytest.fixture
async def bot(sandbox_url: str, world: World) -> AsyncIterator[Bot]:
    client = aiogram_bot(sandbox_url, world.token)
    yield client
    await client.session.close()


@pytest.fixture
def started(world: World) -> World:
    """The world, with its user having started the bot and that update already consumed."""
    world.tg.start(world.user_id, world.bot_id)
    world.tg.drain(world.token)
    return world


async def next_update(bot: Bot) -> Update:
    """The first pending update, confirmed; aiogram parses the getUpdates result."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        updates = await bot.get_updates(timeout=1)
        if updates:
            assert_fully_known(updates)
            await bot.get_updates(offset=updates[0].update_id + 1, timeout=0)
            return updates[0]
    raise AssertionError("no update arrived")


async def pay_answering(
    bot: Bot, control: Control, user_id: int, body: dict[str, Any], ok: bool = True
) -> tuple[dict[str, Any], PreCheckoutQuery]:
    """Run the control `pay` while the bot polls for its pre_checkout_query and answers it."""
    paying = asyncio.create_task(control.post(f"/users/{user_id}/pay", body))
    try:
        async with asyncio.timeout(DEADLINE_S):
            update = await next_update(bot)
            query = update.pre_checkout_query
            assert isinstance(query, PreCheckoutQuery)
            if ok:
                answered = await bot.answer_pre_checkout_query(query.id, ok=True)
            else:
                answered = await bot.answer_pre_checkout_query(
                    query.id, ok=False, error_message="Sold out"
                )
            assert answered is True
            outcome: dict[str, Any] = await paying
    finally:
        paying.cancel()
    return outcome, query


async def send_stars_invoice(bot: Bot, user_id: int, amount: int = 50) -> Message:
    return await bot.send_invoice(
        chat_id=user_id,
        title="Premium",
        description="30 days of the premium channel",
        payload=unique("order"),
        currency="XTR",
        prices=[LabeledPrice(label="Premium", amount=amount)],
    )


def join(tg: Telegram, user_id: int, invite_link: str) -> str:
    status: str = tg.control(f"/users/{user_id}/join", {"invite_link": invite_link})["status"]
    return status


def member_of(tg: Telegram, chat_id: int) -> int:
    """A new user who joined the chat through a plain owner link."""
    user_id = tg.user("Mia")
    link = tg.control(f"/chats/{chat_id}/links")["invite_link"]
    assert join(tg, user_id, link) == "member"
    return user_id


# identity and update delivery


async def test_get_me(bot: Bot, world: World) -> None:
    me = await bot.get_me()
    assert isinstance(me, User)
    assert me.id == world.bot_id
    assert me.is_bot is True
    assert me.username is not None
    assert me.username.endswith("_bot")
    assert_fully_known(me)


async def test_set_get_and_delete_webhook(bot: Bot) -> None:
    url = "https://example.com/hook"
    assert await bot.set_webhook(
        url, secret_token="s3cret", max_connections=5, allowed_updates=["message"]
    )
    info = await bot.get_webhook_info()
    assert isinstance(info, WebhookInfo)
    assert_fully_known(info)
    assert info.url == url
    assert info.max_connections == 5
    assert info.allowed_updates == ["message"]
    assert info.pending_update_count == 0
    assert await bot.delete_webhook(drop_pending_updates=True) is True
    assert (await bot.get_webhook_info()).url == ""


async def test_get_updates_parses_a_command_message(bot: Bot, world: World) -> None:
    world.tg.start(world.user_id, world.bot_id, "/start ref42")
    update = await next_update(bot)
    message = update.message
    assert isinstance(message, Message)
    assert message.text == "/start ref42"
    assert message.from_user is not None
    assert message.from_user.id == world.user_id
    assert message.chat.type == "private"
    assert message.entities is not None
    assert (message.entities[0].type, message.entities[0].offset) == ("bot_command", 0)
    assert message.entities[0].length == len("/start")


# messages


async def test_send_message_with_inline_keyboard(bot: Bot, started: World) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Buy", callback_data="buy:30")]]
    )
    sent = await bot.send_message(started.user_id, "Plans", reply_markup=markup)
    assert isinstance(sent, Message)
    assert_fully_known(sent)
    assert sent.text == "Plans"
    assert sent.chat.id == started.user_id
    assert sent.from_user is not None
    assert sent.from_user.id == started.bot_id
    assert isinstance(sent.reply_markup, InlineKeyboardMarkup)
    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "buy:30"


async def test_edit_message_text_and_reply_markup(bot: Bot, started: World) -> None:
    sent = await bot.send_message(started.user_id, "Plans")
    edited = await bot.edit_message_text(
        "Plans, updated", chat_id=started.user_id, message_id=sent.message_id
    )
    assert isinstance(edited, Message)
    assert_fully_known(edited)
    assert edited.text == "Plans, updated"
    assert edited.edit_date is not None
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Renew", callback_data="renew")]]
    )
    remarked = await bot.edit_message_reply_markup(
        chat_id=started.user_id, message_id=sent.message_id, reply_markup=markup
    )
    assert isinstance(remarked, Message)
    assert isinstance(remarked.reply_markup, InlineKeyboardMarkup)
    assert remarked.reply_markup.inline_keyboard[0][0].text == "Renew"


async def test_delete_message(bot: Bot, started: World, control: Control) -> None:
    sent = await bot.send_message(started.user_id, "Temporary")
    assert await bot.delete_message(started.user_id, sent.message_id) is True
    shown = await control.messages(started.user_id, started.bot_id)
    assert all(message["message_id"] != sent.message_id for message in shown)


async def test_answer_callback_query_after_press(bot: Bot, started: World) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Buy", callback_data="buy")]]
    )
    sent = await bot.send_message(started.user_id, "Plans", reply_markup=markup)
    started.tg.control(
        f"/users/{started.user_id}/press",
        {"bot_id": started.bot_id, "message_id": sent.message_id, "callback_data": "buy"},
    )
    query = (await next_update(bot)).callback_query
    assert isinstance(query, CallbackQuery)
    assert query.data == "buy"
    assert query.from_user.id == started.user_id
    assert isinstance(query.message, Message)
    assert query.message.message_id == sent.message_id
    assert await bot.answer_callback_query(query.id, text="Opening the invoice") is True


# payments in Stars


async def test_send_invoice_in_stars(bot: Bot, started: World) -> None:
    sent = await send_stars_invoice(bot, started.user_id, amount=75)
    assert_fully_known(sent)
    assert sent.invoice is not None
    assert sent.invoice.currency == "XTR"
    assert sent.invoice.total_amount == 75
    assert sent.invoice.title == "Premium"
    assert sent.invoice.start_parameter == ""


async def test_create_subscription_invoice_link(bot: Bot) -> None:
    link = await bot.create_invoice_link(
        title="Premium",
        description="Monthly access",
        payload=unique("sub"),
        currency="XTR",
        prices=[LabeledPrice(label="Month", amount=100)],
        subscription_period=SUBSCRIPTION_PERIOD_S,
    )
    assert isinstance(link, str)
    assert link.startswith("https://t.me/$")


async def test_answer_pre_checkout_query(bot: Bot, started: World, control: Control) -> None:
    invoice = await send_stars_invoice(bot, started.user_id)
    outcome, query = await pay_answering(
        bot, control, started.user_id, {"bot_id": started.bot_id, "message_id": invoice.message_id}
    )
    assert outcome["status"] == "paid"
    assert query.currency == "XTR"
    assert query.total_amount == 50
    receipt = (await next_update(bot)).message
    assert receipt is not None
    assert receipt.successful_payment is not None
    assert (
        receipt.successful_payment.telegram_payment_charge_id
        == (outcome["telegram_payment_charge_id"])
    )
    assert receipt.successful_payment.invoice_payload == query.invoice_payload


async def test_declined_pre_checkout_query(bot: Bot, started: World, control: Control) -> None:
    invoice = await send_stars_invoice(bot, started.user_id)
    outcome, _ = await pay_answering(
        bot,
        control,
        started.user_id,
        {"bot_id": started.bot_id, "message_id": invoice.message_id},
        ok=False,
    )
    assert outcome == {"status": "declined", "error_message": "Sold out"}


async def test_get_star_transactions(bot: Bot, started: World, control: Control) -> None:
    invoice = await send_stars_invoice(bot, started.user_id, amount=40)
    outcome, query = await pay_answering(
        bot, control, started.user_id, {"bot_id": started.bot_id, "message_id": invoice.message_id}
    )
    ledger = await bot.get_star_transactions(offset=0, limit=10)
    assert isinstance(ledger, StarTransactions)
    assert_fully_known(ledger)
    [payment] = ledger.transactions
    assert payment.id == outcome["telegram_payment_charge_id"]
    assert payment.amount == 40
    assert isinstance(payment.source, TransactionPartnerUser)
    assert payment.source.transaction_type == "invoice_payment"
    assert payment.source.user.id == started.user_id
    assert payment.source.invoice_payload == query.invoice_payload
    assert payment.receiver is None


async def test_refund_star_payment(bot: Bot, started: World, control: Control) -> None:
    invoice = await send_stars_invoice(bot, started.user_id)
    outcome, _ = await pay_answering(
        bot, control, started.user_id, {"bot_id": started.bot_id, "message_id": invoice.message_id}
    )
    charge_id = outcome["telegram_payment_charge_id"]
    assert await bot.refund_star_payment(started.user_id, charge_id) is True
    ledger = await bot.get_star_transactions()
    assert_fully_known(ledger)
    refund = ledger.transactions[-1]
    assert refund.id == charge_id
    assert refund.source is None
    assert isinstance(refund.receiver, TransactionPartnerUser)
    assert refund.receiver.user.id == started.user_id
    with pytest.raises(TelegramBadRequest, match="CHARGE_ALREADY_REFUNDED"):
        await bot.refund_star_payment(started.user_id, charge_id)


async def test_edit_user_star_subscription(bot: Bot, started: World, control: Control) -> None:
    link = await bot.create_invoice_link(
        title="Premium",
        description="Monthly access",
        payload=unique("sub"),
        currency="XTR",
        prices=[LabeledPrice(label="Month", amount=100)],
        subscription_period=SUBSCRIPTION_PERIOD_S,
    )
    outcome, _ = await pay_answering(bot, control, started.user_id, {"invoice_link": link})
    assert outcome["status"] == "paid"
    receipt = (await next_update(bot)).message
    assert receipt is not None
    assert receipt.successful_payment is not None
    assert receipt.successful_payment.is_recurring is True
    assert receipt.successful_payment.subscription_expiration_date is not None
    charge_id = outcome["telegram_payment_charge_id"]
    assert await bot.edit_user_star_subscription(started.user_id, charge_id, is_canceled=True)
    assert await bot.edit_user_star_subscription(started.user_id, charge_id, is_canceled=False)


# invite links and join requests


async def test_invite_link_create_edit_revoke(bot: Bot, world: World) -> None:
    expire_date = int(time.time()) + 3600
    link = await bot.create_chat_invite_link(
        world.chat_id, name="Spring sale", expire_date=expire_date, member_limit=5
    )
    assert isinstance(link, ChatInviteLink)
    assert_fully_known(link)
    assert link.invite_link.startswith("https://t.me/+")
    assert (link.name, link.member_limit) == ("Spring sale", 5)
    assert link.expire_date is not None
    assert int(link.expire_date.timestamp()) == expire_date
    assert link.creator.id == world.bot_id
    assert link.is_revoked is False

    edited = await bot.edit_chat_invite_link(
        world.chat_id, link.invite_link, name="Summer sale", member_limit=10
    )
    assert isinstance(edited, ChatInviteLink)
    assert (edited.name, edited.member_limit) == ("Summer sale", 10)

    revoked = await bot.revoke_chat_invite_link(world.chat_id, link.invite_link)
    assert isinstance(revoked, ChatInviteLink)
    assert revoked.is_revoked is True
    assert join(world.tg, world.tg.user("Late"), link.invite_link) == "rejected"


async def test_create_chat_subscription_invite_link(bot: Bot, world: World) -> None:
    link = await bot.create_chat_subscription_invite_link(
        world.chat_id,
        subscription_period=SUBSCRIPTION_PERIOD_S,
        subscription_price=50,
        name="Monthly",
    )
    assert isinstance(link, ChatInviteLink)
    assert_fully_known(link)
    assert link.subscription_period == SUBSCRIPTION_PERIOD_S
    assert link.subscription_price == 50
    assert link.name == "Monthly"


async def request_to_join(bot: Bot, world: World) -> ChatJoinRequest:
    await bot.get_updates(allowed_updates=["chat_join_request", "chat_member"], timeout=0)
    link = await bot.create_chat_invite_link(world.chat_id, creates_join_request=True)
    assert link.creates_join_request is True
    assert join(world.tg, world.user_id, link.invite_link) == "pending"
    request = (await next_update(bot)).chat_join_request
    assert isinstance(request, ChatJoinRequest)
    assert request.from_user.id == world.user_id
    assert request.chat.id == world.chat_id
    assert request.invite_link is not None
    assert request.invite_link.invite_link == link.invite_link
    return request


async def test_approve_chat_join_request(bot: Bot, world: World) -> None:
    request = await request_to_join(bot, world)
    assert await bot.approve_chat_join_request(world.chat_id, request.from_user.id) is True
    change = (await next_update(bot)).chat_member
    assert isinstance(change, ChatMemberUpdated)
    assert isinstance(change.old_chat_member, ChatMemberLeft)
    assert isinstance(change.new_chat_member, ChatMemberMember)
    assert change.via_join_request is True
    member = await bot.get_chat_member(world.chat_id, world.user_id)
    assert isinstance(member, ChatMemberMember)


async def test_decline_chat_join_request(bot: Bot, world: World) -> None:
    request = await request_to_join(bot, world)
    assert await bot.decline_chat_join_request(world.chat_id, request.from_user.id) is True
    member = await bot.get_chat_member(world.chat_id, world.user_id)
    assert isinstance(member, ChatMemberLeft)
    with pytest.raises(TelegramBadRequest, match="HIDE_REQUESTER_MISSING"):
        await bot.decline_chat_join_request(world.chat_id, request.from_user.id)


# members


async def test_ban_and_unban_only_if_banned(bot: Bot, world: World) -> None:
    user_id = member_of(world.tg, world.chat_id)
    assert await bot.ban_chat_member(world.chat_id, user_id) is True
    banned = await bot.get_chat_member(world.chat_id, user_id)
    assert isinstance(banned, ChatMemberBanned)
    assert_fully_known(banned)
    assert await bot.unban_chat_member(world.chat_id, user_id, only_if_banned=True) is True
    assert isinstance(await bot.get_chat_member(world.chat_id, user_id), ChatMemberLeft)

    rejoined = member_of(world.tg, world.chat_id)
    assert await bot.unban_chat_member(world.chat_id, rejoined, only_if_banned=True) is True
    assert isinstance(await bot.get_chat_member(world.chat_id, rejoined), ChatMemberMember)
    with pytest.raises(TelegramBadRequest, match="can't remove chat owner"):
        await bot.ban_chat_member(world.chat_id, world.owner_id)


async def test_get_chat_is_chat_full_info(bot: Bot, world: World) -> None:
    chat = await bot.get_chat(world.chat_id)
    assert isinstance(chat, ChatFullInfo)
    assert_fully_known(chat)
    assert (chat.id, chat.type, chat.title) == (world.chat_id, "channel", "Premium")


async def test_get_chat_member_parses_every_status(bot: Bot, world: World) -> None:
    member_id = member_of(world.tg, world.chat_id)
    banned_id = member_of(world.tg, world.chat_id)
    assert await bot.ban_chat_member(world.chat_id, banned_id)
    expected = {
        world.owner_id: ChatMemberOwner,
        world.bot_id: ChatMemberAdministrator,
        member_id: ChatMemberMember,
        banned_id: ChatMemberBanned,
        world.user_id: ChatMemberLeft,
    }
    for user_id, kind in expected.items():
        member = await bot.get_chat_member(world.chat_id, user_id)
        assert isinstance(member, kind), (user_id, member)
        assert member.user.id == user_id
        assert_fully_known(member)
    admin = await bot.get_chat_member(world.chat_id, world.bot_id)
    assert isinstance(admin, ChatMemberAdministrator)
    assert admin.can_invite_users is True
    assert admin.can_restrict_members is True


async def test_get_chat_administrators(bot: Bot, world: World) -> None:
    admins = await bot.get_chat_administrators(world.chat_id)
    assert_fully_known(admins)
    kinds = {admin.user.id: type(admin) for admin in admins}
    assert kinds == {world.owner_id: ChatMemberOwner, world.bot_id: ChatMemberAdministrator}


async def test_get_chat_member_count(bot: Bot, world: World) -> None:
    assert await bot.get_chat_member_count(world.chat_id) == 2
    member_of(world.tg, world.chat_id)
    assert await bot.get_chat_member_count(world.chat_id) == 3


async def test_set_my_commands(bot: Bot) -> None:
    commands = [
        BotCommand(command="start", description="Start"),
        BotCommand(command="paysupport", description="Payment support"),
    ]
    assert await bot.set_my_commands(commands) is True
    stored = await bot.get_my_commands()
    assert all(isinstance(command, BotCommand) for command in stored)
    assert [(c.command, c.description) for c in stored] == [
        (c.command, c.description) for c in commands
    ]


# typed errors


async def test_bad_token_raises_unauthorized(sandbox_url: str) -> None:
    stranger = aiogram_bot(sandbox_url, "123456:" + "x" * 35)
    try:
        with pytest.raises(TelegramUnauthorizedError, match="Unauthorized"):
            await stranger.get_me()
    finally:
        await stranger.session.close()


async def test_user_who_never_started_raises_forbidden(bot: Bot, world: World) -> None:
    with pytest.raises(TelegramForbiddenError, match="bot can't initiate conversation"):
        await bot.send_message(world.user_id, "Hello?")


async def test_unknown_chat_raises_bad_request(bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_chat(-1_009_999_999_999)


async def test_injected_429_raises_retry_after(bot: Bot, started: World) -> None:
    started.tg.control(
        "/faults",
        {
            "bot_id": started.bot_id,
            "method": "sendMessage",
            "error_code": 429,
            "retry_after": 3,
            "times": 1,
        },
    )
    with pytest.raises(TelegramRetryAfter) as raised:
        await bot.send_message(started.user_id, "Hello")
    assert raised.value.retry_after == 3
    assert isinstance(raised.value.method, SendMessage)
    assert (await bot.send_message(started.user_id, "Hello")).text == "Hello"


# a Dispatcher, polling


async def test_dispatcher_polling_answers_start(bot: Bot, world: World, control: Control) -> None:
    dp = Dispatcher()
    seen: list[Message] = []

    @dp.message(CommandStart())
    async def on_start(message: Message) -> None:
        seen.append(message)
        await message.answer("Welcome!")

    await control.post(f"/users/{world.user_id}/send", {"bot_id": world.bot_id, "text": "/start"})
    polling = asyncio.create_task(
        dp.start_polling(bot, polling_timeout=1, handle_signals=False, close_bot_session=False)
    )
    try:
        await control.reply_text(world.user_id, world.bot_id, "Welcome!")
    finally:
        await asyncio.wait_for(dp.stop_polling(), DEADLINE_S)
        await asyncio.wait_for(polling, DEADLINE_S)
    [message] = seen
    assert message.entities is not None
    assert message.entities[0].type == "bot_command"


# aiogram's webhook server


@dataclass
class WebhookServer:
    url: str
    attempts: list[int]
    content_types: list[str]


@pytest.fixture
async def webhook_server(bot: Bot) -> AsyncIterator[Callable[..., Awaitable[WebhookServer]]]:
    runners: list[web.AppRunner] = []

    async def serve(dp: Dispatcher, secret_token: str) -> WebhookServer:
        attempts: list[int] = []
        content_types: list[str] = []

        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            content_types.append(request.headers.get("Content-Type", ""))
            response: web.StreamResponse = await handler(request)
            attempts.append(response.status)
            return response

        app = web.Application(middlewares=[count])
        SimpleRequestHandler(
            dp, bot, secret_token=secret_token, handle_in_background=False
        ).register(app, path="/webhook")
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return WebhookServer(f"http://127.0.0.1:{port}/webhook", attempts, content_types)

    yield serve
    # Stop the sandbox retrying into a server that is about to go away.
    await bot.delete_webhook(drop_pending_updates=True)
    for runner in runners:
        await runner.cleanup()


def replying_dispatcher(text: str) -> Dispatcher:
    dp = Dispatcher()

    @dp.message(CommandStart())
    async def on_start(message: Message) -> SendMessage:
        return message.answer(text)

    return dp


async def test_webhook_reply_method_is_executed(
    bot: Bot,
    world: World,
    control: Control,
    webhook_server: Callable[..., Awaitable[WebhookServer]],
) -> None:
    secret = "hook_Secret-1"
    server = await webhook_server(replying_dispatcher("Hi from the webhook"), secret)
    assert await bot.set_webhook(server.url, secret_token=secret)
    await control.post(f"/users/{world.user_id}/send", {"bot_id": world.bot_id, "text": "/start"})
    reply = await control.reply_text(world.user_id, world.bot_id, "Hi from the webhook")
    assert reply["message_id"] >= 1
    assert server.attempts == [200]
    assert server.content_types == ["application/json"]
    info = await bot.get_webhook_info()
    assert info.pending_update_count == 0
    assert info.last_error_message is None


async def test_webhook_with_wrong_secret_keeps_retrying(
    bot: Bot,
    world: World,
    control: Control,
    webhook_server: Callable[..., Awaitable[WebhookServer]],
) -> None:
    server = await webhook_server(replying_dispatcher("Hi after the fix"), "the_right_secret")
    assert await bot.set_webhook(server.url, secret_token="a_wrong_secret")
    await control.post(f"/users/{world.user_id}/send", {"bot_id": world.bot_id, "text": "/start"})

    async def retried() -> bool:
        return len(server.attempts) >= 2

    # The retry backoff starts at 1 s, so a second attempt comes within about a second.
    await eventually(retried, what="a retried delivery")
    assert set(server.attempts) == {401}
    info = await bot.get_webhook_info()
    assert info.pending_update_count >= 1
    assert info.last_error_message is not None
    assert "401" in info.last_error_message
    assert info.last_error_date is not None
    assert await control.messages(world.user_id, world.bot_id) == []

    # The update was kept: with the right secret it is delivered and answered.
    assert await bot.set_webhook(server.url, secret_token="the_right_secret")
    await control.reply_text(world.user_id, world.bot_id, "Hi after the fix")
    assert server.attempts[-1] == 200
