"""Connections to PostgreSQL: one async engine per process, pool sized by settings."""

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def sqlalchemy_url(url: str) -> str:
    """The same server URL, spelled for SQLAlchemy's psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def libpq_url(url: str) -> str:
    """The same server URL, spelled for psycopg and libpq."""
    return "postgresql://" + sqlalchemy_url(url).removeprefix("postgresql+psycopg://")


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_timeout=10,
    )
