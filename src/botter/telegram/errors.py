"""Telegram's error answers as typed exceptions, so callers can tell hopeless from transient."""

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from botter.errors import BotterError

_RETRY_AFTER = re.compile(r"retry after (\d+)", re.IGNORECASE)
# Telegram sends 429 without parameters on rare occasions; wait at least this long.
DEFAULT_RETRY_AFTER_S = 1


class TelegramError(BotterError):
    """A Bot API call that failed; error_code is None when Telegram did not answer."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        method: str,
        error_code: int | None,
        description: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        outcome = "failed" if error_code is None else f"failed with {error_code}"
        super().__init__(f"{method} {outcome}: {description}")
        self.method = method
        self.error_code = error_code
        self.description = description
        self.parameters: dict[str, Any] = dict(parameters or {})

    def __reduce__(self) -> tuple[Any, ...]:
        # Job queues pickle exceptions; the default would call __init__ with the message only.
        return (type(self), (self.method, self.error_code, self.description, self.parameters))


class TelegramRetryAfter(TelegramError):
    """429: the bot sent too much; nothing may be sent for retry_after_s seconds."""

    retryable = True

    def __init__(
        self,
        method: str,
        error_code: int | None,
        description: str,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(method, error_code, description, parameters)
        self.retry_after_s = retry_after_s_of(description, self.parameters)


class TelegramUnauthorized(TelegramError):
    """401: the token is wrong or was revoked in @BotFather."""


class TelegramForbidden(TelegramError):
    """403: the bot may not act on this chat or user."""


class BotBlocked(TelegramForbidden):
    """The user blocked the bot; only the user can undo it by writing to the bot."""


class CantInitiateConversation(TelegramForbidden):
    """The user never started the bot, so the bot may not write first."""


class TelegramBadRequest(TelegramError):
    """400: the request cannot succeed as it is."""


class ChatNotFound(TelegramBadRequest):
    pass


class UserNotFound(TelegramBadRequest):
    pass


class UserIsAdministrator(TelegramBadRequest):
    """Telegram refuses to ban or restrict an administrator of the chat."""


class CantRemoveOwner(TelegramBadRequest):
    """Nobody can ban or restrict the chat's owner."""


class NotEnoughRights(TelegramBadRequest):
    """The bot lacks the administrator right the method needs."""


class MessageNotModified(TelegramBadRequest):
    """An edit with the content the message already has."""


class QueryTooOld(TelegramBadRequest):
    """A callback or pre-checkout query answered too late, or with an unknown id."""


class TelegramNotFound(TelegramError):
    """404: the method does not exist."""


class TelegramConflict(TelegramError):
    """409: a webhook is set while polling, or another getUpdates is running."""


class TelegramServerError(TelegramError):
    """5xx: Telegram (or a proxy in front of it) failed; the same call may work later."""

    retryable = True


class TelegramNetworkError(TelegramError):
    """No answer: connection refused or reset, or a timeout. The call may have taken effect."""

    retryable = True


# Matched against the lowercased description, first match wins.
_DESCRIPTIONS: tuple[tuple[int, str, type[TelegramError]], ...] = (
    (403, "bot was blocked by the user", BotBlocked),
    (403, "can't initiate conversation", CantInitiateConversation),
    (400, "chat not found", ChatNotFound),
    (400, "user not found", UserNotFound),
    (400, "user is an administrator of the chat", UserIsAdministrator),
    (400, "can't remove chat owner", CantRemoveOwner),
    (400, "not enough rights", NotEnoughRights),
    (400, "need administrator rights", NotEnoughRights),
    (400, "have no rights", NotEnoughRights),
    (400, "chat_admin_required", NotEnoughRights),
    (400, "message is not modified", MessageNotModified),
    (400, "query is too old", QueryTooOld),
)

_CODES: dict[int, type[TelegramError]] = {
    400: TelegramBadRequest,
    401: TelegramUnauthorized,
    403: TelegramForbidden,
    404: TelegramNotFound,
    409: TelegramConflict,
    429: TelegramRetryAfter,
}


def error_class(error_code: int, description: str) -> type[TelegramError]:
    lowered = description.lower()
    for code, fragment, cls in _DESCRIPTIONS:
        if code == error_code and fragment in lowered:
            return cls
    if error_code in _CODES:
        return _CODES[error_code]
    return TelegramServerError if error_code >= 500 else TelegramError


def classify(
    method: str,
    error_code: int,
    description: str,
    parameters: Mapping[str, Any] | None = None,
) -> TelegramError:
    """The exception for one of Telegram's error answers."""
    return error_class(error_code, description)(method, error_code, description, parameters)


def retry_after_s_of(description: str, parameters: Mapping[str, Any]) -> int:
    retry_after = parameters.get("retry_after")
    if isinstance(retry_after, int) and not isinstance(retry_after, bool) and retry_after > 0:
        return retry_after
    match = _RETRY_AFTER.search(description)
    return int(match.group(1)) if match else DEFAULT_RETRY_AFTER_S
