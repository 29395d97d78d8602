"""Durations as people write them, parsed to seconds and written back."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from botter.durations import DurationError, format_duration_s, parse_duration_s


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("90s", 90),
        ("15m", 15 * 60),
        ("12h", 12 * 3600),
        ("30d", 30 * 86400),
        ("2w", 14 * 86400),
        ("30D", 30 * 86400),
        (" 30d ", 30 * 86400),
        ("30 d", 30 * 86400),
        ("007m", 7 * 60),
        ("365d", 365 * 86400),
    ],
)
def test_parse(text: str, seconds: int) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", " ", "30", "d", "30x", "30dd", "3 0d", "1.5h", "-1d", "+1d", "1d2h", "1y", "1 month"],
)
def test_parse_refuses_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(DurationError, match="is not a duration like 90s, 15m, 12h or 30d") as err:
        parse_duration_s(text)
    assert repr(text) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("text", ["0s", "0d", "000h"])
def test_parse_refuses_zero(text: str) -> None:
    with pytest.raises(DurationError, match="must be longer than zero"):
        parse_duration_s(text)


def test_duration_error_is_a_value_error() -> None:
    # Settings validators rely on it: pydantic turns ValueError into a validation error.
    with pytest.raises(ValueError, match="30x"):
        parse_duration_s("30x")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1, "1s"),
        (59, "59s"),
        (60, "1m"),
        (90, "90s"),
        (3600, "1h"),
        (5400, "90m"),
        (86400, "1d"),
        (3 * 86400, "3d"),
        (7 * 86400, "1w"),
        (30 * 86400, "30d"),
        (28 * 86400, "4w"),
        (86400 + 1, "86401s"),
    ],
)
def test_format(seconds: int, text: str) -> None:
    assert format_duration_s(seconds) == text


@settings(deadline=None)
@given(seconds=st.integers(min_value=1, max_value=10**9))
def test_format_then_parse_is_the_identity(seconds: int) -> None:
    assert parse_duration_s(format_duration_s(seconds)) == seconds


@settings(deadline=None)
@given(number=st.integers(min_value=1, max_value=10**6), unit=st.sampled_from("smhdw"))
def test_format_picks_the_largest_whole_unit(number: int, unit: str) -> None:
    seconds = parse_duration_s(f"{number}{unit}")
    text = format_duration_s(seconds)

    assert parse_duration_s(text) == seconds
    assert "smhdw".index(text[-1]) >= "smhdw".index(unit)
