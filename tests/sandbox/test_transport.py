"""The Bot API's envelope, status codes and parameter encodings, over real HTTP."""

import httpx

from tests.sandbox.conftest import Telegram, World


def test_bad_token_is_unauthorized(tg: Telegram) -> None:
    response = tg.http.post("/bot123:nottherealtoken/getMe")
    assert response.status_code == 401
    assert response.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}


def test_unknown_method_is_not_found(world: World) -> None:
    response = world.tg.http.post(f"/bot{world.token}/sendTelepathy")
    assert response.status_code == 404
    assert response.json() == {"ok": False, "error_code": 404, "description": "Not Found"}


def test_method_names_are_case_blind(world: World) -> None:
    assert world.tg.ok(world.token, "getme")["id"] == world.bot_id


def test_missing_parameter_is_named(world: World) -> None:
    response = world.tg.http.post(
        f"/bot{world.token}/getChatMember", json={"chat_id": world.chat_id}
    )
    assert response.status_code == 400
    assert response.json()["description"] == 'Bad Request: parameter "user_id" is required'


def test_get_with_query_string(world: World) -> None:
    response = world.tg.http.get(f"/bot{world.token}/getChat", params={"chat_id": world.chat_id})
    assert response.json()["result"]["id"] == world.chat_id


def test_form_fields_with_json_text_values(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    markup = '{"inline_keyboard": [[{"text": "Buy", "callback_data": "buy"}]]}'
    response = world.tg.http.post(
        f"/bot{world.token}/sendMessage",
        data={"chat_id": str(world.user_id), "text": "Plans", "reply_markup": markup},
    )
    result = response.json()["result"]
    assert result["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "buy"


def test_malformed_json_body_is_a_bad_request(world: World) -> None:
    response = world.tg.http.post(
        f"/bot{world.token}/getMe",
        content=b"{nope",
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["ok"] is False


def test_oversized_body_is_refused(world: World) -> None:
    response = world.tg.http.post(
        f"/bot{world.token}/sendMessage",
        content=b"x" * (11 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


def test_absent_fields_are_left_out_never_null(world: World) -> None:
    world.tg.start(world.user_id, world.bot_id)
    raw = world.tg.http.post(
        f"/bot{world.token}/sendMessage", json={"chat_id": world.user_id, "text": "hi"}
    ).text
    assert "null" not in raw


def test_sandbox_survives_garbage(tg: Telegram) -> None:
    for path in ("/bot/", "/botx/y/z", "/sandbox/nothing", "/%ff%fe"):
        assert tg.http.post(path, content=b"\xff\x00").status_code in {400, 401, 404, 405}
    assert httpx.get(f"{tg.url}/sandbox/health").json() == {"ok": True}


def test_wrong_verb_on_the_bot_api_keeps_telegrams_envelope(world: World) -> None:
    response = world.tg.http.put(f"/bot{world.token}/getMe")
    assert response.status_code == 405
    assert response.json()["ok"] is False
