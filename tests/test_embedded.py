"""Embedded engines: real servers that start, are found again, and stop."""

from pathlib import Path

import psycopg
import redis

from botter.embedded import EmbeddedPostgres, EmbeddedRedis


def test_postgres_url_serves_queries(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)


def test_redis_url_serves_commands(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    client.close()


def test_a_running_redis_is_reused_then_stopped(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    url = first.start()
    assert EmbeddedRedis(tmp_path).start() == url
    EmbeddedRedis(tmp_path).stop()
    assert first.running_port() is None


def test_a_running_postgres_is_reused_then_stopped(postgres_url: str, tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path, durable=False)
    url = server.start()
    assert url != postgres_url
    assert EmbeddedPostgres(tmp_path).start() == url
    EmbeddedPostgres(tmp_path).stop()
    assert server.running_port() is None
