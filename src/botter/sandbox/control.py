"""The control API: a test, a script or a person acts as Telegram and its users."""

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.routing import Route

from botter.sandbox.core import Sandbox
from botter.sandbox.errors import ControlError
from botter.sandbox.faults import Fault
from botter.sandbox.members import full_rights
from botter.sandbox.methods.messages import command_entities
from botter.sandbox.methods.payments import pay
from botter.sandbox.world import (
    ACTIVE_STATUSES,
    Bot,
    Chat,
    Invoice,
    JoinRequest,
    User,
    now_s,
    random_text,
)

USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,31}")
CHAT_TYPES = frozenset({"channel", "supergroup"})
# A join request lets the chat's bots write to the requester for this long.
JOIN_REQUEST_WRITE_WINDOW_S = 300


class Body:
    """A control call's JSON body with validating getters."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    @classmethod
    async def of(cls, request: Request) -> "Body":
        raw = await request.body()
        if not raw.strip():
            return cls({})
        try:
            values = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ControlError(400, "body must be a JSON object") from None
        if not isinstance(values, dict):
            raise ControlError(400, "body must be a JSON object")
        return cls(values)

    def opt_string(self, name: str) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise ControlError(400, f'"{name}" must be a string')
        return value

    def string(self, name: str) -> str:
        value = self.opt_string(name)
        if value is None:
            raise ControlError(400, f'"{name}" is required')
        return value

    def opt_integer(self, name: str) -> int | None:
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ControlError(400, f'"{name}" must be an integer')
        return value

    def integer(self, name: str) -> int:
        value = self.opt_integer(name)
        if value is None:
            raise ControlError(400, f'"{name}" is required')
        return value

    def boolean(self, name: str) -> bool:
        value = self.values.get(name, False)
        if not isinstance(value, bool):
            raise ControlError(400, f'"{name}" must be true or false')
        return value


class Control:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.world = sandbox.world

    # lookups

    def user_of(self, request: Request) -> User:
        return self.find_user(path_int(request, "user_id"))

    def find_user(self, user_id: int) -> User:
        user = self.world.users.get(user_id)
        if user is None or user.is_bot:
            raise ControlError(404, f"no user with id {user_id}")
        return user

    def find_bot(self, bot_id: int) -> Bot:
        bot = self.world.bots.get(bot_id)
        if bot is None:
            raise ControlError(404, f"no bot with id {bot_id}")
        return bot

    def find_chat(self, chat_id: int) -> Chat:
        chat = self.world.chats.get(chat_id)
        if chat is None:
            raise ControlError(404, f"no chat with id {chat_id}")
        return chat

    # world building

    async def create_bot(self, request: Request) -> dict[str, Any]:
        body = await Body.of(request)
        username = body.string("username")
        if not USERNAME.fullmatch(username):
            raise ControlError(400, "username must be 3-32 letters, digits or underscores")
        if self.world.username_taken(username):
            raise ControlError(409, f"username {username} is taken")
        bot = self.world.add_bot(username, body.opt_string("first_name"))
        return {"id": bot.id, "token": bot.token, "username": username}

    async def create_user(self, request: Request) -> dict[str, Any]:
        body = await Body.of(request)
        first_name = body.string("first_name")
        username = body.opt_string("username")
        if username is not None:
            if not USERNAME.fullmatch(username):
                raise ControlError(400, "username must be 3-32 letters, digits or underscores")
            if self.world.username_taken(username):
                raise ControlError(409, f"username {username} is taken")
        stars = body.opt_integer("stars")
        if stars is not None and stars < 0:
            raise ControlError(400, '"stars" must not be negative')
        user = self.world.add_user(
            first_name,
            username=username,
            last_name=body.opt_string("last_name"),
            language_code=body.opt_string("language_code"),
            stars=10_000 if stars is None else stars,
        )
        return {"id": user.id}

    async def get_user(self, request: Request) -> dict[str, Any]:
        user = self.user_of(request)
        return {**user.to_api(), "stars": user.stars}

    async def create_chat(self, request: Request) -> dict[str, Any]:
        body = await Body.of(request)
        chat_type = body.string("type")
        if chat_type not in CHAT_TYPES:
            raise ControlError(400, '"type" must be "channel" or "supergroup"')
        title = body.string("title")
        owner_id = body.integer("owner_id")
        chat = self.world.add_chat(chat_type, title, self.find_user(owner_id))
        return {"id": chat.id}

    async def add_admin(self, request: Request) -> dict[str, Any]:
        chat = self.find_chat(path_int(request, "chat_id"))
        body = await Body.of(request)
        user_id = body.integer("user_id")
        user = self.world.users.get(user_id)
        if user is None:
            raise ControlError(404, f"no user or bot with id {user_id}")
        if user.id == chat.owner_id:
            raise ControlError(400, "the owner is already the chat's creator")
        rights = body.values.get("rights", {})
        known = full_rights(chat)
        if not isinstance(rights, dict) or not all(
            isinstance(value, bool) for value in rights.values()
        ):
            raise ControlError(400, '"rights" must map admin rights to true or false')
        unknown = sorted(set(rights) - set(known))
        if unknown:
            raise ControlError(
                400, f"unknown admin rights for a {chat.type}: {', '.join(unknown)}"
            )
        owner = self.world.users[chat.owner_id]
        self.sandbox.change_member(chat, user, "administrator", actor=owner, rights=rights)
        return {"ok": True}

    async def create_owner_link(self, request: Request) -> dict[str, Any]:
        chat = self.find_chat(path_int(request, "chat_id"))
        link = self.world.new_invite_link(chat, self.world.users[chat.owner_id])
        return {"invite_link": link.invite_link}

    # acting as a user

    async def send(self, request: Request) -> dict[str, Any]:
        user = self.user_of(request)
        body = await Body.of(request)
        bot = self.find_bot(body.integer("bot_id"))
        text = body.string("text")
        self._reopen(bot, user)
        message, update_id = self.sandbox.post_private(
            bot, user, user, emit=True, text=text, entities=command_entities(text)
        )
        return {"message_id": message.message_id, "update_id": update_id}

    def _reopen(self, bot: Bot, user: User) -> None:
        """Writing to a bot starts it, and restarts it after a block."""
        conversation = self.world.private_chat(bot.id, user.id)
        conversation.started = True
        if conversation.blocked:
            conversation.blocked = False
            self._my_chat_member(bot, user, "kicked", "member")

    def _my_chat_member(self, bot: Bot, user: User, old: str, new: str) -> None:
        def member(status: str) -> dict[str, Any]:
            shape: dict[str, Any] = {"status": status, "user": bot.user.to_api()}
            if status == "kicked":
                shape["until_date"] = 0
            return shape

        update = {
            "chat": user.private_chat_api(),
            "from": user.to_api(),
            "date": now_s(),
            "old_chat_member": member(old),
            "new_chat_member": member(new),
        }
        self.sandbox.delivery.enqueue(bot, "my_chat_member", update, user.id)

    async def press(self, request: Request) -> dict[str, Any]:
        user = self.user_of(request)
        body = await Body.of(request)
        bot = self.find_bot(body.integer("bot_id"))
        message_id = body.integer("message_id")
        data = body.string("callback_data")
        conversation = self.world.private_chat(bot.id, user.id)
        message = next(
            (m for m in conversation.messages if m.message_id == message_id and not m.deleted),
            None,
        )
        if message is None or message.sender is None or message.sender.id != bot.id:
            raise ControlError(404, f"no message {message_id} from this bot to this user")
        if data not in message.callback_data():
            raise ControlError(400, "the message has no button with that callback_data")
        query_id = random_text(19, "0123456789")
        self.world.callback_queries[query_id] = (bot.id, False)
        content = {
            "id": query_id,
            "from": user.to_api(),
            "message": message.to_api(),
            "chat_instance": str(abs(hash((bot.id, user.id)))),
            "data": data,
        }
        update_id = self.sandbox.delivery.enqueue(bot, "callback_query", content, user.id)
        return {"update_id": update_id}

    async def pay(self, request: Request) -> dict[str, Any]:
        user = self.user_of(request)
        body = await Body.of(request)
        link = body.opt_string("invoice_link")
        if link is not None:
            invoice = self.world.invoice_links.get(link)
            if invoice is None:
                raise ControlError(404, "no such invoice link")
        else:
            invoice = self._message_invoice(user, body)
            if invoice.paid:
                raise ControlError(409, "this invoice is already paid")
        bot = self.world.bots[invoice.bot_id]
        outcome = await pay(self.sandbox, bot, user, invoice)
        return outcome.to_json()

    def _message_invoice(self, user: User, body: Body) -> Invoice:
        bot = self.find_bot(body.integer("bot_id"))
        message_id = body.integer("message_id")
        invoice = self.world.message_invoices.get((bot.id, user.id, message_id))
        if invoice is None:
            raise ControlError(404, f"message {message_id} is not an invoice to this user")
        return invoice

    async def join(self, request: Request) -> dict[str, Any]:
        user = self.user_of(request)
        body = await Body.of(request)
        url = body.string("invite_link")
        link = self.world.invite_links.get(url)
        if link is None:
            return {"status": "rejected", "reason": "invite link is invalid"}
        chat = self.world.chats[link.chat_id]
        status = chat.status_of(user.id)
        refusal = self._refusal(link, status, user)
        if status in ACTIVE_STATUSES:
            return {"status": "member"}
        if refusal is not None:
            return {"status": "rejected", "reason": refusal}
        if link.creates_join_request:
            self._request_to_join(chat, user, link)
            return {"status": "pending"}
        if link.subscription_price:
            user.stars -= link.subscription_price
        link.usage_count += 1
        self.sandbox.change_member(chat, user, "member", actor=user, invite_link=link)
        return {"status": "member"}

    @staticmethod
    def _refusal(link: Any, status: str, user: User) -> str | None:
        if status == "kicked":
            return "user is banned in the chat"
        if link.is_revoked:
            return "invite link was revoked"
        if link.expire_date is not None and link.expire_date <= now_s():
            return "invite link has expired"
        if link.member_limit is not None and link.usage_count >= link.member_limit:
            return "invite link reached its member limit"
        if link.subscription_price and user.stars < link.subscription_price:
            return "not enough Stars"
        return None

    def _request_to_join(self, chat: Chat, user: User, link: Any) -> None:
        if user.id in chat.join_requests:
            return
        chat.join_requests[user.id] = JoinRequest(user_id=user.id, date=now_s(), invite_link=link)
        for bot in self.sandbox.admin_bots(chat):
            if not chat.admin_right(bot.id, "can_invite_users"):
                continue
            conversation = self.world.private_chat(bot.id, user.id)
            conversation.may_write_until = now_s() + JOIN_REQUEST_WRITE_WINDOW_S
            request = {
                "chat": chat.to_api(),
                "from": user.to_api(),
                "user_chat_id": user.id,
                "date": now_s(),
                "invite_link": link.to_api(chat, bot.id),
            }
            self.sandbox.delivery.enqueue(bot, "chat_join_request", request, chat.id)

    async def leave(self, request: Request) -> dict[str, Any]:
        user = self.user_of(request)
        body = await Body.of(request)
        chat = self.find_chat(body.integer("chat_id"))
        if chat.owner_id == user.id:
            raise ControlError(400, "the owner cannot leave the chat")
        if not chat.is_active_member(user.id):
            raise ControlError(400, "the user is not a member of the chat")
        self.sandbox.change_member(chat, user, "left", actor=user)
        return {"ok": True}

    async def block(self, request: Request) -> dict[str, Any]:
        user = self.user_of(request)
        body = await Body.of(request)
        bot = self.find_bot(body.integer("bot_id"))
        conversation = self.world.private_chat(bot.id, user.id)
        if not conversation.blocked:
            conversation.blocked = True
            self._my_chat_member(bot, user, "member", "kicked")
        return {"ok": True}

    # looking at the world

    async def messages(self, request: Request) -> list[dict[str, Any]]:
        user = self.user_of(request)
        bot_id = request.query_params.get("bot_id")
        if bot_id is None or not bot_id.lstrip("-").isdigit():
            raise ControlError(400, '"bot_id" query parameter is required')
        bot = self.find_bot(int(bot_id))
        conversation = self.world.private_chat(bot.id, user.id)
        shown = []
        for message in conversation.messages:
            from_bot = message.sender is not None and message.sender.id == bot.id
            receipt = message.successful_payment or message.refunded_payment
            if message.deleted or not (from_bot or receipt):
                continue
            api = message.to_api()
            keys = (
                "message_id",
                "date",
                "text",
                "reply_markup",
                "invoice",
                "successful_payment",
                "refunded_payment",
            )
            shown.append({key: api[key] for key in keys if key in api})
        return shown

    async def members(self, request: Request) -> list[dict[str, Any]]:
        chat = self.find_chat(path_int(request, "chat_id"))
        return [
            {"user_id": user_id, "status": chat.status_of(user_id)} for user_id in chat.members
        ]

    async def calls(self, request: Request) -> list[dict[str, Any]]:
        bot_id = request.query_params.get("bot_id")
        method = request.query_params.get("method")
        chosen = []
        for record in self.sandbox.calls:
            if bot_id and str(record["bot_id"]) != bot_id:
                continue
            if method and record["method"].lower() != method.lower():
                continue
            shown = {key: record[key] for key in ("method", "params", "ok")}
            if "error_code" in record:
                shown["error_code"] = record["error_code"]
            chosen.append(shown)
        return chosen

    # test levers

    async def redeliver(self, request: Request) -> dict[str, Any]:
        bot = self.find_bot(path_int(request, "bot_id"))
        body = await Body.of(request)
        update_id = body.integer("update_id")
        try:
            sent_id = self.sandbox.delivery.redeliver(
                bot, update_id, body.boolean("new_update_id")
            )
        except KeyError:
            raise ControlError(404, f"bot {bot.id} never had update {update_id}") from None
        return {"update_id": sent_id}

    async def add_fault(self, request: Request) -> dict[str, Any]:
        body = await Body.of(request)
        error_code = body.integer("error_code")
        if not 400 <= error_code <= 599:
            raise ControlError(400, '"error_code" must be an HTTP error status (400-599)')
        times = body.opt_integer("times")
        times = 1 if times is None else times
        if times < 1:
            raise ControlError(400, '"times" must be at least 1')
        bot_id = body.opt_integer("bot_id")
        if bot_id is not None:
            self.find_bot(bot_id)
        delay_s = body.values.get("delay_s", 0)
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float) or delay_s < 0:
            raise ControlError(400, '"delay_s" must be a non-negative number')
        self.sandbox.faults.add(
            Fault(
                error_code=error_code,
                times=times,
                bot_id=bot_id,
                method=body.opt_string("method"),
                description=body.opt_string("description"),
                retry_after_s=body.opt_integer("retry_after"),
                delay_s=float(delay_s),
            )
        )
        return {"ok": True}

    async def health(self, request: Request) -> dict[str, Any]:
        return {"ok": True}

    def routes(self) -> list[tuple[str, str, Any]]:
        return [
            ("POST", "/sandbox/bots", self.create_bot),
            ("POST", "/sandbox/bots/{bot_id}/redeliver", self.redeliver),
            ("POST", "/sandbox/users", self.create_user),
            ("GET", "/sandbox/users/{user_id}", self.get_user),
            ("POST", "/sandbox/users/{user_id}/send", self.send),
            ("POST", "/sandbox/users/{user_id}/press", self.press),
            ("POST", "/sandbox/users/{user_id}/pay", self.pay),
            ("POST", "/sandbox/users/{user_id}/join", self.join),
            ("POST", "/sandbox/users/{user_id}/leave", self.leave),
            ("POST", "/sandbox/users/{user_id}/block", self.block),
            ("GET", "/sandbox/users/{user_id}/messages", self.messages),
            ("POST", "/sandbox/chats", self.create_chat),
            ("POST", "/sandbox/chats/{chat_id}/admins", self.add_admin),
            ("POST", "/sandbox/chats/{chat_id}/links", self.create_owner_link),
            ("GET", "/sandbox/chats/{chat_id}/members", self.members),
            ("GET", "/sandbox/calls", self.calls),
            ("POST", "/sandbox/faults", self.add_fault),
            ("GET", "/sandbox/health", self.health),
        ]


def path_int(request: Request, name: str) -> int:
    value = request.path_params[name]
    try:
        return int(value)
    except ValueError:
        raise ControlError(404, f"{name} must be an integer") from None


def control_routes(sandbox: Sandbox, wrap: Any) -> list[Route]:
    return [
        Route(path, wrap(handler), methods=[method])
        for method, path, handler in Control(sandbox).routes()
    ]
