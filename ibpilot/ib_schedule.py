"""IB's expected disconnects: server resets, weekend maintenance, Gateway restarts, re-login.

A pure module: instants in, instants out, no clock and no I/O.  Every datetime passed in
must be aware (any zone; a naive one raises ValueError naming the argument) and every
datetime returned is in UTC.

An :class:`IbSchedule` holds recurring :class:`RecurringWindow` s and the weekly
:class:`WeeklyInstant` at which IB invalidates the session tokens:

- IB's daily server reset (North America 00:15-01:45 US/Eastern, Sunday-Friday; Europe
  06:25-07:45 CET; Asia 04:45-06:05 and 20:15-21:15 HKT).  The API socket stays up; the
  gateway reports 1100 and then 1101/1102 while IB's servers restart.
- The weekend maintenance, Friday 23:00 to Saturday 03:00 US/Eastern, for every region.
- Optionally the Gateway's own daily restart (IBC's ``AUTO_RESTART_TIME``): the socket
  closes and the new process listens again within a minute or two (the grace period).
- The token invalidation, Sunday 01:00 US/Eastern: a Gateway that auto-restarts needs a
  manual login (with 2FA) once a week after it.

IB has moved these times over the years (before 2025: NA 23:45-00:45 ET, Saturday to
Thursday), so every time here is a parameter.  A window is given as the weekdays on which
it *starts*, a local start time, and either a local end time (the next time the wall clock
shows it; an end at or before the start crosses midnight) or a duration.  Local times are
mapped to instants with zoneinfo, DST-correct: a start is the first instant the wall clock
shows it, a local end time the last (so a window covers every instant whose wall time lies
within it, the repeated hour of a fall-back night included), and a local time that does not
exist (skipped by a spring-forward jump) maps to the jump itself.
"""

from __future__ import annotations

from calendar import FRIDAY, MONDAY, SUNDAY, THURSDAY, TUESDAY, WEDNESDAY
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from ibpilot.config import ScheduleSettings

__all__ = [
    "ALL_DAYS", "ASIA_RESETS", "EU_RESETS", "NA_RESETS", "TOKEN_INVALIDATION",
    "WEEKEND_MAINTENANCE", "IbSchedule", "RecurringWindow", "Region", "WeeklyInstant",
    "Window", "WindowKind",
]  # fmt: skip

ALL_DAYS = frozenset(range(7))
_SUNDAY_TO_FRIDAY = frozenset({SUNDAY, MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY})
_LONGEST_RESTART_GRACE = timedelta(hours=6)


class WindowKind(StrEnum):
    SERVER_RESET = "server_reset"  # IB's servers restart; the API socket stays up
    MAINTENANCE = "maintenance"  # the weekend: all services may be unavailable
    GATEWAY_RESTART = "gateway_restart"  # the Gateway process restarts; the socket closes


class Region(StrEnum):
    NA = "na"
    EU = "eu"
    ASIA = "asia"


def aware_utc(value: datetime, name: str) -> datetime:
    """``value`` in UTC. Raises ValueError naming ``name`` if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
    return value.astimezone(UTC)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"time_zone must be an IANA time zone, got {name!r}") from None


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _instant(day: date, at: time, zone: ZoneInfo, *, last: bool = False) -> datetime:
    """The instant (UTC) the wall clock in ``zone`` shows ``day`` ``at``.

    The first such instant, or the last one if ``last`` (they differ in a fall-back hour).
    A wall time skipped by a spring-forward jump maps to the jump itself.
    """
    wall = datetime.combine(day, at)
    moment = wall.replace(tzinfo=zone, fold=int(last)).astimezone(UTC)
    if _wall(moment, zone) == wall:
        return moment
    # in a gap: fold=0 lands after the jump and fold=1 before it; find the jump to the second
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    low, high = min(low, high), max(low, high)
    while low < high:
        middle = (low + high) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), zone) >= wall:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)


@dataclass(frozen=True, slots=True)
class Window:
    """One occurrence of an expected window: ``[start, end)`` in UTC."""

    name: str
    kind: WindowKind
    start: datetime
    end: datetime

    def covers(self, moment: datetime) -> bool:
        """True if ``moment`` is in ``[start, end)``. Raises ValueError if it is naive."""
        return self.start <= aware_utc(moment, "moment") < self.end


@dataclass(frozen=True, slots=True)
class RecurringWindow:
    """A window starting at ``start`` local time on each of ``days`` (0=Monday..6=Sunday).

    ``end`` is a local time (the window ends the next time the wall clock shows it, so an end
    at or before ``start`` crosses midnight) or a duration in real time (at most 6 hours).
    Raises ValueError on an unknown zone, an empty or out-of-range ``days``, aware times,
    an end equal to the start or a duration that is not positive.
    """

    name: str
    kind: WindowKind
    days: frozenset[int]
    start: time
    end: time | timedelta
    time_zone: str = "US/Eastern"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", _zone(self.time_zone))
        object.__setattr__(self, "days", frozenset(self.days))
        if not self.days or not self.days <= ALL_DAYS:
            raise ValueError(f"days must be weekday numbers 0-6, got {sorted(self.days)}")
        if self.start.tzinfo is not None or getattr(self.end, "tzinfo", None) is not None:
            raise ValueError("start and end must be naive local times; time_zone places them")
        if self.start == self.end:
            raise ValueError(f"end must differ from start, got {self.start:%H:%M} for both")
        if isinstance(self.end, timedelta) and not (
            timedelta(0) < self.end <= _LONGEST_RESTART_GRACE
        ):
            raise ValueError(f"a duration must be > 0 and <= 6 hours, got {self.end}")

    def on(self, day: date) -> Window | None:
        """The occurrence starting on local date ``day``; None if none (or all of it skipped)."""
        if day.weekday() not in self.days:
            return None
        start = _instant(day, self.start, self._zone)
        if isinstance(self.end, timedelta):
            return Window(self.name, self.kind, start, start + self.end)
        end_day = day if self.start < self.end else day + timedelta(days=1)
        end = _instant(end_day, self.end, self._zone, last=True)
        return Window(self.name, self.kind, start, end) if end > start else None

    def around(self, moment: datetime, before: int, after: int) -> Iterator[Window]:
        """Occurrences starting on local dates ``before`` days before to ``after`` days after."""
        today = moment.astimezone(self._zone).date()
        for offset in range(-before, after + 1):
            window = self.on(today + timedelta(days=offset))
            if window is not None:
                yield window


@dataclass(frozen=True, slots=True)
class WeeklyInstant:
    """A weekly instant: ``weekday`` (0=Monday..6=Sunday) at local ``at`` in ``time_zone``."""

    weekday: int
    at: time
    time_zone: str = "US/Eastern"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_zone", _zone(self.time_zone))
        if self.weekday not in ALL_DAYS:
            raise ValueError(f"weekday must be 0-6, got {self.weekday}")
        if self.at.tzinfo is not None:
            raise ValueError("at must be a naive local time; time_zone places it")

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The latest occurrence at or before the aware ``moment`` (UTC)."""
        today = moment.astimezone(self._zone).date()
        day = today - timedelta(days=(today.weekday() - self.weekday) % 7)
        occurrence = _instant(day, self.at, self._zone)
        if occurrence > moment:
            occurrence = _instant(day - timedelta(days=7), self.at, self._zone)
        return occurrence

    def first_after(self, moment: datetime) -> datetime:
        """The earliest occurrence strictly after the aware ``moment`` (UTC)."""
        today = moment.astimezone(self._zone).date()
        day = today + timedelta(days=(self.weekday - today.weekday()) % 7)
        occurrence = _instant(day, self.at, self._zone)
        if occurrence <= moment:
            occurrence = _instant(day + timedelta(days=7), self.at, self._zone)
        return occurrence


WEEKEND_MAINTENANCE = RecurringWindow(
    "IB weekend maintenance", WindowKind.MAINTENANCE, frozenset({FRIDAY}), time(23), time(3)
)
NA_RESETS = (
    RecurringWindow(
        "IB daily server reset (North America)", WindowKind.SERVER_RESET, _SUNDAY_TO_FRIDAY,
        time(0, 15), time(1, 45), "US/Eastern",
    ),
)  # fmt: skip
EU_RESETS = (
    RecurringWindow(
        "IB daily server reset (Europe)", WindowKind.SERVER_RESET, _SUNDAY_TO_FRIDAY,
        time(6, 25), time(7, 45), "Europe/Berlin",  # CET/CEST
    ),
)  # fmt: skip
ASIA_RESETS = (
    RecurringWindow(
        "IB daily server reset (Asia, 1st)", WindowKind.SERVER_RESET, _SUNDAY_TO_FRIDAY,
        time(4, 45), time(6, 5), "Asia/Hong_Kong",
    ),
    RecurringWindow(
        "IB daily server reset (Asia, 2nd)", WindowKind.SERVER_RESET, _SUNDAY_TO_FRIDAY,
        time(20, 15), time(21, 15), "Asia/Hong_Kong",
    ),
)  # fmt: skip
_RESETS = {Region.NA: NA_RESETS, Region.EU: EU_RESETS, Region.ASIA: ASIA_RESETS}
TOKEN_INVALIDATION = WeeklyInstant(SUNDAY, time(1), "US/Eastern")


@dataclass(frozen=True, slots=True)
class IbSchedule:
    """The windows in which a disconnect is expected, and the weekly token invalidation.

    The default is IB's North American schedule with the weekend maintenance and the
    Sunday 01:00 US/Eastern token invalidation; see :meth:`for_region`.
    """

    windows: tuple[RecurringWindow, ...] = (*NA_RESETS, WEEKEND_MAINTENANCE)
    token_invalidation: WeeklyInstant | None = TOKEN_INVALIDATION

    @classmethod
    def for_region(
        cls,
        region: Region | str = Region.NA,
        *,
        gateway_restart: time | None = None,
        gateway_time_zone: str = "US/Eastern",
        gateway_grace: timedelta = timedelta(minutes=2),
    ) -> IbSchedule:
        """IB's reset windows for ``region``, the weekend maintenance and the token
        invalidation, plus the Gateway's daily restart at ``gateway_restart`` (local time in
        ``gateway_time_zone``, every day) lasting ``gateway_grace``, if given.

        Raises ValueError on an unknown region or zone, or a grace outside (0, 6 hours].
        """
        windows = (*_RESETS[Region(region)], WEEKEND_MAINTENANCE)
        if gateway_restart is not None:
            restart = RecurringWindow(
                "Gateway daily restart", WindowKind.GATEWAY_RESTART, ALL_DAYS,
                gateway_restart, gateway_grace, gateway_time_zone,
            )  # fmt: skip
            windows = (*windows, restart)
        return cls(windows)

    @classmethod
    def from_settings(cls, settings: ScheduleSettings) -> IbSchedule:
        """The schedule that ``adapter.json``'s ``alerts.schedule`` describes."""
        return cls.for_region(
            settings.region,
            gateway_restart=settings.gateway_restart_time,
            gateway_time_zone=settings.gateway_time_zone,
            gateway_grace=timedelta(seconds=settings.gateway_restart_grace_s),
        )

    def window_at(self, now: datetime) -> Window | None:
        """The expected window covering ``now``, or None.

        Of overlapping windows, the one ending last.  Raises ValueError if ``now`` is naive.
        """
        moment = aware_utc(now, "now")
        covering = [
            window
            for spec in self.windows
            for window in spec.around(moment, before=2, after=0)
            if window.start <= moment < window.end
        ]
        return max(covering, key=lambda window: window.end, default=None)

    def next_window(self, now: datetime) -> Window | None:
        """The first window starting strictly after ``now`` (of equal starts, the longest).

        None only for a schedule without windows.  Raises ValueError if ``now`` is naive.
        """
        moment = aware_utc(now, "now")
        upcoming = [
            window
            for spec in self.windows
            for window in spec.around(moment, before=1, after=8)
            if window.start > moment
        ]
        return min(upcoming, key=lambda w: (w.start, -w.end.timestamp()), default=None)

    def windows_between(self, start: datetime, end: datetime) -> list[Window]:
        """The windows overlapping ``[start, end)``, by start.

        Raises ValueError naming the argument if either is naive.
        """
        low, high = aware_utc(start, "start"), aware_utc(end, "end")
        days = max(0, (high - low).days) + 2
        found = {
            window
            for spec in self.windows
            for window in spec.around(low, before=2, after=days)
            if window.start < high and window.end > low
        }
        return sorted(found, key=lambda w: (w.start, w.end, w.name))

    def unexplained_downtime(self, down_since: datetime, now: datetime) -> timedelta:
        """How long a disconnect since ``down_since`` has lasted outside expected windows.

        The time from the later of ``down_since`` and the end of the last window overlapping
        the outage, to ``now``; zero while a window covers ``now``.  Compare it with the
        alert threshold.  Raises ValueError naming the argument if either is naive.
        """
        since, moment = aware_utc(down_since, "down_since"), aware_utc(now, "now")
        # windows last under a day and recur weekly: the last 8 days hold the latest one
        overlapping = self.windows_between(max(since, moment - timedelta(days=8)), moment)
        quiet_since = max([since, *(window.end for window in overlapping)])
        return max(timedelta(0), moment - quiet_since)

    def relogin_due(self, last_login: datetime, now: datetime) -> bool:
        """True if a token invalidation fell in ``(last_login, now]``: a manual login is needed.

        False for a schedule without one, or if ``now`` is before ``last_login``.
        Raises ValueError naming the argument if either is naive.
        """
        login, moment = aware_utc(last_login, "last_login"), aware_utc(now, "now")
        if self.token_invalidation is None or moment < login:
            return False
        return self.token_invalidation.last_at_or_before(moment) > login

    def next_token_invalidation(self, now: datetime) -> datetime | None:
        """The first token invalidation strictly after ``now`` (UTC); None if there is none.

        Raises ValueError if ``now`` is naive.
        """
        moment = aware_utc(now, "now")
        if self.token_invalidation is None:
            return None
        return self.token_invalidation.first_after(moment)
