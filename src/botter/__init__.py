"""botter: paid access to Telegram channels and groups, sold for Telegram Stars."""

__version__ = "0.1.0"
