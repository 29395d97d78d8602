"""The pure decisions of access control, free of I/O so they are tested exhaustively."""

from datetime import datetime, timedelta

# Telegram statuses of people the paywall never removes.
PROTECTED_STATUSES = frozenset({"creator", "administrator"})
PRESENT_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})


def new_expiry(now: datetime, current_expiry: datetime | None, period_s: int) -> datetime:
    """A payment extends access from whichever is later: now, or the access still running."""
    start = now if current_expiry is None or current_expiry < now else current_expiry
    return start + timedelta(seconds=period_s)


def has_access(expires_at: datetime | None, now: datetime) -> bool:
    return expires_at is not None and expires_at > now


def reminder_times(
    expires_at: datetime, offsets_s: list[int], now: datetime
) -> list[tuple[int, datetime]]:
    """(offset, when) for each reminder still ahead; past ones are skipped, not sent late."""
    ahead = []
    for offset_s in sorted(set(offsets_s), reverse=True):
        at = expires_at - timedelta(seconds=offset_s)
        if at > now:
            ahead.append((offset_s, at))
    return ahead


def is_present(status: str, is_member: bool = True) -> bool:
    """In the chat: restricted people count only while they are still members."""
    return status in PRESENT_STATUSES and (status != "restricted" or is_member)


def joined(
    old_status: str, new_status: str, *, old_is_member: bool = True, new_is_member: bool = True
) -> bool:
    """Came into the chat; `is_member` matters only for "restricted", as in is_present."""
    return not is_present(old_status, old_is_member) and is_present(new_status, new_is_member)


def must_remove(status: str, whitelisted: bool, access: bool, *, is_member: bool = True) -> bool:
    """Remove a present person who has no access and is neither staff nor whitelisted."""
    if status in PROTECTED_STATUSES or whitelisted or access:
        return False
    return is_present(status, is_member)


def expiry_after_refund(now: datetime, current_expiry: datetime, period_s: int) -> datetime:
    """A refund takes back the period it paid for; whatever runs past that stays (another
    payment bought it), and access never ends in the past, only now."""
    return max(now, current_expiry - timedelta(seconds=period_s))
