"""Bars from session tapes: wall-clock buckets, aggregation, flat bars, weekly/monthly groups.

A :class:`Tape` holds what the price model produced for one session of one instrument: the
per-second quotes and the prints.  Everything here is a pure function of tapes; the model
(:mod:`ibpilot.sim.market`) builds them and answers the public queries.

Bar rules, as IB sends them:

* Buckets are multiples of the bar length of local wall-clock time from local midnight
  (the instrument's time zone), cut to the trading (or liquid) hours; a bar's ``time`` is
  its bucket start, or the start of the hours if later.
* TRADES: a bucket with prints gives their OHLC, volume, volume-weighted price and count.
  A bucket inside the hours without prints gives a flat bar at the last price before it
  (the session's last print so far, else the previous session's last print) with volume 0,
  wap = that price and count 0; with no earlier price at all, no bar.  (Real IB: flat
  1-minute history bars, ib_async issue #23; flat 5-second real-time bars with volume 0,
  StrateQueue issue #55.)
* MIDPOINT/BID/ASK: OHLC of the per-second value, volume -1, wap -1, count -1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from itertools import groupby
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from ibpilot.sim.refdata import Session

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
I32 = NDArray[np.int32]
Row = tuple[float, float, float, float, int, float, int]  # OHLC, volume, wap, count
Piece = tuple["Tape", int, int]  # a tape and a range of its seconds, relative to its open


@dataclass(frozen=True, slots=True)
class Bar:
    """An intraday bar; ``time`` is the first second of data it covers (bar start, clipped)."""

    time: int
    open: float
    high: float
    low: float
    close: float
    volume: int  # TRADES: sum of sizes (0 in a flat bar); MIDPOINT/BID/ASK: -1 (as IB sends)
    wap: float  # TRADES: volume-weighted price (IND: 0.0; flat bar: its price); else -1.0
    count: int  # TRADES: number of prints; else -1


@dataclass(frozen=True, slots=True)
class DailyBar:
    day: date  # session label (Session.day); weekly/monthly: first session of the group
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float
    count: int


@lru_cache(maxsize=256)
def _inverse(tick: float) -> int:
    """1/tick when it is an integer (0.01, 0.25, 0.00005, 1/64), else 0."""
    inv = round(1 / tick)
    return inv if abs(inv * tick - 1) < 1e-12 else 0


def grid(ticks: F64, tick: float) -> F64:
    """Prices of integer tick counts: the float nearest the decimal value, the same everywhere
    (with an integral 1/tick, one correctly rounded division)."""
    inv = _inverse(tick)
    return ticks / inv if inv else np.round(ticks * tick, 10)


def tick_price(ticks: int, tick: float) -> float:
    """One price of :func:`grid`, bit for bit (int / int is correctly rounded too)."""
    inv = _inverse(tick)
    return ticks / inv if inv else float(np.round(np.array([ticks * tick]), 10)[0])


@dataclass(slots=True)
class Tape:
    """Per-second quotes and the trades of one session of one instrument."""

    session: Session
    open: int
    close: int
    lq_open: int
    lq_close: int
    tick: float
    spread: int  # in ticks
    low: I32  # bid in ticks, per second
    bid_size: I32
    ask_size: I32
    t_idx: I32  # second of each trade, relative to ``open``
    t_px: F64
    t_ticks: I64
    t_size: I64
    # for quotes, built on first use: per second the index of the last trade (-1: none yet);
    # per trade the cumulative volume, running high and running low
    stats: tuple[I32, I64, F64, F64] | None = None
    prev_close: float | None = None

    def hours(self, use_rth: bool) -> tuple[int, int]:
        return (self.lq_open, self.lq_close) if use_rth else (self.open, self.close)

    def running(self) -> tuple[I32, I64, F64, F64]:
        if self.stats is None:
            last = np.full(self.low.size, -1, dtype=np.int32)
            last[self.t_idx] = np.arange(self.t_idx.size, dtype=np.int32)
            px = self.t_px
            self.stats = (
                np.maximum.accumulate(last),
                np.cumsum(self.t_size),
                np.maximum.accumulate(px),
                np.minimum.accumulate(px),
            )
        return self.stats

    def last_print_before(self, x: int) -> float | None:
        """The price of the last print before relative second ``x``, None if none yet."""
        j = int(np.searchsorted(self.t_idx, x))
        return float(self.t_px[j - 1]) if j else None


def _offset(zone: ZoneInfo, t: int) -> int:
    off = datetime.fromtimestamp(t, zone).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def buckets(a: int, b: int, size: int, zone: ZoneInfo) -> list[tuple[int, int, int, int]]:
    """Split ``[a, b)`` into (wall-clock bucket key, bucket start, start, end) pieces."""
    out: list[tuple[int, int, int, int]] = []
    while a < b:
        off = _offset(zone, a)
        stop = b
        if _offset(zone, b - 1) != off:  # a DST change inside: find its first second
            lo, hi = a, b - 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if _offset(zone, mid) == off else (lo, mid)
            stop = hi
        k0, k1 = (a + off) // size, (stop - 1 + off) // size
        edges = [a, *range((k0 + 1) * size - off, k1 * size - off + 1, size), stop]
        out += [
            (k0 + i, (k0 + i) * size - off, edges[i], edges[i + 1]) for i in range(len(edges) - 1)
        ]
        a = stop
    return out


def intraday_bars(
    tapes: Iterable[Tape],
    window: tuple[int, int],
    bar_seconds: int,
    what: str,
    use_rth: bool,
    zone: ZoneInfo,
    prev_close: Callable[[Tape], float],
) -> list[Bar]:
    """The bars of ``tapes`` (in time order) with data in ``window`` = ``[start, end)``;
    see the module docstring.  ``prev_close(tape)``: the previous session's last print
    (nan if unknown), asked only for a TRADES bucket with no earlier print in its session."""
    start, end = window
    groups: list[tuple[int, list[Piece]]] = []  # (time, pieces)
    last_key: int | None = None
    for tape in tapes:
        lo, hi = tape.hours(use_rth)
        for key, bucket, x, y in buckets(max(lo, start), min(hi, end), bar_seconds, zone):
            piece = (tape, x - tape.open, y - tape.open)
            if key == last_key:
                groups[-1][1].append(piece)
            else:
                groups.append((max(bucket, lo), [piece]))
            last_key = key
    out: list[Bar] = []
    for time, pieces in groups:
        row = aggregate(pieces, what)
        if row is None and what == "TRADES":
            row = _flat(pieces[0], prev_close)
        if row is not None:
            out.append(Bar(time, *row))
    return out


def _flat(first: Piece, prev_close: Callable[[Tape], float]) -> Row | None:
    """The TRADES bar of a bucket without prints: flat at the last earlier price, if any."""
    tape, x, _ = first
    price = price_before(tape, x, prev_close)
    return None if price is None else (price, price, price, price, 0, price, 0)


def price_before(tape: Tape, x: int, prev_close: Callable[[Tape], float]) -> float | None:
    """The last price before relative second ``x``: the session's last print so far, else
    ``prev_close(tape)``; None when that is nan too (no earlier price at all)."""
    price = tape.last_print_before(x)
    if price is None:
        price = prev_close(tape)
    return None if math.isnan(price) else price


def aggregate(pieces: Sequence[Piece], what: str) -> Row | None:
    """OHLC, volume, wap, count over ``tape[x:y]`` pieces (relative seconds, at least one
    piece, all of one instrument), in order; TRADES: None when the pieces hold no print."""
    if what == "TRADES":
        tick = pieces[0][0].tick
        spans = []
        for tape, x, y in pieces:
            j0, j1 = np.searchsorted(tape.t_idx, (x, y))
            if j1 > j0:
                spans.append((tape, int(j0), int(j1)))
        if not spans:
            return None
        hi = max(float(tp.t_px[j0:j1].max()) for tp, j0, j1 in spans)
        lo = min(float(tp.t_px[j0:j1].min()) for tp, j0, j1 in spans)
        vol = sum(int(tp.t_size[j0:j1].sum()) for tp, j0, j1 in spans)
        total = sum(int(np.dot(tp.t_ticks[j0:j1], tp.t_size[j0:j1])) for tp, j0, j1 in spans)
        first, last = spans[0], spans[-1]
        wap = round(float(total) * tick / vol, 10) if vol else 0.0
        count = sum(j1 - j0 for _, j0, j1 in spans)
        return (float(first[0].t_px[first[1]]), hi, lo, float(last[0].t_px[last[2] - 1]),
                vol, wap, count)  # fmt: skip
    values = [series(tape, what, x, y) for tape, x, y in pieces]
    hi = max(float(v.max()) for v in values)
    lo = min(float(v.min()) for v in values)
    return float(values[0][0]), hi, lo, float(values[-1][-1]), -1, -1.0, -1


def series(tape: Tape, what: str, x: int, y: int | None) -> F64:
    """Per-second BID, ASK or MIDPOINT (in half ticks, so it equals ``Quote.midpoint``)."""
    low = tape.low[x:y].astype(np.float64)
    if what == "BID":
        return grid(low, tape.tick)
    if what == "ASK":
        return grid(low + tape.spread, tape.tick)
    return grid(2 * low + tape.spread, tape.tick / 2)


def group_daily(bars: Sequence[DailyBar], unit: str) -> list[DailyBar]:
    """Weekly ("week": ISO weeks) or monthly ("month") bars from daily bars, labelled with
    their first session day; wap is the volume-weighted daily wap (-1 if volume is -1).
    Raises ValueError for another unit."""
    keyfn: Callable[[date], tuple[int, int]]
    if unit == "week":
        keyfn = lambda d: d.isocalendar()[:2]  # noqa: E731
    elif unit == "month":
        keyfn = lambda d: (d.year, d.month)  # noqa: E731
    else:
        raise ValueError(f"unit must be 'week' or 'month', not {unit!r}")
    out: list[DailyBar] = []
    for _, run in groupby(bars, key=lambda b: keyfn(b.day)):
        grp = list(run)
        vol = sum(b.volume for b in grp) if grp[0].volume >= 0 else -1
        wap = round(sum(b.wap * b.volume for b in grp) / vol, 10) if vol > 0 else grp[0].wap
        count = sum(b.count for b in grp) if grp[0].count >= 0 else -1
        hi, lo = max(b.high for b in grp), min(b.low for b in grp)
        out.append(DailyBar(grp[0].day, grp[0].open, hi, lo, grp[-1].close, vol, wap, count))
    return out
