"""The pure access decisions, table by table, plus properties that must hold for any input."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.access.decisions import (
    expiry_after_refund,
    has_access,
    is_present,
    joined,
    must_remove,
    new_expiry,
    reminder_times,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY_S = 86400
SECOND = timedelta(seconds=1)

# Every status a ChatMember can have in the Bot API.
STATUSES = ("creator", "administrator", "member", "restricted", "left", "kicked")
PRESENT = {"creator", "administrator", "member", "restricted"}

moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
periods_s = st.integers(min_value=1, max_value=10 * 365 * DAY_S)


@pytest.mark.parametrize(
    ("current", "period_s", "expected"),
    [
        pytest.param(None, 30 * DAY_S, NOW + timedelta(days=30), id="first-purchase"),
        pytest.param(NOW - timedelta(days=5), DAY_S, NOW + timedelta(days=1), id="lapsed"),
        pytest.param(NOW - SECOND, 60, NOW + timedelta(seconds=60), id="lapsed-a-second-ago"),
        pytest.param(NOW, 60, NOW + timedelta(seconds=60), id="expiring-this-second"),
        pytest.param(NOW + SECOND, 60, NOW + timedelta(seconds=61), id="a-second-left"),
        pytest.param(
            NOW + timedelta(days=10), 30 * DAY_S, NOW + timedelta(days=40), id="still-running"
        ),
    ],
)
def test_new_expiry_extends_from_the_later_of_now_and_current(
    current: datetime | None, period_s: int, expected: datetime
) -> None:
    assert new_expiry(NOW, current, period_s) == expected


@settings(deadline=None)
@given(now=moments, current=st.one_of(st.none(), moments), period_s=periods_s)
def test_a_renewal_never_shortens_access(
    now: datetime, current: datetime | None, period_s: int
) -> None:
    renewed = new_expiry(now, current, period_s)

    assert renewed >= now + timedelta(seconds=period_s)
    if current is not None:
        assert renewed >= current + timedelta(seconds=period_s)
    assert has_access(renewed, now)


@settings(deadline=None)
@given(now=moments, current=st.one_of(st.none(), moments), periods=st.lists(periods_s, max_size=5))
def test_renewals_add_up_when_bought_back_to_back(
    now: datetime, current: datetime | None, periods: list[int]
) -> None:
    expiry = current
    for period_s in periods:
        expiry = new_expiry(now, expiry, period_s)

    start = now if current is None or current < now else current
    expected = start + timedelta(seconds=sum(periods)) if periods else current
    assert expiry == expected


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        pytest.param(None, False, id="never-bought"),
        pytest.param(NOW - timedelta(days=1), False, id="expired-yesterday"),
        pytest.param(NOW - SECOND, False, id="expired-a-second-ago"),
        pytest.param(NOW, False, id="expires-this-second"),
        pytest.param(NOW + timedelta(microseconds=1), True, id="a-microsecond-left"),
        pytest.param(NOW + SECOND, True, id="a-second-left"),
        pytest.param(NOW + timedelta(days=30), True, id="a-month-left"),
    ],
)
def test_has_access_ends_at_the_exact_second(expires_at: datetime | None, expected: bool) -> None:
    assert has_access(expires_at, NOW) is expected


def test_a_renewal_at_the_second_of_expiry_keeps_access() -> None:
    renewed = new_expiry(NOW, NOW, 60)

    assert not has_access(NOW, NOW)
    assert has_access(renewed, NOW)
    assert renewed == NOW + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("current", "period_s", "expected"),
    [
        pytest.param(NOW + timedelta(days=30), 30 * DAY_S, NOW, id="the-only-purchase"),
        pytest.param(
            NOW + timedelta(days=60), 30 * DAY_S, NOW + timedelta(days=30), id="one-of-two"
        ),
        pytest.param(NOW + timedelta(days=10), 30 * DAY_S, NOW, id="partly-used"),
        pytest.param(NOW + SECOND, 60, NOW, id="a-second-left"),
        pytest.param(NOW, 60, NOW, id="expiring-this-second"),
        pytest.param(NOW - timedelta(days=1), 30 * DAY_S, NOW, id="already-expired"),
        pytest.param(NOW + timedelta(seconds=61), 60, NOW + SECOND, id="one-second-beyond"),
    ],
)
def test_expiry_after_refund_takes_back_the_period(
    current: datetime, period_s: int, expected: datetime
) -> None:
    assert expiry_after_refund(NOW, current, period_s) == expected


@settings(deadline=None)
@given(now=moments, current=st.one_of(st.none(), moments), period_s=periods_s)
def test_refunding_a_purchase_undoes_it(
    now: datetime, current: datetime | None, period_s: int
) -> None:
    bought = new_expiry(now, current, period_s)
    refunded = expiry_after_refund(now, bought, period_s)

    # Back to what ran before the purchase, or to now when nothing did.
    before = now if current is None or current < now else current
    assert refunded == before


@settings(deadline=None)
@given(now=moments, current=moments, period_s=periods_s)
def test_a_refund_never_extends_access_nor_ends_it_in_the_past(
    now: datetime, current: datetime, period_s: int
) -> None:
    refunded = expiry_after_refund(now, current, period_s)

    assert now <= refunded <= max(now, current)
    assert has_access(refunded, now) is (current - timedelta(seconds=period_s) > now)


EXPIRES = NOW + timedelta(days=10)


@pytest.mark.parametrize(
    ("offsets_s", "expected_offsets"),
    [
        pytest.param([], [], id="none"),
        pytest.param([DAY_S], [DAY_S], id="one"),
        pytest.param([DAY_S, 3 * DAY_S], [3 * DAY_S, DAY_S], id="earliest-first"),
        pytest.param([3 * DAY_S, DAY_S], [3 * DAY_S, DAY_S], id="already-ordered"),
        pytest.param([DAY_S, DAY_S, 3 * DAY_S, DAY_S], [3 * DAY_S, DAY_S], id="duplicates"),
        pytest.param([20 * DAY_S, DAY_S], [DAY_S], id="past-skipped"),
        pytest.param([10 * DAY_S], [], id="at-now-not-ahead"),
        pytest.param([10 * DAY_S - 1], [10 * DAY_S - 1], id="a-second-ahead"),
        pytest.param([10 * DAY_S + 1, 11 * DAY_S], [], id="all-past"),
        pytest.param([0], [0], id="at-expiry"),
        pytest.param([60, 3600, 60, DAY_S, 3600], [DAY_S, 3600, 60], id="mixed"),
    ],
)
def test_reminder_times(offsets_s: list[int], expected_offsets: list[int]) -> None:
    ahead = reminder_times(EXPIRES, offsets_s, NOW)

    assert [offset_s for offset_s, _ in ahead] == expected_offsets
    assert [at for _, at in ahead] == [
        EXPIRES - timedelta(seconds=offset_s) for offset_s in expected_offsets
    ]


def test_reminder_times_after_expiry_are_all_skipped() -> None:
    assert reminder_times(NOW - SECOND, [0, 60, DAY_S], NOW) == []


@settings(deadline=None)
@given(
    now=moments,
    ahead_s=st.integers(min_value=-DAY_S, max_value=60 * DAY_S),
    offsets_s=st.lists(st.integers(min_value=0, max_value=90 * DAY_S), max_size=8),
)
def test_reminders_are_ahead_unique_and_in_time_order(
    now: datetime, ahead_s: int, offsets_s: list[int]
) -> None:
    expires_at = now + timedelta(seconds=ahead_s)
    ahead = reminder_times(expires_at, offsets_s, now)
    times = [at for _, at in ahead]

    assert all(at > now for at in times)
    assert times == sorted(set(times))
    assert {offset_s for offset_s, _ in ahead} == {
        offset_s for offset_s in offsets_s if expires_at - timedelta(seconds=offset_s) > now
    }


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("is_member", [True, False])
def test_is_present(status: str, is_member: bool) -> None:
    # is_member only means something for "restricted", as in Telegram's ChatMemberRestricted.
    expected = status in PRESENT and (status != "restricted" or is_member)
    assert is_present(status, is_member) is expected


@pytest.mark.parametrize("status", ["", "banned", "Member", "owner", "unknown"])
def test_unknown_statuses_are_not_present(status: str) -> None:
    assert not is_present(status)


@pytest.mark.parametrize("old", STATUSES)
@pytest.mark.parametrize("new", STATUSES)
def test_joined_for_every_transition(old: str, new: str) -> None:
    assert joined(old, new) is (old not in PRESENT and new in PRESENT)


@pytest.mark.parametrize(
    ("old", "old_is_member", "new", "new_is_member", "expected"),
    [
        pytest.param("left", True, "restricted", False, False, id="restricted-while-outside"),
        pytest.param("left", True, "restricted", True, True, id="joined-restricted"),
        pytest.param("restricted", False, "restricted", True, True, id="restricted-came-in"),
        pytest.param("restricted", True, "restricted", False, False, id="restricted-went-out"),
        pytest.param("restricted", False, "member", True, True, id="unrestricted-on-join"),
        pytest.param("restricted", True, "member", True, False, id="unrestricted-inside"),
        pytest.param("restricted", False, "left", True, False, id="still-outside"),
    ],
)
def test_joined_follows_is_member_of_restricted(
    old: str, old_is_member: bool, new: str, new_is_member: bool, expected: bool
) -> None:
    outcome = joined(old, new, old_is_member=old_is_member, new_is_member=new_is_member)
    assert outcome is expected


@pytest.mark.parametrize(
    ("status", "whitelisted", "access", "expected"),
    [
        # The owner and administrators: never, whatever else is true.
        *[
            pytest.param(status, whitelisted, access, False, id=f"{status}-{whitelisted}-{access}")
            for status in ("creator", "administrator")
            for whitelisted in (True, False)
            for access in (True, False)
        ],
        pytest.param("member", False, False, True, id="member-without-access"),
        pytest.param("member", False, True, False, id="member-with-access"),
        pytest.param("member", True, False, False, id="member-whitelisted"),
        pytest.param("member", True, True, False, id="member-whitelisted-with-access"),
        pytest.param("restricted", False, False, True, id="restricted-without-access"),
        pytest.param("restricted", False, True, False, id="restricted-with-access"),
        pytest.param("restricted", True, False, False, id="restricted-whitelisted"),
        # Nobody to remove: already out.
        *[
            pytest.param(status, whitelisted, access, False, id=f"{status}-{whitelisted}-{access}")
            for status in ("left", "kicked")
            for whitelisted in (True, False)
            for access in (True, False)
        ],
    ],
)
def test_must_remove(status: str, whitelisted: bool, access: bool, expected: bool) -> None:
    assert must_remove(status, whitelisted, access) is expected


def test_a_restricted_person_outside_the_chat_is_not_removed() -> None:
    assert must_remove("restricted", False, False, is_member=True)
    assert not must_remove("restricted", False, False, is_member=False)


@settings(deadline=None)
@given(
    status=st.sampled_from(STATUSES),
    whitelisted=st.booleans(),
    access=st.booleans(),
    is_member=st.booleans(),
)
def test_must_remove_only_present_people_without_access_or_protection(
    status: str, whitelisted: bool, access: bool, is_member: bool
) -> None:
    removed = must_remove(status, whitelisted, access, is_member=is_member)

    if removed:
        assert is_present(status, is_member)
        assert status not in ("creator", "administrator")
        assert not whitelisted
        assert not access
    else:
        assert (
            not is_present(status, is_member)
            or status in ("creator", "administrator")
            or whitelisted
            or access
        )
