"""Six-field NCRONTAB schedules, as Azure Functions timer triggers read them.

Azure Functions uses NCRONTAB with a leading seconds field: ``{second} {minute} {hour} {day}
{month} {day-of-week}``. One module owns parsing so that config validation, the embedded engine's
timer triggers and the agents' schedules agree on what an expression means.
"""

from __future__ import annotations

from datetime import datetime, timezone

from croniter import croniter

FIELD_NAMES = ("second", "minute", "hour", "day", "month", "day-of-week")


class NcrontabError(ValueError):
    """An expression that is not a valid six-field NCRONTAB schedule."""


def validate(expression: str) -> None:
    """Raise :class:`NcrontabError` with a readable reason unless ``expression`` is valid."""
    if not isinstance(expression, str) or not expression.strip():
        raise NcrontabError("a schedule must be a non-empty NCRONTAB string")
    fields = expression.split()
    if len(fields) != 6:
        hint = ""
        if len(fields) == 5:
            hint = f"; Azure Functions expects seconds first, did you mean '0 {expression.strip()}'?"
        raise NcrontabError(
            f"NCRONTAB needs six fields ({' '.join('{' + f + '}' for f in FIELD_NAMES)}), "
            f"got {len(fields)}{hint}"
        )
    if not croniter.is_valid(expression, second_at_beginning=True):
        raise NcrontabError(f"'{expression}' is not a valid NCRONTAB expression")


def next_fire(expression: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` at which ``expression`` fires (timezone-aware UTC)."""
    validate(expression)
    if after.tzinfo is None:
        after = after.replace(tzinfo=timezone.utc)
    it = croniter(expression, after, second_at_beginning=True)
    result: datetime = it.get_next(datetime)
    return result.astimezone(timezone.utc)
