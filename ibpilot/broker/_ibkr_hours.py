"""IB's trading-hours strings as UTC sessions (pure): ``liquidHours`` and ``tradingHours``.

A contract's details describe about a week of calendar days in its time zone
(``timeZoneId``), one ``;``-separated entry per session or closed day::

    20260302:0930-20260302:1600;20260303:0930-20260303:1600;20260307:CLOSED
    20260301:1700-20260302:1600                  an overnight session (ES), dated at both ends
    20090507:0930-1600;20090508:CLOSED           older gateways: the end without its date
    20180604:0900-1130,1300-1500                 older gateways: a lunch break

The times are wall-clock times in the zone, so daylight saving time is zoneinfo's business.
:func:`parse_hours` returns the sessions as UTC ``[open, close)`` pairs and the stretch of time
the string accounts for: from the midnight that starts the first day it describes in full (a
closed day, or the day a session ends on) to the midnight that ends the last (a closed day, or
the day a session starts on).  Outside that stretch the hours are unknown, not closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Span = tuple[datetime, datetime]

# IB's short names mean the US zones with daylight saving time; zoneinfo's are fixed offsets.
_ZONE_ALIASES = {
    "EST": "US/Eastern",
    "EDT": "US/Eastern",
    "EST5EDT": "US/Eastern",
    "CST": "US/Central",
    "CDT": "US/Central",
    "CST6CDT": "US/Central",
    "MST7MDT": "US/Mountain",
    "PST": "US/Pacific",
    "PDT": "US/Pacific",
    "PST8PDT": "US/Pacific",
}
_DAY = re.compile(r"(\d{8}):(.*)")
_RANGE = re.compile(r"(\d{4})-(?:(\d{8}):)?(\d{4})")
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Hours:
    """Sessions (UTC ``[open, close)``, in time order) and the stretch they account for."""

    sessions: tuple[Span, ...] = ()
    known: Span | None = None  # None: nothing is known (an empty string)


def zone_name(name: str) -> str:
    """IB's ``timeZoneId`` as the IANA name meant ("EST" is US/Eastern, with DST)."""
    return _ZONE_ALIASES.get(name.strip().upper(), name.strip())


def ib_zone(name: str) -> ZoneInfo:
    """IB's ``timeZoneId`` as a ZoneInfo. Raises ValueError for a name zoneinfo does not know."""
    try:
        return ZoneInfo(zone_name(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def _day(text: str) -> date:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        raise ValueError(f"bad date {text!r}") from None


def _at(day: date, hhmm: str, zone: ZoneInfo) -> datetime:
    hours, minutes = int(hhmm[:2]), int(hhmm[2:])
    if hours == 24 and minutes == 0:  # "2400": the midnight that ends the day
        day, hours = day + _ONE_DAY, 0
    if hours > 23 or minutes > 59:
        raise ValueError(f"bad time {hhmm!r}")
    return datetime.combine(day, time(hours, minutes), tzinfo=zone).astimezone(UTC)


def _ranges(day: date, text: str, zone: ZoneInfo) -> list[Span]:
    spans = []
    for part in text.split(","):
        found = _RANGE.fullmatch(part.strip())
        if found is None:
            raise ValueError(f"bad session {part.strip()!r}")
        start_hhmm, end_day, end_hhmm = found.groups()
        start = _at(day, start_hhmm, zone)
        end = _at(_day(end_day) if end_day else day, end_hhmm, zone)
        if end <= start and not end_day:  # "1700-1600" without dates runs overnight
            end = _at(day + _ONE_DAY, end_hhmm, zone)
        if end <= start:
            raise ValueError(f"session {part.strip()!r} ends before it starts")
        spans.append((start, end))
    return spans


def parse_hours(text: str, time_zone: str) -> Hours:
    """The sessions and known stretch of an hours string (see the module doc).

    An empty string knows nothing.  Raises ValueError naming the first malformed entry or an
    unknown time zone.
    """
    if not text.strip():
        return Hours()
    zone = ib_zone(time_zone)
    sessions: list[Span] = []
    first: date | None = None  # the first day described in full
    last: date | None = None  # the last day described in full
    for entry in filter(None, (e.strip() for e in text.split(";"))):
        found = _DAY.fullmatch(entry)
        if found is None:
            raise ValueError(f"bad hours entry {entry!r}")
        day = _day(found.group(1))
        if found.group(2).strip().upper() == "CLOSED":
            opens_on = ends_on = day
        else:
            spans = _ranges(day, found.group(2), zone)
            sessions += spans
            opens_on = day
            ends_on = max(end for _, end in spans).astimezone(zone).date()
        first = ends_on if first is None else min(first, ends_on)
        last = opens_on if last is None else max(last, opens_on)
    if first is None or last is None or first > last:
        return Hours(tuple(sorted(sessions)))
    known = (_at(first, "0000", zone), _at(last + _ONE_DAY, "0000", zone))
    return Hours(tuple(sorted(sessions)), known)
