"""IB's reqHistoricalData parameters: parsing, validation, the request window, bar dates.

Pure code: no clock (``now`` is passed in), no sockets.  Errors carry IB's code and text
(:class:`HistoryRequestError`) so the server can send them unchanged.  Texts marked
"observed" below were seen from real IB gateways; the others follow their style.

Step limits (duration allowed per bar size; IB's own table is stricter on paper and more
lenient in practice; this is the simulator's rule, in the spirit of IB's "Valid Duration
and Bar Size Settings"): 1 secs <= 2000 S, 5 secs <= 10000 S, 10 secs <= 20000 S,
15 secs <= 30000 S, 30 secs <= 1 D, 1-3 mins <= 1 M, 5 mins-8 hours <= 1 Y, day/week/month
bars: any duration; and a bar may not be longer than the duration.  Durations compare by
nominal length (D = 1 day, W = 7 days, M = 31 days, Y = 366 days).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibpilot.sim.market import Calendar, session_hours
from ibpilot.sim.refdata import Instrument, Session

DAY = 86_400
_HMDS = "Historical Market Data Service error message:"
_VALIDATING = "Error validating request.-'bK' : cause - "
# observed (IB's error 10314 text, verbatim)
END_FORMAT_TEXT = (
    "End Date/Time: The date, time, or time-zone entered is invalid. The correct format is "
    "yyyymmdd hh:mm:ss xx/xxx where yyyymmdd and xx/xxx are optional. E.g.: 20031126 15:59:00 "
    "US/Eastern  Note that there is a space between the date and time, and between the time "
    "and time-zone.  If no date is specified, current date is assumed. If no time-zone is "
    "specified, local time-zone is assumed(deprecated).  You can also provide "
    "yyyymmddd-hh:mm:ss time is in UTC. Note that there is a dash between the date and time "
    "in UTC notation."
)
# observed (error 321)
BAR_SIZE_TEXT = (
    "Historical data bar size setting is invalid. Legal ones are: 1 secs, 5 secs, 10 secs, "
    "15 secs, 30 secs, 1 min, 2 mins, 3 mins, 5 mins, 10 mins, 15 mins, 20 mins, 30 mins, "
    "1 hour, 2 hours, 3 hours, 4 hours, 8 hours, 1 day, 1W, 1M"
)
MODELLED = ("TRADES", "MIDPOINT", "BID", "ASK")
IB_WHAT_TO_SHOW = (
    *MODELLED, "BID_ASK", "ADJUSTED_LAST", "HISTORICAL_VOLATILITY", "OPTION_IMPLIED_VOLATILITY",
    "REBATE_RATE", "FEE_RATE", "YIELD_BID", "YIELD_ASK", "YIELD_BID_ASK", "YIELD_LAST",
    "SCHEDULE", "AGGTRADES",
)  # fmt: skip
# Java's short zone ids that IB accepts and IANA lacks (IANA's EST/MST/HST are fixed offsets,
# as in Java)
_ZONE_ALIASES = {
    "CST": "America/Chicago",
    "PST": "America/Los_Angeles",
    "JST": "Asia/Tokyo",
    "CTT": "Asia/Shanghai",
    "IST": "Asia/Kolkata",
    "ECT": "Europe/Paris",
    "AET": "Australia/Sydney",
}


class HistoryRequestError(Exception):
    """A request IB would refuse: ``code`` and ``message`` go to the client as error()."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class BarUnit(StrEnum):
    SECOND = "secs"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class BarSize:
    text: str  # IB's spelling, as it appears in the legal list
    unit: BarUnit
    seconds: int  # length of an intraday bar; 0 for day/week/month bars

    @property
    def intraday(self) -> bool:
        return self.unit is BarUnit.SECOND

    @property
    def nominal_seconds(self) -> int:
        return {BarUnit.DAY: DAY, BarUnit.WEEK: 7 * DAY, BarUnit.MONTH: 28 * DAY}.get(
            self.unit, self.seconds
        )


class DurationUnit(StrEnum):
    SECONDS = "S"
    DAYS = "D"
    WEEKS = "W"
    MONTHS = "M"
    YEARS = "Y"


_NOMINAL_DAYS = {DurationUnit.DAYS: 1, DurationUnit.WEEKS: 7, DurationUnit.MONTHS: 31}


@dataclass(frozen=True, slots=True)
class Duration:
    count: int
    unit: DurationUnit

    @property
    def text(self) -> str:
        return f"{self.count} {self.unit.value}"

    @property
    def nominal_seconds(self) -> int:
        if self.unit is DurationUnit.SECONDS:
            return self.count
        return self.count * DAY * _NOMINAL_DAYS.get(self.unit, 366)


@dataclass(frozen=True, slots=True)
class Window:
    """Data in ``[start, end)``; daily bars: sessions labelled ``first_day..last_day``."""

    start: int
    end: int
    first_day: date | None
    last_day: date | None


_INTRADAY = {
    "1 secs": 1, "5 secs": 5, "10 secs": 10, "15 secs": 15, "30 secs": 30,
    "1 min": 60, "2 mins": 120, "3 mins": 180, "5 mins": 300, "10 mins": 600, "15 mins": 900,
    "20 mins": 1200, "30 mins": 1800, "1 hour": 3600, "2 hours": 7200, "3 hours": 10800,
    "4 hours": 14400, "8 hours": 28800,
}  # fmt: skip
_LONG = {
    "1 day": BarUnit.DAY,
    "1 week": BarUnit.WEEK,
    "1W": BarUnit.WEEK,
    "1 month": BarUnit.MONTH,
    "1M": BarUnit.MONTH,
}
# largest duration (nominal seconds) per intraday bar length; see the module docstring
_MAX_DURATION = {1: 2000, 5: 10_000, 10: 20_000, 15: 30_000, 30: DAY}


def parse_bar_size(text: str) -> BarSize:
    """IB's barSizeSetting.  Raises HistoryRequestError(321) for anything not in IB's list
    (IB refuses "1 sec" since 2023: only "1 secs" is legal)."""
    s = text.strip()
    if s in _INTRADAY:
        return BarSize(s, BarUnit.SECOND, _INTRADAY[s])
    if s in _LONG:
        return BarSize(s, _LONG[s], 0)
    raise HistoryRequestError(321, _VALIDATING + BAR_SIZE_TEXT)


def parse_duration(text: str) -> Duration:
    """IB's durationStr "<N> <S|D|W|M|Y>".  Raises HistoryRequestError(321) when malformed,
    for more than 86400 S, or for more than 365 days not given in years (observed text)."""
    m = re.fullmatch(r"(\d+) ([SDWMY])", text.strip())
    if m is None or int(m[1]) == 0:
        raise HistoryRequestError(
            321,
            _VALIDATING + f"Historical data duration '{text}' is invalid. "
            "Format is integer{SPACE}unit (S|D|W|M|Y).",
        )
    dur = Duration(int(m[1]), DurationUnit(m[2]))
    if dur.unit is DurationUnit.SECONDS and dur.count > DAY:
        raise HistoryRequestError(
            321,
            _VALIDATING + "Historical data requests for durations longer than 86400 seconds "
            "must be made in days.",
        )
    days = dur.count * {"D": 1, "W": 7, "M": 30}.get(dur.unit.value, 0)
    if days > 365:
        raise HistoryRequestError(
            321,
            _VALIDATING + "Historical data requests for durations longer than 365 days "
            "must be made in years.",
        )
    return dur


def zone(name: str) -> ZoneInfo:
    """IB's time zone names: IANA ids (US/Eastern, Europe/London, UTC) and Java short ids."""
    try:
        return ZoneInfo(_ZONE_ALIASES.get(name, name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise HistoryRequestError(10314, END_FORMAT_TEXT) from exc


def parse_end(text: str, tz: str, now: int) -> int:
    """endDateTime -> epoch second where the request ends (exclusive).

    ``""``: now.  ``yyyymmdd hh:mm:ss``: in ``tz`` (the instrument's zone).
    ``yyyymmdd hh:mm:ss <zone>``: in that zone.  ``hh:mm:ss [<zone>]``: today in that zone.
    ``yyyymmdd-hh:mm:ss``: UTC.  ``yyyymmdd``: the end of that day (next midnight) in ``tz``.
    Raises HistoryRequestError(10314) for anything else.
    """
    s = text.strip()
    if not s:
        return now
    if m := re.fullmatch(r"(\d{8})-(\d\d):(\d\d):(\d\d)", s):
        return _local(m[1], m[2], m[3], m[4], ZoneInfo("UTC"))
    if m := re.fullmatch(r"(\d{8})", s):
        return _local(m[1], "0", "0", "0", zone(tz), days=1)
    m = re.fullmatch(r"(?:(\d{8}) )?(\d\d):(\d\d):(\d\d)(?: (\S+))?", s)
    if m is None:
        raise HistoryRequestError(10314, END_FORMAT_TEXT)
    where = zone(m[5] or tz)
    day = m[1] or datetime.fromtimestamp(now, where).strftime("%Y%m%d")
    return _local(day, m[2], m[3], m[4], where)


def _local(day: str, hh: str, mm: str, ss: str, where: ZoneInfo, days: int = 0) -> int:
    try:
        d = date(int(day[:4]), int(day[4:6]), int(day[6:8])) + timedelta(days=days)
        return int(
            datetime(d.year, d.month, d.day, int(hh), int(mm), int(ss), tzinfo=where).timestamp()
        )
    except ValueError as exc:
        raise HistoryRequestError(10314, END_FORMAT_TEXT) from exc


def validate(
    inst: Instrument,
    bar: BarSize,
    duration: Duration,
    what: str,
    *,
    end_text: str,
    format_date: int,
    keep_up_to_date: bool,
) -> None:
    """Refuse what IB refuses (HistoryRequestError with IB's code and text):
    321 formatDate not 1/2 (observed) or unknown whatToShow or keepUpToDate with an end date
    or with 1-second bars; 162 a whatToShow the model has no data for (TRADES on CASH,
    quotes on IND, BID_ASK and the other derived types), or an invalid step."""
    if format_date not in (1, 2):
        raise HistoryRequestError(
            321, f"Error validating request.-'bT' : cause - Date formatting selection of "
            f"{format_date} rejected"
        )  # fmt: skip
    if what not in IB_WHAT_TO_SHOW:
        raise HistoryRequestError(
            321, _VALIDATING + f"Historical data whatToShow '{what}' is invalid"
        )
    unavailable = (inst.sec_type == "CASH" and what == "TRADES") or (
        inst.sec_type == "IND" and what != "TRADES"
    )
    if unavailable or what not in MODELLED:
        raise HistoryRequestError(
            162,
            _HMDS + f"No data of type {what} is available for the exchange '{inst.exchange}' "
            f"and the security type '{inst.sec_type}'",
        )
    if keep_up_to_date and end_text.strip():
        raise HistoryRequestError(321, _VALIDATING + "End date not supported with live updates.")
    if keep_up_to_date and bar.intraday and bar.seconds < 5:
        raise HistoryRequestError(321, _VALIDATING + "Bar size not supported with live updates.")
    check_step(bar, duration)


def check_step(bar: BarSize, duration: Duration) -> None:
    """Raise HistoryRequestError(162, "...invalid step: <bar seconds>") (observed text) when
    the bar is longer than the duration or the duration too long for the bar."""
    if bar.intraday:
        limit = _MAX_DURATION.get(bar.seconds)
        if limit is None:
            limit = 31 * DAY if bar.seconds <= 180 else 366 * DAY
    else:
        limit = None
    too_long = limit is not None and duration.nominal_seconds > limit
    if too_long or bar.nominal_seconds > duration.nominal_seconds:
        raise HistoryRequestError(162, _HMDS + f"invalid step: {bar.nominal_seconds}")


def _sessions(cal: Calendar, inst: Instrument, a: int, b: int, use_rth: bool) -> list[Session]:
    """Sessions whose hours overlap ``[a, b)``, in time order."""
    found = cal.sessions_between(
        inst, datetime.fromtimestamp(a, UTC), datetime.fromtimestamp(b, UTC)
    )
    keep = {}
    for s in found:
        lo, hi = session_hours(s, use_rth)
        if hi > a and lo < b:
            keep[s.open] = s
    return [keep[k] for k in sorted(keep)]


def window(inst: Instrument, cal: Calendar, end: int, duration: Duration, use_rth: bool) -> Window:
    """The data window of a request ending at ``end`` (exclusive).

    ``N S``: the last N seconds of trading time (inside trading hours, or liquid hours with
    useRTH) before ``end``, walking back over closed periods as IB does.  ``N D``: the last N
    sessions that have data before ``end``, from the first one's open (liquid open with
    useRTH); the session in progress counts.  ``N W``/``N M``/``N Y``: calendar weeks, months
    (day clamped to the month's end) and years back in the instrument's local wall-clock time.
    """
    where = zone(inst.time_zone_id)
    if duration.unit is DurationUnit.SECONDS:
        start = _trading_seconds_back(inst, cal, end, duration.count, use_rth)
    elif duration.unit is DurationUnit.DAYS:
        back = _sessions(cal, inst, end - (2 * duration.count + 14) * DAY, end, use_rth)
        chosen = back[-duration.count :]
        start = session_hours(chosen[0], use_rth)[0] if chosen else end
    else:
        local = datetime.fromtimestamp(end, where)
        if duration.unit is DurationUnit.WEEKS:
            then = local - timedelta(weeks=duration.count)
        else:
            months = duration.count * (12 if duration.unit is DurationUnit.YEARS else 1)
            then = _months_back(local, months)
        start = int(then.timestamp())
    days = [s.day for s in _sessions(cal, inst, start, end, use_rth)] if start < end else []
    return Window(start, end, days[0] if days else None, days[-1] if days else None)


def _months_back(local: datetime, months: int) -> datetime:
    index = local.year * 12 + local.month - 1 - months
    year, month = divmod(index, 12)
    first_next = date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1)
    last_day = (first_next - timedelta(days=1)).day
    return local.replace(year=year, month=month + 1, day=min(local.day, last_day))


def _trading_seconds_back(
    inst: Instrument, cal: Calendar, end: int, need: int, use_rth: bool
) -> int:
    hi = end
    for _ in range(12):  # look back up to ~four months of closed market
        sessions = _sessions(cal, inst, hi - 10 * DAY, hi, use_rth)
        for s in reversed(sessions):
            lo, top = session_hours(s, use_rth)
            top = min(top, hi)
            if top - lo >= need:
                return top - need
            need -= top - lo
            hi = lo
        if not sessions:
            hi -= 10 * DAY
    return hi - need


def format_bar_time(value: int | date, tz: str, format_date: int) -> str:
    """A bar's date as IB sends it: days (daily/weekly/monthly bars) as ``yyyymmdd``;
    intraday epochs as ``yyyymmdd hh:mm:ss <tz>`` in the instrument's zone with formatDate=1
    and as decimal epoch seconds with formatDate=2.  Also used for headTimestamp."""
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    if format_date == 2:
        return str(value)
    return format_time(value, tz)


def format_time(epoch: int, tz: str) -> str:
    """``yyyymmdd hh:mm:ss <tz>``: the start/end strings of historicalData."""
    return datetime.fromtimestamp(epoch, zone(tz)).strftime("%Y%m%d %H:%M:%S ") + tz
