"""The emulated Telegram's state: users, bots, chats, members, messages, links, payments.

Everything lives in memory on one event loop, so mutations between awaits are atomic.
The `to_api` methods render objects as the Bot API does: required fields always,
optional fields only when set (Telegram never sends null).
"""

import secrets
import string
import time
from dataclasses import dataclass, field
from typing import Any

from botter.sandbox.errors import CHAT_NOT_FOUND, bad_request

TOKEN_ALPHABET = string.ascii_letters + string.digits + "_-"
LINK_ALPHABET = string.ascii_letters + string.digits + "_-"

ACTIVE_STATUSES = frozenset({"creator", "administrator", "member"})
ADMIN_STATUSES = frozenset({"creator", "administrator"})
ADMIN_RIGHTS = (
    "can_manage_chat",
    "can_delete_messages",
    "can_manage_video_chats",
    "can_restrict_members",
    "can_promote_members",
    "can_change_info",
    "can_invite_users",
    "can_post_stories",
    "can_edit_stories",
    "can_delete_stories",
    "can_send_welcome_messages",
)
CHANNEL_ADMIN_RIGHTS = ("can_post_messages", "can_edit_messages")
GROUP_ADMIN_RIGHTS = ("can_pin_messages", "can_manage_topics")


def now_s() -> int:
    return int(time.time())


def compact(values: dict[str, Any]) -> dict[str, Any]:
    """Drop absent optional fields: Telegram leaves them out instead of sending null."""
    return {key: value for key, value in values.items() if value is not None}


def random_text(length: int, alphabet: str = LINK_ALPHABET) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


@dataclass
class User:
    id: int
    first_name: str
    is_bot: bool = False
    username: str | None = None
    last_name: str | None = None
    language_code: str | None = None
    stars: int = 0

    def to_api(self) -> dict[str, Any]:
        return compact(
            {
                "id": self.id,
                "is_bot": self.is_bot,
                "first_name": self.first_name,
                "last_name": self.last_name,
                "username": self.username,
                "language_code": self.language_code,
            }
        )

    def private_chat_api(self) -> dict[str, Any]:
        return compact(
            {
                "id": self.id,
                "type": "private",
                "first_name": self.first_name,
                "last_name": self.last_name,
                "username": self.username,
            }
        )


@dataclass
class Bot:
    user: User
    token: str
    webhook_url: str = ""
    webhook_secret: str | None = None
    webhook_max_connections: int = 40
    # None means Telegram's default set, which leaves out chat_member and reactions.
    allowed_updates: list[str] | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)

    @property
    def id(self) -> int:
        return self.user.id


@dataclass
class Message:
    message_id: int
    date: int
    chat: dict[str, Any]
    sender: User | None
    text: str | None = None
    entities: list[dict[str, Any]] | None = None
    reply_markup: dict[str, Any] | None = None
    invoice: dict[str, Any] | None = None
    successful_payment: dict[str, Any] | None = None
    refunded_payment: dict[str, Any] | None = None
    edit_date: int | None = None
    deleted: bool = False

    def to_api(self) -> dict[str, Any]:
        return compact(
            {
                "message_id": self.message_id,
                "from": self.sender.to_api() if self.sender else None,
                "date": self.date,
                "edit_date": self.edit_date,
                "chat": self.chat,
                "text": self.text,
                "entities": self.entities,
                "invoice": self.invoice,
                "successful_payment": self.successful_payment,
                "refunded_payment": self.refunded_payment,
                "reply_markup": self.reply_markup,
            }
        )

    def callback_data(self) -> set[str]:
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return {
            button["callback_data"] for row in rows for button in row if "callback_data" in button
        }


@dataclass
class PrivateChat:
    """The conversation between one bot and one user."""

    bot_id: int
    user_id: int
    started: bool = False
    blocked: bool = False
    # A join request lets the bot write first, for a while, even before /start.
    may_write_until: int = 0
    messages: list[Message] = field(default_factory=list)

    def next_message_id(self) -> int:
        return len(self.messages) + 1


@dataclass
class Membership:
    user_id: int
    status: str
    rights: dict[str, bool] = field(default_factory=dict)
    until_date: int = 0

    def effective_status(self, at: int) -> str:
        # A ban with an until_date lifts by itself once that moment has passed.
        if self.status == "kicked" and self.until_date and self.until_date <= at:
            return "left"
        return self.status


@dataclass
class InviteLink:
    invite_link: str
    chat_id: int
    creator: User
    creates_join_request: bool = False
    is_primary: bool = False
    is_revoked: bool = False
    name: str | None = None
    expire_date: int | None = None
    member_limit: int | None = None
    subscription_period: int | None = None
    subscription_price: int | None = None
    usage_count: int = 0

    def pending_join_request_count(self, chat: "Chat") -> int:
        return sum(1 for request in chat.join_requests.values() if request.invite_link is self)

    def to_api(self, chat: "Chat", viewer_id: int) -> dict[str, Any]:
        link = self.invite_link
        if self.creator.id != viewer_id:
            # Telegram masks the tail of links that other administrators made.
            link = link[: len(link) - 3] + "..."
        return compact(
            {
                "invite_link": link,
                "creator": self.creator.to_api(),
                "creates_join_request": self.creates_join_request,
                "is_primary": self.is_primary,
                "is_revoked": self.is_revoked,
                "name": self.name,
                "expire_date": self.expire_date,
                "member_limit": self.member_limit,
                "pending_join_request_count": (
                    self.pending_join_request_count(chat) if self.creates_join_request else None
                ),
                "subscription_period": self.subscription_period,
                "subscription_price": self.subscription_price,
            }
        )


@dataclass
class JoinRequest:
    user_id: int
    date: int
    invite_link: InviteLink | None


@dataclass
class Chat:
    id: int
    type: str
    title: str
    owner_id: int
    members: dict[int, Membership] = field(default_factory=dict)
    invite_links: dict[str, InviteLink] = field(default_factory=dict)
    join_requests: dict[int, JoinRequest] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    username: str | None = None

    def to_api(self) -> dict[str, Any]:
        return compact(
            {"id": self.id, "type": self.type, "title": self.title, "username": self.username}
        )

    def status_of(self, user_id: int) -> str:
        membership = self.members.get(user_id)
        return membership.effective_status(now_s()) if membership else "left"

    def is_active_member(self, user_id: int) -> bool:
        return self.status_of(user_id) in ACTIVE_STATUSES

    def admin_right(self, user_id: int, right: str) -> bool:
        membership = self.members.get(user_id)
        if membership is None:
            return False
        if membership.status == "creator":
            return True
        return membership.status == "administrator" and membership.rights.get(right, False)


@dataclass
class Invoice:
    """What a sendInvoice message or an invoice link asks the user to pay."""

    bot_id: int
    title: str
    description: str
    payload: str
    currency: str
    amount: int
    start_parameter: str = ""
    subscription_period: int | None = None
    paid: bool = False

    def to_api(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "description": self.description,
            "start_parameter": self.start_parameter,
            "currency": self.currency,
            "total_amount": self.amount,
        }


@dataclass
class StarTransaction:
    id: str
    bot_id: int
    user: User
    amount: int
    date: int
    invoice_payload: str
    is_refund: bool = False
    subscription_period: int | None = None
    subscription_canceled: bool = False

    def to_api(self) -> dict[str, Any]:
        partner = compact(
            {
                "type": "user",
                "transaction_type": "invoice_payment",
                "user": self.user.to_api(),
                "invoice_payload": self.invoice_payload,
                "subscription_period": self.subscription_period,
            }
        )
        side = "receiver" if self.is_refund else "source"
        return {"id": self.id, "amount": self.amount, "date": self.date, side: partner}


@dataclass
class PreCheckoutQuery:
    id: str
    bot_id: int
    user: User
    invoice: Invoice
    deadline: float
    answer: "Any" = (
        None  # an asyncio.Future[tuple[bool, str | None]], set by answerPreCheckoutQuery
    )


class World:
    """Registries and lookups. Lookups raise the error Telegram would answer with."""

    def __init__(self) -> None:
        self.users: dict[int, User] = {}
        self.bots: dict[int, Bot] = {}
        self.bots_by_token: dict[str, Bot] = {}
        self.chats: dict[int, Chat] = {}
        self.private_chats: dict[tuple[int, int], PrivateChat] = {}
        self.invite_links: dict[str, InviteLink] = {}
        self.invoice_links: dict[str, Invoice] = {}
        self.message_invoices: dict[tuple[int, int, int], Invoice] = {}
        self.transactions: dict[int, list[StarTransaction]] = {}
        self.pre_checkout_queries: dict[str, PreCheckoutQuery] = {}
        self.callback_queries: dict[str, tuple[int, bool]] = {}
        self._next_user_id = 100_000_001
        self._next_bot_id = 7_000_000_001
        self._next_chat_number = 1_000_000_001

    # creation

    def add_user(self, first_name: str, **fields: Any) -> User:
        user = User(id=self._next_user_id, first_name=first_name, **fields)
        self._next_user_id += 1
        self.users[user.id] = user
        return user

    def add_bot(self, username: str, first_name: str | None = None) -> Bot:
        user = User(
            id=self._next_bot_id, first_name=first_name or username, is_bot=True, username=username
        )
        self._next_bot_id += 1
        token = f"{user.id}:{random_text(35, TOKEN_ALPHABET)}"
        bot = Bot(user=user, token=token)
        self.users[user.id] = user
        self.bots[user.id] = bot
        self.bots_by_token[token] = bot
        self.transactions[user.id] = []
        return bot

    def add_chat(self, chat_type: str, title: str, owner: User) -> Chat:
        chat = Chat(
            id=-(10**12) - self._next_chat_number, type=chat_type, title=title, owner_id=owner.id
        )
        self._next_chat_number += 1
        chat.members[owner.id] = Membership(user_id=owner.id, status="creator")
        self.chats[chat.id] = chat
        return chat

    def new_invite_link(self, chat: Chat, creator: User, **fields: Any) -> InviteLink:
        url = f"https://t.me/+{random_text(16)}"
        link = InviteLink(invite_link=url, chat_id=chat.id, creator=creator, **fields)
        chat.invite_links[url] = link
        self.invite_links[url] = link
        return link

    # lookups

    def username_taken(self, username: str) -> bool:
        wanted = username.lower()
        return any((user.username or "").lower() == wanted for user in self.users.values())

    def private_chat(self, bot_id: int, user_id: int) -> PrivateChat:
        key = (bot_id, user_id)
        if key not in self.private_chats:
            self.private_chats[key] = PrivateChat(bot_id=bot_id, user_id=user_id)
        return self.private_chats[key]

    def chat_for_bot(self, bot: Bot, chat_id: int | str) -> Chat:
        """A group or channel the bot is in; any other chat is 'not found' to it."""
        chat = self._find_chat(chat_id)
        if chat is None or chat.status_of(bot.id) not in ACTIVE_STATUSES:
            raise bad_request(CHAT_NOT_FOUND)
        return chat

    def _find_chat(self, chat_id: int | str) -> Chat | None:
        if isinstance(chat_id, str):
            wanted = chat_id.removeprefix("@").lower()
            return next(
                (chat for chat in self.chats.values() if (chat.username or "").lower() == wanted),
                None,
            )
        return self.chats.get(chat_id)

    def user(self, user_id: int) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise bad_request("user not found")
        return user
