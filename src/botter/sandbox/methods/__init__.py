"""Bot API methods of the sandbox, registered by name (Telegram matches names case-blind)."""

from botter.sandbox.core import Handler
from botter.sandbox.methods import chats, messages, payments, updates

METHODS: dict[str, tuple[str, Handler]] = {
    name.lower(): (name, handler)
    for module in (chats, messages, payments, updates)
    for name, handler in module.HANDLERS.items()
}

__all__ = ["METHODS"]
