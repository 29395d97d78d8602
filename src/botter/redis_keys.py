"""Every Redis key botter uses, named in one place.

Keys that one Lua script touches together share a hash tag (the part in braces), so they
land in one slot and the script also runs on Redis Cluster.
"""

PREFIX = "botter:"


def bot_tag(bot_id: int) -> str:
    """The hash tag of everything kept per bot."""
    return f"{{bot:{bot_id}}}"


def bot_pace(bot_id: int) -> str:
    """The bot's send bucket across all chats (its theoretical arrival time, in µs)."""
    return f"{PREFIX}{bot_tag(bot_id)}:pace"


def chat_pace(bot_id: int, chat_id: int | str) -> str:
    """The bot's send bucket for one chat."""
    return f"{PREFIX}{bot_tag(bot_id)}:pace:chat:{chat_id}"


def group_pace(bot_id: int, chat_id: int | str) -> str:
    """The bot's per-minute send bucket for one group or channel."""
    return f"{PREFIX}{bot_tag(bot_id)}:pace:group:{chat_id}"


def bot_cooldown(bot_id: int) -> str:
    """Present while Telegram's last retry_after for the bot runs; its TTL is the rest."""
    return f"{PREFIX}{bot_tag(bot_id)}:cooldown"


def breaker(bot_id: int) -> str:
    """The bot's circuit breaker: a hash of state, failures, open_until and probe slot."""
    return f"{PREFIX}{bot_tag(bot_id)}:breaker"


def breakers_open() -> str:
    """Sorted set of bots whose breaker is not closed, scored by when it opened."""
    return f"{PREFIX}breakers:open"
