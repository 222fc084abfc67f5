from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kernel.ncrontab import NcrontabError, next_fire, validate


def test_six_field_expressions_fire_at_the_right_second() -> None:
    start = datetime(2026, 11, 20, 8, 29, 59, tzinfo=timezone.utc)  # a Friday
    assert next_fire("0 30 8 * * Mon-Fri", start) == datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)
    assert next_fire("*/15 * * * * *", start) == datetime(2026, 11, 20, 8, 30, 0, tzinfo=timezone.utc)


def test_next_fire_is_strictly_after() -> None:
    at = datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc)
    assert next_fire("0 0 0 * * *", at) == datetime(2026, 1, 2, tzinfo=timezone.utc)


def test_naive_times_are_taken_as_utc() -> None:
    assert next_fire("0 0 * * * *", datetime(2026, 1, 1, 0, 30)).tzinfo is not None


@pytest.mark.parametrize(
    "expression, says",
    [
        ("0 9 * * *", "did you mean '0 0 9 \\* \\* \\*'"),
        ("", "non-empty"),
        ("0 0 25 * * *", "not a valid NCRONTAB"),
        ("0 0 0 * * * *", "got 7"),
    ],
)
def test_invalid_expressions_say_why(expression: str, says: str) -> None:
    with pytest.raises(NcrontabError, match=says):
        validate(expression)
