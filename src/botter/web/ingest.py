"""The durable webhook ingest path: check the secret, cap the body, record it, answer.

An update is answered 200 only once its row is committed to `update_inbox`; anything
that stops the commit answers 503, so Telegram delivers it again and nothing that was
acknowledged is lost. Parsing and handling happen later, in the workers.

Concurrent requests share one INSERT and one commit (group commit): one round trip to
PostgreSQL per batch instead of one per update is what makes this path fast.
"""

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from starlette.requests import Request
from starlette.responses import Response

from botter.crypto import CryptoError, Keyring, secret_digest
from botter.errors import BotterError
from botter.metrics import (
    INGEST_BATCH_DURATION_SECONDS,
    INGEST_BATCH_SIZE,
    INGEST_BATCHES_FAILED,
    UPDATES_RECEIVED,
)
from botter.ratelimit import RateLimiter
from botter.telegram.lanes import lane_of

Pool = AsyncConnectionPool[AsyncConnection[TupleRow]]

log = logging.getLogger("botter.web")

SECRET_HEADER: Final = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
MAX_BATCH: Final = 256
MAX_WAIT_S: Final = 0.002
# Event-loop turns without a new arrival after which a batch stops waiting for more.
QUIET_TURNS: Final = 3
WRITE_TIMEOUT_S: Final = 10.0
SECRET_TTL_S: Final = 30.0
MAX_CACHED_BOTS: Final = 50_000
BIGINT_MAX: Final = 2**63 - 1

_INSERT_SQL: Final = """
INSERT INTO update_inbox (creator_id, bot_id, update_id, lane, priority, body)
SELECT * FROM unnest(
    %b::bigint[], %b::bigint[], %b::bigint[], %b::text[], %b::smallint[], %b::bytea[]
)
ON CONFLICT (bot_id, update_id) DO NOTHING
RETURNING bot_id, update_id
"""
_BOT_SQL: Final = "SELECT creator_id, webhook_secret_ciphertext FROM bots WHERE id = %s"

# What an unreachable or failing PostgreSQL looks like from here.
_DATABASE_ERRORS = (psycopg.Error, OSError, TimeoutError)


class IngestUnavailable(BotterError):
    """The update could not be recorded now; the sender should deliver it again."""


class BadUpdate(BotterError):
    """The body is not an update; the message is safe to show to the sender."""


@dataclass(frozen=True, slots=True)
class InboxRow:
    creator_id: int
    bot_id: int
    update_id: int
    lane: str
    priority: int
    body: bytes

    @property
    def key(self) -> tuple[int, int]:
        return self.bot_id, self.update_id


@dataclass(frozen=True, slots=True)
class BotSecret:
    """What the webhook needs of a bot: its tenant, and a digest of its webhook secret."""

    creator_id: int
    digest: bytes


_Entry = tuple[InboxRow, "asyncio.Future[bool]"]


class IngestBatcher:
    """Collects concurrent inbox rows and writes each batch as one statement.

    A batch closes when it holds `max_batch` rows, when a few event-loop turns bring no
    new row, or `max_wait_s` after its first row, whichever comes first; up to
    `max_in_flight` batches are written at the same time.
    While every writer is busy, rows keep gathering, so batches grow with the load.
    """

    def __init__(
        self,
        pool: Pool,
        *,
        max_batch: int = MAX_BATCH,
        max_wait_s: float = MAX_WAIT_S,
        max_in_flight: int = 4,
    ) -> None:
        self._pool = pool
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._max_in_flight = max_in_flight
        self._pending: list[_Entry] = []
        self._writes: set[asyncio.Task[None]] = set()
        self._collector: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        self._arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(self._max_in_flight)
        self._collector = asyncio.create_task(self._collect(), name="botter.ingest.collect")
        self._collector.add_done_callback(self._collector_done)

    async def submit(self, row: InboxRow) -> bool:
        """Record `row`; True once newly committed, False if it was there already."""
        if self._closing or self._collector is None or self._collector.done():
            raise IngestUnavailable("the inbox is not accepting updates")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._arrived.set()
        return await future

    async def close(self) -> None:
        """Stop taking rows, write every pending one, and wait for the writes in flight."""
        self._closing = True
        if self._collector is None:
            return
        self._arrived.set()
        with contextlib.suppress(asyncio.CancelledError):
            await self._collector
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        _settle(self._pending, None)
        self._pending = []

    async def _collect(self) -> None:
        while True:
            await self._slots.acquire()
            batch = await self._next_batch()
            if not batch:
                self._slots.release()
                return
            task = asyncio.create_task(self._write(batch))
            self._writes.add(task)
            task.add_done_callback(self._write_done)

    async def _next_batch(self) -> list[_Entry]:
        while not self._pending:
            if self._closing:
                return []
            self._arrived.clear()
            await self._arrived.wait()
        await self._gather_more()
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        return batch

    async def _gather_more(self) -> None:
        """Let the batch grow while requests keep arriving, up to max_wait_s.

        Requests that reached the server together are being parsed right now; waiting a few
        loop turns lets them join. Once a turn brings nothing new, waiting longer would only
        keep the ones here from their commit.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._max_wait_s
        quiet_turns = 0
        while len(self._pending) < self._max_batch and not self._closing:
            seen = len(self._pending)
            await asyncio.sleep(0)
            quiet_turns = quiet_turns + 1 if len(self._pending) == seen else 0
            if quiet_turns >= QUIET_TURNS or loop.time() >= deadline:
                return

    async def _write(self, batch: list[_Entry]) -> None:
        stored: set[tuple[int, int]] | None = None
        started_s = time.perf_counter()
        try:
            stored = await self._insert(_unique_rows(batch))
        except Exception as error:  # every failure means the same: not acknowledged
            INGEST_BATCHES_FAILED.inc()
            log.warning("ingest.batch_failed size=%d error=%s", len(batch), type(error).__name__)
        else:
            INGEST_BATCH_SIZE.observe(len(batch))
            INGEST_BATCH_DURATION_SECONDS.observe(time.perf_counter() - started_s)
            log.debug("ingest.batch_committed size=%d stored=%d", len(batch), len(stored))
        finally:
            _settle(batch, stored)

    async def _insert(self, rows: Sequence[InboxRow]) -> set[tuple[int, int]]:
        columns = (
            [row.creator_id for row in rows],
            [row.bot_id for row in rows],
            [row.update_id for row in rows],
            [row.lane for row in rows],
            [row.priority for row in rows],
            [row.body for row in rows],
        )
        # The pool's connections are in autocommit mode: this one statement is its own
        # transaction, and PostgreSQL answers it only after the commit.
        # A deadline, so a PostgreSQL that stopped answering turns into 503s (Telegram
        # retries) instead of requests piling up; if the commit landed after all, the
        # retried delivery is a duplicate and a no-op.
        async with asyncio.timeout(WRITE_TIMEOUT_S), self._pool.connection() as connection:
            cursor = await connection.execute(_INSERT_SQL, columns)
            return {(int(bot_id), int(update_id)) for bot_id, update_id in await cursor.fetchall()}

    def _write_done(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        self._slots.release()

    def _collector_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("ingest.collector_failed error=%s", type(task.exception()).__name__)
        # Nobody will write what is still pending: let its senders retry.
        _settle(self._pending, None)
        self._pending = []


def _unique_rows(batch: list[_Entry]) -> list[InboxRow]:
    """One row per (bot_id, update_id), sorted.

    Sorting matters: two batches holding the same updates in different orders could each
    wait for the other's unique-index entries, and PostgreSQL would abort one as a deadlock.
    """
    unique = {row.key: row for row, _ in reversed(batch)}
    return [unique[key] for key in sorted(unique)]


def _settle(batch: list[_Entry], stored: set[tuple[int, int]] | None) -> None:
    """Answer every waiting sender: stored (True), duplicate (False) or unavailable."""
    first_seen: set[tuple[int, int]] = set()
    for row, future in batch:
        if future.done():  # the sender went away
            continue
        if stored is None:
            future.set_exception(IngestUnavailable("the inbox write failed"))
            continue
        fresh = row.key in stored and row.key not in first_seen
        first_seen.add(row.key)
        future.set_result(fresh)


class BotSecrets:
    """Each bot's tenant and secret digest, cached for `ttl_s`, unknown bots included.

    Caching keeps the hot path at one round trip to PostgreSQL (the batch INSERT); only the
    digest is kept, never the secret. A changed secret is seen within `ttl_s`.
    """

    def __init__(self, pool: Pool, keyring: Keyring, ttl_s: float = SECRET_TTL_S) -> None:
        self._pool = pool
        self._keyring = keyring
        self._ttl_s = ttl_s
        self._entries: dict[int, tuple[float, BotSecret | None]] = {}
        self._loading: dict[int, asyncio.Task[BotSecret | None]] = {}

    async def get(self, bot_id: int) -> BotSecret | None:
        """The bot's secret, or None for a bot that does not exist here."""
        entry = self._entries.get(bot_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        # Concurrent first requests of one bot share one lookup.
        task = self._loading.get(bot_id)
        if task is None:
            task = asyncio.create_task(self._load(bot_id))
            self._loading[bot_id] = task
            task.add_done_callback(lambda done: self._forget_loading(bot_id, done))
        return await asyncio.shield(task)

    async def _load(self, bot_id: int) -> BotSecret | None:
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(_BOT_SQL, (bot_id,))
                found = await cursor.fetchone()
        except _DATABASE_ERRORS as error:
            name = type(error).__name__
            log.warning("webhook.secret_lookup_failed bot_id=%d error=%s", bot_id, name)
            raise IngestUnavailable("cannot look up the bot") from None
        secret = None if found is None else self._decrypt(bot_id, int(found[0]), str(found[1]))
        self._remember(bot_id, secret)
        return secret

    def _decrypt(self, bot_id: int, creator_id: int, ciphertext: str) -> BotSecret | None:
        try:
            return BotSecret(creator_id, secret_digest(self._keyring.decrypt(ciphertext)))
        except CryptoError:
            # Fail closed: a bot whose secret no key opens gets the unknown-bot answer.
            log.error("webhook.secret_undecryptable bot_id=%d", bot_id)
            return None

    def _remember(self, bot_id: int, secret: BotSecret | None) -> None:
        self._entries.pop(bot_id, None)
        if len(self._entries) >= MAX_CACHED_BOTS:
            # Oldest first: guessed bot ids cannot grow the cache without bound.
            self._entries.pop(next(iter(self._entries)))
        self._entries[bot_id] = (time.monotonic() + self._ttl_s, secret)

    def _forget_loading(self, bot_id: int, task: asyncio.Task[BotSecret | None]) -> None:
        self._loading.pop(bot_id, None)
        if not task.cancelled():
            task.exception()  # retrieved here, so a lookup nobody waits for stays quiet


def parse_bot_id(text: str) -> int | None:
    """The bot id in the URL, or None unless it is a positive 64-bit integer."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    bot_id = int(text)
    return bot_id if 0 < bot_id <= BIGINT_MAX else None


def decode_update(body: bytes) -> tuple[dict[str, Any], int]:
    """The update and its update_id, or BadUpdate naming what is wrong."""
    try:
        update = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadUpdate("body is not JSON") from None
    if not isinstance(update, dict):
        raise BadUpdate("update must be a JSON object")
    update_id = update.get("update_id")
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise BadUpdate("update_id must be an integer")
    if not 0 <= update_id <= BIGINT_MAX:
        raise BadUpdate("update_id is out of range")
    return update, update_id


async def read_capped(request: Request, limit_bytes: int) -> bytes | None:
    """The raw body, or None once it is longer than `limit_bytes` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        return None
    chunks: list[bytes] = []
    size_bytes = 0
    async for chunk in request.stream():
        size_bytes += len(chunk)
        if size_bytes > limit_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(status: int, body: bytes) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _answer(status, orjson.dumps({"error": message}))


class WebhookIngest:
    """`POST /webhook/telegram/{bot_id}`: Telegram's deliveries, recorded before the 200."""

    def __init__(
        self,
        bot_secrets: BotSecrets,
        batcher: IngestBatcher,
        body_limit_bytes: int,
        auth_failures: RateLimiter | None = None,
    ) -> None:
        self._secrets = bot_secrets
        self._batcher = batcher
        self._body_limit_bytes = body_limit_bytes
        # Counted per client address, only when a request fails authentication: Telegram
        # never does, so only someone guessing secrets or bot ids is ever slowed down.
        self._auth_failures = auth_failures
        # Unknown bots are compared against this, so their answer takes as long as a wrong
        # secret's.
        self._dummy_digest = secret_digest(secrets.token_urlsafe(32))

    async def handle(self, request: Request) -> Response:
        bot_id = parse_bot_id(request.path_params["bot_id"])
        try:
            bot = await self._authenticate(bot_id, request.headers.get(SECRET_HEADER))
            if bot is None or bot_id is None:
                return await self._unauthorized(request)
            body = await read_capped(request, self._body_limit_bytes)
            if body is None:
                return self._reject(413, "body too large")
            return await self._record(bot, bot_id, body)
        except IngestUnavailable:
            UPDATES_RECEIVED.labels("failed").inc()
            return _error(503, "unavailable")

    async def _authenticate(self, bot_id: int | None, presented: str | None) -> BotSecret | None:
        bot = None if bot_id is None else await self._secrets.get(bot_id)
        expected = self._dummy_digest if bot is None else bot.digest
        matches = hmac.compare_digest(secret_digest(presented or ""), expected)
        return bot if matches and presented is not None else None

    async def _record(self, bot: BotSecret, bot_id: int, body: bytes) -> Response:
        try:
            update, update_id = decode_update(body)
        except BadUpdate as error:
            return self._reject(400, str(error))
        lane, priority = lane_of(update)
        row = InboxRow(bot.creator_id, bot_id, update_id, lane, priority, body)
        stored = await self._batcher.submit(row)
        outcome = "stored" if stored else "duplicate"
        UPDATES_RECEIVED.labels(outcome).inc()
        log.debug("update.received bot_id=%d update_id=%d outcome=%s", bot_id, update_id, outcome)
        return _answer(200, b"{}")

    async def _unauthorized(self, request: Request) -> Response:
        """401, or 429 once this address has failed too often (the client as the trusted
        proxies report it)."""
        if self._auth_failures is not None:
            client = request.client.host if request.client else "unknown"
            verdict = await self._auth_failures.hit(client)
            if not verdict.allowed:
                UPDATES_RECEIVED.labels("rejected").inc()
                retry_after = str(max(1, round(verdict.retry_after_s)))
                return Response(
                    orjson.dumps({"error": "too many failed attempts"}),
                    status_code=429,
                    media_type="application/json",
                    headers={"Retry-After": retry_after},
                )
        return self._reject(401, "unauthorized")

    @staticmethod
    def _reject(status: int, message: str) -> Response:
        UPDATES_RECEIVED.labels("rejected").inc()
        return _error(status, message)
