"""Logging setup for botter's processes: one line per event, never a token."""

import logging
import sys

from botter.telegram.client import install_token_redaction


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Their request lines carry URLs with bot tokens; keep them quiet and redacted.
    for noisy in ("httpx", "httpcore", "aiogram", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    install_token_redaction()
