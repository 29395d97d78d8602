"""The sandbox's ASGI app: Bot API routes, control routes, and the one place errors map."""

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from botter.sandbox.config import SandboxConfig
from botter.sandbox.control import control_routes
from botter.sandbox.core import Sandbox
from botter.sandbox.errors import BotApiError, ControlError
from botter.sandbox.methods import METHODS
from botter.sandbox.params import decode_body

logger = logging.getLogger("botter.sandbox")

MAX_BODY_BYTES = 10 * 1024 * 1024


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code, media_type="application/json")


async def read_capped(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise BotApiError(413, "Request Entity Too Large")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BotApiError(413, "Request Entity Too Large")
        chunks.append(chunk)
    return b"".join(chunks)


def bot_api_endpoint(sandbox: Sandbox) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            raw: dict[str, Any] = dict(request.query_params)
            if request.method == "POST":
                body = await read_capped(request)
                raw.update(decode_body(request.headers.get("content-type", ""), body))
            token = request.path_params["token"]
            result = await sandbox.call(token, request.path_params["method"], raw)
        except BotApiError as error:
            return json_response(error.envelope(), error.error_code)
        except Exception:
            logger.exception("sandbox.bot_api_failed method=%s", request.path_params["method"])
            return json_response(BotApiError(500, "Internal Server Error").envelope(), 500)
        return json_response({"ok": True, "result": result})

    return endpoint


ControlHandler = Callable[[Request], Awaitable[Any]]


def control_endpoint(handler: ControlHandler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return json_response(await handler(request))
        except ControlError as error:
            return json_response({"error": error.message}, error.status)
        except BotApiError as error:
            return json_response({"error": error.description}, 400)
        except Exception:
            logger.exception("sandbox.control_failed path=%s", request.url.path)
            return json_response({"error": "internal error in the sandbox"}, 500)

    return endpoint


async def not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/sandbox"):
        return json_response({"error": "no such control call"}, 404)
    return json_response(BotApiError(404, "Not Found").envelope(), 404)


async def method_not_allowed(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/sandbox"):
        return json_response({"error": f"{request.method} is not allowed here"}, 405)
    return json_response(BotApiError(405, "Method Not Allowed").envelope(), 405)


def create_app(config: SandboxConfig | None = None) -> Starlette:
    sandbox = Sandbox(config or SandboxConfig(), METHODS)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await sandbox.delivery.start()
        try:
            yield
        finally:
            await sandbox.delivery.stop()

    routes = [
        Route("/bot{token}/{method}", bot_api_endpoint(sandbox), methods=["GET", "POST"]),
        *control_routes(sandbox, control_endpoint),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed},
    )
    app.state.sandbox = sandbox
    return app
