"""Classifying Telegram's error answers: pure decisions, no network."""

import pickle

import pytest

from botter.errors import BotterError
from botter.telegram.errors import (
    BotBlocked,
    CantInitiateConversation,
    CantRemoveOwner,
    ChatNotFound,
    MessageNotModified,
    NotEnoughRights,
    QueryTooOld,
    TelegramBadRequest,
    TelegramConflict,
    TelegramError,
    TelegramForbidden,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorized,
    UserIsAdministrator,
    UserNotFound,
    classify,
)


@pytest.mark.parametrize(
    ("error_code", "description", "expected"),
    [
        (401, "Unauthorized", TelegramUnauthorized),
        (403, "Forbidden: bot was blocked by the user", BotBlocked),
        (403, "Forbidden: bot can't initiate conversation with a user", CantInitiateConversation),
        (403, "Forbidden: bot is not a member of the channel chat", TelegramForbidden),
        (400, "Bad Request: chat not found", ChatNotFound),
        (400, "Bad Request: user not found", UserNotFound),
        (400, "Bad Request: user is an administrator of the chat", UserIsAdministrator),
        (400, "Bad Request: can't remove chat owner", CantRemoveOwner),
        (
            400,
            "Bad Request: not enough rights to restrict/unrestrict chat member",
            NotEnoughRights,
        ),
        (400, "Bad Request: need administrator rights in the channel chat", NotEnoughRights),
        (400, "Bad Request: CHAT_ADMIN_REQUIRED", NotEnoughRights),
        (
            400,
            "Bad Request: message is not modified: specified new message content",
            MessageNotModified,
        ),
        (400, "Bad Request: query is too old and response timeout expired", QueryTooOld),
        (400, "Bad Request: message text is empty", TelegramBadRequest),
        (404, "Not Found", TelegramNotFound),
        (409, "Conflict: terminated by other getUpdates request", TelegramConflict),
        (429, "Too Many Requests: retry after 5", TelegramRetryAfter),
        (500, "Internal Server Error", TelegramServerError),
        (502, "Bad Gateway", TelegramServerError),
        (418, "I'm a teapot", TelegramError),
    ],
)
def test_classify_picks_the_class_of_the_answer(
    error_code: int, description: str, expected: type[TelegramError]
) -> None:
    error = classify("banChatMember", error_code, description, None)
    assert type(error) is expected
    assert (error.method, error.error_code, error.description) == (
        "banChatMember",
        error_code,
        description,
    )


def test_a_description_only_counts_with_its_error_code() -> None:
    assert type(classify("getChat", 403, "Forbidden: chat not found", None)) is TelegramForbidden


def test_every_error_is_a_botter_error() -> None:
    assert isinstance(classify("getMe", 401, "Unauthorized", None), BotterError)


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (TelegramRetryAfter, True),
        (TelegramServerError, True),
        (TelegramNetworkError, True),
        (TelegramUnauthorized, False),
        (BotBlocked, False),
        (CantInitiateConversation, False),
        (ChatNotFound, False),
        (UserNotFound, False),
        (UserIsAdministrator, False),
        (CantRemoveOwner, False),
        (NotEnoughRights, False),
        (MessageNotModified, False),
        (QueryTooOld, False),
        (TelegramBadRequest, False),
    ],
)
def test_retryable_tells_transient_from_hopeless(
    cls: type[TelegramError], retryable: bool
) -> None:
    assert cls.retryable is retryable


def test_retry_after_comes_from_parameters() -> None:
    error = classify("sendMessage", 429, "Too Many Requests: retry after 9", {"retry_after": 7})
    assert isinstance(error, TelegramRetryAfter)
    assert error.retry_after_s == 7
    assert error.parameters == {"retry_after": 7}


def test_retry_after_falls_back_to_the_description_then_one_second() -> None:
    from_text = classify("sendMessage", 429, "Too Many Requests: retry after 12", None)
    bare = classify("sendMessage", 429, "Too Many Requests", {})
    assert isinstance(from_text, TelegramRetryAfter)
    assert isinstance(bare, TelegramRetryAfter)
    assert (from_text.retry_after_s, bare.retry_after_s) == (12, 1)


def test_the_message_names_method_code_and_description() -> None:
    error = classify("getChat", 400, "Bad Request: chat not found", None)
    assert str(error) == "getChat failed with 400: Bad Request: chat not found"
    no_answer = TelegramNetworkError("getMe", None, "no answer within 5.0 s")
    assert str(no_answer) == "getMe failed: no answer within 5.0 s"


def test_errors_survive_pickling_as_job_queues_do() -> None:
    error = classify("sendMessage", 429, "Too Many Requests: retry after 3", {"retry_after": 3})
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is TelegramRetryAfter
    assert (copy.method, copy.error_code, copy.retry_after_s) == ("sendMessage", 429, 3)
    assert str(copy) == str(error)
