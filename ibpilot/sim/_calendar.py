"""Trading calendars: session templates, business days and TWS's trading-hours strings.

A :class:`Calendar` is one session template of the data file (``us_equity``, ``cme_equity``,
...).  The session of trading day ``D`` opens at ``open`` on ``D`` (or on the previous
calendar day when ``open_prev_day`` is set: CME's 17:00 Sunday open belongs to Monday) and
closes at ``close`` on ``D``; the times are wall-clock times in ``zone``, so daylight saving
time is handled by :mod:`zoneinfo`.  Pure functions of dates; no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAY_NAMES = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_ONE_DAY = timedelta(days=1)
_FRIDAY = 4

SessionBounds = tuple[datetime, datetime, datetime, datetime]
"""(open, close, liquid_open, liquid_close), all UTC-aware."""


@dataclass(frozen=True, slots=True)
class Calendar:
    """One session template: which days trade, when, and which days are holidays."""

    name: str
    zone: ZoneInfo
    weekdays: frozenset[int]  # trading days, Monday = 0
    open: time
    close: time
    liquid_open: time
    liquid_close: time
    open_prev_day: bool = False  # trading opens on the calendar day before the trading day
    liquid_open_prev_day: bool = False
    holidays: frozenset[date] = frozenset()

    def is_trading_day(self, day: date) -> bool:
        """True if ``day`` has a session: a trading weekday that is not a holiday."""
        return day.weekday() in self.weekdays and day not in self.holidays

    def bounds(self, day: date) -> SessionBounds | None:
        """The UTC session bounds of trading day ``day``, or None when closed."""
        if not self.is_trading_day(day):
            return None
        prev = day - _ONE_DAY
        return (
            _utc(prev if self.open_prev_day else day, self.open, self.zone),
            _utc(day, self.close, self.zone),
            _utc(prev if self.liquid_open_prev_day else day, self.liquid_open, self.zone),
            _utc(day, self.liquid_close, self.zone),
        )

    def previous_trading_day(self, day: date) -> date:
        """``day`` itself if it trades, else the closest earlier trading day."""
        for _ in range(31):
            if self.is_trading_day(day):
                return day
            day -= _ONE_DAY
        raise ValueError(f"calendar {self.name!r} has no trading day in the month before {day}")

    def add_trading_days(self, day: date, count: int) -> date:
        """The trading day ``count`` trading days before (count < 0) or after ``day``."""
        step = _ONE_DAY if count > 0 else -_ONE_DAY
        remaining = abs(count)
        while remaining:
            day += step
            if self.is_trading_day(day):
                remaining -= 1
        return day


def _utc(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, tzinfo=zone).astimezone(UTC)


def third_friday(year: int, month: int) -> date:
    """The third Friday of a month (standard equity-derivative expiry day)."""
    first = date(year, month, 1)
    return first + timedelta(days=(_FRIDAY - first.weekday()) % 7 + 14)


def fridays_from(day: date) -> Iterable[date]:
    """Every Friday on or after ``day``, forever."""
    friday = day + timedelta(days=(_FRIDAY - day.weekday()) % 7)
    while True:
        yield friday
        friday += timedelta(days=7)


def add_months(year: int, month: int, delta: int) -> tuple[int, int]:
    """(year, month) shifted by ``delta`` months."""
    index = year * 12 + month - 1 + delta
    return index // 12, index % 12 + 1


def hours_string(
    window: Sequence[date], spans: Iterable[tuple[datetime, datetime]], zone: ZoneInfo
) -> str:
    """TWS's tradingHours/liquidHours form for the calendar days ``window`` (in order).

    Each span that starts, ends or runs on a window day reads ``start-end`` with its own
    dates, ``20260302:0930-20260302:1600``, an overnight one ``20260301:1700-20260302:1600``;
    each other window day reads ``20260307:CLOSED``; all in date order.
    So a day is never both closed and open, and every window day is described.  This is
    what TWS sends: ES ``20231019:1700-20231020:1600;20231021:CLOSED;20231022:1700-...``
    (Friday ends a session, Sunday starts one, only Saturday is closed), and for its
    liquid hours ``20211031:CLOSED;20211101:0830-20211101:1500``.  Times are wall-clock
    times in ``zone``; ``spans`` are UTC-aware (start, end) pairs in time order, any of
    which may lie outside the window (those are left out).
    """
    first, last = window[0], window[-1]
    entries: list[tuple[date, str]] = []
    covered: set[date] = set()
    for span in spans:
        start, end = (t.astimezone(zone) for t in span)
        if start.date() > last or end.date() < first:
            continue
        entries.append((start.date(), f"{start:%Y%m%d:%H%M}-{end:%Y%m%d:%H%M}"))
        day = start.date()
        while day <= end.date():
            covered.add(day)
            day += _ONE_DAY
    entries += [(day, f"{day:%Y%m%d}:CLOSED") for day in window if day not in covered]
    entries.sort(key=lambda entry: entry[0])  # stable: spans keep their order
    return ";".join(text for _, text in entries)
