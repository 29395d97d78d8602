"""Alembic environment: runs migrations over a synchronous psycopg connection."""

from alembic import context
from sqlalchemy import create_engine, pool

from botter.db.schema import metadata

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            # Two processes migrating at once (several replicas starting) take turns.
            context.execute("SELECT pg_advisory_xact_lock(7212001)")
            context.run_migrations()
    engine.dispose()


run_migrations_online()
