"""Parameter decoding: every way clients send Bot API parameters."""

import pytest

from botter.sandbox.errors import BotApiError
from botter.sandbox.params import Params, decode_body


def test_json_body_keeps_types() -> None:
    raw = decode_body("application/json", b'{"chat_id": 5, "ok": true, "prices": [{"amount": 1}]}')
    params = Params(raw)
    assert params.integer("chat_id") == 5
    assert params.boolean("ok") is True
    assert params.json("prices") == [{"amount": 1}]


def test_form_values_are_json_text_and_word_booleans() -> None:
    raw = decode_body(
        "application/x-www-form-urlencoded",
        b"chat_id=-1001&ok=True&only_if_banned=false&prices=%5B%7B%22amount%22%3A5%7D%5D",
    )
    params = Params(raw)
    assert params.chat_id() == -1001
    assert params.boolean("ok") is True
    assert params.boolean("only_if_banned") is False
    assert params.json("prices") == [{"amount": 5}]


def test_multipart_form_fields() -> None:
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="chat_id"\r\n\r\n42\r\n'
        b'--XyZ\r\nContent-Disposition: form-data; name="text"\r\n\r\nhi there\r\n--XyZ--\r\n'
    )
    raw = decode_body("multipart/form-data; boundary=XyZ", body)
    assert raw == {"chat_id": "42", "text": "hi there"}


def test_chat_id_accepts_a_username() -> None:
    assert Params({"chat_id": "@premium"}).chat_id() == "@premium"


@pytest.mark.parametrize(
    ("raw", "getter", "description"),
    [
        ({}, "integer", 'Bad Request: parameter "chat_id" is required'),
        ({"chat_id": "abc"}, "integer", 'Bad Request: parameter "chat_id" must be an integer'),
        ({"chat_id": True}, "integer", 'Bad Request: parameter "chat_id" must be an integer'),
        ({"chat_id": "maybe"}, "boolean", 'Bad Request: parameter "chat_id" must be a boolean'),
        ({"chat_id": "{oops"}, "json", 'Bad Request: can\'t parse parameter "chat_id" as JSON'),
    ],
)
def test_bad_parameters_name_the_parameter(
    raw: dict[str, object], getter: str, description: str
) -> None:
    with pytest.raises(BotApiError) as caught:
        getattr(Params(raw), getter)("chat_id")
    assert caught.value.error_code == 400
    assert caught.value.description == description


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]"])
def test_unreadable_json_body_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BotApiError) as caught:
        decode_body("application/json", body)
    assert caught.value.error_code == 400
