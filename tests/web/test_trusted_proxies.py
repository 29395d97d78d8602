"""X-Forwarded-For is believed only from TRUSTED_PROXIES, so a client behind nginx is
counted as itself, and a client talking directly cannot pick an address to hide behind."""

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.conftest import free_port, stop, wait_until_healthy

SECRET_KEY = "trusted-proxies-secret-key-0123456789-abcdef"


@contextmanager
def botter_serve(
    database_url: str, redis_url: str, tmp_path: Path, **settings: str
) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BOTTER_SECRET_KEYS": SECRET_KEY,
        "TELEGRAM_API_URL": "http://127.0.0.1:9",
        "BOTTER_DATA_DIR": str(tmp_path / "data"),
        **settings,
    }
    command = [sys.executable, "-m", "botter", "serve", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(f"{url}/health", process, timeout_s=60)
        yield url
    finally:
        stop(process)


def forged(url: str, forwarded_for: str) -> int:
    answer = httpx.post(
        f"{url}/webhook/telegram/1",
        content=b"{}",
        headers={"X-Telegram-Bot-Api-Secret-Token": "guess", "X-Forwarded-For": forwarded_for},
    )
    return answer.status_code


def some_address() -> str:
    return f"203.0.113.{random.randrange(1, 255)}"


def test_behind_a_trusted_proxy_each_client_has_its_own_budget(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = {"TRUSTED_PROXIES": "127.0.0.1", "WEBHOOK_AUTH_FAILURES_LIMIT": "3/minute"}
    with botter_serve(database_url, redis_url, tmp_path, **settings) as url:
        guesser = some_address()
        other = f"198.51.100.{random.randrange(1, 255)}"
        assert [forged(url, guesser) for _ in range(4)] == [401, 401, 401, 429]
        assert forged(url, other) == 401  # someone else behind the same proxy


def test_from_an_untrusted_peer_the_header_is_ignored(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = {"TRUSTED_PROXIES": "10.9.9.9", "WEBHOOK_AUTH_FAILURES_LIMIT": "4/minute"}
    with botter_serve(database_url, redis_url, tmp_path, **settings) as url:
        # Every request claims another address; all are counted as 127.0.0.1 all the same.
        statuses = [forged(url, some_address()) for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
