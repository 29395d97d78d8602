"""Rate limits in Redis: shared by instances, failing open or closed as each limit needs."""

import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from botter.ratelimit import LimiterUnavailable, RateLimiter, limits_storage, rate_limited
from tests.conftest import free_port


def fresh_name() -> str:
    return f"test_{uuid.uuid4().hex[:8]}"


def unreachable_redis() -> str:
    return f"redis://127.0.0.1:{free_port()}/0"


async def test_a_limit_admits_its_budget_then_says_when_to_come_back(redis_url: str) -> None:
    limiter = RateLimiter(
        limits_storage(redis_url), fresh_name(), "3/10 seconds", fail_closed=True
    )
    verdicts = [await limiter.hit("user", 1) for _ in range(4)]
    assert [verdict.allowed for verdict in verdicts] == [True, True, True, False]
    assert 9 < verdicts[-1].retry_after_s <= 10
    assert (await limiter.hit("user", 2)).allowed  # someone else has a budget of their own


async def test_every_instance_spends_the_same_budget(redis_url: str) -> None:
    name = fresh_name()
    one = RateLimiter(limits_storage(redis_url), name, "2/10 seconds", fail_closed=True)
    other = RateLimiter(limits_storage(redis_url), name, "2/10 seconds", fail_closed=True)
    assert (await one.hit("ip")).allowed
    assert (await other.hit("ip")).allowed
    assert not (await one.hit("ip")).allowed


async def test_without_redis_a_nuisance_limit_admits() -> None:
    limiter = RateLimiter(
        limits_storage(unreachable_redis()), fresh_name(), "1/minute", fail_closed=False
    )
    assert [(await limiter.hit("user")).allowed for _ in range(3)] == [True, True, True]


async def test_without_redis_a_safety_limit_refuses() -> None:
    limiter = RateLimiter(
        limits_storage(unreachable_redis()), fresh_name(), "100/minute", fail_closed=True
    )
    with pytest.raises(LimiterUnavailable, match="cannot be checked"):
        await limiter.hit("ip")


def guarded_app(limiter: RateLimiter) -> Starlette:
    @rate_limited(limiter, key=lambda request: request.headers.get("x-token", "anonymous"))
    async def login(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route("/login", login, methods=["POST"])])


async def test_a_guarded_endpoint_answers_429_with_retry_after(redis_url: str) -> None:
    limiter = RateLimiter(limits_storage(redis_url), fresh_name(), "2/minute", fail_closed=True)
    transport = httpx.ASGITransport(app=guarded_app(limiter))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        statuses = [
            (await client.post("/login", headers={"x-token": "a"})).status_code for _ in range(3)
        ]
        refused = await client.post("/login", headers={"x-token": "a"})
        other = await client.post("/login", headers={"x-token": "b"})
    assert statuses == [200, 200, 429]
    assert refused.json() == {"error": "too many requests"}
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert other.status_code == 200


async def test_a_guarded_endpoint_fails_closed_with_503() -> None:
    limiter = RateLimiter(
        limits_storage(unreachable_redis()), fresh_name(), "100/minute", fail_closed=True
    )
    transport = httpx.ASGITransport(app=guarded_app(limiter))
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        answer = await client.post("/login")
    assert answer.status_code == 503
    assert answer.json() == {"error": "temporarily unavailable"}
