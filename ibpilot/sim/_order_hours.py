"""Trading hours and IB time strings, as the order engine needs them (pure; no clock).

All instants are integer UTC epoch seconds.  A session's *liquid* hours are its regular
trading hours, clipped to the session (all of it when the calendar defines none), the
same rule the price model applies to its tapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ibpilot.sim.refdata import Instrument, RefData, Session

EASTERN = ZoneInfo("America/New_York")
_DAY = 86_400
_LOOK_BACK = 2 * _DAY  # sessions fetched before a lookup time
_LOOK_AHEAD = 12 * _DAY  # ... and after it (covers long weekends and holidays)
_ZONE_ALIASES = {"EST": "America/New_York", "EDT": "America/New_York", "UTC": "UTC", "GMT": "UTC"}


@dataclass(frozen=True, slots=True)
class Hours:
    """One session: trading hours ``[open, close)`` and liquid hours inside them."""

    open: int
    close: int
    liquid_open: int
    liquid_close: int

    def is_open(self, t: int) -> bool:
        return self.open <= t < self.close

    def tradable(self, t: int, outside_rth: bool) -> bool:
        """May an order trade at ``t``: liquid hours, or any trading hour with outsideRth."""
        if outside_rth:
            return self.open <= t < self.close
        return self.liquid_open <= t < self.liquid_close

    def start(self, outside_rth: bool) -> int:
        return self.open if outside_rth else self.liquid_open

    def end(self, outside_rth: bool) -> int:
        return self.close if outside_rth else self.liquid_close


class TradingHours:
    """Sessions of instruments around a time, from reference data, with a small cache."""

    def __init__(self, refdata: RefData) -> None:
        self._refdata = refdata
        self._cache: dict[int, tuple[int, int, list[Hours]]] = {}

    def sessions(self, inst: Instrument, t: int) -> list[Hours]:
        """Sessions from about two days before ``t`` to at least ten days after, in order."""
        got = self._cache.get(inst.con_id)
        if got is not None and got[0] <= t < got[1]:
            return got[2]
        found = self._refdata.sessions_between(
            inst,
            datetime.fromtimestamp(t - _LOOK_BACK, UTC),
            datetime.fromtimestamp(t + _LOOK_AHEAD, UTC),
        )
        out = [_hours(s) for s in found]
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[inst.con_id] = (t - _DAY, t + 2 * _DAY, out)
        return out

    def current(self, inst: Instrument, t: int) -> Hours | None:
        """The session whose trading hours contain ``t``."""
        for h in self.sessions(inst, t):
            if h.open <= t < h.close:
                return h
        return None

    def tradable(self, inst: Instrument, t: int, outside_rth: bool) -> bool:
        h = self.current(inst, t)
        return h is not None and h.tradable(t, outside_rth)

    def next_start(self, inst: Instrument, t: int, outside_rth: bool) -> int | None:
        """The first instant >= ``t`` at which an order may trade (``t`` if it may now)."""
        for h in self.sessions(inst, t):
            if h.tradable(t, outside_rth):
                return t
            if h.start(outside_rth) > t:
                return h.start(outside_rth)
        return None

    def day_end(self, inst: Instrument, t: int, outside_rth: bool) -> int | None:
        """When a DAY order placed at ``t`` expires: the end of the liquid hours (trading
        hours with outsideRth) of the first session that has not yet ended them."""
        for h in self.sessions(inst, t):
            if h.end(outside_rth) > t:
                return h.end(outside_rth)
        return None

    def closing_auction(self, inst: Instrument, t: int) -> int | None:
        """MOC/LOC: the first liquid close after ``t``."""
        for h in self.sessions(inst, t):
            if h.liquid_close > t:
                return h.liquid_close
        return None

    def opening_auction(self, inst: Instrument, t: int) -> tuple[int, int] | None:
        """OPG: (liquid open, liquid close) of the first session whose liquid open is after
        ``t`` (an OPG order placed after the open is for the next session)."""
        for h in self.sessions(inst, t):
            if h.liquid_open > t:
                return h.liquid_open, h.liquid_close
        return None


def _hours(s: Session) -> Hours:
    op, cl = int(s.open.timestamp()), int(s.close.timestamp())
    lo, lc = max(int(s.liquid_open.timestamp()), op), min(int(s.liquid_close.timestamp()), cl)
    return Hours(op, cl, lo, lc) if lo < lc else Hours(op, cl, op, cl)


def eastern_day(t: int) -> date:
    """The US/Eastern calendar day of ``t`` (IB's "today" for executions and daily P&L)."""
    return datetime.fromtimestamp(t, EASTERN).date()


def eastern_midnight(t: int) -> int:
    """Epoch of the US/Eastern midnight that starts the day of ``t``."""
    return int(datetime.combine(eastern_day(t), time(0), tzinfo=EASTERN).timestamp())


def parse_ib_time(text: str, default_zone: ZoneInfo = EASTERN) -> int:
    """Epoch seconds of an IB time string.

    ``yyyymmdd-hh:mm:ss`` is UTC; ``yyyymmdd hh:mm:ss`` is in ``default_zone`` unless a
    time-zone name follows (``20260302 09:30:00 US/Eastern``); ``yyyymmdd`` alone is that
    day's midnight.  Raises ValueError for anything else.
    """
    raw = text.strip()
    try:
        if len(raw) == 8 and raw.isdigit():
            d = datetime.strptime(raw, "%Y%m%d").replace(tzinfo=default_zone)
            return int(d.timestamp())
        if len(raw) >= 17 and raw[8] == "-":
            d = datetime.strptime(raw[:17], "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
            return int(d.timestamp())
        stamp, zone_name = raw[:17], raw[17:].strip()
        zone = _zone(zone_name) if zone_name else default_zone
        d = datetime.strptime(stamp, "%Y%m%d %H:%M:%S").replace(tzinfo=zone)
        return int(d.timestamp())
    except ValueError as exc:
        raise ValueError(
            f"time {text!r} is not yyyymmdd hh:mm:ss [zone] or yyyymmdd-hh:mm:ss"
        ) from exc


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(_ZONE_ALIASES.get(name.upper(), name))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc
