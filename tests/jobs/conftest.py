"""A fresh, migrated database per test: a runner claims every due job it can see, so jobs
enqueued by other tests must not be in its database."""

from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from botter.db.engine import libpq_url, make_engine
from botter.db.migrate import upgrade
from tests.conftest import database_url_of, fresh_database

TEMPLATE = "botter_jobs_template"


@pytest.fixture(scope="session")
def jobs_template(postgres_url: str) -> str:
    """Migrated once per test worker; each test's database is a cheap copy of it."""
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{TEMPLATE}"')
    url = database_url_of(postgres_url, TEMPLATE)
    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # Where test handlers leave their database effects.
        conn.execute("CREATE TABLE job_effects (job_id bigint NOT NULL, note text NOT NULL)")
    return TEMPLATE


@pytest.fixture
def jobs_database_url(postgres_url: str, jobs_template: str) -> str:
    return fresh_database(postgres_url, jobs_template)


@pytest.fixture
async def engine(jobs_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(jobs_database_url)
    yield engine
    await engine.dispose()
