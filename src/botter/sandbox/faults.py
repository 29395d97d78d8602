"""Injected failures: the next N matching Bot API calls fail the way a test asks."""

from dataclasses import dataclass

from botter.sandbox.errors import BotApiError

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Fault:
    error_code: int
    times: int
    bot_id: int | None = None
    method: str | None = None
    description: str | None = None
    retry_after_s: int | None = None
    delay_s: float = 0.0

    def matches(self, bot_id: int, method: str) -> bool:
        if self.bot_id is not None and self.bot_id != bot_id:
            return False
        return self.method is None or self.method.lower() == method.lower()

    def error(self) -> BotApiError:
        description = self.description
        if description is None and self.error_code == 429:
            description = f"Too Many Requests: retry after {self.retry_after_s or 1}"
        if description is None:
            description = _DEFAULT_DESCRIPTIONS.get(self.error_code, "Error")
        retry_after_s = self.retry_after_s
        if self.error_code == 429 and retry_after_s is None:
            retry_after_s = 1
        return BotApiError(self.error_code, description, retry_after_s=retry_after_s)


class FaultPlan:
    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def take(self, bot_id: int, method: str) -> Fault | None:
        """The fault that hits this call, if any, counting it as used."""
        for fault in self._faults:
            if fault.matches(bot_id, method):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None
