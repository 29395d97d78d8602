"""Tables. Every row carries its creator (tenant) id, so no query can forget the tenant."""

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _id() -> Column[int]:
    return Column("id", BigInteger, Identity(), primary_key=True)


def _creator() -> Column[int]:
    return Column("creator_id", BigInteger, ForeignKey("creators.id"), nullable=False, index=True)


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


creators = Table(
    "creators",
    metadata,
    _id(),
    Column("name", Text, nullable=False),
    Column("telegram_user_id", BigInteger, unique=True),
    _created_at(),
)

bots = Table(
    "bots",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),  # Telegram's bot id
    _creator(),
    Column("username", Text, nullable=False),
    Column("token_ciphertext", Text, nullable=False),
    Column("webhook_secret_ciphertext", Text, nullable=False),
    Column("delivery", Text, nullable=False),
    Column("status", Text, nullable=False, server_default="active"),
    Column("terms_text", Text),
    Column("support_text", Text),
    _created_at(),
    CheckConstraint("delivery IN ('webhook', 'polling')", name="delivery"),
)

managed_chats = Table(
    "managed_chats",
    metadata,
    _id(),
    _creator(),
    Column("bot_id", BigInteger, ForeignKey("bots.id"), nullable=False),
    Column("chat_id", BigInteger, nullable=False),
    Column("title", Text, nullable=False),
    Column("chat_type", Text, nullable=False),
    Column("join_by", Text, nullable=False, server_default="invite_link"),
    _created_at(),
    UniqueConstraint("bot_id", "chat_id"),
    CheckConstraint("join_by IN ('invite_link', 'join_request')", name="join_by"),
)

whitelist = Table(
    "whitelist",
    metadata,
    _creator(),
    Column("managed_chat_id", BigInteger, ForeignKey("managed_chats.id"), primary_key=True),
    Column("user_id", BigInteger, primary_key=True),
    _created_at(),
)

plans = Table(
    "plans",
    metadata,
    _id(),
    _creator(),
    Column("bot_id", BigInteger, ForeignKey("bots.id"), nullable=False),
    Column("title", Text, nullable=False),
    Column("price_stars", Integer, nullable=False),
    Column("period_s", Integer, nullable=False),
    Column("reminder_offsets_s", ARRAY(Integer), nullable=False),
    Column("active", Boolean, nullable=False, server_default="true"),
    _created_at(),
    CheckConstraint("price_stars > 0", name="price_positive"),
    CheckConstraint("period_s > 0", name="period_positive"),
)

plan_chats = Table(
    "plan_chats",
    metadata,
    _creator(),
    Column("plan_id", BigInteger, ForeignKey("plans.id"), primary_key=True),
    Column("managed_chat_id", BigInteger, ForeignKey("managed_chats.id"), primary_key=True),
)

subscribers = Table(
    "subscribers",
    metadata,
    _id(),
    _creator(),
    Column("bot_id", BigInteger, ForeignKey("bots.id"), nullable=False),
    Column("user_id", BigInteger, nullable=False),
    Column("first_name", Text, nullable=False, server_default=""),
    Column("username", Text),
    Column("language_code", Text),
    Column("bot_blocked", Boolean, nullable=False, server_default="false"),
    _created_at(),
    UniqueConstraint("bot_id", "user_id"),
)

orders = Table(
    "orders",
    metadata,
    _id(),
    _creator(),
    Column("bot_id", BigInteger, ForeignKey("bots.id"), nullable=False),
    Column("subscriber_id", BigInteger, ForeignKey("subscribers.id"), nullable=False),
    Column("plan_id", BigInteger, ForeignKey("plans.id"), nullable=False),
    Column("price_stars", Integer, nullable=False),
    Column("period_s", Integer, nullable=False),
    Column("currency", Text, nullable=False, server_default="XTR"),
    Column("status", Text, nullable=False, server_default="open"),
    _created_at(),
    Column("paid_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('open', 'paid')", name="status"),
)

payments = Table(
    "payments",
    metadata,
    _id(),
    _creator(),
    Column("bot_id", BigInteger, ForeignKey("bots.id"), nullable=False),
    Column("order_id", BigInteger, ForeignKey("orders.id")),
    Column("subscriber_id", BigInteger, ForeignKey("subscribers.id"), nullable=False),
    Column("provider", Text, nullable=False),
    Column("telegram_payment_charge_id", Text, nullable=False),
    Column("provider_payment_charge_id", Text),
    Column("amount_stars", Integer, nullable=False),
    Column("currency", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("is_recurring", Boolean, nullable=False, server_default="false"),
    _created_at(),
    Column("refunded_at", DateTime(timezone=True)),
    # The ledger's guarantee: one row per Telegram charge, however often it is delivered.
    UniqueConstraint("provider", "telegram_payment_charge_id"),
    CheckConstraint("status IN ('completed', 'mismatch', 'refunded')", name="status"),
)

access_grants = Table(
    "access_grants",
    metadata,
    _id(),
    _creator(),
    Column("subscriber_id", BigInteger, ForeignKey("subscribers.id"), nullable=False),
    Column("managed_chat_id", BigInteger, ForeignKey("managed_chats.id"), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    _created_at(),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("subscriber_id", "managed_chat_id"),
)
Index("ix_access_grants_expires_at", access_grants.c.expires_at)

invite_links = Table(
    "invite_links",
    metadata,
    _id(),
    _creator(),
    Column("order_id", BigInteger, ForeignKey("orders.id"), nullable=False),
    Column("managed_chat_id", BigInteger, ForeignKey("managed_chats.id"), nullable=False),
    Column("subscriber_id", BigInteger, ForeignKey("subscribers.id"), nullable=False),
    Column("invite_link", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    # Set when a newer link replaced this one (the subscriber asked for a fresh link).
    Column("revoked_at", DateTime(timezone=True)),
    _created_at(),
)
Index("ix_invite_links_order_chat", invite_links.c.order_id, invite_links.c.managed_chat_id)

chat_members = Table(
    "chat_members",
    metadata,
    _creator(),
    Column("managed_chat_id", BigInteger, ForeignKey("managed_chats.id"), primary_key=True),
    Column("user_id", BigInteger, primary_key=True),
    Column("status", Text, nullable=False),
    # The newest chat_member update applied; an older one arriving late changes nothing.
    Column("last_update_id", BigInteger),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

update_inbox = Table(
    "update_inbox",
    metadata,
    _id(),
    Column("creator_id", BigInteger, nullable=False),
    Column("bot_id", BigInteger, nullable=False),
    Column("update_id", BigInteger, nullable=False),
    # Updates of one lane (a chat, or a payment query of its own) run one at a time, in order.
    Column("lane", Text, nullable=False),
    Column("priority", SmallInteger, nullable=False, server_default="1"),
    Column("body", LargeBinary, nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("available_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("processed_at", DateTime(timezone=True)),
    Column("last_error", Text),
    UniqueConstraint("bot_id", "update_id"),
    CheckConstraint("status IN ('pending', 'done', 'dead')", name="status"),
)
Index(
    "ix_update_inbox_pending",
    update_inbox.c.bot_id,
    update_inbox.c.lane,
    update_inbox.c.update_id,
    postgresql_where=text("status = 'pending'"),
)

jobs = Table(
    "jobs",
    metadata,
    _id(),
    Column("creator_id", BigInteger),
    Column("kind", Text, nullable=False),
    Column("args", JSONB, nullable=False),
    # A job with a dedupe key is enqueued at most once, ever.
    Column("dedupe_key", Text, unique=True),
    Column("priority", SmallInteger, nullable=False, server_default="1"),
    Column("status", Text, nullable=False, server_default="queued"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("run_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("last_error", Text),
    _created_at(),
    Column("finished_at", DateTime(timezone=True)),
    CheckConstraint("status IN ('queued', 'done', 'dead', 'cancelled')", name="status"),
)
Index(
    "ix_jobs_queued",
    jobs.c.priority,
    jobs.c.run_at,
    postgresql_where=text("status = 'queued'"),
)

access_events = Table(
    "access_events",
    metadata,
    _id(),
    _creator(),
    Column("subscriber_id", BigInteger, ForeignKey("subscribers.id")),
    Column("managed_chat_id", BigInteger, ForeignKey("managed_chats.id")),
    Column("kind", Text, nullable=False),
    Column("detail", JSONB, nullable=False, server_default="{}"),
    _created_at(),
)

bot_problems = Table(
    "bot_problems",
    metadata,
    _id(),
    _creator(),
    Column("bot_id", BigInteger, ForeignKey("bots.id"), nullable=False),
    Column("managed_chat_id", BigInteger, ForeignKey("managed_chats.id")),
    Column("kind", Text, nullable=False),
    Column("detail", Text, nullable=False),
    _created_at(),
)

polling_offsets = Table(
    "polling_offsets",
    metadata,
    Column("bot_id", BigInteger, ForeignKey("bots.id"), primary_key=True),
    Column("next_update_id", BigInteger, nullable=False),
)
