from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxConfig:
    """Knobs of the emulated Telegram. Defaults are Telegram's own numbers."""

    rate_limits: bool = True
    bot_messages_per_s: int = 30
    chat_messages_per_s: int = 1
    # Telegram tolerates short bursts in one chat before it starts answering 429.
    chat_burst: int = 3
    group_messages_per_min: int = 20
    pre_checkout_timeout_s: float = 10.0
    webhook_timeout_s: float = 10.0
    webhook_retry_base_s: float = 1.0
    webhook_retry_max_s: float = 60.0
    # Telegram keeps an undelivered update for a day, then drops it.
    update_ttl_s: float = 24 * 3600.0
    long_poll_max_s: float = 50.0
    calls_kept: int = 20_000
