"""The order engine against the real price model: IB's order lifecycle, second by second.

Every test places orders on real reference data and a real seeded ``MarketModel`` and
reads the market it trades against from the same model (``quote()``, ``trades()``), so
the expected prices and times come from the market, not from the engine.  The day is
Monday 2026-03-02 (US/Eastern, EST): pre-market from 04:00, liquid 09:30-16:00, extended
until 20:00.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibpilot.sim._triggers import round_tick
from ibpilot.sim.market import MarketModel, Quote, Trade
from ibpilot.sim.matching import OrderEngine
from ibpilot.sim.orders import (
    TERMINAL,
    TRANSITIONS,
    Execution,
    Fill,
    IllegalTransition,
    OrderError,
    OrderEvent,
    OrderSpec,
    OrderStatus,
    OrderTrigger,
    OrderUpdate,
    WhatIf,
    WorkingOrder,
    next_status,
    transitions_markdown,
)
from ibpilot.sim.refdata import ContractQuery, Instrument, RefData

ET = ZoneInfo("America/New_York")
S = OrderStatus
DAY0 = date(2026, 3, 2)
AAPL, EURUSD, SPX = 265598, 12087792, 416904
BIG_STEP = 10**7  # tests advance whole days in one call
# The seed-1 path of AAPL that day: 212.45 at 10:00 rising to 213.49 at 11:00, then down to
# 212.65 by 12:00.  "Down" scenarios start at 11:00, "up" ones at 10:00.
UP, DOWN = (10, 0), (11, 0)


def at(h: int, m: int = 0, s: int = 0, day: int = 2) -> int:
    return int(datetime(2026, 3, day, h, m, s, tzinfo=ET).timestamp())


@pytest.fixture(scope="module")
def refdata() -> RefData:
    return RefData.load()


@pytest.fixture(scope="module")
def market(refdata: RefData) -> MarketModel:
    return MarketModel(refdata, 1)


def inst_of(refdata: RefData, con_id: int) -> Instrument:
    inst = refdata.by_con_id(con_id)
    assert inst is not None
    return inst


@dataclass
class Desk:
    """An engine plus the events it returned, with small helpers to read them."""

    engine: OrderEngine
    market: MarketModel
    refdata: RefData
    events: list[OrderEvent] = field(default_factory=list)
    next_id: int = 1

    def inst(self, con_id: int = AAPL) -> Instrument:
        return inst_of(self.refdata, con_id)

    def place(
        self, now: int, action: str = "BUY", qty: int | str = 100, typ: str = "MKT",
        con_id: int = AAPL, client: int = 1, order_id: int | None = None, **kw: Any,
    ) -> int:  # fmt: skip
        oid = self.next_id if order_id is None else order_id
        self.next_id = max(self.next_id, oid + 1)
        spec = OrderSpec(oid, client, action, Decimal(qty), typ, **kw)
        self.events += self.engine.place(spec, self.inst(con_id), now)
        return oid

    def modify(self, now: int, oid: int, client: int = 1, **changes: Any) -> list[OrderEvent]:
        o = self.engine.order(client, oid)
        assert o is not None
        got = self.engine.place(replace(o.spec, **changes), o.inst, now)
        self.events += got
        return got

    def advance(self, now: int) -> list[OrderEvent]:
        got = self.engine.advance(now)
        self.events += got
        return got

    def cancel(self, now: int, oid: int, client: int = 1) -> list[OrderEvent]:
        got = self.engine.cancel(oid, client, now)
        self.events += got
        return got

    def statuses(self, oid: int, client: int = 1) -> list[OrderStatus]:
        out: list[OrderStatus] = []
        for e in self.events:
            if (
                isinstance(e, OrderUpdate)
                and (e.order.client_id, e.order.order_id)
                == (
                    client,
                    oid,
                )
                and (not out or out[-1] != e.order.status)
            ):
                out.append(e.order.status)
        return out

    def fills(self, oid: int, client: int = 1) -> list[Execution]:
        return [
            e.execution
            for e in self.events
            if isinstance(e, Fill)
            and (e.execution.client_id, e.execution.order_id) == (client, oid)
        ]

    def errors(self, oid: int | None = None) -> list[tuple[int, str]]:
        return [
            (e.code, e.text)
            for e in self.events
            if isinstance(e, OrderError) and (oid is None or e.order_id == oid)
        ]

    def order(self, oid: int, client: int = 1) -> WorkingOrder:
        o = self.engine.order(client, oid)
        assert o is not None
        return o

    def quote(self, t: int, con_id: int = AAPL) -> Quote:
        return self.market.quote(self.inst(con_id), t)


@pytest.fixture
def desk(refdata: RefData, market: MarketModel) -> Desk:
    eng = OrderEngine(refdata, market, max_step=BIG_STEP)
    eng.advance(at(9, 0))
    return Desk(eng, market, refdata)


def trades_by_second(
    market: MarketModel, inst: Instrument, a: int, b: int
) -> dict[int, list[Trade]]:
    out: dict[int, list[Trade]] = {}
    for tr in market.trades(inst, a, b):
        out.setdefault(tr.time, []).append(tr)
    return out


# ----- market orders and displayed size ---------------------------------------------------


def test_market_order_before_the_open_is_presubmitted_then_fills_at_the_ask_at_the_open(
    desk: Desk,
) -> None:
    oid = desk.place(at(9, 25), "BUY", 100, "MKT")
    assert desk.statuses(oid) == [S.PRE_SUBMITTED]
    desk.advance(at(9, 31))
    open_quote = desk.quote(at(9, 30))
    assert desk.statuses(oid) == [S.PRE_SUBMITTED, S.SUBMITTED, S.FILLED]
    (ex,) = desk.fills(oid)
    assert (ex.time, ex.price, ex.side, ex.shares) == (
        at(9, 30),
        open_quote.ask,
        "BOT",
        Decimal(100),
    )
    assert ex.commission == 1.0
    assert ex.realized_pnl is None


def test_sell_market_order_fills_at_the_bid_immediately(desk: Desk) -> None:
    t = at(10, 0)
    oid = desk.place(t, "SELL", 100, "MKT")
    (ex,) = desk.fills(oid)
    assert (ex.time, ex.price, ex.side) == (t, desk.quote(t).bid, "SLD")
    assert desk.statuses(oid) == [S.SUBMITTED, S.FILLED]


def test_a_large_market_order_fills_in_parts_bounded_by_the_displayed_size(desk: Desk) -> None:
    t = at(10, 0)
    oid = desk.place(t, "BUY", 8_000, "MKT")
    desk.advance(t + 120)
    fills = desk.fills(oid)
    assert len(fills) > 1
    assert sum(f.shares for f in fills) == 8_000
    for f in fills:  # each second takes at most what the ask shows, at the ask
        q = desk.quote(f.time)
        assert f.price == q.ask
        assert f.shares <= q.ask_size
    assert fills[0].time == t
    assert fills[0].shares == desk.quote(t).ask_size
    assert [f.cum_qty for f in fills] == sorted(f.cum_qty for f in fills)
    o = desk.order(oid)
    assert o.status == S.FILLED
    assert o.remaining == 0
    vwap = sum(f.shares * Decimal(repr(f.price)) for f in fills) / 8_000
    assert o.avg_fill_price == pytest.approx(float(vwap), abs=1e-9)
    partial = [e.order for e in desk.events if isinstance(e, OrderUpdate)]
    assert any(p.status == S.SUBMITTED and 0 < p.filled < 8_000 for p in partial)


def test_two_orders_in_the_same_second_share_the_displayed_size(desk: Desk) -> None:
    t = at(10, 0)
    size = desk.quote(t).ask_size
    a = desk.place(t, "BUY", size, "MKT")
    b = desk.place(t, "BUY", 100, "MKT")
    assert sum(f.shares for f in desk.fills(a)) == size
    assert desk.fills(b) == []  # nothing left at the ask this second
    desk.advance(t + 1)
    assert desk.fills(b)[0].time == t + 1


# ----- limit orders ------------------------------------------------------------------------


def test_a_marketable_limit_fills_at_the_ask_not_at_its_limit(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    oid = desk.place(t, "BUY", 100, "LMT", lmt_price=round(q.ask + 0.50, 2))
    (ex,) = desk.fills(oid)
    assert ex.price == q.ask


def test_a_resting_buy_limit_fills_at_its_price_when_the_market_trades_through(
    desk: Desk,
) -> None:
    t = at(*DOWN)
    inst = desk.inst()
    limit = round(desk.quote(t).bid - 0.10, 2)
    oid = desk.place(t, "BUY", 100, "LMT", lmt_price=limit)
    assert desk.statuses(oid) == [S.SUBMITTED]
    assert not desk.fills(oid)
    prints = trades_by_second(desk.market, inst, t + 1, at(16, 0))
    expected = None
    for s in range(t + 1, at(16, 0)):
        if desk.quote(s).ask <= limit:
            expected = (s, desk.quote(s).ask)
            break
        if any(tr.price <= limit for tr in prints.get(s, [])):
            expected = (s, limit)
            break
    assert expected is not None, "the model should reach the limit this day"
    desk.advance(at(16, 0))
    first = desk.fills(oid)[0]
    assert (first.time, first.price) == expected
    assert first.price <= limit


def test_a_limit_fill_from_prints_is_bounded_by_the_print_sizes(desk: Desk) -> None:
    t = at(*DOWN)
    inst = desk.inst()
    limit = round(desk.quote(t).bid - 0.05, 2)
    oid = desk.place(t, "BUY", 4_000, "LMT", lmt_price=limit)
    desk.advance(t + 1800)
    prints = trades_by_second(desk.market, inst, t + 1, t + 1801)
    assert any(f.price == limit for f in desk.fills(oid))
    for f in desk.fills(oid):
        if f.price == limit and desk.quote(f.time).ask > limit:
            through = sum(tr.size for tr in prints.get(f.time, []) if tr.price <= limit)
            assert 0 < f.shares <= through


# ----- simulated types ---------------------------------------------------------------------


def _first_print(prints: dict[int, list[Trade]], a: int, b: int, hit: Any) -> int | None:
    for s in range(a, b):
        if any(hit(tr.price) for tr in prints.get(s, [])):
            return s
    return None


def test_a_sell_stop_waits_presubmitted_and_triggers_on_a_print_at_or_below_it(
    desk: Desk,
) -> None:
    t = at(*DOWN)
    inst = desk.inst()
    stop = round(desk.quote(t).last - 0.15, 2)
    oid = desk.place(t, "SELL", 100, "STP", aux_price=stop)
    assert desk.statuses(oid) == [S.PRE_SUBMITTED]
    prints = trades_by_second(desk.market, inst, t + 1, at(16, 0))
    fired = _first_print(prints, t + 1, at(16, 0), lambda p: p <= stop)
    assert fired is not None
    desk.advance(at(16, 0))
    (ex,) = desk.fills(oid)
    assert (ex.time, ex.price) == (fired, desk.quote(fired).bid)
    assert desk.statuses(oid) == [S.PRE_SUBMITTED, S.SUBMITTED, S.FILLED]


def test_a_buy_stop_limit_becomes_a_limit_at_the_trigger(desk: Desk) -> None:
    t = at(*UP)
    inst = desk.inst()
    stop = round(desk.quote(t).last + 0.15, 2)
    oid = desk.place(t, "BUY", 100, "STP LMT", aux_price=stop, lmt_price=round(stop + 0.05, 2))
    prints = trades_by_second(desk.market, inst, t + 1, at(16, 0))
    fired = _first_print(prints, t + 1, at(16, 0), lambda p: p >= stop)
    assert fired is not None
    desk.advance(at(16, 0))
    o = desk.order(oid)
    assert o.triggered
    fills = desk.fills(oid)
    assert fills
    assert fills[0].time >= fired
    assert all(f.price <= stop + 0.05 for f in fills)


def test_a_sell_trailing_stop_follows_the_best_print_and_triggers(desk: Desk) -> None:
    t = at(*DOWN)
    inst, tick, amount = desk.inst(), 0.01, 0.30
    oid = desk.place(t, "SELL", 100, "TRAIL", aux_price=amount)
    ref = desk.quote(t).last
    stop = round_tick(ref - amount, tick)
    prints = trades_by_second(desk.market, inst, t + 1, at(16, 0))
    fired = None
    for s in range(t + 1, at(16, 0)):
        for tr in prints.get(s, []):
            if tr.price <= stop:
                fired = s
                break
            if tr.price > ref:
                ref = tr.price
                stop = max(stop, round_tick(tr.price - amount, tick))
        if fired:
            break
    assert fired is not None
    desk.advance(fired - 1)
    assert desk.order(oid).trail_stop == stop
    assert not desk.fills(oid)
    desk.advance(fired)
    (ex,) = desk.fills(oid)
    assert (ex.time, ex.price) == (fired, desk.quote(fired).bid)


def test_a_trailing_percent_stop_and_a_trail_limit_with_its_offset(desk: Desk) -> None:
    t = at(*DOWN)
    pct = desk.place(t, "SELL", 100, "TRAIL", trailing_percent=0.1)
    lim = desk.place(t, "SELL", 100, "TRAIL LIMIT", aux_price=0.20, lmt_price_offset=0.05)
    desk.advance(at(16, 0))
    p = desk.order(pct)
    assert p.triggered
    assert p.trail_stop is not None
    assert p.trail_ref is not None
    assert p.trail_stop == pytest.approx(round_tick(p.trail_ref * (1 - 0.001), 0.01), abs=0.011)
    q = desk.order(lim)
    assert q.triggered
    assert q.trail_stop is not None
    assert q.trigger_limit == pytest.approx(q.trail_stop - 0.05)
    assert all(f.price >= q.trigger_limit for f in desk.fills(lim))  # type: ignore[operator]


def test_market_if_touched_buys_below_and_limit_if_touched_limits(desk: Desk) -> None:
    t = at(*DOWN)
    inst = desk.inst()
    trigger = round(desk.quote(t).last - 0.10, 2)
    mit = desk.place(t, "BUY", 100, "MIT", aux_price=trigger)
    lit = desk.place(t, "BUY", 100, "LIT", aux_price=trigger, lmt_price=trigger)
    assert desk.statuses(mit) == [S.PRE_SUBMITTED] == desk.statuses(lit)
    prints = trades_by_second(desk.market, inst, t + 1, at(16, 0))
    fired = _first_print(prints, t + 1, at(16, 0), lambda p: p <= trigger)
    assert fired is not None
    desk.advance(at(16, 0))
    first = desk.fills(mit)[0]
    assert (first.time, first.price) == (fired, desk.quote(fired).ask)
    assert desk.order(lit).triggered
    assert all(f.price <= trigger for f in desk.fills(lit))


def test_midprice_fills_at_the_midpoint_unless_capped(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    mid = desk.place(t, "BUY", 100, "MIDPRICE")
    capped = desk.place(t, "BUY", 100, "MIDPRICE", lmt_price=round(q.bid - 1.0, 2))
    (ex,) = desk.fills(mid)
    assert ex.price == q.midpoint
    assert desk.fills(capped) == []
    assert desk.order(capped).status == S.SUBMITTED


# ----- auctions, TIFs, hours ----------------------------------------------------------------


def test_moc_fills_at_the_last_print_before_the_liquid_close(desk: Desk) -> None:
    oid = desk.place(at(10, 0), "BUY", 300, "MOC")
    assert desk.statuses(oid) == [S.SUBMITTED]
    desk.advance(at(15, 59, 59))
    assert not desk.fills(oid)
    desk.advance(at(16, 0, 5))
    (ex,) = desk.fills(oid)
    assert (ex.time, ex.price, ex.shares) == (
        at(16, 0),
        desk.quote(at(16, 0) - 1).last,
        Decimal(300),
    )


def test_loc_fills_only_when_the_close_is_within_its_limit(desk: Desk) -> None:
    close = desk.quote(at(16, 0) - 1).last
    inside = desk.place(at(10, 0), "BUY", 100, "LOC", lmt_price=round(close + 0.01, 2))
    outside = desk.place(at(10, 0), "BUY", 100, "LOC", lmt_price=round(close - 0.01, 2))
    desk.advance(at(16, 1))
    assert desk.fills(inside)[0].price == close
    assert desk.fills(outside) == []
    assert desk.order(outside).status == S.CANCELLED


def test_a_day_order_expires_at_the_liquid_close_without_an_error(desk: Desk) -> None:
    oid = desk.place(at(10, 0), "BUY", 100, "LMT", lmt_price=1.00)
    desk.advance(at(15, 59, 59))
    assert desk.order(oid).status == S.SUBMITTED
    desk.advance(at(16, 0, 1))
    o = desk.order(oid)
    assert (o.status, o.completed_time, o.remaining) == (S.CANCELLED, at(16, 0), Decimal(100))
    assert desk.errors(oid) == []  # IB sends orderStatus Cancelled, no 202
    assert o in desk.engine.completed_orders(at(16, 1))
    assert desk.engine.open_orders(1) == []


def test_a_day_order_outside_rth_works_until_the_end_of_trading_hours(desk: Desk) -> None:
    oid = desk.place(at(10, 0), "BUY", 100, "LMT", lmt_price=1.00, outside_rth=True)
    desk.advance(at(17, 0))
    assert desk.order(oid).status == S.SUBMITTED
    desk.advance(at(20, 0, 1))
    assert desk.order(oid).status == S.CANCELLED
    assert desk.order(oid).completed_time == at(20, 0)


def test_a_gtc_order_rests_presubmitted_overnight_and_works_again_at_the_next_open(
    desk: Desk,
) -> None:
    oid = desk.place(at(15, 0), "BUY", 100, "LMT", lmt_price=1.00, tif="GTC")
    desk.advance(at(12, 0, day=3))
    assert desk.statuses(oid) == [S.SUBMITTED, S.PRE_SUBMITTED, S.SUBMITTED]
    flips = [e.order.placed_at for e in desk.events if isinstance(e, OrderUpdate)]
    assert flips == [at(15, 0)] * 3
    assert desk.order(oid).status == S.SUBMITTED


def test_outside_rth_lets_a_limit_fill_premarket_and_without_it_the_order_waits(
    desk: Desk, refdata: RefData, market: MarketModel
) -> None:
    eng = OrderEngine(refdata, market, max_step=BIG_STEP)
    pre = Desk(eng, market, refdata)
    t = at(7, 0)
    ask = pre.quote(t).ask
    out = pre.place(t, "BUY", 100, "LMT", lmt_price=round(ask + 0.05, 2), outside_rth=True)
    rth = pre.place(t, "BUY", 100, "LMT", lmt_price=round(ask + 0.05, 2))
    assert pre.fills(out)[0].time == t
    assert pre.statuses(rth) == [S.PRE_SUBMITTED]
    assert pre.fills(rth) == []


def test_ioc_fills_what_the_touch_shows_and_cancels_the_rest(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    oid = desk.place(t, "BUY", 4_000, "LMT", lmt_price=q.ask, tif="IOC")
    (ex,) = desk.fills(oid)
    assert ex.shares == q.ask_size
    o = desk.order(oid)
    assert o.status == S.CANCELLED
    assert o.filled == q.ask_size
    miss = desk.place(t, "BUY", 100, "LMT", lmt_price=round(q.bid - 1, 2), tif="IOC")
    assert desk.order(miss).status == S.CANCELLED
    assert desk.fills(miss) == []


def test_opg_fills_at_the_first_print_of_the_session_or_is_cancelled(desk: Desk) -> None:
    inst = desk.inst()
    mkt = desk.place(at(9, 0), "BUY", 500, "MKT", tif="OPG")
    first = next(tr for tr in desk.market.trades(inst, at(9, 30), at(16, 0)))
    far = desk.place(at(9, 0), "BUY", 100, "LMT", lmt_price=round(first.price - 2, 2), tif="OPG")
    assert desk.statuses(mkt) == [S.PRE_SUBMITTED]
    desk.advance(at(9, 35))
    (ex,) = desk.fills(mkt)
    assert (ex.time, ex.price, ex.shares) == (first.time, first.price, Decimal(500))
    assert desk.order(far).status == S.CANCELLED
    assert desk.fills(far) == []
    late = desk.place(at(10, 0), "BUY", 100, "MKT", tif="OPG")  # after the open: next session
    desk.advance(at(15, 0))
    assert desk.order(late).status == S.PRE_SUBMITTED
    desk.advance(at(9, 40, day=3))
    nxt = next(tr for tr in desk.market.trades(inst, at(9, 30, day=3), at(16, 0, day=3)))
    assert desk.fills(late)[0].time == nxt.time


def test_an_fx_stop_triggers_on_the_quote_since_fx_has_no_prints(
    refdata: RefData, market: MarketModel
) -> None:
    # EUR.USD falls from about 1.1815 to 1.1780 between 01:00 and 05:00 US/Eastern
    d = Desk(OrderEngine(refdata, market, max_step=BIG_STEP), market, refdata)
    t = at(1, 0)
    stop = round_tick(d.quote(t, EURUSD).bid - 0.0005, 0.00005)
    oid = d.place(t, "SELL", 100_000, "STP", con_id=EURUSD, aux_price=stop)
    assert d.statuses(oid) == [S.PRE_SUBMITTED]
    fired = next(s for s in range(t + 1, at(6, 0)) if d.quote(s, EURUSD).bid <= stop)
    d.advance(fired + 5)
    (ex,) = d.fills(oid)
    assert (ex.time, ex.price) == (fired, d.quote(fired, EURUSD).bid)
    assert ex.commission == round(100_000 * ex.price * 0.00002, 2)  # 0.2 bp: ~2.36 USD
    small = d.place(fired + 5, "BUY", 20_000, "MKT", con_id=EURUSD)
    assert d.fills(small)[0].commission == 2.0  # the 2 USD minimum


def test_futures_and_options_trade_with_their_commissions(desk: Desk, refdata: RefData) -> None:
    t = at(10, 0)
    es = refdata.resolve(ContractQuery(symbol="ES", sec_type="FUT"), DAY0)[0]
    opt = refdata.resolve(
        ContractQuery(symbol="SPY", sec_type="OPT", last_trade_date_or_contract_month="20260302",
                      strike=680, right="C"), DAY0)[0]  # fmt: skip
    f = desk.place(t, "BUY", 2, "MKT", con_id=es.con_id)
    o = desk.place(t, "BUY", 3, "MKT", con_id=opt.con_id)
    assert desk.fills(f)[0].commission == pytest.approx(1.70)
    assert desk.fills(o)[0].commission == pytest.approx(1.95)
    pos = desk.engine.account.position(es.con_id)
    assert pos is not None
    assert pos.quantity == 2
    assert pos.avg_cost == (Decimal(repr(desk.fills(f)[0].price)) * 50 * 2 + Decimal("1.70")) / 2


def test_good_after_time_holds_and_good_till_date_expires(desk: Desk) -> None:
    t = at(10, 0)
    gat = desk.place(t, "BUY", 100, "MKT", good_after_time="20260302 10:30:00 US/Eastern")
    gtd = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, tif="GTD",
                     good_till_date="20260302-16:00:00")  # fmt: skip
    assert desk.statuses(gat) == [S.PRE_SUBMITTED]
    desk.advance(at(10, 30, 5))
    assert desk.fills(gat)[0].time == at(10, 30)
    desk.advance(at(11, 0, 1))
    assert desk.order(gtd).status == S.CANCELLED  # 16:00 UTC is 11:00 US/Eastern
    assert desk.order(gtd).completed_time == at(11, 0)
    bad = desk.place(t, "BUY", 100, "MKT", good_after_time="soon")
    assert desk.errors(bad) == [(201, "Order rejected - Reason: Invalid good after time: soon")]


# ----- brackets and OCA ------------------------------------------------------------------------


def _bracket(desk: Desk, t: int, entry: float, take: float, stop: float) -> tuple[int, int, int]:
    p = desk.place(t, "BUY", 100, "LMT", lmt_price=entry, transmit=False)
    tp = desk.place(t, "SELL", 100, "LMT", lmt_price=take, parent_id=p, transmit=False)
    sl = desk.place(t, "SELL", 100, "STP", aux_price=stop, parent_id=p, transmit=True)
    return p, tp, sl


def test_a_bracket_is_held_until_transmitted_and_children_wait_for_the_parent(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    p = desk.place(t, "BUY", 100, "LMT", lmt_price=round(q.bid - 0.50, 2), transmit=False)
    tp = desk.place(t, "SELL", 100, "LMT", lmt_price=round(q.ask + 5, 2), parent_id=p,
                    transmit=False)  # fmt: skip
    assert desk.events == []  # nothing is working before the transmit
    assert desk.engine.open_orders(1) == []
    assert desk.order(p).status == S.API_PENDING
    sl = desk.place(t, "SELL", 100, "STP", aux_price=round(q.bid - 5, 2), parent_id=p)
    assert desk.statuses(p) == [S.SUBMITTED]
    assert desk.statuses(tp) == [S.PRE_SUBMITTED] == desk.statuses(sl)
    assert [o.order_id for o in desk.engine.open_orders(1)] == [p, tp, sl]


def test_bracket_children_activate_on_the_parent_fill_and_cancel_each_other(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    take = round(q.ask + 0.05, 2)
    p, tp, sl = _bracket(desk, t, round(q.ask, 2), take, round(q.bid - 5, 2))
    assert desk.order(p).status == S.FILLED
    assert desk.statuses(tp)[-1] == S.SUBMITTED
    assert desk.statuses(sl)[-1] == S.PRE_SUBMITTED
    desk.advance(at(16, 0))
    assert desk.order(tp).status == S.FILLED
    assert desk.order(sl).status == S.CANCELLED
    assert desk.fills(sl) == []
    assert desk.errors(sl) == []
    pos = desk.engine.account.position(desk.inst().con_id)
    assert pos is not None
    assert pos.quantity == 0


def test_cancelling_a_bracket_parent_cancels_its_children_with_202(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    p, tp, sl = _bracket(desk, t, round(q.bid - 1, 2), round(q.ask + 5, 2), round(q.bid - 5, 2))
    desk.cancel(t + 1, p)
    for oid in (p, tp, sl):
        assert desk.order(oid).status == S.CANCELLED
        assert desk.errors(oid) == [(202, "Order Canceled - reason:")]
    assert desk.statuses(tp) == [S.PRE_SUBMITTED, S.PENDING_CANCEL, S.CANCELLED]


def test_bracket_edge_cases_unknown_parent_staged_cancel_and_transmit_by_modify(
    desk: Desk,
) -> None:
    t = at(10, 0)
    orphan = desk.place(t, "SELL", 100, "LMT", lmt_price=500.0, parent_id=999)
    assert desk.errors(orphan) == [(201, "Order rejected - Reason: Parent order 999 not found")]
    staged = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, transmit=False)
    got = desk.cancel(t, staged)
    assert [e.order.status for e in got if isinstance(e, OrderUpdate)] == [S.API_CANCELLED]
    assert desk.errors(staged) == [(202, "Order Canceled - reason:")]
    later = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, transmit=False)
    assert desk.statuses(later) == []
    desk.modify(t + 1, later, transmit=True)
    assert desk.statuses(later) == [S.SUBMITTED]


def test_a_bracket_whose_parent_fills_at_once_can_fill_a_child_in_the_same_second(
    desk: Desk,
) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    p = desk.place(t, "BUY", 100, "MKT", transmit=False)
    tp = desk.place(t, "SELL", 100, "LMT", lmt_price=q.bid, parent_id=p, transmit=False)
    sl = desk.place(t, "SELL", 100, "STP", aux_price=round(q.bid - 5, 2), parent_id=p)
    assert desk.order(p).status == S.FILLED
    assert desk.order(tp).status == S.FILLED
    assert desk.fills(tp)[0].price == q.bid
    assert desk.order(sl).status == S.CANCELLED  # reduced to nothing before it was acked
    assert desk.statuses(sl) == [S.CANCELLED]


def test_oca_type_1_cancels_the_others_when_one_fills(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    a = desk.place(t, "BUY", 100, "LMT", lmt_price=round(q.bid - 5, 2), oca_group="g1", oca_type=1)
    b = desk.place(t, "BUY", 100, "LMT", lmt_price=round(q.bid - 6, 2), oca_group="g1", oca_type=1)
    c = desk.place(t, "BUY", 100, "MKT", oca_group="g1", oca_type=1)
    assert desk.order(c).status == S.FILLED
    assert desk.order(a).status == S.CANCELLED == desk.order(b).status


def test_oca_type_2_reduces_the_others_by_the_filled_quantity(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    a = desk.place(t, "BUY", 300, "LMT", lmt_price=round(q.bid - 5, 2), oca_group="g2", oca_type=2)
    desk.place(t, "BUY", 100, "MKT", oca_group="g2", oca_type=2)
    o = desk.order(a)
    assert o.status == S.SUBMITTED
    assert o.spec.total_quantity == 200


# ----- modify ---------------------------------------------------------------------------------


def test_modify_changes_price_quantity_and_tif_and_keeps_the_perm_id(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    oid = desk.place(t, "BUY", 100, "LMT", lmt_price=round(q.bid - 1, 2))
    perm = desk.order(oid).perm_id
    got = desk.modify(t + 5, oid, lmt_price=round(q.bid - 2, 2), total_quantity=Decimal(200),
                      tif="GTC")  # fmt: skip
    (upd,) = [e for e in got if isinstance(e, OrderUpdate)]
    assert upd.order.spec.lmt_price == round(q.bid - 2, 2)
    assert upd.order.remaining == 200
    assert upd.order.perm_id == perm
    assert upd.order.status == S.SUBMITTED
    assert upd.order.expires_at is None
    desk.modify(t + 6, oid, lmt_price=round(desk.quote(t + 6).ask + 1, 2))  # now marketable
    assert desk.fills(oid)[0].time == t + 6


def test_modify_refusals_leave_the_working_order_unchanged(desk: Desk) -> None:
    t = at(10, 0)
    q = desk.quote(t)
    oid = desk.place(t, "BUY", 100, "LMT", lmt_price=round(q.bid - 1, 2))
    before = desk.order(oid)
    tick_text = "The price does not conform to the minimum price variation for this contract."
    assert desk.modify(t, oid, lmt_price=q.bid - 1.005) == [OrderError(oid, 1, 110, tick_text)]
    assert desk.modify(t, oid, action="SELL") == [
        OrderError(oid, 1, 105, "Order being modified does not match original order.")
    ]
    assert desk.order(oid) == before
    filled = desk.place(t, "BUY", 100, "MKT")
    assert desk.modify(t, filled, total_quantity=Decimal(300)) == [
        OrderError(filled, 1, 104, "Can't modify a filled order")
    ]


# ----- cancel ---------------------------------------------------------------------------------


def test_cancel_goes_pending_cancel_then_cancelled_with_202(desk: Desk) -> None:
    t = at(10, 0)
    oid = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00)
    got = desk.cancel(t + 1, oid)
    assert [e.order.status for e in got if isinstance(e, OrderUpdate)] == [
        S.PENDING_CANCEL, S.CANCELLED,
    ]  # fmt: skip
    assert got[-1] == OrderError(oid, 1, 202, "Order Canceled - reason:")
    assert desk.order(oid).completed_status == "Cancelled by Trader"


def test_cancel_errors_for_unknown_filled_and_foreign_orders(desk: Desk) -> None:
    t = at(10, 0)
    assert desk.cancel(t, 999) == [
        OrderError(999, 1, 10147, "OrderId 999 that needs to be cancelled is not found.")
    ]
    filled = desk.place(t, "BUY", 100, "MKT")
    text = f"OrderId {filled} that needs to be cancelled can not be cancelled, state: Filled."
    assert desk.cancel(t, filled) == [OrderError(filled, 1, 10148, text)]
    mine = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00)
    assert desk.cancel(t, mine, client=2)[0].code == 10147  # type: ignore[union-attr]
    assert desk.order(mine).status == S.SUBMITTED


def test_global_cancel_cancels_every_order_of_every_client(desk: Desk) -> None:
    t = at(10, 0)
    a = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, client=1)
    b = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, client=2, order_id=1)
    staged = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, client=3, order_id=1,
                        transmit=False)  # fmt: skip
    desk.events += desk.engine.global_cancel(t + 1)
    assert desk.order(a).status == S.CANCELLED
    assert desk.order(b, client=2).status == S.CANCELLED
    assert desk.order(staged, client=3).status == S.API_CANCELLED
    assert desk.engine.open_orders() == []


def test_a_fill_can_race_a_slow_cancel(refdata: RefData, market: MarketModel) -> None:
    eng = OrderEngine(refdata, market, cancel_latency=30, max_step=BIG_STEP)
    d = Desk(eng, market, refdata)
    oid = d.place(at(9, 29, 50), "BUY", 100, "MKT")
    d.cancel(at(9, 29, 55), oid)
    d.advance(at(9, 31))
    assert d.statuses(oid) == [S.PRE_SUBMITTED, S.PENDING_CANCEL, S.FILLED]
    assert d.errors(oid) == []
    assert d.order(oid).completed_status == "Filled"
    slow = d.place(at(10, 0), "BUY", 100, "LMT", lmt_price=1.00)
    d.cancel(at(10, 0), slow)
    (again,) = d.cancel(at(10, 0, 1), slow)
    assert again == OrderError(slow, 1, 161, (
        "Cancel attempted when order is not in a cancellable state. Order permId ="
        f"{d.order(slow).perm_id}"))  # fmt: skip
    d.advance(at(10, 0, 29))
    assert d.order(slow).status == S.PENDING_CANCEL
    d.advance(at(10, 0, 30))
    assert d.order(slow).status == S.CANCELLED
    assert d.errors(slow)[-1][0] == 202


# ----- rejections -------------------------------------------------------------------------------


def test_orders_that_are_not_accepted_get_only_an_error(desk: Desk) -> None:
    t = at(10, 0)
    cases: dict[int, dict[str, Any]] = {
        110: {"typ": "LMT", "lmt_price": 100.005},
        434: {"qty": 0},
        387: {"typ": "PEG MID"},
    }
    for code, kw in cases.items():
        before = desk.engine.next_perm_id
        oid = desk.place(t, **kw)
        assert [c for c, _ in desk.errors(oid)] == [code]
        assert desk.engine.order(1, oid) is None
        assert desk.engine.next_perm_id == before
    assert desk.errors()[1] == (434, "The order size cannot be zero")
    desk.place(t, "BUY", 100, "MOC", con_id=EURUSD)
    assert desk.errors()[-1][0] == 387


def test_an_order_id_not_above_the_clients_highest_is_a_duplicate(desk: Desk) -> None:
    t = at(10, 0)
    desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, order_id=10)
    desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, order_id=5)
    assert desk.errors(5) == [(103, "Duplicate order id")]
    desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, order_id=5, client=2)  # ids are per client
    assert desk.errors(5) == [(103, "Duplicate order id")]
    assert desk.engine.highest_order_id(1) == 10
    assert desk.engine.max_order_id() == 10


def test_read_only_mode_refuses_place_modify_and_cancel_with_321(desk: Desk) -> None:
    t = at(10, 0)
    oid = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00)
    desk.engine.read_only = True
    text = (
        "Error validating request:-'bh' : cause - The API interface is currently in Read-Only mode."
    )
    desk.place(t, "BUY", 100, "MKT")
    desk.modify(t, oid, lmt_price=2.00)
    desk.cancel(t, oid)
    assert desk.errors() == [(321, text)] * 3
    assert desk.engine.open_orders() == []
    assert desk.engine.completed_orders(t) == []
    desk.engine.read_only = False
    assert desk.order(oid).spec.lmt_price == 1.00
    assert desk.order(oid).status == S.SUBMITTED


def test_rejected_orders_are_inactive_with_201(desk: Desk) -> None:
    t = at(10, 0)
    desk.engine.reject_next(1, "Exchange is closed.")
    a = desk.place(t, "BUY", 100, "MKT")
    b = desk.place(t, "BUY", 100_000, "MKT")  # ~21M USD: far more than a 1M account carries
    c = desk.place(t, "BUY", 100, "LMT")
    d = desk.place(t, "BUY", 1, "MKT", con_id=SPX)
    e = desk.place(t, "BUY", 100, "LMT", lmt_price=1.00, account="U999")
    assert desk.errors(a) == [(201, "Order rejected - Reason: Exchange is closed.")]
    assert desk.errors(b)[0][0] == 201
    assert "INITIAL MARGIN" in desk.errors(b)[0][1]
    assert desk.errors(c) == [(201, "Order rejected - Reason: Missing or invalid limit price")]
    assert desk.errors(d)[0][0] == 201
    assert desk.errors(e) == [
        (321, "Error validating request.-'cq' : cause - Invalid account code")
    ]
    for oid in (a, b, c, d):
        o = desk.order(oid)
        assert o.status == S.INACTIVE
        assert o.done
        assert o.completed_status == "Rejected"
        assert desk.statuses(oid) == [S.INACTIVE]
    assert desk.cancel(t, a)[0].code == 10148  # type: ignore[union-attr]


def test_what_if_reports_margin_and_places_nothing(desk: Desk) -> None:
    t = at(10, 0)
    oid = desk.place(t, "BUY", 1000, "LMT", lmt_price=round(desk.quote(t).bid, 2), what_if=True)
    (w,) = desk.events
    assert isinstance(w, WhatIf)
    assert w.init_margin_before == 0
    assert w.init_margin_after == Decimal(repr(desk.quote(t).bid)) * 1000 / 2
    assert w.commission == Decimal("5.00")
    assert desk.engine.order(1, oid) is None


# ----- ids, executions, duplicates ----------------------------------------------------------------


def test_perm_ids_and_exec_ids_are_unique_and_ib_shaped(desk: Desk) -> None:
    t = at(10, 0)
    ids = [desk.place(t + i, "BUY", 2000, "MKT") for i in range(3)]
    desk.advance(t + 60)
    perms = [desk.order(i).perm_id for i in ids]
    assert perms == sorted(set(perms))
    execs = [e.execution.exec_id for e in desk.events if isinstance(e, Fill)]
    assert len(execs) == len(set(execs)) > 3
    assert all(re.fullmatch(r"0000e0d5\.[0-9a-f]{8}\.[0-9a-f]{2,}\.01", x) for x in execs)


def test_executions_filter_like_ibs_execution_filter(desk: Desk) -> None:
    t = at(10, 0)
    a = desk.place(t, "BUY", 100, "MKT", client=1)
    desk.place(t + 60, "SELL", 100, "MKT", client=2, order_id=1)
    desk.place(t + 120, "BUY", 100_000, "MKT", con_id=EURUSD, client=1)
    eng = desk.engine
    now = t + 300
    assert len(eng.executions(now)) == 3
    assert [f.execution.order_id for f in eng.executions(now, client_id=1, symbol="aapl")] == [a]
    assert [f.execution.side for f in eng.executions(now, side="SELL")] == ["SLD"]
    assert len(eng.executions(now, sec_type="CASH")) == 1
    assert len(eng.executions(now, time="20260302 10:00:30")) == 2
    assert len(eng.executions(now, time="20260302-15:01:30")) == 1  # UTC form
    assert len(eng.executions(now, account="DU0000001", exchange="NASDAQ")) == 2
    assert eng.executions(at(10, 0, day=3)) == []  # only since midnight
    with pytest.raises(ValueError, match="yyyymmdd"):
        eng.executions(now, time="yesterday")


def test_duplicate_status_messages_on_request(refdata: RefData, market: MarketModel) -> None:
    eng = OrderEngine(refdata, market, duplicate_status=True)
    got = eng.place(OrderSpec(1, 1, "BUY", Decimal(100), "MKT"), inst_of(refdata, AAPL), at(10))
    updates = [e for e in got if isinstance(e, OrderUpdate)]
    assert [u.status_only for u in updates] == [False, True, False, True]
    assert updates[0].order == updates[1].order


def test_advance_does_at_most_max_step_seconds_of_matching_per_call(
    refdata: RefData, market: MarketModel
) -> None:
    eng = OrderEngine(refdata, market, max_step=100)
    eng.place(OrderSpec(1, 1, "BUY", Decimal(100), "LMT", lmt_price=1.0), inst_of(refdata, AAPL),
              at(10))  # fmt: skip
    eng.advance(at(11))
    assert eng.time == at(10) + 100
    eng.advance(at(11))
    assert eng.time == at(10) + 200
    idle = OrderEngine(refdata, market, max_step=100)
    idle.advance(at(10))
    idle.advance(at(12))  # nothing working: time just moves
    assert idle.time == at(12)


# ----- the state table ------------------------------------------------------------------------


def test_the_state_table_has_no_way_out_of_terminal_states() -> None:
    for (state, _), _nxt in TRANSITIONS.items():
        assert state not in TERMINAL
        assert state != S.INACTIVE
    with pytest.raises(IllegalTransition, match="Filled"):
        next_status(S.FILLED, OrderTrigger.CANCEL)
    doc = transitions_markdown()
    assert doc.count("\n") == len(TRANSITIONS) + 1
    assert "| PendingCancel | fill | Filled |" in doc


@given(st.lists(st.sampled_from(list(OrderTrigger)), max_size=40), st.booleans())
def test_random_trigger_sequences_never_leave_the_table(
    triggers: list[OrderTrigger], staged: bool
) -> None:
    state = S.API_PENDING if staged else S.PENDING_SUBMIT
    for trig in triggers:
        try:
            nxt = next_status(state, trig)
        except IllegalTransition:
            assert (state, trig) not in TRANSITIONS
            continue
        assert nxt in set(OrderStatus)
        assert state not in TERMINAL
        state = nxt


_OPS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "mkt",
                "lmt",
                "stp",
                "trail",
                "modify",
                "cancel",
                "global",
                "wait",
                "child",
                "ioc",
                "moc",
                "staged",
                "oca",
            ]
        ),
        st.integers(1, 6),
        st.integers(0, 900),
    ),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_OPS, start=st.integers(at(9, 20), at(15, 58)))
def test_random_order_traffic_only_makes_table_transitions(
    refdata: RefData, market: MarketModel, ops: list[tuple[str, int, int]], start: int
) -> None:
    eng = OrderEngine(refdata, market, cancel_latency=2, max_step=BIG_STEP)
    inst = inst_of(refdata, AAPL)
    t = start
    seen: dict[int, list[OrderStatus]] = {}
    for op, oid, dt in ops:
        t += dt
        q = market.quote(inst, t)
        specs = {
            "mkt": OrderSpec(oid, 1, "BUY", Decimal(300), "MKT"),
            "lmt": OrderSpec(oid, 1, "SELL", Decimal(200), "LMT", lmt_price=q.ask),
            "stp": OrderSpec(oid, 1, "SELL", Decimal(100), "STP", aux_price=round(q.bid - .02, 2)),
            "trail": OrderSpec(oid, 1, "BUY", Decimal(100), "TRAIL", aux_price=0.05, tif="GTC"),
            "child": OrderSpec(oid, 1, "SELL", Decimal(100), "LMT", lmt_price=q.ask, parent_id=1),
            "ioc": OrderSpec(oid, 1, "BUY", Decimal(9000), "LMT", lmt_price=q.ask, tif="IOC"),
            "moc": OrderSpec(oid, 1, "BUY", Decimal(100), "MOC"),
            "staged": OrderSpec(oid, 1, "BUY", Decimal(1), "LMT", lmt_price=q.bid, transmit=False),
            "oca": OrderSpec(oid, 1, "SELL", Decimal(100), "LMT", lmt_price=q.bid, oca_group="g",
                             oca_type=1 + oid % 3),
        }  # fmt: skip
        if op in specs:
            got = eng.place(specs[op], inst, t)
        elif op == "modify" and (o := eng.order(1, oid)) is not None:
            got = eng.place(replace(o.spec, total_quantity=o.spec.total_quantity + 100), inst, t)
        elif op == "cancel":
            got = eng.cancel(oid, 1, t)
        elif op == "global":
            got = eng.global_cancel(t)
        else:
            got = eng.advance(t)
        for e in got:
            if isinstance(e, OrderUpdate):
                o = e.order
                assert o.filled + o.remaining == o.spec.total_quantity
                assert o.filled >= 0
                seen.setdefault(o.perm_id, []).append(o.status)
    fills = eng.executions(t)
    net = sum((f.execution.shares if f.execution.side == "BOT" else -f.execution.shares)
              for f in fills)  # fmt: skip
    pos = eng.account.position(AAPL)
    assert (pos.quantity if pos else 0) == net
    for o in eng.open_orders() + eng.completed_orders(t):
        assert o.filled == sum(
            f.execution.shares for f in fills if f.execution.perm_id == o.perm_id
        )
    for statuses in seen.values():
        for a, b in itertools.pairwise(statuses):
            assert a not in TERMINAL or a == b, statuses  # nothing after a terminal state
            assert a == b or _reachable(a, b), statuses


def _reachable(a: OrderStatus, b: OrderStatus) -> bool:
    """b follows a through the table, possibly via unreported internal states."""
    frontier, seen = {a}, {a}
    while frontier:
        nxt = {n for (s, _), n in TRANSITIONS.items() if s in frontier} - seen
        if b in nxt:
            return True
        seen |= nxt
        frontier = nxt
    return False


# ----- snapshot -------------------------------------------------------------------------------


def _busy_engine(refdata: RefData, market: MarketModel) -> Iterator[tuple[OrderEngine, int]]:
    eng = OrderEngine(refdata, market, max_step=BIG_STEP)
    d = Desk(eng, market, refdata)
    t = at(10, 0)
    q = d.quote(t)
    d.place(t, "BUY", 300, "MKT")
    d.place(t, "SELL", 100, "LMT", lmt_price=round(q.ask + 0.30, 2), tif="GTC", order_ref="r1")
    d.place(t, "SELL", 100, "TRAIL", aux_price=0.25)
    d.place(t, "BUY", 100, "LMT", lmt_price=1.00, transmit=False)
    d.place(t, "BUY", 100_000, "MKT", con_id=EURUSD, client=2, order_id=7)
    d.advance(t + 300)
    yield eng, t + 300


def test_snapshot_round_trips_through_json_and_the_restored_engine_behaves_the_same(
    refdata: RefData, market: MarketModel
) -> None:
    eng, t = next(_busy_engine(refdata, market))
    data = json.loads(json.dumps(eng.to_dict()))
    back = OrderEngine.from_dict(data, refdata, market)
    assert back.to_dict() == eng.to_dict()
    assert back.open_orders() == eng.open_orders()
    assert back.executions(t) == eng.executions(t)
    assert back.account_values(t) == eng.account_values(t)
    later = at(16, 30)
    assert back.advance(later) == eng.advance(later)
    assert back.to_dict() == eng.to_dict()
    with pytest.raises(ValueError, match="version"):
        OrderEngine.from_dict({**data, "version": 99}, refdata, market)


def test_account_views_of_the_engine(desk: Desk) -> None:
    t = at(10, 0)
    desk.place(t, "BUY", 100, "MKT")
    (item,) = desk.engine.portfolio(t + 60)
    assert item.position == 100
    assert item.market_price == Decimal(repr(desk.quote(t + 60).midpoint))
    single = desk.engine.pnl_single(AAPL, t + 60)
    assert single is not None
    assert single.position == 100
    total = desk.engine.pnl(t + 60)
    assert total.daily_pnl == single.daily_pnl
    assert total.realized_pnl == 0
    assert math.isclose(float(total.unrealized_pnl), float(single.unrealized_pnl))
