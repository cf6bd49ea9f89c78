"""The simulated account: commissions, average cost, P&L, margin, and books that balance.

Instruments are written by hand and marked with a fake ``Marks`` (fixed prices and rates),
so every expected number here is arithmetic a reader can check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.sim.account import Account, commission, dec
from ibpilot.sim.refdata import Instrument

STK = Instrument(1, "AAA", "STK", "SMART", "USD")
FUT = Instrument(2, "ES", "FUT", "CME", "USD", multiplier="50", min_tick=0.25)
OPT = Instrument(3, "AAA", "OPT", "SMART", "USD", multiplier="100", underlying_con_id=1)
JPY = Instrument(4, "USD", "CASH", "IDEALPRO", "JPY", min_tick=0.005)
NQ = Instrument(5, "XYZ", "FUT", "CME", "USD", multiplier="20")
BY_ID = {i.con_id: i for i in (STK, FUT, OPT, JPY, NQ)}
DAY1, DAY2 = date(2026, 3, 2), date(2026, 3, 3)
START = Decimal(1_000_000)


@dataclass
class Marks:
    prices: dict[int, float] = field(default_factory=dict)
    rates: dict[str, Decimal] = field(default_factory=dict)

    def price(self, inst: Instrument) -> float:
        return self.prices[inst.con_id]

    def underlying_price(self, inst: Instrument) -> float:
        return self.prices[inst.underlying_con_id]

    def rate(self, currency: str) -> Decimal:
        return self.rates.get(currency, Decimal(1))


D = Decimal


@pytest.mark.parametrize(
    ("inst", "qty", "price", "fee"),
    [
        (STK, 100, 50.0, "1.00"),  # 0.50 -> the 1 USD minimum
        (STK, 1000, 50.0, "5.00"),  # 0.005 a share
        (STK, 333, 50.0, "1.67"),  # rounded to the cent
        (STK, 100, 0.5, "0.50"),  # capped at 1% of 50 USD
        (OPT, 1, 2.0, "1.00"),  # 0.65 -> the minimum
        (OPT, 3, 2.0, "1.95"),
        (FUT, 2, 5000.0, "1.70"),
        (JPY, 100_000, 1.0, "2.00"),  # 0.2 bp of 100k USD is 2.00
        (JPY, 1_000_000, 1.0, "20.00"),
    ],
)
def test_commission_schedule(inst: Instrument, qty: int, price: float, fee: str) -> None:
    mult = D(inst.multiplier or 1)
    assert commission(inst, D(qty), D(qty) * dec(price) * mult) == D(fee)


def test_average_cost_includes_commission_and_a_sale_realises_against_it() -> None:
    acct = Account()
    assert acct.apply_fill(STK, True, D(100), 10.0, D(1), DAY1) is None
    acct.apply_fill(STK, True, D(100), 12.0, D(1), DAY1)
    pos = acct.position(1)
    assert pos is not None
    assert pos.avg_cost == D("11.01")
    realized = acct.apply_fill(STK, False, D(150), 13.0, D(1), DAY1)
    assert realized == D("297.5")  # 150 x 13 - 150 x 11.01 - 1
    pos = acct.position(1)
    assert pos is not None
    assert (pos.quantity, pos.avg_cost) == (D(50), D("11.01"))
    assert acct.cash_balances() == {"USD": START - 1001 - 1201 + 1950 - 1}


def test_a_short_then_a_buy_through_zero_closes_and_reopens() -> None:
    acct = Account()
    acct.apply_fill(STK, False, D(100), 10.0, D(1), DAY1)
    pos = acct.position(1)
    assert pos is not None
    assert (pos.quantity, pos.avg_cost) == (D(-100), D("9.99"))
    realized = acct.apply_fill(STK, True, D(150), 9.0, D("1.5"), DAY1)
    assert realized == D(98)  # 100 x 9.99 - 100 x 9 - 1.00 (the closing share of the fee)
    pos = acct.position(1)
    assert pos is not None
    assert (pos.quantity, pos.avg_cost) == (D(50), D("9.01"))
    acct.apply_fill(STK, False, D(50), 9.0, D(1), DAY1)
    pos = acct.position(1)
    assert pos is not None
    assert (pos.quantity, pos.avg_cost) == (D(0), D(0))


def test_futures_notional_is_not_cash_and_netliq_carries_their_pnl() -> None:
    acct = Account()
    acct.apply_fill(FUT, True, D(2), 5000.0, D("1.70"), DAY1)
    pos = acct.position(2)
    assert pos is not None
    assert pos.avg_cost == D("250000.85")
    v = acct.values(Marks({2: 5010.0}), DAY1)
    assert v.TotalCashValue == START - D("1.70")
    assert v.UnrealizedPnL == D(1000) - D("1.70")
    assert v.NetLiquidation == START - D("1.70") + 1000
    assert v.GrossPositionValue == 0
    assert (v.InitMarginReq, v.MaintMarginReq) == (D(30_000), D(27_000))
    realized = acct.apply_fill(FUT, False, D(2), 5020.0, D("1.70"), DAY1)
    assert realized == D(2000) - D("3.40")
    v = acct.values(Marks({2: 5020.0}), DAY1)
    assert v.TotalCashValue == v.NetLiquidation == START + 2000 - D("3.40")
    (item,) = acct.portfolio(Marks({2: 5020.0}))
    assert (item.position, item.realized_pnl) == (D(0), realized)


def test_margin_of_stocks_options_and_fx() -> None:
    acct = Account()
    acct.apply_fill(STK, True, D(1000), 100.0, D(5), DAY1)
    acct.apply_fill(OPT, True, D(10), 2.0, D("6.5"), DAY1)
    marks = Marks({1: 100.0, 3: 2.0, 4: 150.0}, {"JPY": D(1) / D(150)})
    assert acct.margin(marks) == (D(52_000), D(27_000))
    acct.apply_fill(OPT, False, D(15), 2.0, D("9.75"), DAY1)  # now short 5
    assert acct.margin(marks) == (D(60_000), D(35_000))  # 20% of 5 x 100 x 100
    acct.apply_fill(JPY, True, D(100_000), 150.0, D(3), DAY1)
    init, maint = acct.margin(marks)
    assert init == 60_000 + 3_000
    assert maint == 35_000 + D(2_700)


def test_available_funds_excess_liquidity_and_buying_power() -> None:
    acct = Account()
    acct.apply_fill(STK, True, D(1000), 100.0, D(5), DAY1)
    v = acct.values(Marks({1: 101.0}), DAY1)
    assert v.NetLiquidation == START - 100_005 + 101_000 == v.EquityWithLoanValue
    assert v.AvailableFunds == v.NetLiquidation - 50_500
    assert v.ExcessLiquidity == v.NetLiquidation - 25_250
    assert v.BuyingPower == 4 * v.AvailableFunds
    assert v.GrossPositionValue == 101_000
    assert v.UnrealizedPnL == 995
    tags = v.tags()
    assert tags["NetLiquidation"] == "1000995.00"
    assert set(tags) >= {"BuyingPower", "RealizedPnL"}


def test_an_order_is_refused_when_its_initial_margin_exceeds_the_equity() -> None:
    acct = Account(cash=D(10_000))
    marks = Marks({1: 100.0})
    reason = acct.check_order(STK, True, D(1000), 100.0, marks)
    assert reason is not None
    assert "INITIAL MARGIN [50000.00 USD]" in reason
    assert "EQUITY WITH LOAN VALUE [10000.00 USD]" in reason
    assert acct.check_order(STK, True, D(100), 100.0, marks) is None
    acct.apply_fill(STK, True, D(150), 100.0, D(1), DAY1)
    assert acct.check_order(STK, False, D(150), 100.0, marks) is None  # closing always allowed


def test_daily_pnl_is_measured_from_the_start_of_the_day() -> None:
    acct = Account()
    acct.apply_fill(STK, True, D(100), 10.0, D(1), DAY1)
    start, now = Marks({1: 11.0}), Marks({1: 12.0})
    p = acct.pnl(now, start, DAY2)
    assert (p.daily_pnl, p.realized_pnl) == (D(100), D(0))
    assert p.unrealized_pnl == D(1200) - D(1001)
    realized = acct.apply_fill(STK, False, D(50), 12.5, D(1), DAY2)
    assert realized == D(625) - D("500.5") - 1
    one = acct.pnl_single(1, now, start, DAY2)
    assert one is not None
    assert one.daily_pnl == D(50 * 12) - D(1100) + D(625) - 1  # value now - at open + flows
    assert one.realized_pnl == realized
    assert one.position == 50
    assert one.value == 600
    assert acct.pnl(now, start, DAY2).daily_pnl == one.daily_pnl
    assert acct.pnl_single(99, now, start, DAY2) is None


def test_a_jpy_quoted_pair_keeps_yen_cash_and_converts_at_the_rate() -> None:
    acct = Account()
    acct.apply_fill(JPY, True, D(100_000), 150.0, D(2), DAY1)
    assert acct.cash_balances() == {"USD": START - 2, "JPY": D(-15_000_000)}
    marks = Marks({4: 151.0}, {"JPY": D(1) / D(151)})
    v = acct.values(marks, DAY1)
    expected = START - 2 + (D(-15_000_000) + D(15_100_000)) / 151
    assert abs(v.NetLiquidation - expected) < D("0.000001")


def test_the_account_round_trips_through_json() -> None:
    acct = Account("DU7", D(50_000))
    acct.apply_fill(STK, True, D(100), 10.0, D(1), DAY1)
    acct.apply_fill(FUT, False, D(1), 5000.0, D("0.85"), DAY2)
    data = json.loads(json.dumps(acct.to_dict()))
    back = Account.from_dict(data, BY_ID.__getitem__)
    assert back.to_dict() == acct.to_dict()
    marks = Marks({1: 11.0, 2: 4990.0})
    assert back.values(marks, DAY2) == acct.values(marks, DAY2)
    assert back.positions() == acct.positions()


def test_a_fill_must_have_a_positive_quantity() -> None:
    with pytest.raises(ValueError, match="positive"):
        Account().apply_fill(STK, True, D(0), 10.0, D(1), DAY1)


_FILLS = st.lists(
    st.tuples(
        st.sampled_from([STK, OPT, FUT, NQ]),
        st.booleans(),
        st.integers(1, 400),
        st.integers(1, 2_000_000),  # price in cents
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(fills=_FILLS, marks=st.lists(st.integers(1, 2_000_000), min_size=5, max_size=5))
def test_the_books_balance_to_the_cent_over_any_fill_sequence(
    fills: list[tuple[Instrument, bool, int, int]], marks: list[int]
) -> None:
    acct = Account()
    buys = sells = fees = realized = D(0)
    for inst, buy, qty, cents in fills:
        price = cents / 100
        value = D(qty) * dec(price) * D(inst.multiplier or 1)
        fee = commission(inst, D(qty), value)
        got = acct.apply_fill(inst, buy, D(qty), price, fee, DAY1)
        realized += got or 0
        buys, sells, fees = buys + (value if buy else 0), sells + (0 if buy else value), fees + fee
    # cash moves by exactly the trade values and the commissions
    assert acct.cash_balances()["USD"] == START - buys + sells - fees
    m = Marks({i: c / 100 for i, c in zip((1, 2, 3, 5), marks, strict=False)} | {4: 1.0})
    v = acct.values(m, DAY1)
    positions = acct.positions()
    tiny = D("1e-12")  # Decimal division keeps 28 digits; sums may differ in the last one
    assert abs(sum(p.realized_pnl for p in positions) - realized) < tiny
    assert abs(v.RealizedPnL - realized) < tiny
    # NetLiquidation = start + realized + unrealized, to the cent
    assert abs(v.NetLiquidation - (START + realized + v.UnrealizedPnL)) < D("0.005")
    value_now = sum(
        p.quantity * dec(m.price(p.inst)) * D(p.inst.multiplier or 1) for p in positions
    )
    assert abs(v.NetLiquidation - (acct.cash_balances()["USD"] + value_now)) < D("0.005")
    assert all(p.avg_cost == 0 for p in positions if p.quantity == 0)
