"""Errors the sandbox answers with: Bot API errors and control API errors."""

from typing import Any

from botter.errors import BotterError


class SandboxError(BotterError):
    pass


class BotApiError(SandboxError):
    """An error in Telegram's own words, answered in Telegram's envelope."""

    def __init__(
        self,
        error_code: int,
        description: str,
        *,
        retry_after_s: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after_s = retry_after_s
        self.migrate_to_chat_id = migrate_to_chat_id

    def envelope(self) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "ok": False,
            "error_code": self.error_code,
            "description": self.description,
        }
        parameters: dict[str, int] = {}
        if self.retry_after_s is not None:
            parameters["retry_after"] = self.retry_after_s
        if self.migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = self.migrate_to_chat_id
        if parameters:
            answer["parameters"] = parameters
        return answer


def bad_request(detail: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {detail}")


def forbidden(detail: str) -> BotApiError:
    return BotApiError(403, f"Forbidden: {detail}")


def too_many_requests(retry_after_s: int) -> BotApiError:
    return BotApiError(
        429, f"Too Many Requests: retry after {retry_after_s}", retry_after_s=retry_after_s
    )


CHAT_NOT_FOUND = "chat not found"
QUERY_TOO_OLD = "query is too old and response timeout expired or query ID is invalid"


class ControlError(SandboxError):
    """A control API error: answered as {"error": message} with a 4xx status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
