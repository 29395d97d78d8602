"""What a creator (or an operator on their behalf) does: connect bots and chats, sell plans.

Used by the command line today and by the creators' API later; each function takes a
Runtime and returns plain data, raising AdminError with a message meant for a person.
"""

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from botter.access.decisions import has_access
from botter.db.schema import (
    access_grants,
    bot_problems,
    bots,
    creators,
    managed_chats,
    metadata,
    payments,
    plan_chats,
    plans,
    polling_offsets,
    subscribers,
)
from botter.errors import BotterError
from botter.runtime import Runtime
from botter.telegram.client import bot_id_of
from botter.telegram.errors import TelegramError, TelegramUnauthorized
from botter.telegram.polling import ALLOWED_UPDATES

REQUIRED_RIGHTS = ("can_invite_users", "can_restrict_members")
MAX_PERIOD_S = 10 * 366 * 86400  # well inside the INTEGER columns that hold periods
BOT_COMMANDS = [
    {"command": "start", "description": "See the plans and buy access"},
    {"command": "status", "description": "Your access and when it ends"},
    {"command": "renew", "description": "Extend your access"},
    {"command": "link", "description": "A fresh invite link"},
    {"command": "paysupport", "description": "Help with a payment"},
    {"command": "terms", "description": "Terms of sale"},
]


class AdminError(BotterError):
    pass


async def default_creator(runtime: Runtime, name: str = "Default creator") -> int:
    async with runtime.engine.begin() as conn:
        found = (
            await conn.execute(select(creators.c.id).where(creators.c.name == name).limit(1))
        ).scalar_one_or_none()
        if found is not None:
            return int(found)
        created = await conn.execute(creators.insert().values(name=name).returning(creators.c.id))
        return int(created.scalar_one())


async def add_bot(runtime: Runtime, token: str, creator_id: int | None = None) -> dict[str, Any]:
    """Register a bot, and set its webhook (or prepare polling when there is no public URL)."""
    try:
        bot_id_of(token)
    except ValueError:
        raise AdminError("this is not a bot token: it has the form <bot_id>:<secret>") from None
    try:
        me = await runtime.telegram.get_me(token)
    except TelegramUnauthorized:
        raise AdminError("Telegram does not accept this token (401 Unauthorized)") from None
    except TelegramError as error:
        raise AdminError(f"could not reach Telegram: {type(error).__name__}") from None
    creator_id = creator_id or await default_creator(runtime)
    secret = secrets.token_urlsafe(32)
    public_url = runtime.settings.public_url
    delivery = "webhook" if public_url else "polling"
    values = {
        "id": me["id"],
        "creator_id": creator_id,
        "username": me.get("username", ""),
        "token_ciphertext": runtime.keyring.encrypt(token),
        "webhook_secret_ciphertext": runtime.keyring.encrypt(secret),
        "delivery": delivery,
        "status": "active",
    }
    async with runtime.engine.begin() as conn:
        owner = (
            await conn.execute(select(bots.c.creator_id).where(bots.c.id == me["id"]))
        ).scalar_one_or_none()
        if owner is not None and owner != creator_id:
            raise AdminError("this bot belongs to another creator")
        statement = insert(bots).values(**values)
        await conn.execute(statement.on_conflict_do_update(index_elements=["id"], set_=values))
    runtime.forget_token(me["id"])
    if public_url:
        await runtime.telegram.set_webhook(
            token,
            f"{public_url.rstrip('/')}/webhook/telegram/{me['id']}",
            secret,
            allowed_updates=ALLOWED_UPDATES,
        )
    else:
        await runtime.telegram.delete_webhook(token)
    # The commands menu in the bot's chat: what subscribers can do, one tap away.
    await runtime.telegram.call(token, "setMyCommands", {"commands": BOT_COMMANDS})
    return {"id": me["id"], "username": me.get("username", ""), "delivery": delivery}


async def forget_creator(runtime: Runtime, creator_id: int) -> None:
    """Delete a creator and every row of theirs. Used for the local demo, whose sandbox
    world is new on every run; a real creator's ledger is never deleted this way."""
    async with runtime.engine.begin() as conn:
        their_bots = select(bots.c.id).where(bots.c.creator_id == creator_id)
        await conn.execute(
            polling_offsets.delete().where(polling_offsets.c.bot_id.in_(their_bots))
        )
        for table in reversed(metadata.sorted_tables):
            if table is not creators and "creator_id" in table.c:
                await conn.execute(table.delete().where(table.c.creator_id == creator_id))
        await conn.execute(creators.delete().where(creators.c.id == creator_id))


async def add_chat(
    runtime: Runtime, bot_id: int, chat_id: int, join_by: str = "invite_link"
) -> dict[str, Any]:
    """Put a channel or group under the paywall, after checking the bot can enforce it."""
    async with runtime.engine.connect() as conn:
        bot = (await conn.execute(select(bots).where(bots.c.id == bot_id))).first()
        if bot is None:
            raise AdminError(f"no bot with id {bot_id}; add it first with `botter bot add`")
        token = await runtime.token(conn, bot_id)
    try:
        chat = await runtime.telegram.get_chat(token, chat_id)
        me = await runtime.telegram.get_chat_member(token, chat_id, bot_id)
    except TelegramError as error:
        raise AdminError(
            f"the bot cannot see chat {chat_id} ({error.description}); add it to the chat "
            f"as an administrator with: {', '.join(REQUIRED_RIGHTS)}"
        ) from None
    missing = [right for right in REQUIRED_RIGHTS if not me.get(right)]
    if me.get("status") != "administrator" or missing:
        needed = ", ".join(missing or REQUIRED_RIGHTS)
        raise AdminError(f"make the bot an administrator of the chat with: {needed}")
    values = {
        "creator_id": bot.creator_id,
        "bot_id": bot_id,
        "chat_id": chat_id,
        "title": chat.get("title") or str(chat_id),
        "chat_type": chat["type"],
        "join_by": join_by,
    }
    async with runtime.engine.begin() as conn:
        statement = insert(managed_chats).values(**values)
        upsert = statement.on_conflict_do_update(
            index_elements=["bot_id", "chat_id"],
            set_={"title": values["title"], "join_by": join_by},
        ).returning(managed_chats.c.id)
        managed_id = (await conn.execute(upsert)).scalar_one()
    return {"id": managed_id, "chat_id": chat_id, "title": values["title"]}


async def add_plan(
    runtime: Runtime,
    bot_id: int,
    chat_ids: list[int],
    title: str,
    price_stars: int,
    period_s: int,
    reminder_offsets_s: list[int] | None = None,
) -> dict[str, Any]:
    """A plan; without reminder offsets, the settings' defaults that fit in the period."""
    if not 1 <= price_stars <= 10_000:
        raise AdminError("a plan's price must be between 1 and 10000 Stars")
    if not title.strip() or len(title) > 32:
        raise AdminError("a plan's title must be 1-32 characters (Telegram's invoice limit)")
    if not 1 <= period_s <= MAX_PERIOD_S:
        raise AdminError("a plan's period must be between 1 second and 10 years")
    if reminder_offsets_s is None:
        defaults = runtime.settings.default_reminder_offsets
        reminder_offsets_s = [offset_s for offset_s in defaults if offset_s < period_s]
    if any(not 0 < offset_s < period_s for offset_s in reminder_offsets_s):
        raise AdminError("each reminder must come before the end: shorter than the period")
    async with runtime.engine.begin() as conn:
        chats = (
            await conn.execute(
                select(managed_chats.c.id, managed_chats.c.creator_id).where(
                    managed_chats.c.bot_id == bot_id, managed_chats.c.chat_id.in_(chat_ids)
                )
            )
        ).all()
        if len(chats) != len(set(chat_ids)) or not chats:
            raise AdminError("every --chat must first be added with `botter chat add`")
        creator_id = chats[0].creator_id
        plan_id = (
            await conn.execute(
                plans.insert()
                .values(
                    creator_id=creator_id, bot_id=bot_id, title=title, price_stars=price_stars,
                    period_s=period_s, reminder_offsets_s=reminder_offsets_s,
                )
                .returning(plans.c.id)
            )
        ).scalar_one()  # fmt: skip
        await conn.execute(
            plan_chats.insert(),
            [
                {"creator_id": creator_id, "plan_id": plan_id, "managed_chat_id": c.id}
                for c in chats
            ],
        )
    return {"id": plan_id}


async def list_subscriptions(runtime: Runtime, bot_id: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    query = (
        select(subscribers.c.user_id, managed_chats.c.chat_id, access_grants.c.expires_at)
        .select_from(access_grants.join(subscribers).join(managed_chats))
        .where(subscribers.c.bot_id == bot_id)
        .order_by(access_grants.c.id)
    )
    # A listing may be seconds stale: it is read from the replica when there is one.
    async with runtime.reader().connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "user_id": row.user_id,
            "chat_id": row.chat_id,
            "status": "active" if has_access(row.expires_at, now) else "expired",
            "expires_at": row.expires_at.isoformat(),
        }
        for row in rows
    ]


async def list_payments(runtime: Runtime, bot_id: int) -> list[dict[str, Any]]:
    query = (
        select(
            subscribers.c.user_id,
            payments.c.amount_stars,
            payments.c.telegram_payment_charge_id,
            payments.c.status,
            payments.c.created_at,
        )
        .select_from(payments.join(subscribers))
        .where(payments.c.bot_id == bot_id)
        .order_by(payments.c.id)
    )
    async with runtime.reader().connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "user_id": row.user_id,
            "amount_stars": row.amount_stars,
            "telegram_payment_charge_id": row.telegram_payment_charge_id,
            "status": row.status,
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]


async def list_problems(runtime: Runtime, bot_id: int, limit: int = 100) -> list[dict[str, Any]]:
    query = (
        select(
            bot_problems.c.kind,
            bot_problems.c.detail,
            managed_chats.c.chat_id,
            bot_problems.c.created_at,
        )
        .select_from(bot_problems.outerjoin(managed_chats))
        .where(bot_problems.c.bot_id == bot_id)
        .order_by(bot_problems.c.id.desc())
        .limit(limit)
    )
    async with runtime.reader().connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "kind": row.kind,
            "detail": row.detail,
            "chat_id": row.chat_id,
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]
