"""Redis or PostgreSQL going away, and processes told to stop: payments and updates survive.

These tests own their Redis (stopped and restarted on the same port) and their stack, so
the outages they cause touch no other test.
"""

import concurrent.futures
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from botter.db.migrate import upgrade
from botter.embedded import EmbeddedRedis
from tests.conftest import free_port, fresh_database
from tests.e2e.conftest import Stack, eventually, open_shop, running_stack
from tests.e2e.test_money import webhook_post
from tests.sandbox.conftest import Telegram


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedRedis, int]]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("outage-redis"))
    port = free_port()
    server.start(port=port)
    yield server, port
    server.stop()


@pytest.fixture(scope="module")
def outage_database_url(postgres_url: str) -> str:
    """A database of its own, so terminating its connections touches no other test."""
    url = fresh_database(postgres_url)
    upgrade(url)
    return url


@pytest.fixture(scope="module")
def outage_stack(
    outage_database_url: str,
    sandbox_url: str,
    own_redis: tuple[EmbeddedRedis, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("outage-logs")
    redis_url = f"redis://127.0.0.1:{own_redis[1]}/0"
    with running_stack(outage_database_url, redis_url, sandbox_url, log_dir) as started:
        yield started


def ready(stack: Stack) -> dict[str, object]:
    answer = httpx.get(f"{stack.web_url}/ready", timeout=10)
    body: dict[str, object] = answer.json()
    body["http_status"] = answer.status_code
    return body


def test_p10_with_redis_down_payments_still_complete_and_ready_says_degraded(
    outage_stack: Stack, tg: Telegram, own_redis: tuple[EmbeddedRedis, int]
) -> None:
    shop = open_shop(outage_stack, tg)
    plan_id = shop.add_plan("Monthly", 5, period_s=30 * 86400)
    sam = shop.subscriber()
    server, port = own_redis
    server.stop()
    try:
        degraded = eventually(
            lambda: (answer := ready(outage_stack))["status"] == "degraded" and answer,
            what="/ready to say degraded",
        )
        assert degraded["http_status"] == 200
        paid = sam.buy(plan_id)  # menu, invoice, pre-checkout, payment, link: all without Redis
        assert sam.join(paid["invite_link"]) == {"status": "member"}
        ledger = outage_stack.scalar(
            "SELECT count(*) FROM payments WHERE bot_id = :bot AND status = 'completed'",
            bot=shop.bot_id,
        )
        assert ledger == 1
    finally:
        server.start(port=port)
    eventually(lambda: ready(outage_stack)["status"] == "ok", what="/ready to recover")
    seen = len(sam.messages())
    sam.send("/status")
    assert "active until" in sam.next_message(seen)["text"]


def test_dropped_database_connections_lose_no_update(outage_stack: Stack, tg: Telegram) -> None:
    shop = open_shop(outage_stack, tg)
    shop.add_plan("Monthly", 5, period_s=30 * 86400)
    users = [shop.subscriber(f"User{index}") for index in range(5)]
    database_url = outage_stack.env["DATABASE_URL"]

    with psycopg.connect(database_url, autocommit=True) as admin_conn:
        terminated = admin_conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchone()
    assert terminated is not None
    assert terminated[0] > 0
    for user in users:
        user.send("/start")

    for user in users:
        user.next_message(0, timeout_s=60)
    time.sleep(1)
    assert all(len(user.messages()) == 1 for user in users)
    assert ready(outage_stack)["status"] == "ok"


def test_sigterm_finishes_in_flight_webhooks_and_exits_0(
    redis_url: str,
    sandbox_url: str,
    tg: Telegram,
    tmp_path: Path,
    live: Stack,
) -> None:
    shop = open_shop(live, tg)
    database_url = live.env["DATABASE_URL"]  # the shop's bot is registered there
    with running_stack(database_url, redis_url, sandbox_url, tmp_path) as doomed:
        base = 800_000_000 + int(time.time()) % 1_000_000
        updates = [
            {
                "update_id": base + index,
                "message": {
                    "message_id": index + 1,
                    "date": int(time.time()),
                    "chat": {"id": 5_000_000 + index, "type": "private", "first_name": "L"},
                    "from": {"id": 5_000_000 + index, "is_bot": False, "first_name": "L"},
                    "text": "hello",
                },
            }
            for index in range(200)
        ]
        target = doomed.web_url

        def deliver(update: dict[str, object]) -> int:
            try:
                return webhook_post(shop, update, web_url=target).status_code
            except httpx.TransportError:
                return 0  # refused once stopping: Telegram would deliver it again

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = [pool.submit(deliver, update) for update in updates]
            # Stop it mid-stream: once some deliveries are answered and others in flight.
            deadline = time.monotonic() + 60
            while sum(answer.done() for answer in answers) < 20:
                assert time.monotonic() < deadline, "the doomed web never answered"
                time.sleep(0.01)
            assert doomed.web is not None
            doomed.web.send_signal(signal.SIGTERM)
            statuses = [answer.result() for answer in answers]
            assert doomed.web.wait(timeout=30) == 0

    acknowledged = {
        update["update_id"]
        for update, status in zip(updates, statuses, strict=True)
        if status == 200
    }
    stored = {
        row.update_id
        for row in live.rows(
            "SELECT update_id FROM update_inbox WHERE bot_id = :bot AND update_id >= :base",
            bot=shop.bot_id,
            base=base,
        )
    }
    assert acknowledged  # some got through before the signal
    assert acknowledged <= stored  # every 200 was committed first
    assert set(statuses) <= {200, 503, 0}
