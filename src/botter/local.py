"""Process entry points: the web service, the worker, and everything-in-one for local runs."""

import asyncio
import contextlib
import gc
import logging
import signal
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import prometheus_client
import uvicorn

from botter import admin
from botter.config import Settings
from botter.db.migrate import upgrade
from botter.engines import resolve_engines
from botter.logs import configure_logging
from botter.runtime import Runtime

logger = logging.getLogger("botter")

SANDBOX_PORT = 8081
DEMO_CREATOR = "Demo creator"


def stop_event() -> asyncio.Event:
    """Set on SIGINT or SIGTERM, so every part can finish what it is doing and exit 0."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    return stop


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to the process it runs in."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def until_started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    # uvicorn reports readiness only as a flag, so look at it until it flips.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    if serving.done():
        serving.result()  # raises why it could not start (a port in use, say)


def web_server(settings: Settings, host: str, port: int) -> uvicorn.Server:
    from botter.web.app import create_app

    config = uvicorn.Config(
        create_app(settings), host=host, port=port, log_level="warning", access_log=False,
        lifespan="on", timeout_graceful_shutdown=20,
        proxy_headers=True, forwarded_allow_ips=list(settings.trusted_proxies),
    )  # fmt: skip
    return EmbeddedServer(config)


async def serve_forever(settings: Settings, host: str, port: int) -> None:
    configure_logging(settings.log_level, settings.log_format)
    engines = resolve_engines(settings)
    stop = stop_event()
    server = web_server(engines.settings, host, port)
    serving = asyncio.create_task(server.serve())
    await until_started(server, serving)
    # Everything allocated so far lives as long as the process: move it out of the
    # collector's sight, or each full collection walks it again and stalls requests
    # (measured: p99 of the webhook path 300 ms → 40 ms).
    gc.collect()
    gc.freeze()
    logger.info("web.started port=%s", port)
    await stop.wait()
    server.should_exit = True
    await serving
    engines.stop_started()


async def work_forever(settings: Settings) -> None:
    configure_logging(settings.log_level, settings.log_format)
    engines = resolve_engines(settings)
    from botter.worker import Worker  # aiogram and the handlers: the web service needs neither

    runtime = Runtime.start(engines.settings)
    worker = Worker(runtime)
    if settings.worker_metrics_port:
        # Workers count updates, jobs and payments; Prometheus scrapes them here.
        prometheus_client.start_http_server(settings.worker_metrics_port)
        logger.info("worker.metrics port=%s", settings.worker_metrics_port)
    stop = stop_event()
    working = asyncio.create_task(worker.run())
    await stop.wait()
    worker.stop()
    await working
    await runtime.close()
    engines.stop_started()


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def start_sandbox() -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    from botter.sandbox import create_app as create_sandbox

    port = SANDBOX_PORT
    if not port_free(port):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
    config = uvicorn.Config(
        create_sandbox(), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve())
    await until_started(server, task)
    return server, task, f"http://127.0.0.1:{port}"


async def run_all(settings: Settings, port: int, with_sandbox: bool, demo: bool) -> None:
    configure_logging(settings.log_level, settings.log_format)
    stop = stop_event()
    engines = resolve_engines(settings)
    settings = engines.settings
    await asyncio.to_thread(upgrade, settings.database_url or "")
    sandbox = None
    if with_sandbox:
        sandbox = await start_sandbox()
        settings = settings.model_copy(
            update={
                "telegram_api_url": sandbox[2],
                "public_url": settings.public_url or f"http://127.0.0.1:{port}",
            }
        )
    server = web_server(settings, "127.0.0.1" if with_sandbox else "0.0.0.0", port)
    serving = asyncio.create_task(server.serve())
    await until_started(server, serving)
    from botter.worker import Worker

    runtime = Runtime.start(settings)
    worker = Worker(runtime)
    working = asyncio.create_task(worker.run())
    try:
        if sandbox and demo:
            print_demo(await seed_demo(runtime, sandbox[2]), sandbox[2], port)
        else:
            logger.info("botter.ready port=%s", port)
        await stop.wait()
    finally:
        worker.stop()
        await working
        server.should_exit = True
        await serving
        await runtime.close()
        if sandbox:
            sandbox[0].should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await sandbox[1]
        engines.stop_started()


async def seed_demo(runtime: Runtime, sandbox_url: str) -> dict[str, Any]:
    """A creator's whole setup, done in the sandbox: bot, channel, plans, and a subscriber."""
    async with httpx.AsyncClient(base_url=f"{sandbox_url}/sandbox") as control:

        async def make(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = await control.post(path, json=body)
            response.raise_for_status()
            answer: dict[str, Any] = response.json()
            return answer

        bot = await make("/bots", {"username": "botter_demo_bot", "first_name": "Premium Shop"})
        owner = await make("/users", {"first_name": "Olga", "username": "olga_creator"})
        channel = await make(
            "/chats", {"type": "channel", "title": "Premium Channel", "owner_id": owner["id"]}
        )
        await make(f"/chats/{channel['id']}/admins", {"user_id": bot["id"]})
        subscriber = await make("/users", {"first_name": "Alex", "stars": 1000})
    # The sandbox world is new on every run and reuses its ids: start the demo afresh too,
    # or the new Alex would inherit the last run's access.
    await admin.forget_creator(runtime, await admin.default_creator(runtime, DEMO_CREATOR))
    creator_id = await admin.default_creator(runtime, DEMO_CREATOR)
    await admin.add_bot(runtime, bot["token"], creator_id)
    await admin.add_chat(runtime, bot["id"], channel["id"])
    monthly = await admin.add_plan(
        runtime, bot["id"], [channel["id"]], "Premium, 30 days", 50, 30 * 86400, [3 * 86400, 86400]
    )
    quick = await admin.add_plan(
        runtime, bot["id"], [channel["id"]], "Quick look, 3 minutes", 1, 180, [120]
    )
    return {
        "bot_id": bot["id"],
        "channel_id": channel["id"],
        "subscriber_id": subscriber["id"],
        "plans": [monthly["id"], quick["id"]],
    }


def print_demo(demo: dict[str, Any], sandbox_url: str, port: int) -> None:
    bot, user, chat = demo["bot_id"], demo["subscriber_id"], demo["channel_id"]
    quick_plan = demo["plans"][1]
    users = f"{sandbox_url}/sandbox/users/{user}"
    lines = [
        "",
        f"botter is running on http://127.0.0.1:{port} (/health, /ready, /metrics)",
        f"The Telegram sandbox is on {sandbox_url}. A demo bot (id {bot}) sells access to",
        f'"Premium Channel" (id {chat}). You are Alex, user {user}, with 1000 Stars.',
        "Act as Alex from another terminal; each `messages` call lists what the bot sent you,",
        "with the message_id (M) and link to use next:",
        "",
        f"""  curl -s -XPOST {users}/send -d '{{"bot_id": {bot}, "text": "/start"}}'""",
        f'  curl -s "{users}/messages?bot_id={bot}"',
        f"""  curl -s -XPOST {users}/press \\
      -d '{{"bot_id": {bot}, "message_id": M, "callback_data": "plan:{quick_plan}"}}'""",
        f'  curl -s "{users}/messages?bot_id={bot}"',
        f"""  curl -s -XPOST {users}/pay -d '{{"bot_id": {bot}, "message_id": M}}'""",
        f'  curl -s "{users}/messages?bot_id={bot}"',
        f"""  curl -s -XPOST {users}/join -d '{{"invite_link": "LINK"}}'""",
        f'  curl -s "{sandbox_url}/sandbox/chats/{chat}/members"',
        "",
        f"  .venv/bin/botter subscriptions list --bot {bot}",
        f"  .venv/bin/botter payments list --bot {bot}",
        "",
        "The 3-minute plan reminds you 2 minutes before it ends, then removes you. Ctrl-C stops.",
        "",
    ]
    print("\n".join(lines), flush=True)
