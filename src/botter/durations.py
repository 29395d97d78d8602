"""Durations as people write them: 90s, 15m, 12h, 30d."""

import re

from botter.errors import BotterError

_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"\s*(\d+)\s*([smhdw])\s*")


class DurationError(BotterError, ValueError):
    pass


def parse_duration_s(text: str) -> int:
    match = _DURATION.fullmatch(text.lower())
    if match is None:
        raise DurationError(f"{text!r} is not a duration like 90s, 15m, 12h or 30d")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds <= 0:
        raise DurationError(f"{text!r} must be longer than zero")
    return seconds


def format_duration_s(seconds: int) -> str:
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_S[unit] == 0:
            return f"{seconds // _UNIT_S[unit]}{unit}"
    return f"{seconds}s"
