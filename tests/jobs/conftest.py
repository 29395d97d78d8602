"""A fresh, migrated database per test: a runner claims every due job it can see, so jobs
enqueued by other tests must not be in its database."""

import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from botter.db.engine import libpq_url, make_engine
from botter.db.migrate import upgrade

TEMPLATE = "botter_jobs_template"


def database_url_of(postgres_url: str, database: str) -> str:
    """The URL of another database on the same server."""
    url = make_url(libpq_url(postgres_url)).set(database=database)
    return url.render_as_string(hide_password=False)


def fresh_database(postgres_url: str, template: str | None = None) -> str:
    """An empty database (or a copy of `template`) on the test server.

    It is not dropped afterwards: the server goes away with the test session, and DROP
    DATABASE forces a checkpoint, which kills the server when another pytest session has
    meanwhile made /tmp/pytest-of-<user> private again (pytest does that at start).
    """
    name = f"test_{uuid.uuid4().hex[:16]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(libpq_url(postgres_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"{copy}')
    return database_url_of(postgres_url, name)


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
