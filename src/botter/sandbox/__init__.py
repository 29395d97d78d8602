"""A local stand-in for Telegram's Bot API, with a control API to act as users."""

from botter.sandbox.app import create_app
from botter.sandbox.config import SandboxConfig

__all__ = ["SandboxConfig", "create_app"]
