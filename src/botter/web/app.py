"""The stateless web service: the webhook ingest path, health endpoints and metrics."""

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bound_contextvars

from botter.config import Settings, SettingsError
from botter.crypto import Keyring
from botter.db.engine import libpq_url
from botter.metrics import HTTP_REQUEST_DURATION_SECONDS
from botter.ratelimit import RateLimiter, limits_storage
from botter.redis_client import connect_redis
from botter.telegram.breaker import Breaker
from botter.web.health import Metrics, Readiness, health
from botter.web.ingest import BotSecrets, IngestBatcher, Pool, WebhookIngest

log = logging.getLogger("botter.web")

# How long a request waits for a free connection before it is answered 503.
POOL_TIMEOUT_S: Final = 2.0
CONNECT_TIMEOUT_S: Final = 5
REDIS_TIMEOUT_S: Final = 1.0
APPLICATION_NAME: Final = "botter-web"
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


def request_id(scope: Scope) -> str:
    """The proxy's X-Request-ID when it is a sane token, else a new one; bound into every
    log line of the request so a line can be traced to the proxy's access log."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id" and _REQUEST_ID.match(value):
            return str(value.decode())
    return uuid.uuid4().hex[:16]


class RequestTimer:
    """Observes every HTTP answer by route template (never the raw path), method, status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with bound_contextvars(request_id=request_id(scope)):
                await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            HTTP_REQUEST_DURATION_SECONDS.labels(route, method, str(status)).observe(
                time.perf_counter() - started_s
            )


WEBHOOK_PREFIX: Final = "/webhook/telegram/"
WEBHOOK_ROUTE: Final = WEBHOOK_PREFIX + "{bot_id}"


class WebhookFastPath:
    """Sends webhook deliveries straight to the ingest handler, past the router and the
    middleware stack: on the hottest path they cost about a fifth of the CPU per request.
    Everything else goes to the Starlette app. Timing and labels are the same as
    RequestTimer's, so the metrics do not tell the two apart."""

    def __init__(self, app: ASGIApp, webhook: WebhookIngest) -> None:
        self.app = app
        self.webhook = webhook
        self._observe = HTTP_REQUEST_DURATION_SECONDS.labels

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(WEBHOOK_PREFIX):
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST" or "/" in path[len(WEBHOOK_PREFIX) :]:
            await self.app(scope, receive, send)  # the router answers 405 or 404
            return
        started_s = time.perf_counter()
        scope["path_params"] = {"bot_id": path[len(WEBHOOK_PREFIX) :]}
        status = 500
        try:
            with bound_contextvars(request_id=request_id(scope)):
                response = await self.webhook.handle(Request(scope, receive))
            status = response.status_code
            await response(scope, receive, send)
        finally:
            self._observe(WEBHOOK_ROUTE, "POST", str(status)).observe(
                time.perf_counter() - started_s
            )


class RecoveringPool(AsyncConnectionPool[AsyncConnection[TupleRow]]):
    """A pool that checks all its idle connections once one comes back broken.

    The pool learns that the server dropped a connection (a restart, a failover, a network
    cut) only by using it. Left alone, every dead idle connection would fail one more
    webhook delivery and one more readiness probe after PostgreSQL is back, keeping the
    instance out of rotation for as many probe periods as the pool has connections.
    """

    _checking: "asyncio.Task[None] | None" = None

    async def putconn(self, conn: AsyncConnection[TupleRow]) -> None:
        broken = conn.broken
        await super().putconn(conn)
        if broken and not self.closed and (self._checking is None or self._checking.done()):
            self._checking = asyncio.create_task(self._check_idle(), name="botter.pool.check")

    async def _check_idle(self) -> None:
        try:
            await self.check()
        except Exception as error:  # the next broken connection starts another check
            log.warning("web.pool_check_failed error=%s", type(error).__name__)


def _pool(database_url: str, size: int) -> Pool:
    return RecoveringPool(
        libpq_url(database_url),
        min_size=size,
        max_size=size,
        # Autocommit: each ingest batch is one statement and one round trip.
        kwargs={
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "application_name": APPLICATION_NAME,
            # A server that vanished without closing the connection is noticed in seconds,
            # not after the kernel's retransmission timeout of many minutes.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
        },
        timeout=POOL_TIMEOUT_S,
        name=APPLICATION_NAME,
        open=False,
    )


def _redis(redis_url: str) -> "Redis":
    return connect_redis(redis_url, timeout_s=REDIS_TIMEOUT_S)


def create_app(settings: Settings) -> ASGIApp:
    """The web app; its lifespan opens and closes the database pool, Redis and the batcher."""
    if not settings.database_url or not settings.redis_url:
        raise SettingsError("the web service needs DATABASE_URL and REDIS_URL")
    pool = _pool(settings.database_url, settings.db_pool_size)
    redis = _redis(settings.redis_url)
    # Leave connections free for secret lookups and readiness checks.
    batcher = IngestBatcher(pool, max_in_flight=max(1, settings.db_pool_size - 2))
    bot_secrets = BotSecrets(pool, Keyring(settings.keys_or_generated()))
    auth_failures = RateLimiter(
        limits_storage(settings.redis_url),
        "webhook_auth_failures",
        settings.webhook_auth_failures_limit,
        fail_closed=False,
    )
    webhook = WebhookIngest(bot_secrets, batcher, settings.webhook_body_limit_bytes, auth_failures)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Without waiting: the web service starts while PostgreSQL is down, answering 503.
        await pool.open(wait=False)
        batcher.start()
        log.info("web.started")
        try:
            yield
        finally:
            await batcher.close()
            await pool.close()
            await redis.aclose()
            log.info("web.stopped")

    routes = [
        Route("/webhook/telegram/{bot_id}", webhook.handle, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", Readiness(pool, redis, Breaker(redis)).handle, methods=["GET"]),
        Route("/metrics", Metrics(pool).handle, methods=["GET"]),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(RequestTimer)], lifespan=lifespan)
    # The lifespan and everything but deliveries still run through the Starlette app.
    return WebhookFastPath(app, webhook)
