"""The seeded price model: one deterministic story for live quotes, prints and history."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.sim.market import (
    MODEL_ANCHOR,
    MODEL_EPOCH,
    Bar,
    DataUnavailable,
    MarketModel,
    black_scholes,
    group_daily,
    vwap,
)
from ibpilot.sim.refdata import ContractQuery, Instrument, ModelParams, RefData, Session

# ----- a small hand-written calendar (the Calendar protocol) ----------------------------
# name: (open day offset, open hh:mm, close hh:mm, liquid open, liquid close, weekends)
TEMPLATES = {
    "us_equity": (0, (4, 0), (20, 0), (9, 30), (16, 0), False),
    "us_index": (0, (9, 30), (16, 0), (9, 30), (16, 0), False),
    "cme": (-1, (17, 0), (16, 0), (8, 30), (15, 15), False),
    "fx": (-1, (17, 15), (17, 0), (17, 15), (17, 0), False),
    "h24": (-1, (0, 0), (0, 0), (0, 0), (0, 0), True),  # midnight to midnight, every day
}


@dataclass
class FakeCalendar:
    """Weekday sessions from fixed local-time templates; overnight sessions end on their day."""

    instruments: dict[int, Instrument] = field(default_factory=dict)

    def by_con_id(self, con_id: int) -> Instrument | None:
        return self.instruments.get(con_id)

    def session(self, inst: Instrument, day: date) -> Session | None:
        shift, op, cl, lop, lcl, weekends = TEMPLATES[inst.calendar]
        if day.weekday() >= 5 and not weekends:
            return None
        tz = ZoneInfo(inst.time_zone_id)

        def at(d: date, hm: tuple[int, int]) -> datetime:
            return datetime(d.year, d.month, d.day, *hm, tzinfo=tz).astimezone(UTC)

        first = day + timedelta(days=shift) if op >= cl else day
        liquid_day = first if lop >= lcl else day
        return Session(day, at(first, op), at(day, cl), at(liquid_day, lop), at(day, lcl))

    def sessions_between(self, inst: Instrument, start: datetime, end: datetime) -> list[Session]:
        out = []
        d = start.date() - timedelta(days=2)
        while d <= end.date() + timedelta(days=2):
            s = self.session(inst, d)
            if s is not None and s.close > start and s.open < end:
                out.append(s)
            d += timedelta(days=1)
        return out


AAPL = Instrument(
    265598, "AAPL", "STK", "SMART", "USD", primary_exchange="NASDAQ",
    model=ModelParams(price=180.0, vol=0.3, drift=0.05, daily_volume=50_000_000),
)  # fmt: skip
THIN = Instrument(
    1001, "THIN", "STK", "SMART", "USD",
    model=ModelParams(price=12.0, vol=0.4, daily_volume=200_000, spread_ticks=2),
)  # fmt: skip
SPX = Instrument(
    416904, "SPX", "IND", "CBOE", "USD", calendar="us_index",
    model=ModelParams(price=3230.0, vol=0.18, drift=0.07, daily_volume=0),
)  # fmt: skip
ES = Instrument(
    495512563, "ES", "FUT", "CME", "USD", min_tick=0.25, multiplier="50",
    time_zone_id="US/Central", calendar="cme", last_trade_date="20241220",
    model=ModelParams(price=0.0, driver_con_id=416904, carry=0.03, daily_volume=1_500_000),
)  # fmt: skip
EUR = Instrument(
    12087792, "EUR", "CASH", "IDEALPRO", "USD", min_tick=0.00005, calendar="fx",
    model=ModelParams(price=1.12, vol=0.07, spread_ticks=2),
)  # fmt: skip
CALL = Instrument(
    700001, "AAPL", "OPT", "SMART", "USD", strike=180.0, right="C", calendar="us_index",
    last_trade_date="20240621", multiplier="100",
    model=ModelParams(price=0.0, driver_con_id=265598, iv=0.28, daily_volume=20_000),
)  # fmt: skip
PUT = Instrument(
    700002, "AAPL", "OPT", "SMART", "USD", strike=180.0, right="P", calendar="us_index",
    last_trade_date="20240621", multiplier="100",
    model=ModelParams(price=0.0, driver_con_id=265598, iv=0.28, daily_volume=20_000),
)  # fmt: skip
ALL = (AAPL, THIN, SPX, ES, EUR, CALL, PUT)
CAL = FakeCalendar({i.con_id: i for i in ALL})
SEED = 7
NY = ZoneInfo("US/Eastern")


def et(y: int, mo: int, d: int, *hms: int) -> int:
    """Epoch of a US/Eastern wall-clock time."""
    h, mi, s = (*hms, 0, 0, 0)[:3]
    return int(datetime(y, mo, d, h, mi, s, tzinfo=NY).timestamp())


@pytest.fixture(scope="module")
def model() -> MarketModel:
    return MarketModel(CAL, SEED)


def on_tick(price: float, tick: float) -> bool:
    n = round(price / tick)
    return n >= 1 and price == round(n * tick, 10)


# ----- determinism ------------------------------------------------------------------------
def story(m: MarketModel, t: int) -> tuple[object, ...]:
    return (
        tuple(m.quote(i, t + k * 997) for i in ALL for k in range(5)),
        tuple(m.trades(AAPL, t, t + 600)),
        tuple(m.bars(ES, t - 3600, t, 300, "TRADES", False)),
        tuple(m.daily_bars(EUR, date(2024, 2, 26), date(2024, 3, 1), "MIDPOINT", False)),
    )


def test_same_seed_tells_the_same_story_in_two_models() -> None:
    t = et(2024, 3, 5, 11, 0)
    assert story(MarketModel(CAL, SEED), t) == story(MarketModel(CAL, SEED), t)


def test_a_model_reached_in_another_order_tells_the_same_story() -> None:
    late_first = MarketModel(CAL, SEED, chunk_cache=2, tape_cache=2)
    late_first.quote(AAPL, et(2026, 1, 6, 10))  # builds the chain forward first
    t = et(2021, 6, 1, 11, 0)
    assert story(late_first, t) == story(MarketModel(CAL, SEED), t)


def test_another_process_tells_the_same_story() -> None:
    code = (
        f"import sys, hashlib; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_market import *\n"
        "m = MarketModel(CAL, SEED)\n"
        "print(hashlib.sha256(repr(story(m, et(2024, 3, 5, 11))).encode()).hexdigest())"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    here = hashlib.sha256(repr(story(MarketModel(CAL, SEED), et(2024, 3, 5, 11))).encode())
    assert child.stdout.strip() == here.hexdigest()


def test_another_seed_tells_another_story() -> None:
    t = et(2024, 3, 5, 11, 0)
    a, b = MarketModel(CAL, SEED), MarketModel(CAL, SEED + 1)
    assert a.quote(AAPL, t) != b.quote(AAPL, t)
    assert a.trades(AAPL, t, t + 60) != b.trades(AAPL, t, t + 60)


# ----- quotes -----------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    inst=st.sampled_from(ALL),
    t=st.integers(min_value=MODEL_EPOCH, max_value=et(2026, 12, 31)),
)
def test_quotes_are_on_the_tick_grid_and_never_crossed(inst: Instrument, t: int) -> None:
    q = MarketModel(CAL, SEED).quote(inst, t) if t % 7 == 0 else MODEL.quote(inst, t)
    tick = inst.min_tick
    assert on_tick(q.bid, tick)
    assert on_tick(q.ask, tick)
    assert q.bid >= tick
    assert q.bid < q.ask
    assert round((q.ask - q.bid) / tick) == inst.model.spread_ticks
    assert q.bid <= q.midpoint <= q.ask
    if not math.isnan(q.last):
        assert q.low <= q.last <= q.high
        assert on_tick(q.last, tick)


MODEL = MarketModel(CAL, SEED)


def test_the_quote_is_built_around_the_fair_value(model: MarketModel) -> None:
    t = et(2024, 3, 5, 10, 0, 7)
    q, fair = model.quote(AAPL, t), model.mid(AAPL, t)
    assert q.bid <= fair <= q.ask


def test_session_statistics_come_from_the_prints(model: MarketModel) -> None:
    day = date(2024, 3, 5)
    s = CAL.session(AAPL, day)
    assert s is not None
    op, t = int(s.open.timestamp()), et(2024, 3, 5, 12, 0)
    prints = model.trades(AAPL, op, t + 1)
    q = model.quote(AAPL, t)
    assert q.is_open
    assert q.volume == sum(p.size for p in prints)
    assert (q.last, q.last_size, q.last_time) == (
        prints[-1].price,
        prints[-1].size,
        prints[-1].time,
    )
    assert q.open == prints[0].price
    assert q.high == max(p.price for p in prints)
    assert q.low == min(p.price for p in prints)
    prev = CAL.session(AAPL, date(2024, 3, 4))
    assert prev is not None
    last_before = model.trades(AAPL, int(prev.open.timestamp()), int(prev.close.timestamp()))[-1]
    assert q.close == last_before.price


def test_before_the_first_print_the_session_has_no_last(model: MarketModel) -> None:
    s = CAL.session(THIN, date(2024, 3, 5))
    assert s is not None
    op = int(s.open.timestamp())
    first = model.trades(THIN, op, op + 3600)[0]
    q = model.quote(THIN, first.time - 1) if first.time > op else None
    if q is not None:
        assert math.isnan(q.last)
        assert q.volume == 0
        assert q.last_time == 0
        assert math.isnan(q.high)


def test_closed_market_freezes_the_quote_at_the_close(model: MarketModel) -> None:
    close = et(2024, 3, 8, 20, 0)  # Friday 20:00 ET, end of extended hours
    at_close = model.quote(AAPL, close - 1)
    for t in (close, close + 3600, et(2024, 3, 9, 12), et(2024, 3, 11, 3, 59, 59)):
        q = model.quote(AAPL, t)
        assert not q.is_open
        assert q.time == t
        assert (q.bid, q.ask, q.bid_size, q.ask_size, q.last, q.volume, q.high, q.close) == (
            at_close.bid, at_close.ask, at_close.bid_size, at_close.ask_size,
            at_close.last, at_close.volume, at_close.high, at_close.close,
        )  # fmt: skip
    assert model.trades(AAPL, close, et(2024, 3, 11, 4)) == []
    assert model.quote(AAPL, et(2024, 3, 11, 4)).is_open


def test_the_path_keeps_moving_while_closed_so_the_open_gaps(model: MarketModel) -> None:
    assert model.mid(AAPL, et(2024, 3, 9, 12)) != model.mid(AAPL, et(2024, 3, 8, 20))
    monday = model.quote(AAPL, et(2024, 3, 11, 4))
    assert monday.bid != model.quote(AAPL, et(2024, 3, 8, 20)).bid


def test_the_path_is_continuous_across_days_and_chain_blocks(model: MarketModel) -> None:
    for day in (MODEL_EPOCH // 86_400 + 256, MODEL_EPOCH // 86_400 + 1000):
        t = day * 86_400
        before, after = model.mid(AAPL, t - 1), model.mid(AAPL, t)
        assert abs(math.log(after / before)) < 0.002


def test_the_reference_price_holds_at_the_anchor() -> None:
    assert MODEL.mid(AAPL, MODEL_ANCHOR) == pytest.approx(180.0, rel=1e-12)  # the default
    anchor = et(2024, 1, 1)
    pinned = MarketModel(CAL, SEED, anchor=anchor)
    assert pinned.mid(AAPL, anchor // 86_400 * 86_400) == pytest.approx(180.0, rel=1e-12)
    ratio = pinned.mid(AAPL, MODEL_EPOCH) / MODEL.mid(AAPL, MODEL_EPOCH)
    t = et(2024, 3, 5, 10)
    assert pinned.mid(AAPL, t) / MODEL.mid(AAPL, t) == pytest.approx(ratio, rel=1e-9)


def test_daily_returns_have_the_configured_volatility(model: MarketModel) -> None:
    days = np.arange(MODEL_EPOCH // 86_400, MODEL_EPOCH // 86_400 + 1500)
    logs = np.log([model._fair(AAPL, int(d) * 86_400, int(d) * 86_400 + 1)[0] for d in days])
    vol = float(np.std(np.diff(logs)) * math.sqrt(365.25))
    assert 0.25 < vol < 0.35  # AAPL vol is 0.3


# ----- trades -----------------------------------------------------------------------------
def test_trades_happen_only_in_trading_hours_at_the_bid_or_ask(model: MarketModel) -> None:
    start, end = et(2024, 3, 4, 0), et(2024, 3, 6, 0)
    prints = model.trades(AAPL, start, end)
    assert prints == sorted(prints, key=lambda p: p.time)
    for p in prints[::50]:
        local = datetime.fromtimestamp(p.time, NY)
        assert (4, 0) <= (local.hour, local.minute) < (20, 0)
        q = model.quote(AAPL, p.time)
        assert p.price in (q.bid, q.ask)
        assert p.size % 100 == 0
        assert p.size > 0


def test_liquid_hours_volume_is_about_the_daily_volume(model: MarketModel) -> None:
    for inst, day in ((AAPL, date(2024, 3, 5)), (ES, date(2024, 3, 6)), (THIN, date(2024, 3, 7))):
        (bar,) = model.daily_bars(inst, day, day, "TRADES", True)
        assert 0.75 < bar.volume / inst.model.daily_volume < 1.25


def test_index_prints_its_value_every_second_without_size(model: MarketModel) -> None:
    start = et(2024, 3, 5, 10)
    prints = model.trades(SPX, start, start + 60)
    assert [p.time for p in prints] == list(range(start, start + 60))
    assert all(p.size == 0 for p in prints)
    (bar,) = model.bars(SPX, start, start + 60, 60, "TRADES", True)
    assert (bar.volume, bar.wap, bar.count) == (0, 0.0, 60)
    with pytest.raises(DataUnavailable):
        model.bars(SPX, start, start + 60, 60, "MIDPOINT", True)


def test_forex_has_quotes_but_no_trades(model: MarketModel) -> None:
    start = et(2024, 3, 5, 10)
    assert model.trades(EUR, start, start + 3600) == []
    q = model.quote(EUR, start)
    assert math.isnan(q.last)
    assert q.volume == 0
    assert not math.isnan(q.close)
    assert q.bid_size % 100_000 == 0
    assert 100_000 <= q.bid_size <= 5_000_000
    with pytest.raises(DataUnavailable) as info:
        model.bars(EUR, start, start + 60, 60, "TRADES", False)
    assert info.value.what == "TRADES"
    assert info.value.sec_type == "CASH"
    with pytest.raises(DataUnavailable):
        model.head_timestamp(EUR, "TRADES", False)
    assert model.bars(EUR, start, start + 60, 60, "MIDPOINT", False)


def test_unknown_what_to_show_is_refused(model: MarketModel) -> None:
    with pytest.raises(ValueError, match="not modelled"):
        model.bars(AAPL, 0, 1, 60, "BID_ASK", False)


# ----- bars are aggregations of the live story --------------------------------------------
def buckets(times: Sequence[int], size: int, tz: ZoneInfo) -> dict[int, list[int]]:
    """Group seconds by local wall-clock bucket, keyed by their first second."""
    out: dict[int, list[int]] = {}
    key_first: dict[int, int] = {}
    for t in times:
        off = datetime.fromtimestamp(t, tz).utcoffset()
        assert off is not None
        key = (t + int(off.total_seconds())) // size
        out.setdefault(key_first.setdefault(key, t), []).append(t)
    return out


Row = tuple[float, float, float, float, int, float, int]


def open_seconds(m: MarketModel, inst: Instrument, start: int, end: int, rth: bool) -> list[int]:
    """The seconds of ``[start, end)`` inside trading hours (liquid hours with ``rth``)."""
    return [
        t for t in range(start, end)
        if m.quote(inst, t).is_open and (not rth or in_liquid_hours(inst, t))
    ]  # fmt: skip


def expect_trade_bars(
    m: MarketModel, inst: Instrument, start: int, end: int, size: int, rth: bool = False
) -> list[Row]:
    """TRADES bars from the prints and quotes: every bucket of open seconds holds its prints,
    or is flat at the last price (Quote.last, else Quote.close) with volume 0 and count 0."""
    by_time = {p.time: p for p in m.trades(inst, start, end)}
    rows: list[Row] = []
    seconds = open_seconds(m, inst, start, end, rth)
    for first, group in buckets(seconds, size, ZoneInfo(inst.time_zone_id)).items():
        ps = [by_time[t] for t in group if t in by_time]
        if ps:
            prices = [p.price for p in ps]
            rows.append((ps[0].price, max(prices), min(prices), ps[-1].price,
                         sum(p.size for p in ps), vwap(ps, inst.min_tick), len(ps)))  # fmt: skip
            continue
        q = m.quote(inst, first)
        price = q.close if math.isnan(q.last) else q.last
        if not math.isnan(price):
            rows.append((price, price, price, price, 0, price, 0))
    return rows


def rows(bars: list[Bar]) -> list[Row]:
    return [(b.open, b.high, b.low, b.close, b.volume, b.wap, b.count) for b in bars]


@pytest.mark.parametrize(("inst", "size"), [(AAPL, 60), (AAPL, 5), (THIN, 300), (ES, 3600)])
def test_trade_bars_are_exactly_the_aggregated_prints(
    model: MarketModel, inst: Instrument, size: int
) -> None:
    start, end = et(2024, 3, 5, 9, 0), et(2024, 3, 5, 11, 0)
    bars = model.bars(inst, start, end, size, "TRADES", False)
    assert rows(bars) == expect_trade_bars(model, inst, start, end, size)
    assert [b.time for b in bars] == list(range(start, end, size))  # one bar per bucket


@pytest.mark.parametrize("what", ["MIDPOINT", "BID", "ASK"])
def test_quote_bars_are_exactly_the_aggregated_quotes(model: MarketModel, what: str) -> None:
    start, end = et(2024, 3, 5, 15, 50), et(2024, 3, 5, 16, 10)
    for inst in (AAPL, EUR, CALL):
        bars = model.bars(inst, start, end, 60, what, False)
        times = [t for t in range(start, end) if model.quote(inst, t).is_open]
        expected = []
        for group in buckets(times, 60, NY).values():
            qs = [model.quote(inst, t) for t in group]
            vals = [q.bid if what == "BID" else q.ask if what == "ASK" else q.midpoint for q in qs]
            expected.append((group[0], vals[0], max(vals), min(vals), vals[-1], -1, -1.0, -1))
        assert [(b.time, b.open, b.high, b.low, b.close, b.volume, b.wap, b.count)
                for b in bars] == expected  # fmt: skip


@settings(max_examples=25, deadline=None)
@given(
    inst=st.sampled_from((AAPL, THIN, ES, EUR, CALL)),
    start=st.integers(min_value=et(2024, 1, 2), max_value=et(2024, 6, 20)),
    size=st.sampled_from((5, 60, 300, 900)),
    what=st.sampled_from(("TRADES", "MIDPOINT", "BID", "ASK")),
    use_rth=st.booleans(),
)
def test_any_window_of_bars_is_the_aggregated_live_story(
    inst: Instrument, start: int, size: int, what: str, use_rth: bool
) -> None:
    if inst.sec_type == "CASH" and what == "TRADES":
        return
    end = start + 3600
    bars = MODEL.bars(inst, start, end, size, what, use_rth)
    tz = ZoneInfo(inst.time_zone_id)
    if what == "TRADES":
        assert rows(bars) == expect_trade_bars(MODEL, inst, start, end, size, use_rth)
        return
    expected = []
    for group in buckets(open_seconds(MODEL, inst, start, end, use_rth), size, tz).values():
        qs = [MODEL.quote(inst, t) for t in group]
        vals = [q.bid if what == "BID" else q.ask if what == "ASK" else q.midpoint for q in qs]
        expected.append((vals[0], max(vals), min(vals), vals[-1]))
    assert [(b.open, b.high, b.low, b.close) for b in bars] == expected


def in_liquid_hours(inst: Instrument, t: int) -> bool:
    day = datetime.fromtimestamp(t, ZoneInfo(inst.time_zone_id)).date()
    for d in (day, day + timedelta(days=1)):
        s = CAL.session(inst, d)
        if s is not None and s.liquid_open.timestamp() <= t < s.liquid_close.timestamp():
            return True
    return False


def test_rth_bars_are_clipped_to_liquid_hours(model: MarketModel) -> None:
    start, end = et(2024, 3, 5, 0), et(2024, 3, 6, 0)
    rth = model.bars(AAPL, start, end, 3600, "TRADES", True)
    assert [datetime.fromtimestamp(b.time, NY).strftime("%H:%M") for b in rth] == [
        "09:30", "10:00", "11:00", "12:00", "13:00", "14:00", "15:00",
    ]  # fmt: skip
    first = model.trades(AAPL, et(2024, 3, 5, 9, 30), et(2024, 3, 5, 10))
    assert rth[0].volume == sum(p.size for p in first)
    allday = model.bars(AAPL, start, end, 3600, "TRADES", False)
    assert datetime.fromtimestamp(allday[0].time, NY).hour == 4
    assert datetime.fromtimestamp(allday[-1].time, NY).hour == 19
    half = model.bars(AAPL, start, end, 1800, "MIDPOINT", True)
    assert len(half) == 13
    assert datetime.fromtimestamp(half[0].time, NY).minute == 30


def test_a_partial_window_gives_partial_bars_with_aligned_times(model: MarketModel) -> None:
    start, now = et(2024, 3, 5, 10, 0, 30), et(2024, 3, 5, 10, 30, 15)
    bars = model.bars(AAPL, start, now, 60, "TRADES", True)
    first, last = bars[0], bars[-1]
    assert first.time == et(2024, 3, 5, 10)  # the bucket start, before the window start
    assert first.volume == sum(p.size for p in model.trades(AAPL, start, et(2024, 3, 5, 10, 1)))
    assert last.time == et(2024, 3, 5, 10, 30)
    assert last.volume == sum(p.size for p in model.trades(AAPL, last.time, now))


def test_bars_before_the_model_epoch_are_empty(model: MarketModel) -> None:
    assert model.bars(AAPL, MODEL_EPOCH - 10 * 86_400, MODEL_EPOCH, 3600, "TRADES", False) == []
    # the fake calendar trades on 2020-01-01; the previous close makes a bar at the open
    assert model.head_timestamp(AAPL, "TRADES", True) == et(2020, 1, 1, 9, 30)
    # with extended hours: the 2019-12-31 session runs to 20:00 ET, past the epoch
    assert model.head_timestamp(AAPL, "TRADES", False) == MODEL_EPOCH
    assert model.head_timestamp(EUR, "MIDPOINT", False) == int(
        datetime(2020, 1, 1, 0, tzinfo=UTC).timestamp()
    )  # in the session that opened on 2019-12-31 17:15 ET


# ----- quiet buckets: flat TRADES bars ----------------------------------------------------
def test_a_quiet_bucket_is_a_flat_bar_at_the_last_price(model: MarketModel) -> None:
    start, end = et(2024, 3, 5, 10), et(2024, 3, 5, 11)
    bars = model.bars(THIN, start, end, 5, "TRADES", True)
    assert [b.time for b in bars] == list(range(start, end, 5))  # a bar every 5 seconds
    quiet = [(before, bar) for before, bar in pairwise(bars) if bar.count == 0]
    assert len(quiet) > 100  # THIN prints about every 12 seconds
    for before, bar in quiet:
        price = before.close
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume, bar.wap) == (
            price, price, price, price, 0, price,
        )  # fmt: skip
        assert model.quote(THIN, bar.time).last == price
        assert model.trades(THIN, bar.time, bar.time + 5) == []


def test_before_the_first_print_of_a_session_bars_are_flat_at_the_previous_close(
    model: MarketModel,
) -> None:
    open_ = et(2024, 3, 5, 4)
    first = model.trades(THIN, open_, open_ + 3600)[0]
    assert first.time >= open_ + 10  # a quiet pre-market start
    bars = model.bars(THIN, open_, first.time, 5, "TRADES", False)
    prev = CAL.session(THIN, date(2024, 3, 4))
    assert prev is not None
    last = model.trades(THIN, int(prev.open.timestamp()), int(prev.close.timestamp()))[-1]
    assert model.quote(THIN, open_).close == last.price
    assert bars[0].time == open_
    assert {
        (b.open, b.close, b.volume, b.wap, b.count) for b in bars if b.time + 5 <= first.time
    } == {(last.price, last.price, 0, last.price, 0)}


@dataclass
class ListedFrom(FakeCalendar):
    """The fake calendar for an instrument that starts trading on ``first_day``."""

    first_day: date = date(2020, 3, 2)

    def session(self, inst: Instrument, day: date) -> Session | None:
        return None if day < self.first_day else super().session(inst, day)


def test_a_new_listing_has_no_trade_bars_before_its_first_print() -> None:
    m = MarketModel(ListedFrom({THIN.con_id: THIN}), SEED)
    open_ = et(2020, 3, 2, 4)
    first = m.trades(THIN, open_, open_ + 3600)[0]
    bars = m.bars(THIN, open_, open_ + 3600, 5, "TRADES", False)
    assert bars[0].time == first.time - first.time % 5
    assert bars[0].count > 0
    assert m.head_timestamp(THIN, "TRADES", False) == first.time
    assert m.head_timestamp(THIN, "TRADES", True) == et(2020, 3, 2, 9, 30)  # pre-market printed
    assert m.head_timestamp(THIN, "MIDPOINT", False) == open_


@pytest.mark.parametrize(
    ("inst", "start", "use_rth"),
    [
        (THIN, et(2024, 3, 5, 9, 25), False),
        (THIN, et(2024, 3, 5, 9, 25), True),  # the first RTH bars carry the pre-market price
        (AAPL, et(2024, 3, 5, 19, 55), False),  # through the close
        (ES, et(2024, 3, 5, 16, 58), False),  # through the CME daily break and reopen
    ],
)
def test_bars_asked_one_bucket_at_a_time_are_the_history(
    inst: Instrument, start: int, use_rth: bool
) -> None:
    end = start + 75 * 60
    history = MODEL.bars(inst, start, end, 5, "TRADES", use_rth)
    live = MarketModel(CAL, SEED)  # another process, as the live feed asks: bucket by bucket
    one_by_one = [
        b for t in range(start, end, 5) for b in live.bars(inst, t, t + 5, 5, "TRADES", use_rth)
    ]
    assert one_by_one == history
    assert any(b.count == 0 for b in history)


def test_daily_bars_aggregate_the_session(model: MarketModel) -> None:
    day = date(2024, 3, 5)
    s = CAL.session(AAPL, day)
    assert s is not None
    for use_rth, (lo, hi) in ((True, (s.liquid_open, s.liquid_close)), (False, (s.open, s.close))):
        (bar,) = model.daily_bars(AAPL, day, day, "TRADES", use_rth)
        prints = model.trades(AAPL, int(lo.timestamp()), int(hi.timestamp()))
        prices = [p.price for p in prints]
        assert (bar.day, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.count) == (
            day, prices[0], max(prices), min(prices), prices[-1],
            sum(p.size for p in prints), len(prints),
        )  # fmt: skip
        assert bar.wap == vwap(prints, AAPL.min_tick)
    week = model.daily_bars(AAPL, date(2024, 3, 2), date(2024, 3, 10), "MIDPOINT", True)
    assert [b.day.day for b in week] == [4, 5, 6, 7, 8]
    noon = et(2024, 3, 5, 12)
    (partial,) = model.daily_bars(AAPL, day, day, "TRADES", True, end=noon)
    assert partial.volume == sum(p.size for p in model.trades(AAPL, et(2024, 3, 5, 9, 30), noon))


def test_daily_bars_group_into_weeks_and_months(model: MarketModel) -> None:
    days = model.daily_bars(AAPL, date(2024, 1, 1), date(2024, 3, 31), "TRADES", True)
    weeks = group_daily(days, "week")
    months = group_daily(days, "month")
    assert [m.day for m in months] == [date(2024, 1, 1), date(2024, 2, 1), date(2024, 3, 1)]
    assert sum(w.volume for w in weeks) == sum(d.volume for d in days)
    assert months[0].high == max(d.high for d in days if d.day.month == 1)
    with pytest.raises(ValueError, match="unit"):
        group_daily(days, "year")


# ----- derived instruments ----------------------------------------------------------------
def test_futures_follow_the_index_with_carry(model: MarketModel) -> None:
    for t in (et(2024, 3, 5, 12), et(2024, 3, 5, 22), et(2024, 9, 3, 3)):  # day and night
        years = (et(2024, 12, 20, 16) - t) / (365.25 * 86_400)
        expect = model.mid(SPX, t) * math.exp(0.03 * years)
        assert model.mid(ES, t) == pytest.approx(expect, rel=1e-12)
        q = model.quote(ES, t)
        assert q.bid <= model.mid(ES, t) <= q.ask
        assert q.ask - q.bid == 0.25
    assert model.mid(ES, et(2025, 1, 6, 12)) == pytest.approx(model.mid(SPX, et(2025, 1, 6, 12)))


def test_options_are_priced_by_black_scholes_with_put_call_parity(model: MarketModel) -> None:
    for t in (et(2024, 3, 5, 10), et(2024, 5, 1, 15, 30), et(2024, 6, 21, 15, 59)):
        s, years = model.mid(AAPL, t), (et(2024, 6, 21, 16) - t) / (365.25 * 86_400)
        call, put = model.quote(CALL, t), model.quote(PUT, t)
        parity = s - 180.0 * math.exp(-0.04 * years)
        assert abs((call.midpoint - put.midpoint) - parity) <= 0.02 + 1e-9
        bs = black_scholes(np.array([s]), 180.0, np.array([years]), 0.28, "C")[0]
        assert call.bid <= bs + 0.01
        assert bs <= call.ask
    assert call.bid >= 0.01
    assert put.bid >= 0.01


def test_expired_options_are_worth_their_intrinsic_value(model: MarketModel) -> None:
    after = et(2024, 6, 24, 12)  # the Monday after expiry: no session, path still defined
    intrinsic = max(model.mid(AAPL, after) - 180.0, 0.0)
    assert model.mid(CALL, after) == pytest.approx(intrinsic)


# ----- local time and DST -----------------------------------------------------------------
H24 = Instrument(
    1002, "H24", "STK", "SMART", "USD", calendar="h24",
    model=ModelParams(price=50.0, daily_volume=2_000_000),
)  # fmt: skip


def local_hours(bars: list[Bar], tz: ZoneInfo) -> list[str]:
    return [datetime.fromtimestamp(b.time, tz).strftime("%H:%M") for b in bars]


def test_bars_align_to_local_wall_clock_across_dst() -> None:
    m = MarketModel(FakeCalendar({H24.con_id: H24}), SEED)
    spring = m.bars(H24, et(2024, 3, 10), et(2024, 3, 11), 3600, "MIDPOINT", False)
    assert len(spring) == 23
    assert "02:00" not in local_hours(spring, NY)
    assert local_hours(spring, NY)[:3] == ["00:00", "01:00", "03:00"]
    eight = m.bars(H24, et(2024, 3, 10), et(2024, 3, 11), 8 * 3600, "MIDPOINT", False)
    assert local_hours(eight, NY) == ["00:00", "08:00", "16:00"]
    assert eight[1].time - eight[0].time == 7 * 3600  # the short night
    fall = m.bars(H24, et(2024, 11, 3), et(2024, 11, 4), 3600, "TRADES", False)
    assert local_hours(fall, NY)[:3] == ["00:00", "01:00", "02:00"]
    assert fall[2].time - fall[1].time == 2 * 3600  # both 01:00 hours in one bar
    central = ZoneInfo("US/Central")
    es = MODEL.bars(ES, et(2024, 3, 10, 12), et(2024, 3, 11, 12), 3600, "TRADES", False)
    assert local_hours(es, central)[0] == "17:00"
    assert all(h.endswith(":00") for h in local_hours(es, central))


# ----- the real reference data ------------------------------------------------------------
def test_the_model_runs_on_the_real_reference_data() -> None:
    try:
        ref = RefData.load()
    except NotImplementedError:
        pytest.skip("RefData is not implemented yet")
    m = MarketModel(ref, SEED)
    t = et(2026, 3, 3, 11)
    for sym, sec in (("AAPL", "STK"), ("SPY", "STK"), ("SPX", "IND"), ("EUR", "CASH")):
        (inst, *_) = ref.resolve(ContractQuery(symbol=sym, sec_type=sec), date(2026, 3, 3))
        q = m.quote(inst, t)
        assert q.bid < q.ask, inst
        assert on_tick(q.bid, inst.min_tick), inst
    (es, *_) = ref.resolve(ContractQuery(symbol="ES", sec_type="FUT"), date(2026, 3, 3))
    spot = ref.by_con_id(es.model.driver_con_id)
    assert spot is not None
    assert m.mid(es, t) > m.mid(spot, t) > 0  # positive carry
    # across the CME daily break (16:00-17:00 CT) and the FX break (17:00-17:15 ET)
    start, end = et(2026, 3, 3, 16), et(2026, 3, 3, 19)
    assert rows(m.bars(es, start, end, 1800, "TRADES", False)) == expect_trade_bars(
        m, es, start, end, 1800
    )
    (eur, *_) = ref.resolve(ContractQuery(symbol="EUR", sec_type="CASH"), date(2026, 3, 3))
    hours = [datetime.fromtimestamp(b.time, NY).strftime("%H:%M")
             for b in m.bars(eur, start, end, 900, "MIDPOINT", False)]  # fmt: skip
    assert "17:00" not in hours


def test_history_starts_on_the_first_trading_day_of_2020() -> None:
    ref = RefData.load()
    m = MarketModel(ref, SEED)
    on = date(2026, 3, 3)
    (aapl,) = ref.resolve(ContractQuery(symbol="AAPL", sec_type="STK"), on)
    (spx,) = ref.resolve(ContractQuery(symbol="SPX", sec_type="IND"), on)
    assert ref.session(aapl, date(2020, 1, 1)) is None  # New Year's Day
    assert m.head_timestamp(aapl, "TRADES", True) == et(2020, 1, 2, 9, 30)
    assert m.head_timestamp(aapl, "MIDPOINT", True) == et(2020, 1, 2, 9, 30)
    # extended hours of 2019-12-31 run to 20:00 ET, an hour past the epoch
    assert m.head_timestamp(aapl, "TRADES", False) == MODEL_EPOCH
    assert m.head_timestamp(spx, "TRADES", True) == et(2020, 1, 2, 9, 30)
