"""Clocks: real UTC time by default, a virtual clock that tests move by hand.

The engine never calls ``datetime.now`` directly: orchestration timestamps, timer deadlines,
scheduled messages and timer triggers all read the host's clock, so a test can jump a week ahead
with :meth:`VirtualClock.advance` and see exactly what a week of real time would have fired.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol


class Clock(Protocol):
    """What the engine needs from a clock."""

    virtual: bool

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever time jumps (virtual clocks only)."""
        ...


class RealClock:
    """Wall-clock UTC time."""

    virtual = False

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Real time never jumps; the host wakes itself at the next deadline."""


class VirtualClock:
    """A clock that only moves when told to; ``advance`` wakes the hosts that use it."""

    virtual = True

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = datetime(2030, 1, 1, tzinfo=timezone.utc)
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
        self._now = start.astimezone(timezone.utc)
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward by ``delta``; due timers and scheduled messages fire on the next tick."""
        if delta < timedelta(0):
            raise ValueError("a virtual clock only moves forward")
        self._now += delta
        for callback in list(self._listeners):
            callback()
        return self._now

    def set(self, when: datetime) -> datetime:
        """Jump to ``when`` (not earlier than now)."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return self.advance(when - self._now)

    def subscribe(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)


#: The last moment formatted and its text: a tick stamps dozens of events with the same ``now``.
_last_formatted: tuple[datetime | None, str] = (None, "")


def format_timestamp(when: datetime) -> str:
    """ISO 8601 with microseconds and a ``Z``, the form the Durable SDK parses and compares."""
    global _last_formatted
    last, text = _last_formatted
    if when is last:
        return text
    text = when.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    _last_formatted = (when, text)
    return text


def parse_timestamp(text: str) -> datetime:
    """Parse the timestamps the SDK and the engine write (``...Z`` or ``+00:00``)."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)
