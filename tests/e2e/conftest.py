"""botter as it runs in production, driven through the sandbox.

Per test worker: `botter serve` and `botter worker` as real processes on the test
PostgreSQL and Redis, pointed at the sandbox, with webhooks delivered to the web process.
Per test: a creator's fresh shop (bot, channel, plans) and subscribers acting in it.
"""

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from botter import admin
from botter.config import load_settings
from botter.db.engine import sqlalchemy_url
from botter.db.migrate import upgrade
from botter.runtime import Runtime
from tests.conftest import eventually, free_port, fresh_database, stop, wait_until_healthy
from tests.sandbox.conftest import Telegram, unique

SECRET_KEY = "e2e-secret-key-0123456789-abcdefghijklmnop"
T = TypeVar("T")


@dataclass
class Stack:
    """The running processes and the settings they share."""

    env: dict[str, str]
    web_url: str
    log_dir: Path
    sandbox_url: str
    db: Engine
    web: subprocess.Popen[bytes] | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"worker{len(self.workers)}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "botter", "worker"], env=self.env, stdout=log, stderr=log
        )
        self.workers.append(process)
        return process

    def kill_workers(self) -> None:
        """SIGKILL: no clean-up, as when a machine dies."""
        for process in self.workers:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait()
        self.workers.clear()

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.log_dir.glob("*.log"))

    def run(self, work: Callable[[Runtime], Any]) -> Any:
        """Run `work(runtime)` in-process against the same engines, as the CLI does."""

        async def main() -> Any:
            runtime = Runtime.start(load_settings(**settings_of(self.env)))
            try:
                return await work(runtime)
            finally:
                await runtime.close()

        return asyncio.run(main())

    def scalar(self, sql: str, **params: Any) -> Any:
        with self.db.connect() as conn:
            return conn.execute(text(sql), params).scalar()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.db.connect() as conn:
            return list(conn.execute(text(sql), params).all())


def settings_of(env: dict[str, str]) -> dict[str, Any]:
    return {
        "database_url": env["DATABASE_URL"],
        "redis_url": env["REDIS_URL"],
        "telegram_api_url": env["TELEGRAM_API_URL"],
        "public_url": env["PUBLIC_URL"],
        "botter_secret_keys": (SECRET_KEY,),
        "botter_data_dir": Path(env["BOTTER_DATA_DIR"]),
    }


@contextlib.contextmanager
def running_stack(
    database_url: str, redis_url: str, sandbox_url: str, log_dir: Path, **extra_env: str
) -> Iterator[Stack]:
    """`botter serve` and one `botter worker` on these engines, stopped afterwards."""
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "TELEGRAM_API_URL": sandbox_url,
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "BOTTER_SECRET_KEYS": SECRET_KEY,
        "BOTTER_DATA_DIR": str(log_dir / "data"),
        "SWEEP_INTERVAL_S": "1",
        "BOT_HEALTH_INTERVAL_S": "2",
        "WORKER_METRICS_PORT": str(free_port()),
        **extra_env,
    }
    # pre_ping: outage tests terminate connections, and a test's next query must not fail.
    db = create_engine(sqlalchemy_url(database_url), pool_size=2, pool_pre_ping=True)
    stack = Stack(env, f"http://127.0.0.1:{port}", log_dir, sandbox_url, db)
    web_log = (log_dir / "web.log").open("ab")
    stack.web = subprocess.Popen(
        [sys.executable, "-m", "botter", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=web_log,
        stderr=web_log,
    )
    try:
        # Generous: a loaded 2-core machine can take many seconds to import and start.
        wait_until_healthy(f"{stack.web_url}/health", stack.web, timeout_s=90)
        stack.start_worker()
        yield stack
    finally:
        for process in [*stack.workers, stack.web]:
            if process is not None and process.poll() is None:
                stop(process)
        db.dispose()


@pytest.fixture(scope="session")
def stack(
    postgres_url: str,
    redis_url: str,
    sandbox_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """The deployment every end-to-end test shares, in a database of its own: its worker
    claims every update and job it can see, and other tests' bots are not its business."""
    log_dir = tmp_path_factory.mktemp("e2e-logs")
    database_url = fresh_database(postgres_url)
    upgrade(database_url)
    with running_stack(database_url, redis_url, sandbox_url, log_dir) as started:
        yield started


@pytest.fixture
def live(stack: Stack) -> Stack:
    """The stack with a worker running, restarted if an earlier test killed them all."""
    if not any(process.poll() is None for process in stack.workers):
        stack.workers.clear()
        stack.start_worker()
    return stack


@dataclass
class Shop:
    """A creator's shop: a bot selling a channel, as `botter bot/chat/plan add` make it."""

    stack: Stack
    tg: Telegram
    bot_id: int
    token: str
    owner_id: int
    chat_id: int
    managed_chat_id: int

    def add_plan(
        self, title: str, stars: int, period_s: int, remind_s: list[int] | None = None
    ) -> int:
        async def work(runtime: Runtime) -> int:
            created = await admin.add_plan(
                runtime, self.bot_id, [self.chat_id], title, stars, period_s, remind_s or []
            )
            return int(created["id"])

        plan_id: int = self.stack.run(work)
        return plan_id

    def subscriber(self, first_name: str = "Sam", stars: int = 10_000) -> "Subscriber":
        return Subscriber(self, self.tg.user(first_name, stars=stars))

    def members(self) -> dict[int, str]:
        found = self.tg.look(f"/chats/{self.chat_id}/members")
        return {member["user_id"]: member["status"] for member in found}

    def calls(self, method: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.tg.look("/calls", bot_id=self.bot_id, method=method)
        return found

    def fault(self, **fault: object) -> None:
        assert self.tg.control("/faults", {"bot_id": self.bot_id, **fault}) == {"ok": True}


@dataclass
class Subscriber:
    """A Telegram user acting in the shop's bot through the sandbox's control API."""

    shop: Shop
    user_id: int

    @property
    def path(self) -> str:
        return f"/users/{self.user_id}"

    def send(self, text: str) -> dict[str, Any]:
        sent: dict[str, Any] = self.shop.tg.control(
            f"{self.path}/send", {"bot_id": self.shop.bot_id, "text": text}
        )
        return sent

    def messages(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.shop.tg.look(
            f"{self.path}/messages", bot_id=self.shop.bot_id
        )
        return found

    def next_message(self, seen: int, timeout_s: float = 30, what: str = "a message") -> Any:
        """The first message after the `seen` first ones, waiting for it."""
        return eventually(
            lambda: self.messages()[seen] if len(self.messages()) > seen else None,
            timeout_s,
            what,
        )

    def wait_for_text(self, fragment: str, timeout_s: float = 30) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            return next((m for m in self.messages() if fragment in m.get("text", "")), None)

        found: dict[str, Any] = eventually(find, timeout_s, f"a message with {fragment!r}")
        return found

    def invoices(self) -> list[dict[str, Any]]:
        return [message for message in self.messages() if "invoice" in message]

    def press(self, message_id: int, callback_data: str) -> dict[str, Any]:
        pressed: dict[str, Any] = self.shop.tg.control(
            f"{self.path}/press",
            {"bot_id": self.shop.bot_id, "message_id": message_id, "callback_data": callback_data},
        )
        return pressed

    def choose_plan(self, plan_id: int) -> dict[str, Any]:
        """/start, tap the plan's button, and wait for the invoice it brings."""
        invoices_before = len(self.invoices())
        seen = len(self.messages())
        self.send("/start")
        menu = self.next_message(seen, what="the plan menu")
        self.press(menu["message_id"], f"plan:{plan_id}")
        return self.wait_for_invoice(invoices_before)

    def wait_for_invoice(self, invoices_before: int, timeout_s: float = 30) -> dict[str, Any]:
        invoice: dict[str, Any] = eventually(
            lambda: (
                self.invoices()[invoices_before]
                if len(self.invoices()) > invoices_before
                else None
            ),
            timeout_s,
            "an invoice",
        )
        return invoice

    def pay(self, invoice: dict[str, Any]) -> dict[str, Any]:
        paid: dict[str, Any] = self.shop.tg.control(
            f"{self.path}/pay", {"bot_id": self.shop.bot_id, "message_id": invoice["message_id"]}
        )
        return paid

    def invite_links(self) -> list[str]:
        links = []
        for message in self.messages():
            for word in message.get("text", "").split():
                if word.startswith("https://t.me/+"):
                    links.append(word)
        return links

    def wait_for_link(self, links_before: int = 0, timeout_s: float = 30) -> str:
        link: str = eventually(
            lambda: (
                self.invite_links()[links_before]
                if len(self.invite_links()) > links_before
                else None
            ),
            timeout_s,
            "an invite link",
        )
        return link

    def join(self, invite_link: str) -> dict[str, Any]:
        joined: dict[str, Any] = self.shop.tg.control(
            f"{self.path}/join", {"invite_link": invite_link}
        )
        return joined

    def buy(self, plan_id: int) -> dict[str, Any]:
        """The whole purchase: choose, pay, and wait for the access message's link."""
        links_before = len(self.invite_links())
        paid = self.pay(self.choose_plan(plan_id))
        assert paid["status"] == "paid", paid
        paid["invite_link"] = self.wait_for_link(links_before)
        return paid


def open_shop(live: Stack, tg: Telegram, join_by: str = "invite_link") -> Shop:
    bot = tg.bot(unique("e2e") + "_bot")
    owner_id = tg.user("Olga")
    chat_id = tg.channel(owner_id, bot["id"])

    async def work(runtime: Runtime) -> int:
        creator_id = await admin.default_creator(runtime, unique("creator"))
        await admin.add_bot(runtime, bot["token"], creator_id)
        added = await admin.add_chat(runtime, bot["id"], chat_id, join_by)
        return int(added["id"])

    managed_chat_id = live.run(work)
    return Shop(live, tg, bot["id"], bot["token"], owner_id, chat_id, managed_chat_id)


@pytest.fixture
def shop(live: Stack, tg: Telegram) -> Shop:
    return open_shop(live, tg)
