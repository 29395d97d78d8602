"""Logging for botter's processes: one line per event, JSON in production, never a token.

botter logs through the standard library with a fixed event name first and its context
as key=value pairs after it (`update.processed bot_id=7 update_id=42`). structlog turns
each such line, and every line third-party libraries write, into one JSON object
(`{"event": "update.processed", "bot_id": "7", ...}`) or a readable console line, and
redacts bot tokens from all of it as the very last step.
"""

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from botter.telegram.client import install_token_redaction, redact_tokens

_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")
_PAIR = re.compile(r"([a-z_][a-z0-9_]*)=(\S*)")


def split_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """`event.name k=v k2=v2` → event "event.name" and fields k, k2 (strings as logged).

    A value with spaces in it keeps them: everything up to the next `key=` belongs to it.
    Lines that do not start with an event name (other libraries') stay as they are.
    """
    message = str(event_dict.get("event", ""))
    name, _, rest = message.partition(" ")
    if not _EVENT_NAME.match(name):
        return event_dict
    event_dict["event"] = name
    matches = list(_PAIR.finditer(rest))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(rest)
        event_dict.setdefault(match.group(1), rest[match.start(2) : end].strip())
    return event_dict


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """The last processor before rendering: no bot token survives, whichever field or
    traceback it hid in (HTTP clients put it in URLs)."""
    return {key: _redact_value(value) for key, value in event_dict.items()}


def _redact_value(value: Any) -> Any:
    return redact_tokens(value) if isinstance(value, str) else value


def configure_logging(level: str = "INFO", log_format: str = "auto") -> None:
    """`log_format`: json, console, or auto (console on a terminal, else JSON)."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            split_event,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Their request lines carry URLs with bot tokens; keep them quiet and redacted.
    for noisy in ("httpx", "httpcore", "aiogram", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_token_redaction()
