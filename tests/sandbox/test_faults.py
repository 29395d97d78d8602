"""Injected failures: 429s, 403s, 5xx and silence, on demand."""

import time

import pytest

from tests.sandbox.conftest import World


def inject(world: World, **fault: object) -> None:
    assert world.tg.control("/faults", {"bot_id": world.bot_id, **fault}) == {"ok": True}


def test_429_with_retry_after_for_the_next_n_calls(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    inject(world, method="sendMessage", error_code=429, retry_after=7, times=2)
    for _ in range(2):
        envelope = world.tg.api(world.token, "sendMessage", chat_id=world.user_id, text="hi")
        assert envelope == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 7",
            "parameters": {"retry_after": 7},
        }
    assert world.tg.ok(world.token, "sendMessage", chat_id=world.user_id, text="hi")


@pytest.mark.parametrize(
    ("error_code", "description"),
    [
        (403, "Forbidden: bot was blocked by the user"),
        (500, "Internal Server Error"),
        (502, "Bad Gateway"),
    ],
)
def test_default_descriptions(world: World, error_code: int, description: str) -> None:
    inject(world, method="getMe", error_code=error_code, times=1)
    response = world.tg.http.post(f"/bot{world.token}/getMe")
    assert response.status_code == error_code
    assert response.json()["description"] == description


def test_faults_match_method_and_bot_only(world: World) -> None:
    other = world.tg.bot(f"other{world.bot_id}_bot")
    inject(world, method="getChat", error_code=400, description="Bad Request: chat not found")
    inject(world, method="getMe", error_code=500)
    assert world.tg.ok(other["token"], "getMe")["id"] == other["id"]
    assert world.tg.error(world.token, "getMe")[0] == 500
    assert world.tg.error(world.token, "getChat", chat_id=world.chat_id) == (
        400,
        "Bad Request: chat not found",
    )
    assert world.tg.ok(world.token, "getChat", chat_id=world.chat_id)["id"] == world.chat_id


def test_a_fault_has_no_side_effect(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    inject(world, method="sendMessage", error_code=500)
    world.tg.api(world.token, "sendMessage", chat_id=world.user_id, text="lost?")
    assert world.tg.look(f"/users/{world.user_id}/messages", bot_id=world.bot_id) == []


def test_a_slow_answer(world: World) -> None:
    inject(world, method="getMe", error_code=504, delay_s=1)
    started = time.monotonic()
    assert world.tg.error(world.token, "getMe")[0] == 504
    assert time.monotonic() - started >= 0.9


def test_calls_are_logged_with_outcomes(world: World) -> None:
    inject(world, method="getMe", error_code=502)
    world.tg.api(world.token, "getMe")
    world.tg.api(world.token, "getMe")
    calls = world.tg.look("/calls", bot_id=world.bot_id, method="getMe")
    assert calls == [
        {"method": "getMe", "params": {}, "ok": False, "error_code": 502},
        {"method": "getMe", "params": {}, "ok": True},
    ]


@pytest.mark.parametrize(
    "fault",
    [
        {"error_code": 200},
        {"error_code": "429"},
        {"error_code": 429, "times": 0},
        {"error_code": 429, "bot_id": 1},
        {"error_code": 429, "delay_s": -1},
    ],
)
def test_bad_faults_are_refused(world: World, fault: dict[str, object]) -> None:
    status = 404 if fault.get("bot_id") == 1 else 400
    answer = world.tg.control("/faults", fault, status=status)
    assert answer["error"]
