"""The control API: world building, acting as users, and its error answers."""

import pytest

from tests.sandbox.conftest import Telegram, unique


def test_bot_tokens_look_like_telegrams(tg: Telegram) -> None:
    bot = tg.bot(unique("look") + "_bot")
    bot_id, secret = bot["token"].split(":")
    assert int(bot_id) == bot["id"]
    assert len(secret) == 35


def test_usernames_are_unique(tg: Telegram) -> None:
    name = unique("dup") + "_bot"
    tg.bot(name)
    assert "taken" in tg.control("/bots", {"username": name}, status=409)["error"]


def test_users_have_star_balances(tg: Telegram) -> None:
    user_id = tg.user("Ann", username=unique("ann"), language_code="en", stars=42)
    shown = tg.look(f"/users/{user_id}")
    assert shown["stars"] == 42
    assert shown["language_code"] == "en"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/bots", {}, 400),
        ("/bots", {"username": "has space"}, 400),
        ("/users", {"username": "x"}, 400),
        ("/users", {"first_name": "A", "stars": -1}, 400),
        ("/chats", {"type": "group", "title": "T", "owner_id": 1}, 400),
        ("/chats", {"type": "channel", "title": "T", "owner_id": 1}, 404),
        ("/users/1/send", {"bot_id": 1, "text": "hi"}, 404),
        ("/users/abc/send", {}, 404),
        ("/chats/-1/admins", {"user_id": 1}, 404),
        ("/bots/1/redeliver", {"update_id": 1}, 404),
    ],
)
def test_errors_are_json_with_4xx(
    tg: Telegram, path: str, body: dict[str, object], status: int
) -> None:
    answer = tg.control(path, body, status=status)
    assert isinstance(answer["error"], str)


def test_body_must_be_a_json_object(tg: Telegram) -> None:
    response = tg.http.post("/sandbox/users", content=b"[1]")
    assert response.status_code == 400
    assert response.json() == {"error": "body must be a JSON object"}


def test_unknown_control_call_is_json_404(tg: Telegram) -> None:
    response = tg.http.get("/sandbox/nothing/here")
    assert response.status_code == 404
    assert "error" in response.json()


def test_wrong_verb_is_json_405(tg: Telegram) -> None:
    response = tg.http.get("/sandbox/faults")
    assert response.status_code == 405
    assert "error" in response.json()


def test_messages_need_a_bot_id(tg: Telegram) -> None:
    user_id = tg.user()
    response = tg.http.get(f"/sandbox/users/{user_id}/messages")
    assert response.status_code == 400


def test_admins_accepts_bots_and_fires_my_chat_member(tg: Telegram) -> None:
    bot = tg.bot(unique("admin") + "_bot")
    owner = tg.user("Olga")
    chat_id = tg.channel(owner, bot["id"])
    [update] = tg.drain(bot["token"])
    change = update["my_chat_member"]
    assert change["chat"]["id"] == chat_id
    assert change["new_chat_member"]["status"] == "administrator"
    listed = {m["user_id"]: m["status"] for m in tg.look(f"/chats/{chat_id}/members")}
    assert listed == {owner: "creator", bot["id"]: "administrator"}


def test_owner_link_is_plain(tg: Telegram) -> None:
    owner = tg.user("Olga")
    chat_id = tg.channel(owner, kind="supergroup")
    link = tg.control(f"/chats/{chat_id}/links")["invite_link"]
    joined = [tg.control(f"/users/{tg.user()}/join", {"invite_link": link}) for _ in range(3)]
    assert joined == [{"status": "member"}] * 3


def test_admin_rights_must_be_known(tg: Telegram) -> None:
    bot = tg.bot(unique("rights") + "_bot")
    chat_id = tg.channel(tg.user("Olga"), kind="supergroup")
    body = {"user_id": bot["id"], "rights": {"can_fly": True}}
    assert "can_fly" in tg.control(f"/chats/{chat_id}/admins", body, status=400)["error"]
