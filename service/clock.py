"""The service's notion of "today": the real UTC clock, or an accelerated one for tests and demos.

The accelerated clock maps wall time onto simulated days: ``today = epoch_date + floor((now -
epoch_utc) / day_seconds)``. It depends on the wall clock only, so it runs on continuously across a
stop and a restart of the service (a stop of three simulated days is three days of catch-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from service.settings import Settings


class Clock(Protocol):
    """What the scheduler and the pipeline ask of a clock."""

    def now(self) -> datetime:
        """The current wall time (UTC, timezone-aware)."""
        ...

    def today(self) -> date:
        """The current (possibly simulated) UTC day."""
        ...

    def seconds_until_tomorrow(self) -> float:
        """Wall seconds until ``today()`` changes."""
        ...


@dataclass(frozen=True)
class SystemClock:
    """Real time: today is the UTC date of now."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        return self.now().date()

    def seconds_until_tomorrow(self) -> float:
        now = self.now()
        midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
        return (midnight - now).total_seconds()


@dataclass(frozen=True)
class SimulatedClock:
    """Accelerated time: a simulated day lasts ``day_seconds`` wall seconds from ``epoch_utc``."""

    epoch_date: date
    epoch_utc: datetime
    day_seconds: float

    def __post_init__(self) -> None:
        if self.epoch_utc.tzinfo is None:
            raise ValueError("epoch_utc must be timezone-aware")
        if self.day_seconds <= 0:
            raise ValueError("day_seconds must be positive")

    def now(self) -> datetime:
        return datetime.now(UTC)

    def _elapsed_days(self) -> float:
        return (self.now() - self.epoch_utc).total_seconds() / self.day_seconds

    def today(self) -> date:
        return self.epoch_date + timedelta(days=math.floor(self._elapsed_days()))

    def seconds_until_tomorrow(self) -> float:
        elapsed = self._elapsed_days()
        return (math.floor(elapsed) + 1 - elapsed) * self.day_seconds


def clock_from_settings(settings: Settings) -> Clock:
    """The simulated clock when ``sim_*`` settings are given (all three), else the real one."""
    if settings.sim_day_seconds is None:
        return SystemClock()
    assert settings.sim_epoch_date is not None and settings.sim_epoch_utc is not None
    return SimulatedClock(settings.sim_epoch_date, settings.sim_epoch_utc, settings.sim_day_seconds)
