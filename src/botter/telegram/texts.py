"""Everything the bot says to subscribers, in one place."""

from datetime import datetime

from botter.durations import format_duration_s

NO_PLANS = "Nothing is on sale here right now. Please check back later."
CHOOSE_PLAN = "Choose a plan to get access:"
PLAN_GONE = "This plan is no longer available. Send /start to see what is on sale."
PRICE_CHANGED = "The price of this plan has changed. Send /start for a fresh invoice."
ORDER_PAID = "This order is already paid. Send /status to see your access."
ORDER_UNKNOWN = "This invoice is not valid any more. Send /start for a fresh one."
NO_ACCESS = "You have no active access. Send /start to see the plans."
JOIN_WITHOUT_ACCESS = (
    "You joined {title} without an active plan, so you were removed. Send /start to buy access."
)
REQUEST_DECLINED = "Your request to join {title} needs an active plan. Send /start to buy one."
REQUEST_APPROVED = "Welcome! Your request to join {title} was approved."
ACCESS_ENDED = "Your access to {title} has ended. Renew to come back:"
ALREADY_MEMBER = "You are already in {title}; no new link is needed."
NEW_LINK_HINT = "Not in the chat? Send /link for a fresh invite link."
ACCESS_REFUNDED = "Your payment was refunded, so your access to {title} has ended."
PAYMENT_REFUNDED = "Your payment could not be matched to an order, so it was refunded."
DEFAULT_TERMS = (
    "You buy time-limited access to private Telegram chats, paid in Telegram Stars. "
    "Access starts when the payment is received and ends at the expiry shown by /status."
)
DEFAULT_SUPPORT = (
    "For help with a payment, reply here with your question and the date of the payment. "
    "Refunds are possible; we answer within 3 days."
)
FLOOD = "You're going a bit fast. Please wait a moment."


def plan_button(title: str, price_stars: int, period_s: int) -> str:
    return f"{title} · {price_stars} ⭐ / {format_duration_s(period_s)}"


def invoice_description(chat_titles: list[str], period_s: int) -> str:
    chats = ", ".join(chat_titles) or "private chats"
    return f"Access to {chats} for {format_duration_s(period_s)}."[:255]


def payment_received(expires_at: datetime) -> str:
    return f"Payment received, thank you! Your access runs until {when(expires_at)}."


def invite(title: str, link: str, valid_s: int) -> str:
    return f"Your personal invite link to {title} (works once, for {spoken(valid_s)}):\n{link}"


def spoken(duration_s: int) -> str:
    """A duration as people say it, in its largest whole unit: "24 hours", "90 seconds"."""
    unit, count = "second", duration_s
    for name, unit_s in (("hour", 3600), ("minute", 60)):
        if duration_s >= unit_s and duration_s % unit_s == 0:
            unit, count = name, duration_s // unit_s
            break
    if unit == "hour" and count % 24 == 0 and count > 24:
        unit, count = "day", count // 24
    return f"{count} {unit}{'' if count == 1 else 's'}"


def join_by_request(title: str, link: str) -> str:
    return f"Request to join {title} here; it is approved at once while your access runs:\n{link}"


def reminder(title: str, expires_at: datetime) -> str:
    return f"Your access to {title} ends on {when(expires_at)}. Renew now with one tap:"


def status_line(title: str, expires_at: datetime, active: bool) -> str:
    state = "active until" if active else "ended on"
    return f"• {title}: {state} {when(expires_at)}"


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
