"""Migrations: they build exactly the schema the code declares, and undo cleanly."""

import psycopg
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from botter.db.engine import sqlalchemy_url
from botter.db.migrate import alembic_config, downgrade, upgrade
from botter.db.schema import metadata
from tests.conftest import fresh_database


def test_migrated_schema_matches_the_code(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_upgrade_downgrade_upgrade(postgres_url: str) -> None:
    url = fresh_database(postgres_url)
    upgrade(url)
    downgrade(url, "base")
    with psycopg.connect(url) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            " AND table_name <> 'alembic_version'"
        ).fetchone()
    assert tables == (0,)
    upgrade(url)
    command.check(alembic_config(url))


def test_payments_ledger_refuses_a_second_row_per_charge(database_url: str) -> None:
    with psycopg.connect(database_url) as connection:
        constraint = connection.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = 'uq_payments_provider'"
        ).fetchone()
    assert constraint == ("UNIQUE (provider, telegram_payment_charge_id)",)
