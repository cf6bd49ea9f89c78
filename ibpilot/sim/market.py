"""The simulator's seeded, deterministic price model: one story for live ticks and history.

Pure code: no clock, no sockets; time is integer UTC epoch seconds.  Every number is a
function of ``(seed, instrument, second)``, so two processes with the same seed and
reference data agree, and the bars of a period are exactly what the live model produced.
(Random streams and arithmetic are platform-independent; ``exp``/``erf`` may differ by an
ulp between CPUs, which flips a tick only when a value lands on a tick boundary.)

The model, from the bottom up:

* **Root path** (``ModelParams.driver_con_id == 0``): a geometric random walk defined at
  every second from the model epoch (2020-01-01 UTC), worth ``ModelParams.price`` at the
  ``anchor`` (default 2026-01-01, the date the shipped reference prices describe).
  End-of-UTC-day log prices form a daily chain (annual ``vol``/``drift``, 365.25-day
  year) drawn in blocks of 256 days; inside UTC day ``d`` the path is a random-walk bridge
  between its two boundary values (uniform per-second steps with the Brownian variance,
  from ``PCG64(SeedSequence([seed, con_id, 2, d]))``).
* **Derived fair values**: FUT = driver x exp(carry x years to expiry); OPT = Black-Scholes
  (r = 4%, the option's ``iv``) on the underlying's fair value; expiry instant is
  ``last_trade_date`` 16:00 US/Eastern.  Root futures (driver 0) follow their own path.
* **Session tape** (one session of one instrument, cached): per second a quote, ``bid =
  floor(fair/tick - (spread_ticks - 1)/2)`` ticks (at least one tick) and ``ask = bid +
  spread_ticks`` ticks (so bid <= fair <= ask), with pseudo-random sizes; a print with a
  probability tuned so that liquid-hours volume is about ``daily_volume`` (15% of that rate
  outside liquid hours), at the bid or the ask, with a pseudo-random size.  IND prints its
  value every second with size 0; CASH never prints.
* **Closed market**: outside ``[Session.open, Session.close)`` there are no prints and the
  quote is frozen at the last second of the previous session (sizes, last, volume, OHLC
  too), with ``is_open=False``; the path keeps moving, so the next open gaps.

Bars are aggregations of exactly those per-second quotes and trades (TRADES buckets without
prints: a flat bar at the last price), see :meth:`MarketModel.bars` and
:mod:`ibpilot.sim._bars`.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache, partial
from typing import Generic, Protocol, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
from numpy.random import PCG64, Generator, SeedSequence

from ibpilot.sim._bars import (
    F64,
    Bar,
    DailyBar,
    Tape,
    aggregate,
    grid,
    group_daily,
    intraday_bars,
    price_before,
    series,
    tick_price,
)
from ibpilot.sim.refdata import Instrument, Session

__all__ = [
    "DAY",
    "MODEL_ANCHOR",
    "MODEL_EPOCH",
    "WHAT_TO_SHOW",
    "Bar",
    "Calendar",
    "DailyBar",
    "DataUnavailable",
    "MarketModel",
    "Quote",
    "Trade",
    "black_scholes",
    "group_daily",
    "session_hours",
    "vwap",
]

MODEL_EPOCH = 1_577_836_800  # 2020-01-01T00:00:00Z: the first second with data
MODEL_ANCHOR = 1_767_225_600  # 2026-01-01T00:00:00Z: where ModelParams.price holds
DAY = 86_400
YEAR = 365.25 * DAY
RATE = 0.04  # risk-free rate for option pricing
WHAT_TO_SHOW = ("TRADES", "MIDPOINT", "BID", "ASK")
_BLOCK = 256  # days of the boundary chain drawn by one generator
_CHAIN, _PATH, _TAPE = 1, 2, 3  # SeedSequence stream tags
_EXT_RATE = 0.15  # trade rate outside liquid hours, relative to liquid hours
_EASTERN = ZoneInfo("America/New_York")
_FRAC = np.arange(DAY, dtype=np.float64) / DAY
_ERF = np.frompyfunc(math.erf, 1, 1)


class Calendar(Protocol):
    """What the model needs from reference data (``RefData`` satisfies it)."""

    def sessions_between(
        self, inst: Instrument, start: datetime, end: datetime
    ) -> list[Session]: ...

    def by_con_id(self, con_id: int) -> Instrument | None: ...


class DataUnavailable(ValueError):
    """IB has no data of this type for this security type: TRADES for CASH, quotes for IND."""

    def __init__(self, what: str, sec_type: str) -> None:
        super().__init__(f"No data of type {what} is available for security type {sec_type}")
        self.what = what
        self.sec_type = sec_type


@dataclass(frozen=True, slots=True)
class Quote:
    """Top of book and session statistics as of second ``time`` (inclusive)."""

    time: int
    bid: float
    ask: float
    bid_size: int
    ask_size: int
    last: float  # nan before the session's first trade
    last_size: int
    last_time: int  # epoch of the last trade, 0 if none this session
    volume: int  # session cumulative
    open: float  # session OHLC from trades; nan before the first trade
    high: float
    low: float
    close: float  # previous session's last trade (CASH: last midpoint); nan if unknown
    is_open: bool  # inside trading hours

    @property
    def midpoint(self) -> float:
        """The MIDPOINT value of bars: (bid + ask) / 2 as the nearest float to the decimal."""
        return round((self.bid + self.ask) / 2, 10)


@dataclass(frozen=True, slots=True)
class Trade:
    time: int
    price: float
    size: int


def vwap(trades: Iterable[Trade], tick: float) -> float:
    """The exact ``wap`` :meth:`MarketModel.bars` reports for these trades (0.0 if no volume).

    Prices are summed as integer ticks x sizes, so the result does not depend on order.
    """
    total = volume = 0
    for tr in trades:
        total += round(tr.price / tick) * tr.size
        volume += tr.size
    return round(float(total) * tick / volume, 10) if volume else 0.0


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def _utc(t: int) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@lru_cache(maxsize=4096)
def _expiry(ltd: str) -> int:
    """Expiry instant of a FUT/OPT: last_trade_date 16:00 US/Eastern (0 if none)."""
    if len(ltd) < 8:
        return 0
    return _epoch(datetime(int(ltd[:4]), int(ltd[4:6]), int(ltd[6:8]), 16, tzinfo=_EASTERN))


@lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def session_hours(s: Session, use_rth: bool) -> tuple[int, int]:
    """Trading hours, or liquid hours (clipped to them; all of them if there are none)."""
    op, cl = _epoch(s.open), _epoch(s.close)
    lq_op, lq_cl = max(_epoch(s.liquid_open), op), min(_epoch(s.liquid_close), cl)
    return (lq_op, lq_cl) if use_rth and lq_op < lq_cl else (op, cl)


def _norm_cdf(x: F64) -> F64:
    return 0.5 * (1.0 + np.asarray(_ERF(x / math.sqrt(2.0)), dtype=np.float64))


def black_scholes(s: F64, strike: float, years: F64, vol: float, right: str) -> F64:
    """European option value (r = RATE); intrinsic at or after expiry."""
    years = np.maximum(years, 0.0)
    disc = strike * np.exp(-RATE * years)
    sd = vol * np.sqrt(years)
    live = sd > 0
    safe = np.where(live, sd, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = (np.log(s / strike) + (RATE + 0.5 * vol * vol) * years) / safe
    d2 = d1 - safe
    if right == "C":
        value = s * _norm_cdf(d1) - disc * _norm_cdf(d2)
        return np.where(live, value, np.maximum(s - disc, 0.0))
    value = disc * _norm_cdf(-d2) - s * _norm_cdf(-d1)
    return np.where(live, value, np.maximum(disc - s, 0.0))


# sessions around a time: (lookups valid from, until, opens, closes, sessions)
_SessionIndex = tuple[int, int, list[int], list[int], list[Session]]
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Lru(Generic[K, V]):
    """A bounded least-recently-used cache."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[K, V] = OrderedDict()
        self._size = size

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> V:
        self._items[key] = value
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return value


class MarketModel:
    """Prices, quotes, trades and bars of every instrument; see the module docstring."""

    def __init__(
        self,
        calendar: Calendar,
        seed: int,
        *,
        anchor: int = MODEL_ANCHOR,
        chunk_cache: int = 64,
        tape_cache: int = 128,
    ) -> None:
        """``anchor``: the UTC day whose midnight price is ``ModelParams.price`` (default
        2026-01-01, as ModelParams documents; data still starts at the epoch).  Caches: a
        root's UTC-day path is 0.7 MB, a session tape 0.3 MB (options) to 1.5 MB (stocks with
        extended hours).  Raises ValueError for a negative seed."""
        if seed < 0:
            raise ValueError("seed must be >= 0")
        self._cal = calendar
        self._seed = seed
        self._anchor_day = anchor // DAY
        self._blocks: dict[tuple[int, int], F64] = {}
        self._base: dict[int, float] = {}
        self._chunks: _Lru[tuple[int, int], F64] = _Lru(chunk_cache)
        self._tapes: _Lru[tuple[int, int], Tape] = _Lru(tape_cache)
        self._daily: _Lru[tuple[int, date, str, bool], tuple[DailyBar | None]] = _Lru(200_000)
        self._index: dict[int, _SessionIndex] = {}

    # ----- fair values ------------------------------------------------------------------
    def _rng(self, con_id: int, stream: int, key: int) -> Generator:
        return Generator(PCG64(SeedSequence([self._seed, con_id, stream, key])))

    def _block(self, inst: Instrument, b: int) -> F64:
        """Cumulative log returns at the 257 UTC midnights of chain block ``b``."""
        key = (inst.con_id, b)
        got = self._blocks.get(key)
        if got is not None:
            return got
        m = inst.model
        incs = (m.drift - 0.5 * m.vol * m.vol) / 365.25 + m.vol / math.sqrt(365.25) * self._rng(
            inst.con_id, _CHAIN, b + (1 << 20)
        ).standard_normal(_BLOCK)
        if b == 0:
            start = 0.0
        elif b > 0:
            start = float(self._block(inst, b - 1)[_BLOCK])
        else:
            start = float(self._block(inst, b + 1)[0]) - float(np.sum(incs))
        values = start + np.concatenate(([0.0], np.cumsum(incs)))
        self._blocks[key] = values
        return values

    def _boundary(self, inst: Instrument, day: int) -> float:
        """Log price at the UTC midnight starting ``day``."""
        base = self._base.get(inst.con_id)
        if base is None:
            base = self._base[inst.con_id] = math.log(inst.model.price) - self._chain(
                inst, self._anchor_day
            )
        return base + self._chain(inst, day)

    def _chain(self, inst: Instrument, day: int) -> float:
        """Cumulative log return from the model epoch to the midnight starting ``day``."""
        b, j = divmod(day - MODEL_EPOCH // DAY, _BLOCK)
        return float(self._block(inst, b)[j])

    def _chunk(self, inst: Instrument, day: int) -> F64:
        """Root path prices at every second of UTC day ``day`` (86400 values)."""
        key = (inst.con_id, day)
        got = self._chunks.get(key)
        if got is not None:
            return got
        l0, l1 = self._boundary(inst, day), self._boundary(inst, day + 1)
        step = inst.model.vol / math.sqrt(YEAR) * math.sqrt(12.0)
        w = np.cumsum(self._rng(inst.con_id, _PATH, day).random(DAY) - 0.5) * step
        x = np.empty(DAY)
        x[0] = 0.0
        x[1:] = w[:-1]
        return self._chunks.put(key, np.exp(l0 + x - _FRAC * (w[-1] - (l1 - l0))))

    def _driver(self, inst: Instrument) -> Instrument:
        drv = self._cal.by_con_id(inst.model.driver_con_id)
        if drv is None:
            raise LookupError(f"driver {inst.model.driver_con_id} of {inst.con_id} is unknown")
        return drv

    def _fair(self, inst: Instrument, a: int, b: int) -> F64:
        """Fair values for seconds ``a <= t < b``."""
        if inst.model.driver_con_id == 0:
            parts = []
            for day in range(a // DAY, (b - 1) // DAY + 1):
                chunk = self._chunk(inst, day)
                parts.append(chunk[max(a - day * DAY, 0) : min(b - day * DAY, DAY)])
            return parts[0] if len(parts) == 1 else np.concatenate(parts)
        under = self._fair(self._driver(inst), a, b)
        years = (_expiry(inst.last_trade_date) - np.arange(a, b, dtype=np.float64)) / YEAR
        if inst.sec_type == "OPT":
            return black_scholes(under, inst.strike, years, inst.model.iv, inst.right)
        return under * np.exp(inst.model.carry * np.maximum(years, 0.0))

    def mid(self, inst: Instrument, t: int) -> float:
        """The model's fair value at second ``t`` (unrounded; quotes are built around it)."""
        return float(self._fair(inst, t, t + 1)[0])

    # ----- sessions and tapes -----------------------------------------------------------
    def _sessions(self, inst: Instrument, a: int, b: int) -> list[Session]:
        """Sessions overlapping ``[a, b)``, in time order."""
        found = self._cal.sessions_between(inst, _utc(a - DAY), _utc(b + DAY))
        uniq = {s.open: s for s in found if _epoch(s.close) > a and _epoch(s.open) < b}
        return [uniq[k] for k in sorted(uniq)]

    def _locate(self, inst: Instrument, t: int) -> tuple[Session | None, bool]:
        """The session containing ``t`` (inside=True), else the last one before it."""
        idx = self._index.get(inst.con_id)
        if idx is None or not idx[0] <= t < idx[1]:
            got = self._sessions(inst, t - 10 * DAY, t + 10 * DAY)
            opens, closes = [_epoch(s.open) for s in got], [_epoch(s.close) for s in got]
            idx = self._index[inst.con_id] = (t - 9 * DAY, t + 9 * DAY, opens, closes, got)
        i = bisect_right(idx[2], t) - 1
        return (idx[4][i], t < idx[3][i]) if i >= 0 else (None, False)

    def _tape(self, inst: Instrument, s: Session) -> Tape:
        key = (inst.con_id, s.day.toordinal())
        got = self._tapes.get(key)
        return got if got is not None else self._tapes.put(key, self._build_tape(inst, s))

    def _build_tape(self, inst: Instrument, s: Session) -> Tape:
        (op, cl), (lq_op, lq_cl) = session_hours(s, False), session_hours(s, True)
        n, tick, spread = cl - op, inst.min_tick, inst.model.spread_ticks
        fair = self._fair(inst, op, cl)
        low = _bid_ticks(inst, fair)
        rng = self._rng(inst.con_id, _TAPE, s.day.toordinal())
        lot, top, p_liq, top_lots, t_lot = _sizes(inst, lq_cl - lq_op)
        bid_size = rng.integers(1, top + 1, n, dtype=np.int32) * np.int32(lot)
        ask_size = rng.integers(1, top + 1, n, dtype=np.int32) * np.int32(lot)
        if inst.sec_type == "IND":  # the index value every second, no sizes
            idx = np.arange(n, dtype=np.int32)
            ticks = np.rint(fair / tick)
            size = np.zeros(n, dtype=np.int64)
            bid_size[:] = ask_size[:] = 0
        else:
            u = rng.random(n)
            p = np.full(n, 0.0 if inst.sec_type == "CASH" else p_liq * _EXT_RATE)
            p[lq_op - op : lq_cl - op] = 0.0 if inst.sec_type == "CASH" else p_liq
            idx = np.flatnonzero(u < p).astype(np.int32)
            ticks = low[idx] + np.where(u[idx] < p[idx] / 2, spread, 0)  # at the ask or the bid
            size = rng.integers(1, top_lots + 1, idx.size) * t_lot
        px = grid(ticks, tick)
        return Tape(
            s, op, cl, lq_op, lq_cl, tick, spread, low.astype(np.int32), bid_size, ask_size,
            idx, px, ticks.astype(np.int64), size,
        )  # fmt: skip

    def _prev_close(self, inst: Instrument, tape: Tape) -> float:
        if tape.prev_close is None:
            before = self._sessions(inst, tape.open - 10 * DAY, tape.open)
            before = [s for s in before if _epoch(s.close) <= tape.open]
            tape.prev_close = math.nan
            if before:
                prev = self._tape(inst, before[-1])
                if inst.sec_type == "CASH":
                    tape.prev_close = float(series(prev, "MIDPOINT", -1, None)[0])
                elif prev.t_px.size:
                    tape.prev_close = float(prev.t_px[-1])
        return tape.prev_close

    # ----- public queries ---------------------------------------------------------------
    def quote(self, inst: Instrument, t: int) -> Quote:
        """Quote and session statistics as of second ``t``; frozen while the market is closed."""
        s, inside = self._locate(inst, t)
        if s is None:  # no session in the 10 days before t: the bare model quote
            low = int(_bid_ticks(inst, self._fair(inst, t, t + 1))[0])
            bid, ask = (
                tick_price(low, inst.min_tick),
                tick_price(low + inst.model.spread_ticks, inst.min_tick),
            )
            nan = math.nan
            return Quote(t, bid, ask, 0, 0, nan, 0, 0, 0, nan, nan, nan, nan, False)
        tape = self._tape(inst, s)
        i = t - tape.open if inside else tape.close - tape.open - 1
        last_at, cum_vol, run_hi, run_lo = tape.running()
        j = int(last_at[i])
        close = self._prev_close(inst, tape)
        if j < 0:
            last = hi = lo = first = math.nan
            last_size = last_time = volume = 0
        else:
            last, last_size = float(tape.t_px[j]), int(tape.t_size[j])
            last_time, volume = tape.open + int(tape.t_idx[j]), int(cum_vol[j])
            first, hi, lo = float(tape.t_px[0]), float(run_hi[j]), float(run_lo[j])
        low = int(tape.low[i])
        return Quote(
            t, tick_price(low, tape.tick), tick_price(low + tape.spread, tape.tick),
            int(tape.bid_size[i]), int(tape.ask_size[i]), last, last_size, last_time, volume,
            first, hi, lo, close, inside,
        )  # fmt: skip

    def trades(self, inst: Instrument, start: int, end: int) -> list[Trade]:
        """Prints with ``start <= time < end`` in time order (none for CASH; size 0 for IND)."""
        out: list[Trade] = []
        start = max(start, MODEL_EPOCH)
        for s in self._sessions(inst, start, end):
            tape = self._tape(inst, s)
            j0, j1 = np.searchsorted(tape.t_idx, [start - tape.open, end - tape.open])
            for k in range(int(j0), int(j1)):
                out.append(
                    Trade(tape.open + int(tape.t_idx[k]), float(tape.t_px[k]), int(tape.t_size[k]))
                )
        return out

    def bars(
        self, inst: Instrument, start: int, end: int, bar_seconds: int, what: str, use_rth: bool
    ) -> list[Bar]:
        """Intraday bars of data in ``[start, end)`` inside trading (or liquid) hours.

        Buckets are multiples of ``bar_seconds`` of local wall-clock time from local midnight
        (instrument time zone).  A bar holds the data of its bucket inside the hours and the
        window; its ``time`` is the bucket start, or the start of the hours if later (the
        first 1-hour RTH bar of a US stock is 09:30).  TRADES: every bucket inside the hours
        has a bar: with prints, OHLC of print prices, volume = sum of sizes, wap =
        :func:`vwap`, count = prints; without, a flat bar at the last earlier price (this
        session's last print so far, else :attr:`Quote.close`) with volume 0, wap = that
        price, count 0, and no bar when there is no earlier price.  MIDPOINT/BID/ASK bars:
        OHLC of the per-second ``quote()`` value, with volume -1, wap -1, count -1 (as IB
        sends).  A bucket's bar does not depend on the window around it, so bars asked for
        one bucket at a time (real-time bars) are the bars of history.  Raises
        DataUnavailable (TRADES on CASH, quotes on IND) and ValueError (unknown ``what``).
        """
        _check_what(inst, what)
        start = max(start, MODEL_EPOCH)
        tapes = (self._tape(inst, s) for s in self._sessions(inst, start, end))
        return intraday_bars(
            tapes, (start, end), bar_seconds, what, use_rth, _zone(inst.time_zone_id),
            partial(self._prev_close, inst),
        )  # fmt: skip

    def daily_bars(
        self,
        inst: Instrument,
        first: date,
        last: date,
        what: str,
        use_rth: bool,
        end: int | None = None,
    ) -> list[DailyBar]:
        """One bar per session labelled ``first <= Session.day <= last``, from data in the
        session's trading (or liquid) hours before ``end`` (None: the whole session); same
        field rules as :meth:`bars`.  Raises as :meth:`bars`."""
        _check_what(inst, what)
        a = _epoch(datetime(first.year, first.month, first.day, tzinfo=UTC)) - 2 * DAY
        b = _epoch(datetime(last.year, last.month, last.day, tzinfo=UTC)) + 3 * DAY
        out: list[DailyBar] = []
        for s in self._sessions(inst, max(a, MODEL_EPOCH), b):
            if not first <= s.day <= last:
                continue
            row = self._daily_row(inst, s, what, use_rth, end)
            if row is not None:
                out.append(row)
        return out

    def _daily_row(
        self, inst: Instrument, s: Session, what: str, use_rth: bool, end: int | None
    ) -> DailyBar | None:
        key = (inst.con_id, s.day, what, use_rth)
        lo, hi = session_hours(s, use_rth)
        whole = end is None or end >= hi
        cached = self._daily.get(key) if whole else None
        if cached is not None:
            return cached[0]
        tape = self._tape(inst, s)
        lo, hi = max(lo, MODEL_EPOCH), min(hi, hi if end is None else end)
        pieces = [(tape, lo - tape.open, hi - tape.open)]
        row = aggregate(pieces, what) if lo < hi else None
        bar = DailyBar(s.day, *row) if row else None
        if whole:
            self._daily.put(key, (bar,))
        return bar

    def head_timestamp(self, inst: Instrument, what: str, use_rth: bool) -> int:
        """The time of the first bar of this type at or after the model epoch: the start of
        the first trading (or liquid) hours; for TRADES, the first print unless an earlier
        price already makes a flat bar there.  Raises as :meth:`bars`, and LookupError when
        the instrument has no such data in the model's first 1400 days."""
        _check_what(inst, what)
        prev_close = partial(self._prev_close, inst)
        t = MODEL_EPOCH
        for _ in range(100):
            for s in self._sessions(inst, t, t + 14 * DAY):
                tape = self._tape(inst, s)
                lo, hi = tape.hours(use_rth)
                lo = max(lo, MODEL_EPOCH)
                if lo >= hi:
                    continue
                if what != "TRADES" or price_before(tape, lo - tape.open, prev_close) is not None:
                    return lo
                j = int(np.searchsorted(tape.t_idx, lo - tape.open))
                if j < tape.t_idx.size and tape.t_idx[j] < hi - tape.open:
                    return tape.open + int(tape.t_idx[j])
            t += 14 * DAY
        raise LookupError(f"no {what} data for {inst.con_id} in the model's first years")


def _bid_ticks(inst: Instrument, fair: F64) -> F64:
    """The bid in ticks: fair - (spread - 1)/2 ticks rounded down, at least one tick, so that
    bid <= fair <= ask = bid + spread holds whenever fair is above one tick."""
    return np.maximum(
        np.floor(fair / inst.min_tick - (inst.model.spread_ticks - 1) / 2 + 1e-9), 1.0
    )


def _check_what(inst: Instrument, what: str) -> None:
    if what not in WHAT_TO_SHOW:
        raise ValueError(f"whatToShow {what!r} is not modelled; use one of {WHAT_TO_SHOW}")
    if (inst.sec_type == "CASH" and what == "TRADES") or (
        inst.sec_type == "IND" and what != "TRADES"
    ):
        raise DataUnavailable(what, inst.sec_type)


def _sizes(inst: Instrument, liquid_seconds: int) -> tuple[int, int, float, int, int]:
    """(quote lot, max quote lots, print probability per liquid second, max print lots,
    print lot): quotes show 1-30 x 100 shares, 1-50 x 100k FX units, 1-50 contracts."""
    quote_lot, top = {"STK": (100, 30), "CASH": (100_000, 50)}.get(inst.sec_type, (1, 50))
    lot = 100 if inst.sec_type == "STK" else 1
    per_second = inst.model.daily_volume / liquid_seconds / lot
    if per_second < 0.9:
        return quote_lot, top, per_second, 1, lot
    return quote_lot, top, 0.9, max(1, round(2 * per_second / 0.9 - 1)), lot
