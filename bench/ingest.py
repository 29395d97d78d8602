"""The webhook ingest benchmark: botter against aiogram's webhook server and a bare app.

    .venv/bin/python -m bench.ingest [--seconds 20] [--warmup 3] [--connections 64]

One run starts, one after the other and each in its own process:

- botter: `botter serve` on embedded PostgreSQL (durable: fsync and synchronous_commit on)
  and embedded Redis, with one registered bot;
- aiogram: its aiohttp webhook server as its docs deploy it (SimpleRequestHandler with its
  defaults, setup_application, a Dispatcher whose one handler does nothing);
- bare: a Starlette app on uvicorn that reads the body and answers 200.

The same load generator (a raw-socket asyncio client in its own process) loads each with
the same realistic message updates, every one with a unique update_id: a warm-up, then a
measured window. It prints req/s, latency percentiles, errors and the ratios, then checks
botter's inbox: every update answered 200 must be there, once.
"""

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

REPO: Final = Path(__file__).resolve().parents[1]
HOST: Final = "127.0.0.1"
BOT_ID: Final = 7_000_000_001
# aiogram validates the token's shape; the bot never calls Telegram here.
AIOGRAM_TOKEN: Final = f"{BOT_ID}:AAbenchmarkbenchmarkbenchmarkbenchmark0"
FIRST_UPDATE_ID: Final = 10**9
UPDATE_IDS_PER_ROUND: Final = 10**8
WEBHOOK_PATH: Final = "/webhook/telegram/{bot_id}"
SECRET_HEADER: Final = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
STARTUP_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 25.0
# After the window: how long answers to requests still in flight are waited for.
DRAIN_TIMEOUT_S: Final = 10.0
SERVERS: Final = ("bare", "aiogram", "botter")
TARGET_VS_AIOGRAM: Final = 1.5
TARGET_VS_BARE: Final = 0.25
TARGET_P99_MS: Final = 100.0
SLOW_BATCH_S: Final = 0.1

# ---------------------------------------------------------------------------------------
# Update bodies: what Telegram sends for a private message, with rotating users and texts.

_TEXTS: Final = (
    "/start",
    "/start plan_monthly",
    "Hi! How do I get into the channel?",
    "/help",
    "Is the 30-day plan renewed automatically?",
    "Paid, thanks \U0001f44d",
    "/status",
    "Where is my invite link?",
)
_FIRST_NAMES: Final = ("Ann", "Bob", "Chen", "Dana", "Émile", "Farah", "Gustav", "Hana")
USERS: Final = 1000


def _tail(update_id: int, date: int) -> bytes:
    """Everything after the update_id: a message from one of USERS users."""
    user_id = 100_000_001 + update_id % USERS
    first_name = _FIRST_NAMES[update_id % len(_FIRST_NAMES)]
    text = _TEXTS[update_id % len(_TEXTS)]
    user = {
        "id": user_id,
        "is_bot": False,
        "first_name": first_name,
        "username": f"user{user_id}",
        "language_code": "en",
    }
    chat = {
        "id": user_id,
        "first_name": first_name,
        "username": f"user{user_id}",
        "type": "private",
    }
    message: dict[str, Any] = {
        "message_id": update_id % 100_000 + 1,
        "from": user,
        "chat": chat,
        "date": date,
        "text": text,
    }
    if text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
    return json.dumps({"message": message}, ensure_ascii=False, separators=(",", ":"))[1:].encode()


def update_body(update_id: int, date: int) -> bytes:
    return b'{"update_id":%d,%s' % (update_id, _tail(update_id, date))


class Requests:
    """HTTP/1.1 requests as Telegram sends them, one update each, built cheaply."""

    def __init__(self, port: int, secret: str, date: int) -> None:
        self._head = (
            f"POST {WEBHOOK_PATH.format(bot_id=BOT_ID)} HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\n"
            "Content-Type: application/json\r\n"
            f"{SECRET_HEADER}: {secret}\r\n"
            "Content-Length: "
        ).encode()
        # Tails repeat with the update_id modulo this; build each once.
        self._tails = [_tail(i, date) for i in range(USERS * len(_TEXTS) * len(_FIRST_NAMES))]

    def build(self, update_id: int) -> bytes:
        body = b'{"update_id":%d,%s' % (update_id, self._tails[update_id % len(self._tails)])
        return b"%s%d\r\n\r\n%s" % (self._head, len(body), body)


# ---------------------------------------------------------------------------------------
# The load generator, run in its own process: `python -m bench.ingest load ...`.


@dataclass
class Tally:
    """What the load generator saw; the window counts only answers that arrived in it."""

    warmup_s: float
    seconds: float
    started_s: float = 0.0
    next_update_id: int = FIRST_UPDATE_ID
    stopping: bool = False
    in_flight: int = 0
    latencies_s: list[float] = field(default_factory=list)
    window_statuses: dict[int, int] = field(default_factory=dict)
    window_errors: dict[str, int] = field(default_factory=dict)
    ok_update_ids: list[int] = field(default_factory=list)
    other_update_ids: list[int] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def window_from_s(self) -> float:
        return self.started_s + self.warmup_s

    @property
    def window_until_s(self) -> float:
        return self.window_from_s + self.seconds

    def in_window(self, now_s: float) -> bool:
        return self.window_from_s <= now_s < self.window_until_s

    def answered(self, update_id: int, status: int, sent_s: float, now_s: float) -> None:
        self.in_flight -= 1
        (self.ok_update_ids if status == 200 else self.other_update_ids).append(update_id)
        if self.in_window(now_s):
            self.latencies_s.append(now_s - sent_s)
            self.window_statuses[status] = self.window_statuses.get(status, 0) + 1

    def failed(self, update_id: int | None, reason: str, now_s: float) -> None:
        if update_id is not None:
            self.in_flight -= 1
            self.other_update_ids.append(update_id)
        self.errors[reason] = self.errors.get(reason, 0) + 1
        if self.in_window(now_s):
            self.window_errors[reason] = self.window_errors.get(reason, 0) + 1


class ResponseError(Exception):
    pass


def parse_response(buffer: bytearray) -> tuple[int, int, bool] | None:
    """(status, bytes used, server closes) of the first whole response, None if partial."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).lower()
    if not head.startswith(b"http/1.1 "):
        raise ResponseError("not an HTTP/1.1 response")
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        raise ResponseError("response without content-length")
    line_end = head.find(b"\r\n", at + 2)
    length = int(head[at + 17 : line_end if line_end > 0 else len(head)])
    used = end + 4 + length
    if len(buffer) < used:
        return None
    return int(head[9:12]), used, b"\r\nconnection: close" in head


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request at a time, the next sent on the answer."""

    def __init__(self, tally: Tally, requests: Requests, reconnect: Callable[[], None]) -> None:
        self._tally = tally
        self._requests = requests
        self._reconnect = reconnect
        self._buffer = bytearray()
        self._update_id: int | None = None
        self._sent_s = 0.0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            parsed = parse_response(self._buffer)
        except (ResponseError, ValueError):
            self._fail("bad response")
            return
        if parsed is None:
            return
        status, used, closes = parsed
        del self._buffer[:used]
        assert self._update_id is not None
        self._tally.answered(self._update_id, status, self._sent_s, time.perf_counter())
        self._update_id = None
        if closes:
            self._close()
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._update_id is not None:
            self._tally.failed(self._update_id, "connection lost", time.perf_counter())
            self._update_id = None
        if not self._tally.stopping:
            self._reconnect()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _send(self) -> None:
        assert self._transport is not None
        if self._tally.stopping:
            return
        tally = self._tally
        self._update_id = tally.next_update_id
        tally.next_update_id += 1
        tally.in_flight += 1
        self._sent_s = time.perf_counter()
        self._transport.write(self._requests.build(self._update_id))

    def _fail(self, reason: str) -> None:
        self._tally.failed(self._update_id, reason, time.perf_counter())
        self._update_id = None
        self._close()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU time of these processes, as the kernel counts it."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def children_of(pid: int) -> list[int]:
    """`pid` and its direct children (PostgreSQL's backends are the postmaster's)."""
    found = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds spent in the window by the load generator and each watched process."""

    def __init__(self, watched: dict[str, int]) -> None:
        self._watched = watched
        self._start: dict[str, float] = {}

    def _read(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        now = {"load generator": usage.ru_utime + usage.ru_stime}
        for name, pid in self._watched.items():
            pids = children_of(pid) if name == "postgres" else [pid]
            now[name] = cpu_seconds(pids)
        return now

    def begin(self) -> None:
        self._start = self._read()

    def end(self, tally: Tally) -> None:
        now = self._read()
        tally.cpu = {name: now[name] - self._start[name] for name in now}


async def generate_load(args: argparse.Namespace) -> Tally:
    loop = asyncio.get_running_loop()
    tally = Tally(warmup_s=args.warmup, seconds=args.seconds)
    tally.next_update_id = args.first_update_id
    requests = Requests(args.port, args.secret, int(time.time()))
    connections: list[Connection] = []

    def connect() -> None:
        task = loop.create_task(loop.create_connection(make, HOST, args.port))
        task.add_done_callback(connected)

    def make() -> Connection:
        connection = Connection(tally, requests, connect)
        connections.append(connection)
        return connection

    def connected(task: "asyncio.Task[Any]") -> None:
        if task.exception() is not None:
            tally.failed(None, "connect failed", time.perf_counter())
            if not tally.stopping:
                loop.call_later(0.05, connect)

    watched = {"server": args.server_pid}
    if args.postgres_pid:
        watched["postgres"] = args.postgres_pid
    meter = CpuMeter(watched)
    tally.started_s = time.perf_counter()
    for _ in range(args.connections):
        connect()
    await asyncio.sleep(args.warmup)
    meter.begin()
    await asyncio.sleep(tally.window_until_s - time.perf_counter())
    meter.end(tally)
    tally.stopping = True
    drain_until_s = time.perf_counter() + DRAIN_TIMEOUT_S
    while tally.in_flight > 0 and time.perf_counter() < drain_until_s:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    for connection in connections:
        connection.close()
    return tally


def percentile_ms(sorted_s: list[float], fraction: float) -> float:
    if not sorted_s:
        return float("nan")
    index = min(len(sorted_s) - 1, max(0, round(fraction * len(sorted_s)) - 1))
    return sorted_s[index] * 1000


def summarize(tally: Tally, first_update_id: int) -> dict[str, Any]:
    latencies = sorted(tally.latencies_s)
    server_cpu_s = tally.cpu.get("server", 0.0)
    window_errors = sum(tally.window_errors.values())
    window_errors += sum(n for status, n in tally.window_statuses.items() if status != 200)
    return {
        "requests": len(latencies),
        "rps": len(latencies) / tally.seconds,
        "p50_ms": percentile_ms(latencies, 0.50),
        "p95_ms": percentile_ms(latencies, 0.95),
        "p99_ms": percentile_ms(latencies, 0.99),
        "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "statuses": {str(status): n for status, n in sorted(tally.window_statuses.items())},
        "errors": window_errors,
        "error_kinds": tally.window_errors,
        "all_errors": tally.errors,
        "cpu_us_per_request": server_cpu_s / len(latencies) * 1e6 if latencies else 0.0,
        "unanswered": tally.in_flight,
        "sent": tally.next_update_id - first_update_id,
        "ok_update_ids": tally.ok_update_ids,
        "cpu_s": tally.cpu,
    }


def run_load(args: argparse.Namespace) -> None:
    tally = asyncio.run(generate_load(args))
    summary = summarize(tally, args.first_update_id)
    Path(args.out).write_text(json.dumps(summary))


# ---------------------------------------------------------------------------------------
# The two peers, each run in its own process: `python -m bench.ingest serve-aiogram ...`.


def serve_aiogram(args: argparse.Namespace) -> None:
    """aiogram's webhook server as its documentation deploys it, with a do-nothing handler."""
    from aiogram import Bot, Dispatcher
    from aiogram.types import Message
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
    from aiohttp import web

    dispatcher = Dispatcher()

    @dispatcher.message()
    async def ignore(message: Message) -> None:
        return None

    bot = Bot(token=AIOGRAM_TOKEN)
    app = web.Application()
    handler = SimpleRequestHandler(dispatcher=dispatcher, bot=bot, secret_token=args.secret)
    handler.register(app, path=WEBHOOK_PATH)
    setup_application(app, dispatcher, bot=bot)
    web.run_app(app, host=HOST, port=args.port, print=None)


def serve_bare(args: argparse.Namespace) -> None:
    """The floor: Starlette on uvicorn, configured as botter's web service, answering 200."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def webhook(request: Request) -> Response:
        await request.body()
        return Response(b"{}", media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    app = Starlette(
        routes=[
            Route(WEBHOOK_PATH, webhook, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    # The same uvicorn settings as botter.local.web_server.
    config = uvicorn.Config(
        app, host=HOST, port=args.port, log_level="warning", access_log=False, lifespan="on"
    )
    uvicorn.Server(config).run()


# ---------------------------------------------------------------------------------------
# The orchestrator: engines, servers one at a time, the load, the report.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In a child, before exec: be sent SIGTERM when the benchmark process dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(command: list[str], env: dict[str, str], log: Path) -> "subprocess.Popen[bytes]":
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )


def stop(process: "subprocess.Popen[bytes]") -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_port(port: int, process: "subprocess.Popen[bytes]", log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail}")
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {STARTUP_TIMEOUT_S} s")


@dataclass
class Engines:
    """Embedded PostgreSQL and Redis in a temporary directory, with botter's schema."""

    root: Path
    database_url: str = ""
    redis_url: str = ""
    postgres_pid: int = 0
    description: str = ""
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def start(self) -> None:
        from botter.db.migrate import upgrade
        from botter.embedded import EmbeddedPostgres, EmbeddedRedis

        postgres = EmbeddedPostgres(self.root / "postgres", durable=True)
        self.database_url = postgres.start()
        self._stops.append(postgres.stop)
        redis = EmbeddedRedis(self.root / "redis")
        self.redis_url = redis.start()
        self._stops.append(redis.stop)
        self.postgres_pid = int((postgres.pgdata / "postmaster.pid").read_text().split()[0])
        upgrade(self.database_url)
        self.description = self._describe(postgres.pgdata)

    def stop(self) -> None:
        for stop_one in reversed(self._stops):
            with contextlib.suppress(Exception):
                stop_one()
        self._stops.clear()

    def _describe(self, pgdata: Path) -> str:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as connection:
            settings = dict(
                connection.execute(
                    "SELECT name, setting FROM pg_settings WHERE name IN"
                    " ('server_version', 'fsync', 'synchronous_commit', 'full_page_writes')"
                ).fetchall()
            )
        return (
            f"embedded PostgreSQL {settings['server_version']}, durable=True "
            f"(fsync={settings['fsync']}, synchronous_commit={settings['synchronous_commit']},"
            f" full_page_writes={settings['full_page_writes']}), data on "
            f"{filesystem_of(pgdata)}"
        )


def filesystem_of(path: Path) -> str:
    """The filesystem type holding `path`, from /proc/mounts (tmpfs would make fsync free)."""
    best = ("", "unknown")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount, kind = parts[1], parts[2]
            inside = str(path).startswith(mount.rstrip("/") + "/") or mount == "/"
            if inside and len(mount) >= len(best[0]):
                best = (mount, kind)
    return best[1]


def register_bot(database_url: str, secret_key: str, webhook_secret: str) -> None:
    """One creator and its bot, as `botter bot add` stores them: secrets encrypted."""
    import psycopg

    from botter.crypto import Keyring

    keyring = Keyring([secret_key])
    token = f"{BOT_ID}:{secrets.token_urlsafe(27)}"
    with psycopg.connect(database_url, autocommit=True) as connection:
        found = connection.execute(
            "INSERT INTO creators (name) VALUES ('benchmark creator') RETURNING id"
        ).fetchone()
        assert found is not None
        connection.execute(
            "INSERT INTO bots (id, creator_id, username, token_ciphertext,"
            " webhook_secret_ciphertext, delivery) VALUES (%s, %s, %s, %s, %s, 'webhook')",
            (
                BOT_ID,
                found[0],
                "bench_bot",
                keyring.encrypt(token),
                keyring.encrypt(webhook_secret),
            ),
        )


@dataclass
class Server:
    name: str
    command: list[str]
    env: dict[str, str]


def server_commands(engines: Engines, secret_key: str, port: int, secret: str) -> list[Server]:
    python = sys.executable
    plain_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    botter_env = {
        **plain_env,
        "DATABASE_URL": engines.database_url,
        "REDIS_URL": engines.redis_url,
        "BOTTER_SECRET_KEYS": secret_key,
        "BOTTER_DATA_DIR": str(engines.root / "data"),
    }
    peer = [python, "-m", "bench.ingest"]
    return [
        Server("bare", [*peer, "serve-bare", "--port", str(port)], plain_env),
        Server(
            "aiogram",
            [*peer, "serve-aiogram", "--port", str(port), f"--secret={secret}"],
            plain_env,
        ),
        Server(
            "botter",
            [python, "-m", "botter", "serve", "--host", HOST, "--port", str(port)],
            botter_env,
        ),
    ]


def measure(
    server: Server,
    args: argparse.Namespace,
    engines: Engines,
    secret: str,
    work: Path,
    first_update_id: int,
) -> dict[str, Any]:
    """Start `server`, load it, stop it; the load generator's summary."""
    port = int(server.command[server.command.index("--port") + 1])
    log = work / f"{server.name}.log"
    process = spawn(server.command, server.env, log)
    try:
        wait_for_port(port, process, log)
        out = work / f"{server.name}.json"
        load = [
            sys.executable, "-m", "bench.ingest", "load", "--port", str(port),
            f"--secret={secret}", "--connections", str(args.connections),
            "--warmup", str(args.warmup), "--seconds", str(args.seconds),
            "--server-pid", str(process.pid), "--out", str(out),
            "--first-update-id", str(first_update_id),
        ]  # fmt: skip
        if server.name == "botter":
            load += ["--postgres-pid", str(engines.postgres_pid)]
        budget_s = args.warmup + args.seconds + DRAIN_TIMEOUT_S + 30
        subprocess.run(load, check=True, timeout=budget_s, cwd=REPO, preexec_fn=_die_with_parent)
        summary: dict[str, Any] = json.loads(out.read_text())
        if server.name == "botter":
            summary["metrics"] = scrape_metrics(port)
        if process.poll() is not None:
            raise RuntimeError(f"{server.name} exited during the run; see {log}")
        return summary
    finally:
        stop(process)


def scrape_metrics(port: int) -> dict[str, float]:
    """botter's own counts: updates by outcome, group commits and their mean size."""
    import httpx

    text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10).text
    wanted = {
        'botter_updates_received_total{outcome="stored"}': "stored",
        'botter_updates_received_total{outcome="duplicate"}': "duplicate",
        'botter_updates_received_total{outcome="failed"}': "failed",
        "botter_ingest_batch_size_count": "batches",
        "botter_ingest_batch_size_sum": "batched_updates",
        "botter_ingest_batches_failed_total": "batches_failed",
        f'botter_ingest_batch_duration_seconds_bucket{{le="{SLOW_BATCH_S}"}}': "fast_batches",
        "botter_ingest_batch_duration_seconds_count": "timed_batches",
        "botter_ingest_batch_duration_seconds_sum": "batch_seconds",
    }
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            found[wanted[name]] = float(value)
    found["slow_batches"] = found.get("timed_batches", 0) - found.get("fast_batches", 0)
    return found


def check_inbox(database_url: str, ok_update_ids: list[int]) -> dict[str, int]:
    """Lost (answered 200, not in the inbox) and duplicated (in the inbox twice) updates."""
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = [
            int(update_id)
            for (update_id,) in connection.execute(
                "SELECT update_id FROM update_inbox WHERE bot_id = %s", (BOT_ID,)
            ).fetchall()
        ]
    stored = set(rows)
    answered = set(ok_update_ids)
    return {
        "rows": len(rows),
        "answered_200": len(ok_update_ids),
        "lost": len(answered - stored),
        "duplicated_rows": len(rows) - len(stored),
        "answered_twice": len(ok_update_ids) - len(answered),
        "stored_unanswered": len(stored - answered),
    }


def run_benchmark(args: argparse.Namespace) -> int:
    secret_key = secrets.token_urlsafe(40)
    webhook_secret = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="botter-bench-") as temporary:
        work = Path(temporary)
        engines = Engines(work)
        try:
            engines.start()
            register_bot(engines.database_url, secret_key, webhook_secret)
            report = Report(args, engines.description)
            report.header()
            ok_update_ids: list[int] = []
            for round_index in range(args.rounds):
                # Rotated, so no server always runs first (or last) on a noisy machine.
                order = [*SERVERS[round_index:], *SERVERS[:round_index]][: len(SERVERS)]
                first_update_id = FIRST_UPDATE_ID + round_index * UPDATE_IDS_PER_ROUND
                servers = server_commands(engines, secret_key, free_port(), webhook_secret)
                by_name = {server.name: server for server in servers}
                for name in order:
                    if name not in args.servers:
                        continue
                    result = measure(
                        by_name[name], args, engines, webhook_secret, work, first_update_id
                    )
                    answered = result.pop("ok_update_ids")
                    if name == "botter":
                        ok_update_ids += answered
                    report.add(round_index, name, result)
            if "botter" in args.servers:
                report.inbox = check_inbox(engines.database_url, ok_update_ids)
            return report.finish()
        finally:
            engines.stop()
            if args.logs:
                keep_logs(work, Path(args.logs))


def keep_logs(work: Path, destination: Path) -> None:
    """The servers' and PostgreSQL's logs, copied out of the temporary directory."""
    destination.mkdir(parents=True, exist_ok=True)
    for log in [*work.glob("*.log"), *work.glob("postgres/pgdata/server.log")]:
        shutil.copy(log, destination / log.name)


# ---------------------------------------------------------------------------------------
# The report.


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


class Report:
    def __init__(self, args: argparse.Namespace, engines: str) -> None:
        self.args = args
        self.engines = engines
        self.rounds: list[dict[str, dict[str, Any]]] = [{} for _ in range(args.rounds)]
        self.inbox: dict[str, int] | None = None

    def header(self) -> None:
        args = self.args
        print(
            f"botter ingest benchmark: {args.connections} connections, "
            f"{args.warmup:g} s warm-up + {args.seconds:g} s measured per server, "
            f"{args.rounds} round(s)",
            flush=True,
        )
        print(f"machine: {machine()}")
        print(f"botter: `botter serve` on {self.engines}")
        print("aiogram: SimpleRequestHandler (defaults) + setup_application, no-op handler")
        print("bare: Starlette on uvicorn, same uvicorn settings as botter, reads body, 200")
        print(f"uvicorn HTTP implementation: {uvicorn_http()}")
        print("load generator: raw-socket asyncio client in its own process (bench.ingest load)")
        print()
        print(
            f"{'round':<5} {'server':<8} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
            f"{'errors':>6} {'CPU us/req':>10}  CPU s: server / load gen / postgres",
            flush=True,
        )

    def add(self, round_index: int, name: str, result: dict[str, Any]) -> None:
        self.rounds[round_index][name] = result
        cpu = result["cpu_s"]
        cpu_text = f"{cpu.get('server', 0):.1f} / {cpu.get('load generator', 0):.1f}"
        if "postgres" in cpu:
            cpu_text += f" / {cpu['postgres']:.1f}"
        print(
            f"{round_index + 1:<5} {name:<8} {result['rps']:>8.0f} {result['p50_ms']:>7.1f} "
            f"{result['p95_ms']:>7.1f} {result['p99_ms']:>7.1f} {result['errors']:>6} "
            f"{result['cpu_us_per_request']:>10.0f}  {cpu_text}",
            flush=True,
        )

    def summary(self) -> dict[str, dict[str, float]]:
        """Per server, the median over rounds of each measure."""
        found: dict[str, dict[str, float]] = {}
        for name in SERVERS:
            runs = [results[name] for results in self.rounds if name in results]
            if runs:
                keys = ("rps", "p50_ms", "p95_ms", "p99_ms", "cpu_us_per_request")
                found[name] = {key: median([run[key] for run in runs]) for key in keys}
                found[name]["errors"] = sum(run["errors"] for run in runs)
        return found

    def ratios(self) -> dict[str, float]:
        """botter's req/s over each peer's, per round (measured minutes apart, not days)."""
        found: dict[str, float] = {}
        for peer in ("aiogram", "bare"):
            per_round = [
                results["botter"]["rps"] / results[peer]["rps"]
                for results in self.rounds
                if "botter" in results and results.get(peer, {}).get("rps")
            ]
            if per_round:
                found[f"botter/{peer}"] = median(per_round)
        return found

    def finish(self) -> int:
        summary = self.summary()
        if self.args.rounds > 1:
            print()
            print(f"median of {self.args.rounds} rounds:")
            for name, values in summary.items():
                print(
                    f"{'':<5} {name:<8} {values['rps']:>8.0f} {values['p50_ms']:>7.1f} "
                    f"{values['p95_ms']:>7.1f} {values['p99_ms']:>7.1f} {values['errors']:>6.0f} "
                    f"{values['cpu_us_per_request']:>10.0f}"
                )
        print()
        ratios = self.ratios()
        targets = {"botter/aiogram": TARGET_VS_AIOGRAM, "botter/bare": TARGET_VS_BARE}
        for name, ratio in ratios.items():
            verdict = "met" if ratio >= targets[name] else "NOT met"
            print(f"ratio {name}: {ratio:.2f}x req/s (target >= {targets[name]:g}x: {verdict})")
        if "botter" in summary:
            self._botter_lines(summary["botter"])
        status = self._inbox_lines()
        if self.args.json:
            self._write_json(summary, ratios)
        return status

    def _botter_lines(self, botter: dict[str, float]) -> None:
        verdict = "met" if botter["p99_ms"] <= TARGET_P99_MS else "NOT met"
        print(f"botter p99: {botter['p99_ms']:.1f} ms (target <= {TARGET_P99_MS:g} ms: {verdict})")
        for peer in ("aiogram", "bare"):
            per_round = [
                results[peer]["cpu_us_per_request"] / results["botter"]["cpu_us_per_request"]
                for results in self.rounds
                if "botter" in results and peer in results
            ]
            if per_round:
                print(
                    f"CPU efficiency botter/{peer}: {median(per_round):.2f}x "
                    f"({peer}'s server CPU per request over botter's, PostgreSQL not counted)"
                )
        metrics = [results["botter"]["metrics"] for results in self.rounds if "botter" in results]
        batches = sum(found.get("batches", 0) for found in metrics)
        if batches:
            updates = sum(found.get("batched_updates", 0) for found in metrics)
            slow = sum(found.get("slow_batches", 0) for found in metrics)
            commit_s = sum(found.get("batch_seconds", 0) for found in metrics)
            print(
                f"botter group commit: {batches:.0f} batches, mean {updates / batches:.1f} "
                f"updates and {commit_s / batches * 1000:.1f} ms from INSERT to commit, "
                f"{slow:.0f} took over {SLOW_BATCH_S * 1000:g} ms"
            )

    def _inbox_lines(self) -> int:
        if self.inbox is None:
            return 0
        inbox = self.inbox
        duplicated = inbox["duplicated_rows"] + inbox["answered_twice"]
        print(
            f"botter inbox: {inbox['rows']} rows, {inbox['answered_200']} updates answered 200;"
            f" lost {inbox['lost']}, duplicated {duplicated},"
            f" stored but not answered 200 {inbox['stored_unanswered']}"
        )
        if inbox["lost"] or duplicated:
            print("FAILED: botter lost or duplicated acknowledged updates")
            return 1
        return 0

    def _write_json(self, summary: dict[str, Any], ratios: dict[str, float]) -> None:
        document = {
            "machine": machine(),
            "engines": self.engines,
            "uvicorn_http": uvicorn_http(),
            "settings": {
                "connections": self.args.connections,
                "warmup_s": self.args.warmup,
                "seconds": self.args.seconds,
                "rounds": self.args.rounds,
            },
            "rounds": self.rounds,
            "summary": summary,
            "ratios": ratios,
            "inbox": self.inbox,
        }
        Path(self.args.json).write_text(json.dumps(document, indent=2))


def uvicorn_http() -> str:
    """What uvicorn's "auto" picks here: httptools when installed, else h11 (pure Python)."""
    import importlib.util

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"{http} parser, {loop} event loop"


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per server")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        type=lambda text: [name for name in text.split(",") if name],
        help="which of bare,aiogram,botter to run (default: all three)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat all servers, rotated")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--logs", help="copy the servers' logs to this folder")
    roles = parser.add_subparsers(dest="role", help=argparse.SUPPRESS)
    load = roles.add_parser("load")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--secret", required=True)
    load.add_argument("--connections", type=int, required=True)
    load.add_argument("--warmup", type=float, required=True)
    load.add_argument("--seconds", type=float, required=True)
    load.add_argument("--server-pid", type=int, required=True)
    load.add_argument("--postgres-pid", type=int, default=0)
    load.add_argument("--first-update-id", type=int, default=FIRST_UPDATE_ID)
    load.add_argument("--out", required=True)
    for role in ("serve-aiogram", "serve-bare"):
        server = roles.add_parser(role)
        server.add_argument("--port", type=int, required=True)
        server.add_argument("--secret", default="")
    args = parser.parse_args(argv)
    unknown = set(args.servers) - set(SERVERS)
    if args.role is None and unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "load":
        run_load(args)
        return 0
    if args.role == "serve-aiogram":
        serve_aiogram(args)
        return 0
    if args.role == "serve-bare":
        serve_bare(args)
        return 0
    return run_benchmark(args)


if __name__ == "__main__":
    sys.exit(main())
