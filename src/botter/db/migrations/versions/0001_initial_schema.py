"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-12-04 05:09:10.599094
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "creators",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("telegram_user_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_creators")),
        sa.UniqueConstraint("telegram_user_id", name=op.f("uq_creators_telegram_user_id")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("args", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("dedupe_key", sa.Text(), nullable=True),
        sa.Column("priority", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("status", sa.Text(), server_default="queued", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "run_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'done', 'dead', 'cancelled')", name=op.f("ck_jobs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_jobs_dedupe_key")),
    )
    op.create_index(
        "ix_jobs_queued",
        "jobs",
        ["priority", "run_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_table(
        "update_inbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("update_id", sa.BigInteger(), nullable=False),
        sa.Column("lane", sa.Text(), nullable=False),
        sa.Column("priority", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'done', 'dead')", name=op.f("ck_update_inbox_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_update_inbox")),
        sa.UniqueConstraint("bot_id", "update_id", name=op.f("uq_update_inbox_bot_id")),
    )
    op.create_index(
        "ix_update_inbox_pending",
        "update_inbox",
        ["bot_id", "lane", "update_id"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "bots",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("token_ciphertext", sa.Text(), nullable=False),
        sa.Column("webhook_secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("delivery", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="active", nullable=False),
        sa.Column("terms_text", sa.Text(), nullable=True),
        sa.Column("support_text", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("delivery IN ('webhook', 'polling')", name=op.f("ck_bots_delivery")),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_bots_creator_id_creators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bots")),
    )
    op.create_index(op.f("ix_bots_creator_id"), "bots", ["creator_id"], unique=False)
    op.create_table(
        "managed_chats",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("chat_type", sa.Text(), nullable=False),
        sa.Column("join_by", sa.Text(), server_default="invite_link", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "join_by IN ('invite_link', 'join_request')", name=op.f("ck_managed_chats_join_by")
        ),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_managed_chats_bot_id_bots")
        ),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_managed_chats_creator_id_creators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_managed_chats")),
        sa.UniqueConstraint("bot_id", "chat_id", name=op.f("uq_managed_chats_bot_id")),
    )
    op.create_index(
        op.f("ix_managed_chats_creator_id"), "managed_chats", ["creator_id"], unique=False
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("price_stars", sa.Integer(), nullable=False),
        sa.Column("period_s", sa.Integer(), nullable=False),
        sa.Column("reminder_offsets_s", sa.ARRAY(sa.Integer()), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("period_s > 0", name=op.f("ck_plans_period_positive")),
        sa.CheckConstraint("price_stars > 0", name=op.f("ck_plans_price_positive")),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name=op.f("fk_plans_bot_id_bots")),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_plans_creator_id_creators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_plans")),
    )
    op.create_index(op.f("ix_plans_creator_id"), "plans", ["creator_id"], unique=False)
    op.create_table(
        "polling_offsets",
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("next_update_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_polling_offsets_bot_id_bots")
        ),
        sa.PrimaryKeyConstraint("bot_id", name=op.f("pk_polling_offsets")),
    )
    op.create_table(
        "subscribers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("first_name", sa.Text(), server_default="", nullable=False),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column("language_code", sa.Text(), nullable=True),
        sa.Column("bot_blocked", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name=op.f("fk_subscribers_bot_id_bots")),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_subscribers_creator_id_creators")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscribers")),
        sa.UniqueConstraint("bot_id", "user_id", name=op.f("uq_subscribers_bot_id")),
    )
    op.create_index(op.f("ix_subscribers_creator_id"), "subscribers", ["creator_id"], unique=False)
    op.create_table(
        "access_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger(), nullable=True),
        sa.Column("managed_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column(
            "detail", postgresql.JSONB(astext_type=sa.Text()), server_default="{}", nullable=False
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_access_events_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(
            ["managed_chat_id"],
            ["managed_chats.id"],
            name=op.f("fk_access_events_managed_chat_id_managed_chats"),
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_access_events_subscriber_id_subscribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_events")),
    )
    op.create_index(
        op.f("ix_access_events_creator_id"), "access_events", ["creator_id"], unique=False
    )
    op.create_table(
        "access_grants",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger(), nullable=False),
        sa.Column("managed_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_access_grants_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(
            ["managed_chat_id"],
            ["managed_chats.id"],
            name=op.f("fk_access_grants_managed_chat_id_managed_chats"),
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_access_grants_subscriber_id_subscribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_grants")),
        sa.UniqueConstraint(
            "subscriber_id", "managed_chat_id", name=op.f("uq_access_grants_subscriber_id")
        ),
    )
    op.create_index(
        op.f("ix_access_grants_creator_id"), "access_grants", ["creator_id"], unique=False
    )
    op.create_index("ix_access_grants_expires_at", "access_grants", ["expires_at"], unique=False)
    op.create_table(
        "bot_problems",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("managed_chat_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name=op.f("fk_bot_problems_bot_id_bots")),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_bot_problems_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(
            ["managed_chat_id"],
            ["managed_chats.id"],
            name=op.f("fk_bot_problems_managed_chat_id_managed_chats"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_problems")),
    )
    op.create_index(
        op.f("ix_bot_problems_creator_id"), "bot_problems", ["creator_id"], unique=False
    )
    op.create_table(
        "chat_members",
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("managed_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("last_update_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_chat_members_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(
            ["managed_chat_id"],
            ["managed_chats.id"],
            name=op.f("fk_chat_members_managed_chat_id_managed_chats"),
        ),
        sa.PrimaryKeyConstraint("managed_chat_id", "user_id", name=op.f("pk_chat_members")),
    )
    op.create_index(
        op.f("ix_chat_members_creator_id"), "chat_members", ["creator_id"], unique=False
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger(), nullable=False),
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("price_stars", sa.Integer(), nullable=False),
        sa.Column("period_s", sa.Integer(), nullable=False),
        sa.Column("currency", sa.Text(), server_default="XTR", nullable=False),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('open', 'paid')", name=op.f("ck_orders_status")),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name=op.f("fk_orders_bot_id_bots")),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_orders_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_orders_plan_id_plans")),
        sa.ForeignKeyConstraint(
            ["subscriber_id"], ["subscribers.id"], name=op.f("fk_orders_subscriber_id_subscribers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
    )
    op.create_index(op.f("ix_orders_creator_id"), "orders", ["creator_id"], unique=False)
    op.create_table(
        "plan_chats",
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("plan_id", sa.BigInteger(), nullable=False),
        sa.Column("managed_chat_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_plan_chats_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(
            ["managed_chat_id"],
            ["managed_chats.id"],
            name=op.f("fk_plan_chats_managed_chat_id_managed_chats"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["plans.id"], name=op.f("fk_plan_chats_plan_id_plans")
        ),
        sa.PrimaryKeyConstraint("plan_id", "managed_chat_id", name=op.f("pk_plan_chats")),
    )
    op.create_index(op.f("ix_plan_chats_creator_id"), "plan_chats", ["creator_id"], unique=False)
    op.create_table(
        "whitelist",
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("managed_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_whitelist_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(
            ["managed_chat_id"],
            ["managed_chats.id"],
            name=op.f("fk_whitelist_managed_chat_id_managed_chats"),
        ),
        sa.PrimaryKeyConstraint("managed_chat_id", "user_id", name=op.f("pk_whitelist")),
    )
    op.create_index(op.f("ix_whitelist_creator_id"), "whitelist", ["creator_id"], unique=False)
    op.create_table(
        "invite_links",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("managed_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("subscriber_id", sa.BigInteger(), nullable=False),
        sa.Column("invite_link", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_invite_links_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(
            ["managed_chat_id"],
            ["managed_chats.id"],
            name=op.f("fk_invite_links_managed_chat_id_managed_chats"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_invite_links_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_invite_links_subscriber_id_subscribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invite_links")),
        sa.UniqueConstraint("invite_link", name=op.f("uq_invite_links_invite_link")),
    )
    op.create_index(
        "ix_invite_links_order_chat", "invite_links", ["order_id", "managed_chat_id"], unique=False
    )
    op.create_index(
        op.f("ix_invite_links_creator_id"), "invite_links", ["creator_id"], unique=False
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("subscriber_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("telegram_payment_charge_id", sa.Text(), nullable=False),
        sa.Column("provider_payment_charge_id", sa.Text(), nullable=True),
        sa.Column("amount_stars", sa.Integer(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("is_recurring", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('completed', 'mismatch', 'refunded')", name=op.f("ck_payments_status")
        ),
        sa.ForeignKeyConstraint(["bot_id"], ["bots.id"], name=op.f("fk_payments_bot_id_bots")),
        sa.ForeignKeyConstraint(
            ["creator_id"], ["creators.id"], name=op.f("fk_payments_creator_id_creators")
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_payments_order_id_orders")
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_payments_subscriber_id_subscribers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint(
            "provider", "telegram_payment_charge_id", name=op.f("uq_payments_provider")
        ),
    )
    op.create_index(op.f("ix_payments_creator_id"), "payments", ["creator_id"], unique=False)
    # Workers LISTEN on these channels, so new work is picked up without waiting for a poll.
    # One notification per statement: a batch of updates wakes the workers once.
    op.execute(
        """
        CREATE FUNCTION botter_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(TG_ARGV[0], '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER update_inbox_notify AFTER INSERT ON update_inbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION botter_notify_work('botter_inbox')"
    )
    op.execute(
        "CREATE TRIGGER jobs_notify AFTER INSERT ON jobs "
        "FOR EACH STATEMENT EXECUTE FUNCTION botter_notify_work('botter_jobs')"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobs_notify ON jobs")
    op.execute("DROP TRIGGER IF EXISTS update_inbox_notify ON update_inbox")
    op.execute("DROP FUNCTION IF EXISTS botter_notify_work")
    op.drop_index(op.f("ix_payments_creator_id"), table_name="payments")
    op.drop_table("payments")
    op.drop_index("ix_invite_links_order_chat", table_name="invite_links")
    op.drop_index(op.f("ix_invite_links_creator_id"), table_name="invite_links")
    op.drop_table("invite_links")
    op.drop_index(op.f("ix_whitelist_creator_id"), table_name="whitelist")
    op.drop_table("whitelist")
    op.drop_index(op.f("ix_plan_chats_creator_id"), table_name="plan_chats")
    op.drop_table("plan_chats")
    op.drop_index(op.f("ix_orders_creator_id"), table_name="orders")
    op.drop_table("orders")
    op.drop_index(op.f("ix_chat_members_creator_id"), table_name="chat_members")
    op.drop_table("chat_members")
    op.drop_index(op.f("ix_bot_problems_creator_id"), table_name="bot_problems")
    op.drop_table("bot_problems")
    op.drop_index("ix_access_grants_expires_at", table_name="access_grants")
    op.drop_index(op.f("ix_access_grants_creator_id"), table_name="access_grants")
    op.drop_table("access_grants")
    op.drop_index(op.f("ix_access_events_creator_id"), table_name="access_events")
    op.drop_table("access_events")
    op.drop_index(op.f("ix_subscribers_creator_id"), table_name="subscribers")
    op.drop_table("subscribers")
    op.drop_table("polling_offsets")
    op.drop_index(op.f("ix_plans_creator_id"), table_name="plans")
    op.drop_table("plans")
    op.drop_index(op.f("ix_managed_chats_creator_id"), table_name="managed_chats")
    op.drop_table("managed_chats")
    op.drop_index(op.f("ix_bots_creator_id"), table_name="bots")
    op.drop_table("bots")
    op.drop_index(
        "ix_update_inbox_pending",
        table_name="update_inbox",
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.drop_table("update_inbox")
    op.drop_index(
        "ix_jobs_queued", table_name="jobs", postgresql_where=sa.text("status = 'queued'")
    )
    op.drop_table("jobs")
    op.drop_table("creators")
