"""A scripted Telegram world for sandbox tests: bots, users, chats and a webhook receiver."""

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.conftest import free_port


class Telegram:
    """Thin client of both sandbox APIs, for tests."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30)

    def control(self, path: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        response = self.http.post(f"/sandbox{path}", json=body or {})
        assert response.status_code == status, response.text
        return response.json()

    def look(self, path: str, **query: Any) -> Any:
        response = self.http.get(f"/sandbox{path}", params=query)
        assert response.status_code == 200, response.text
        return response.json()

    def api(self, token: str, method: str, **params: Any) -> dict[str, Any]:
        """Call the Bot API with a JSON body; answer the whole envelope."""
        envelope: dict[str, Any] = self.http.post(f"/bot{token}/{method}", json=params).json()
        return envelope

    def ok(self, token: str, method: str, **params: Any) -> Any:
        envelope = self.api(token, method, **params)
        assert envelope["ok"] is True, envelope
        return envelope["result"]

    def error(self, token: str, method: str, **params: Any) -> tuple[int, str]:
        envelope = self.api(token, method, **params)
        assert envelope["ok"] is False, envelope
        return envelope["error_code"], envelope["description"]

    def bot(self, username: str) -> dict[str, Any]:
        created: dict[str, Any] = self.control("/bots", {"username": username})
        return created

    def user(self, first_name: str = "Ann", **fields: Any) -> int:
        return int(self.control("/users", {"first_name": first_name, **fields})["id"])

    def channel(self, owner_id: int, bot_id: int | None = None, kind: str = "channel") -> int:
        chat_id = int(
            self.control("/chats", {"type": kind, "title": "Premium", "owner_id": owner_id})["id"]
        )
        if bot_id is not None:
            self.control(f"/chats/{chat_id}/admins", {"user_id": bot_id})
        return chat_id

    def start(self, user_id: int, bot_id: int, text: str = "/start") -> dict[str, Any]:
        sent: dict[str, Any] = self.control(
            f"/users/{user_id}/send", {"bot_id": bot_id, "text": text}
        )
        return sent

    def updates(self, token: str, **params: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.ok(token, "getUpdates", **params)
        return result

    def drain(self, token: str) -> list[dict[str, Any]]:
        """All pending updates, confirmed so the next call sees only new ones."""
        pending = self.updates(token)
        if pending:
            self.updates(token, offset=pending[-1]["update_id"] + 1)
        return pending


_counter = iter(range(1, 10**9))


def unique(prefix: str) -> str:
    return f"{prefix}{next(_counter)}_{threading.get_ident() % 10_000}"


@dataclass
class World:
    tg: Telegram
    bot_id: int
    token: str
    user_id: int
    owner_id: int
    chat_id: int


@pytest.fixture
def world(tg: Telegram) -> World:
    """A fresh bot, a subscriber who started it, and a channel the bot administers."""
    bot = tg.bot(unique("shop") + "_bot")
    user_id = tg.user("Ann")
    owner_id = tg.user("Olga")
    chat_id = tg.channel(owner_id, bot["id"])
    tg.drain(bot["token"])  # the bot's own my_chat_member from being made admin
    return World(tg, bot["id"], bot["token"], user_id, owner_id, chat_id)


@dataclass
class Receiver:
    """A webhook target that records what it gets and answers as told."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    delay_s: float = 0.0
    reply: bytes | None = None
    reply_type: str = "application/json"

    def wait_for(self, count: int, timeout_s: float = 15) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.received)} deliveries, wanted {count}")
            time.sleep(0.02)
        return self.received


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    target = Receiver(url=f"http://127.0.0.1:{port}/hook")

    async def hook(request: Request) -> Response:
        target.headers.append(dict(request.headers))
        status = target.statuses.pop(0) if target.statuses else 200
        if target.delay_s:
            await asyncio.sleep(target.delay_s)
        if status == 200:
            target.received.append(await request.json())
        body = target.reply if status == 200 and target.reply is not None else b"{}"
        return Response(body, status, media_type=target.reply_type)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    yield target
    server.should_exit = True
    thread.join(timeout=5)
