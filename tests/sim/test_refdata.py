"""Reference data: the shipped instruments, generated derivatives, calendars, extensions."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ib_async import ContractDetails

from ibpilot.sim import _derivatives
from ibpilot.sim.refdata import ContractQuery, Instrument, RefData

MONDAY = date(2026, 3, 2)  # winter (EST), the Monday the gateway tests start on
EASTERN_SUMMER_DAY = date(2026, 7, 15)


@pytest.fixture(scope="module")
def rd() -> RefData:
    return RefData.load()


def one(rd: RefData, on: date = MONDAY, **query: Any) -> Instrument:
    return only(rd, ContractQuery(**query), on)


def only(rd: RefData, query: ContractQuery, on: date = MONDAY) -> Instrument:
    found = rd.resolve(query, on)
    assert len(found) == 1, found
    return found[0]


def shipped() -> dict[str, Any]:
    text = files("ibpilot.sim").joinpath("data/instruments.json").read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


def listed(rd: RefData) -> list[Instrument]:
    """Every listed instrument of the shipped file, looked up by its conId."""
    found = [rd.by_con_id(entry["con_id"]) for entry in shipped()["instruments"]]
    assert None not in found
    return [i for i in found if i is not None]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ----- the shipped file ------------------------------------------------------------------


def test_shipped_file_has_the_promised_instruments(rd: RefData) -> None:
    stocks = [i for i in listed(rd) if i.sec_type == "STK"]
    assert len({i.con_id for i in stocks}) >= 30
    assert {i.stock_type for i in stocks} == {"COMMON", "ETF"}
    spx = one(rd, symbol="SPX", sec_type="IND")
    assert (spx.con_id, spx.exchange, spx.min_tick) == (416904, "CBOE", 0.01)
    assert one(rd, symbol="NDX", sec_type="IND").exchange == "NASDAQ"
    for local, con_id, tick in (
        ("EUR.USD", 12087792, 0.00005),
        ("GBP.USD", 12087797, 0.00005),
        ("USD.JPY", 15016059, 0.005),
    ):
        fx = one(rd, local_symbol=local, sec_type="CASH")
        assert (fx.con_id, fx.exchange, fx.trading_class, fx.min_tick) == (
            con_id,
            "IDEALPRO",
            local,
            tick,
        )
    for root, months in (("ES", 4), ("NQ", 4), ("CL", 12)):
        assert len(rd.resolve(ContractQuery(symbol=root, sec_type="FUT"), MONDAY)) == months
    for underlying in ("SPY", "AAPL"):
        assert rd.option_params(underlying, "STK", 0, "SMART", MONDAY)


@pytest.mark.parametrize(
    ("symbol", "con_id", "primary"),
    [
        ("AAPL", 265598, "NASDAQ"),
        ("MSFT", 272093, "NASDAQ"),
        ("SPY", 756733, "ARCA"),
        ("QQQ", 320227571, "NASDAQ"),
        ("JPM", 1520593, "NYSE"),
        ("XOM", 13977, "NYSE"),
        ("TLT", 15547841, "NASDAQ"),
        ("GLD", 51529211, "ARCA"),
    ],
)
def test_stocks_carry_ib_conids_and_primary_exchanges(
    rd: RefData, symbol: str, con_id: int, primary: str
) -> None:
    stock = one(rd, symbol=symbol, sec_type="STK", exchange="SMART", currency="USD")
    assert (stock.con_id, stock.primary_exchange, stock.exchange) == (con_id, primary, "SMART")
    assert "SMART" in stock.valid_exchanges.split(",")
    assert {"LMT", "MKT", "MOC", "TRAIL", "WHATIF", "MIDPRICE"} <= set(stock.order_types.split(","))
    assert len(stock.market_rule_ids.split(",")) == len(stock.valid_exchanges.split(","))
    assert stock.model.price > 0


def _isin_check_digit_ok(isin: str) -> bool:
    digits = "".join(str(int(c, 36)) for c in isin[:-1])
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10 == int(isin[-1])


def test_every_isin_has_a_valid_check_digit(rd: RefData) -> None:
    isins = [v for i in listed(rd) for k, v in i.sec_ids if k == "ISIN"]
    assert len(isins) >= 30
    assert [x for x in isins if not _isin_check_digit_ok(x)] == []


def test_listed_conids_are_unique_below_the_generated_ranges_and_stable() -> None:
    first, second = RefData.load(), RefData.load()
    ids = [i.con_id for i in listed(first)]
    assert len(ids) == len(set(ids))
    assert max(ids) < _derivatives.FUT_BASE
    assert listed(first) == listed(second)
    query = ContractQuery(symbol="SPY", sec_type="OPT", strike=680, right="C")
    assert [i.con_id for i in first.resolve(query, MONDAY)] == [
        i.con_id for i in second.resolve(query, MONDAY)
    ]


def test_generated_conids_fit_a_signed_32_bit_int() -> None:
    assert _derivatives.OPT_END - 1 < 2**31 - 1
    assert _derivatives.FUT_BASE + _derivatives.FUT_CODES * _derivatives.FUT_ROOT_SPAN <= (
        _derivatives.OPT_BASE
    )


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_monday(year: int, month: int) -> date:
    day = _nth_weekday(year, month, 0, 4)
    return day + timedelta(days=7) if (day + timedelta(days=7)).month == month else day


def _good_friday(year: int) -> date:
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return date(year, month, day + 1) - timedelta(days=2)


def _observed(day: date) -> date | None:
    if day.weekday() == 5:  # Saturday: the Friday before, except New Year's Day
        return None if (day.month, day.day) == (1, 1) else day - timedelta(days=1)
    return day + timedelta(days=1) if day.weekday() == 6 else day


def nyse_holidays(year: int) -> set[date]:
    """NYSE Rule 7.2 full-day holidays; Juneteenth from 2022 (the first year NYSE closed)."""
    fixed = [date(year, 1, 1), date(year, 7, 4), date(year, 12, 25)]
    if year >= 2022:
        fixed.append(date(year, 6, 19))
    floating = [
        _nth_weekday(year, 1, 0, 3),
        _nth_weekday(year, 2, 0, 3),
        _good_friday(year),
        _last_monday(year, 5),
        _nth_weekday(year, 9, 0, 1),
        _nth_weekday(year, 11, 3, 4),
    ]
    return {d for d in map(_observed, fixed) if d is not None} | set(floating)


@pytest.mark.parametrize("year", range(2020, 2029))
def test_nyse_holidays_follow_the_exchange_rules(rd: RefData, year: int) -> None:
    aapl = one(rd, symbol="AAPL", sec_type="STK")
    closed = {
        day
        for offset in range(366)
        if (day := date(year, 1, 1) + timedelta(days=offset)).year == year
        and day.weekday() < 5
        and rd.session(aapl, day) is None
    }
    expected = nyse_holidays(year)
    if year == 2025:
        expected.add(date(2025, 1, 9))  # national day of mourning for President Carter
    assert closed == expected


def test_the_rules_give_the_holidays_nyse_published() -> None:
    """Spot checks of the rule helpers against NYSE's published calendars."""
    assert {date(2021, 12, 24), date(2022, 6, 20), date(2022, 12, 26), date(2023, 1, 2)} <= (
        nyse_holidays(2021) | nyse_holidays(2022) | nyse_holidays(2023)
    )
    assert date(2021, 12, 31) not in nyse_holidays(2021)  # New Year's Day 2022 was a Saturday
    assert date(2021, 6, 18) not in nyse_holidays(2021)  # Juneteenth closed NYSE from 2022
    assert {date(2020, 4, 10), date(2020, 7, 3), date(2024, 3, 29)} <= (
        nyse_holidays(2020) | nyse_holidays(2024)
    )


# ----- resolve ---------------------------------------------------------------------------


def test_resolve_by_conid_symbol_and_local_symbol_agree(rd: RefData) -> None:
    by_id = one(rd, con_id=265598)
    assert by_id.symbol == "AAPL"
    assert one(rd, symbol="aapl", sec_type="stk") == by_id
    assert one(rd, local_symbol="AAPL", sec_type="STK") == by_id
    assert one(rd, con_id=265598, exchange="SMART", currency="USD") == by_id


def test_explicit_exchange_is_reported_on_a_copy(rd: RefData) -> None:
    on_nasdaq = one(rd, symbol="AAPL", sec_type="STK", exchange="NASDAQ")
    assert on_nasdaq.exchange == "NASDAQ"
    assert replace(on_nasdaq, exchange="SMART") == one(rd, con_id=265598)
    assert one(rd, symbol="AAPL", sec_type="STK", exchange="").exchange == "SMART"
    assert rd.resolve(ContractQuery(symbol="AAPL", exchange="IDEALPRO"), MONDAY) == []


def test_filters_reject_mismatches(rd: RefData) -> None:
    assert rd.resolve(ContractQuery(symbol="AAPL", primary_exchange="NYSE"), MONDAY) == []
    assert one(rd, symbol="AAPL", primary_exchange="NASDAQ").con_id == 265598
    assert rd.resolve(ContractQuery(symbol="AAPL", currency="EUR"), MONDAY) == []
    assert rd.resolve(ContractQuery(symbol="AAPL", sec_type="FUT"), MONDAY) == []
    assert rd.resolve(ContractQuery(symbol="AAPL", sec_type="STK", right="C"), MONDAY) == []


@pytest.mark.parametrize(
    "query",
    [
        ContractQuery(symbol="NOSUCH"),
        ContractQuery(con_id=123),
        ContractQuery(sec_type="STK", exchange="SMART"),  # neither symbol nor local symbol
        ContractQuery(local_symbol="NOSUCH   261218C00600000"),
        ContractQuery(symbol="CL", sec_type="IND"),  # the synthetic model driver
    ],
)
def test_unknown_or_underspecified_queries_return_nothing(
    rd: RefData, query: ContractQuery
) -> None:
    assert rd.resolve(query, MONDAY) == []


def test_ambiguous_futures_query_returns_every_live_contract_in_expiry_order(
    rd: RefData,
) -> None:
    es = rd.resolve(ContractQuery(symbol="ES"), MONDAY)
    assert [i.local_symbol for i in es] == ["ESH6", "ESM6", "ESU6", "ESZ6"]
    assert [i.last_trade_date for i in es] == ["20260320", "20260618", "20260918", "20261218"]
    front = es[0]
    assert (front.sec_type, front.exchange, front.multiplier, front.min_tick) == (
        "FUT",
        "CME",
        "50",
        0.25,
    )
    assert (front.trading_class, front.contract_month, front.time_zone_id) == (
        "ES",
        "202603",
        "US/Central",
    )
    assert front.model.driver_con_id == 416904
    assert front.model.carry > 0


def test_futures_roll_and_month_filters(rd: RefData) -> None:
    after_roll = rd.resolve(ContractQuery(symbol="ES", sec_type="FUT"), date(2026, 3, 21))
    assert after_roll[0].local_symbol == "ESM6"
    assert one(rd, symbol="NQ", last_trade_date_or_contract_month="202609").local_symbol == "NQU6"
    assert one(rd, symbol="ES", last_trade_date_or_contract_month="20261218").contract_month == (
        "202612"
    )
    # CL: YYYYMM matches the contract month or the month of the last trade date.
    december = rd.resolve(
        ContractQuery(symbol="CL", sec_type="FUT", last_trade_date_or_contract_month="202612"),
        MONDAY,
    )
    assert [(i.local_symbol, i.last_trade_date) for i in december] == [
        ("CLZ6", "20261120"),
        ("CLF7", "20261221"),
    ]
    assert one(rd, local_symbol="CLZ6").multiplier == "1000"


def test_continuous_future_is_the_front_contract(rd: RefData) -> None:
    cont = one(rd, symbol="ES", sec_type="CONTFUT", exchange="CME")
    front = rd.resolve(ContractQuery(symbol="ES", sec_type="FUT"), MONDAY)[0]
    assert cont == replace(front, sec_type="CONTFUT")
    assert one(rd, symbol="CL", sec_type="CONTFUT").local_symbol == "CLJ6"


def test_expired_futures_need_include_expired(rd: RefData) -> None:
    query = ContractQuery(symbol="ES", sec_type="FUT", last_trade_date_or_contract_month="202512")
    assert rd.resolve(query, MONDAY) == []
    expired = only(rd, replace(query, include_expired=True))
    assert (expired.local_symbol, expired.last_trade_date) == ("ESZ5", "20251219")
    assert rd.by_con_id(expired.con_id) == expired
    assert rd.session(expired, date(2025, 12, 19)) is not None
    assert rd.session(expired, date(2025, 12, 22)) is None


def test_option_by_expiry_strike_and_right_is_one_occ_contract(rd: RefData) -> None:
    call = one(
        rd,
        symbol="SPY",
        sec_type="OPT",
        last_trade_date_or_contract_month="20261218",
        strike=680,
        right="CALL",
        exchange="SMART",
    )
    assert call.local_symbol == "SPY   261218C00680000"
    assert (call.trading_class, call.multiplier, call.right, call.strike) == (
        "SPY",
        "100",
        "C",
        680,
    )
    assert (call.underlying_con_id, call.model.driver_con_id) == (756733, 756733)
    assert call.model.iv == pytest.approx(0.18)
    assert one(rd, local_symbol="SPY   261218C00680000") == call
    assert one(rd, con_id=call.con_id) == call
    on_cboe = one(rd, local_symbol="SPY   261218C00680000", exchange="CBOE")
    assert on_cboe == replace(call, exchange="CBOE")


def test_full_chain_is_complete_sorted_and_fast() -> None:
    query = ContractQuery(symbol="SPY", sec_type="OPT")
    timings = []
    for _ in range(5):
        fresh = RefData.load()
        started = time.perf_counter()
        chain = fresh.resolve(query, MONDAY)
        timings.append(time.perf_counter() - started)
    assert min(timings) < 0.05, timings
    started = time.perf_counter()
    assert fresh.resolve(query, MONDAY) == chain
    assert time.perf_counter() - started < 0.05
    params = fresh.option_params("SPY", "STK", 756733, "SMART", MONDAY)[0]
    assert len(chain) == len(params.expirations) * len(params.strikes) * 2
    keys = [(i.last_trade_date, i.strike, i.right) for i in chain]
    assert keys == sorted(keys)
    assert len({i.con_id for i in chain}) == len(chain)
    puts = fresh.resolve(replace(query, right="P"), MONDAY)
    assert len(puts) == len(chain) // 2
    assert {i.right for i in puts} == {"P"}


@pytest.mark.parametrize("when", ["202613", "2026", "abcdef", "20260231", "0"])
def test_malformed_dates_match_nothing(rd: RefData, when: str) -> None:
    for symbol in ("SPY", "ES"):
        query = ContractQuery(
            symbol=symbol, last_trade_date_or_contract_month=when, include_expired=True
        )
        assert rd.resolve(query, MONDAY) == []


def test_expired_options_only_with_include_expired(rd: RefData) -> None:
    query = ContractQuery(
        symbol="AAPL", sec_type="OPT", last_trade_date_or_contract_month="20260220", right="P"
    )
    assert rd.resolve(query, MONDAY) == []
    expired = rd.resolve(replace(query, include_expired=True), MONDAY)
    assert expired
    assert {i.last_trade_date for i in expired} == {"20260220"}


# ----- conId codec -----------------------------------------------------------------------

SPY_GRID = RefData.load().option_params("SPY", "STK", 756733, "SMART", MONDAY)[0].strikes


@settings(max_examples=60, deadline=None)
@given(
    on=st.dates(min_value=date(2021, 1, 1), max_value=date(2040, 12, 31)),
    strike=st.sampled_from(SPY_GRID),
    right=st.sampled_from(["C", "P"]),
    pick=st.integers(min_value=0, max_value=30),
)
def test_any_generated_option_round_trips_through_its_conid(
    rd: RefData, on: date, strike: float, right: str, pick: int
) -> None:
    params = rd.option_params("SPY", "STK", 0, "SMART", on)[0]
    expiry = params.expirations[pick % len(params.expirations)]
    query = ContractQuery(
        symbol="SPY",
        sec_type="OPT",
        last_trade_date_or_contract_month=expiry,
        strike=strike,
        right=right,
    )
    inst = only(rd, query, on)
    assert RefData.load().by_con_id(inst.con_id) == inst


@settings(max_examples=60, deadline=None)
@given(on=st.dates(min_value=date(2020, 6, 1), max_value=date(2045, 12, 31)))
def test_any_generated_future_round_trips_through_its_conid(rd: RefData, on: date) -> None:
    for root in ("ES", "NQ", "CL"):
        contracts = rd.resolve(ContractQuery(symbol=root, sec_type="FUT"), on)
        assert all(c.last_trade_date >= f"{on:%Y%m%d}" for c in contracts)
        for contract in contracts:
            assert rd.by_con_id(contract.con_id) == contract


@given(
    code=st.integers(0, _derivatives.OPT_CODES - 1),
    day=st.integers(0, _derivatives.OPT_DAYS - 1),
    index=st.integers(0, _derivatives.OPT_STRIKES - 1),
    right=st.sampled_from("CP"),
)
def test_option_conid_codec_is_a_bijection(code: int, day: int, index: int, right: str) -> None:
    weeks, weekday = divmod(day, 5)
    expiry = _derivatives.OPT_EPOCH + timedelta(days=weeks * 7 + weekday)
    con_id = _derivatives.option_con_id(code, expiry, index, right)
    assert _derivatives.OPT_BASE <= con_id < 2**31
    assert _derivatives.decode_option(con_id) == (code, expiry, index, right)


QUERIES = st.builds(
    ContractQuery,
    con_id=st.sampled_from([0, 0, 0, 265598, 1_100_010_314, 2**31 - 1, -5]),
    symbol=st.sampled_from(["", "SPY", "spy", "ES", "CL", "AAPL", "EUR", "SPX"])
    | st.text(max_size=4),
    sec_type=st.sampled_from(["", "STK", "FUT", "OPT", "CASH", "IND", "CONTFUT", "BAG"]),
    last_trade_date_or_contract_month=st.sampled_from(["", "202603", "20261218"])
    | st.text(alphabet="0123456789 :", max_size=10),
    strike=st.sampled_from([0.0, 680.0, 255.0]) | st.floats(allow_nan=False),
    right=st.sampled_from(["", "C", "P", "CALL", "PUT", "?", "X"]),
    multiplier=st.sampled_from(["", "100", "50", "x"]),
    exchange=st.sampled_from(["", "SMART", "CBOE", "CME", "NASDAQ", "IDEALPRO", "??"]),
    primary_exchange=st.sampled_from(["", "NASDAQ", "ARCA"]),
    currency=st.sampled_from(["", "USD", "usd", "JPY"]),
    local_symbol=st.sampled_from(["", "ESH6", "SPY   261218C00680000", "EUR.USD"])
    | st.text(max_size=22),
    trading_class=st.sampled_from(["", "SPY", "ES", "NMS"]),
    include_expired=st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(query=QUERIES, on=st.dates(min_value=date(1990, 1, 1), max_value=date(2070, 12, 31)))
def test_resolve_answers_any_query_without_raising(
    rd: RefData, query: ContractQuery, on: date
) -> None:
    found = rd.resolve(query, on)
    assert len({i.con_id for i in found}) == len(found)
    for inst in found[:50]:  # each is what its conId says (CONTFUT: the front FUT's conId)
        back = rd.by_con_id(inst.con_id)
        assert back is not None
        assert replace(back, exchange=inst.exchange, sec_type=inst.sec_type) == inst


def test_conids_of_nothing_decode_to_none(rd: RefData) -> None:
    assert rd.by_con_id(_derivatives.future_con_id(999, 2026, 3)) is None  # no such root
    assert rd.by_con_id(_derivatives.future_con_id(1, 2026, 1)) is None  # ES has no F month
    assert rd.by_con_id(_derivatives.option_con_id(15, date(2026, 3, 20), 100, "C")) is None
    assert rd.by_con_id(_derivatives.option_con_id(0, date(2026, 4, 3), 100, "C")) is None
    assert rd.by_con_id(0) is None
    synthetic = rd.by_con_id(990900001)
    assert synthetic is not None
    assert synthetic.synthetic


# ----- search and option parameters ------------------------------------------------------


def test_search_lists_symbol_prefixes_before_name_matches(rd: RefData) -> None:
    assert [i.symbol for i in rd.search("aapl")] == ["AAPL"]
    assert [i.symbol for i in rd.search("MICRO")] == ["AMD", "MSFT"]  # by long name
    s_first = rd.search("s")
    assert [i.symbol for i in s_first[:3]] == ["SLV", "SPX", "SPY"]
    assert len(s_first) == 16
    assert s_first == rd.search("S")
    assert rd.search("") == []
    assert all(not i.synthetic for i in rd.search("CRUDE"))
    assert rd.search("EUR")[0].local_symbol == "EUR.USD"


def test_option_params_per_exchange_with_weeklies_monthlies_and_leaps(rd: RefData) -> None:
    chains = rd.option_params("SPY", "STK", 756733, "", MONDAY)
    assert [c.exchange for c in chains] == ["SMART", "CBOE", "AMEX"]
    assert len({(c.expirations, c.strikes) for c in chains}) == 1
    only = rd.option_params("SPY", "STK", 756733, "CBOE", MONDAY)
    assert [c.exchange for c in only] == ["CBOE"]
    chain = chains[0]
    assert (chain.underlying_con_id, chain.trading_class, chain.multiplier) == (
        756733,
        "SPY",
        "100",
    )
    exps = chain.expirations
    assert list(exps) == sorted(exps)
    assert "20260402" in exps  # Good Friday 2026-04-03: the weekly expires on Thursday
    assert "20260403" not in exps
    assert {"20260306", "20260320", "20260417", "20260821", "20261218", "20271217"} <= set(exps)
    assert {"20260302", "20260304"} <= set(exps)  # Monday/Wednesday dailies
    assert 680.0 in chain.strikes
    assert min(chain.strikes) >= 680 * 0.6
    assert max(chain.strikes) <= 680 * 1.4
    aapl = rd.option_params("AAPL", "STK", 0, "SMART", MONDAY)[0]
    assert {252.5, 255.0, 257.5} <= set(aapl.strikes)
    assert rd.option_params("MSFT", "STK", 272093, "", MONDAY) == []


# ----- sessions --------------------------------------------------------------------------


def test_equity_sessions_follow_daylight_saving_time(rd: RefData) -> None:
    aapl = one(rd, symbol="AAPL", sec_type="STK")
    winter = rd.session(aapl, MONDAY)
    assert winter is not None
    assert (winter.liquid_open, winter.liquid_close) == (
        utc("2026-03-02T14:30"),
        utc("2026-03-02T21:00"),
    )
    assert (winter.open, winter.close) == (utc("2026-03-02T09:00"), utc("2026-03-03T01:00"))
    summer = rd.session(aapl, EASTERN_SUMMER_DAY)
    assert summer is not None
    assert summer.liquid_open == utc("2026-07-15T13:30")
    assert summer.open.tzinfo is not None


def test_closed_on_holidays_and_weekends(rd: RefData) -> None:
    aapl = one(rd, symbol="AAPL", sec_type="STK")
    es = rd.resolve(ContractQuery(symbol="ES"), MONDAY)[0]
    for inst in (aapl, es):
        assert rd.session(inst, date(2026, 7, 3)) is None  # Independence Day observed
        assert rd.session(inst, date(2026, 3, 7)) is None  # Saturday
    assert rd.session(aapl, date(2026, 3, 8)) is None  # Sunday
    fx = one(rd, local_symbol="EUR.USD")
    assert rd.session(fx, date(2026, 7, 3)) is not None  # FX has no holidays


def test_futures_week_opens_sunday_evening_central_time(rd: RefData) -> None:
    es = rd.resolve(ContractQuery(symbol="ES"), MONDAY)[0]
    monday = rd.session(es, MONDAY)
    assert monday is not None
    assert monday.day == MONDAY
    assert (monday.open, monday.close) == (utc("2026-03-01T23:00"), utc("2026-03-02T22:00"))
    assert (monday.liquid_open, monday.liquid_close) == (
        utc("2026-03-02T14:30"),
        utc("2026-03-02T21:00"),
    )
    after_dst = rd.session(es, date(2026, 3, 9))  # US clocks changed on Sunday 2026-03-08
    assert after_dst is not None
    assert after_dst.open == utc("2026-03-08T22:00")
    assert rd.session(es, date(2026, 3, 1)) is None  # Sunday belongs to Monday's session
    cl = one(rd, local_symbol="CLK6")
    cl_session = rd.session(cl, MONDAY)
    assert cl_session is not None
    assert cl_session.liquid_close == utc("2026-03-02T19:30")
    fx = rd.session(one(rd, local_symbol="EUR.USD"), MONDAY)
    assert fx is not None
    assert (fx.open, fx.close) == (utc("2026-03-01T22:15"), utc("2026-03-02T22:00"))
    assert (fx.liquid_open, fx.liquid_close) == (fx.open, fx.close)


def test_sessions_between_covers_a_year_quickly_and_in_order(rd: RefData) -> None:
    aapl = one(rd, symbol="AAPL", sec_type="STK")
    started = time.perf_counter()
    # New York midnights: the 31 December 2025 session ends at 01:00 UTC on 1 January.
    year = rd.sessions_between(aapl, utc("2026-01-01T05:00"), utc("2027-01-01T05:00"))
    assert time.perf_counter() - started < 0.1
    assert len(year) == 251  # 261 weekdays, 10 of them NYSE holidays
    assert [s.day for s in year] == sorted(s.day for s in year)
    es = rd.resolve(ContractQuery(symbol="ES"), MONDAY)[0]
    # [Sunday 18:00 CT, Monday 00:00 UTC) overlaps only Monday's session.
    sunday_evening = rd.sessions_between(es, utc("2026-03-02T00:00"), utc("2026-03-02T00:01"))
    assert [s.day for s in sunday_evening] == [MONDAY]
    with pytest.raises(ValueError, match="timezone-aware"):
        rd.sessions_between(aapl, datetime(2026, 1, 1), utc("2026-02-01T00:00"))  # noqa: DTZ001


def test_trading_hours_strings_match_tws_format(rd: RefData) -> None:
    aapl = one(rd, symbol="AAPL", sec_type="STK")
    assert rd.trading_hours(aapl, date(2026, 3, 4)) == (
        "20260303:0400-20260303:2000;20260304:0400-20260304:2000;"
        "20260305:0400-20260305:2000;20260306:0400-20260306:2000;"
        "20260307:CLOSED;20260308:CLOSED;"
        "20260309:0400-20260309:2000;20260310:0400-20260310:2000"
    )
    assert rd.liquid_hours(aapl, date(2026, 3, 4)).startswith(
        "20260303:0930-20260303:1600;20260304:0930-20260304:1600"
    )
    # As TWS sends ES (captured 2023: "...;20231019:1700-20231020:1600;20231021:CLOSED;
    # 20231022:1700-20231023:1600"): each session under its own start date, Sunday's open
    # included, CLOSED only for a day on which no session starts or ends.
    es = rd.resolve(ContractQuery(symbol="ES"), MONDAY)[0]
    assert rd.trading_hours(es, MONDAY) == (
        "20260301:1700-20260302:1600;20260302:1700-20260303:1600;"
        "20260303:1700-20260304:1600;20260304:1700-20260305:1600;"
        "20260305:1700-20260306:1600;20260307:CLOSED;20260308:1700-20260309:1600"
    )
    # and its liquid hours (captured 2021: "20211031:CLOSED;20211101:0830-20211101:1500")
    assert rd.liquid_hours(es, MONDAY) == (
        "20260301:CLOSED;20260302:0830-20260302:1500;20260303:0830-20260303:1500;"
        "20260304:0830-20260304:1500;20260305:0830-20260305:1500;"
        "20260306:0830-20260306:1500;20260307:CLOSED;20260308:CLOSED"
    )
    # Martin Luther King Jr. Day, a Monday holiday: Tuesday's session opens on Monday evening
    friday = date(2026, 1, 16)
    es = rd.resolve(ContractQuery(symbol="ES"), friday)[0]
    assert "20260117:CLOSED;20260118:CLOSED;20260119:1700-20260120:1600" in rd.trading_hours(
        es, friday
    )


def parse_ib_hours(text: str, zone: str) -> tuple[list[date], list[tuple[datetime, datetime]]]:
    """IB's tradingHours form, read independently of ib_async: ``;``-separated entries
    ``yyyymmdd:CLOSED`` or ``yyyymmdd:hhmm-yyyymmdd:hhmm`` (wall clock in ``zone``).
    Returns each entry's leading date, in order, and the open spans."""
    tz = ZoneInfo(zone)

    def at(day: str, hhmm: str = "0000") -> datetime:
        return datetime.strptime(day + hhmm, "%Y%m%d%H%M").replace(tzinfo=tz)

    dates: list[date] = []
    spans: list[tuple[datetime, datetime]] = []
    for entry in text.split(";"):
        closed = re.fullmatch(r"(\d{8}):CLOSED", entry)
        span = re.fullmatch(r"(\d{8}):(\d{4})-(\d{8}):(\d{4})", entry)
        found = closed or span
        assert found is not None, entry
        if span:
            spans.append((at(span[1], span[2]), at(span[3], span[4])))
        dates.append(at(found[1]).date())
    return dates, spans


HOURS_DAYS = [
    MONDAY,
    date(2026, 3, 8),  # US clocks change on this Sunday
    date(2026, 1, 16),  # Friday before Martin Luther King Jr. Day
    date(2026, 11, 25),  # Thanksgiving week
    date(2026, 12, 31),  # New Year
    date(2022, 6, 17),  # Juneteenth observed on Monday 2022-06-20
]


HOURS_INSTRUMENTS = [("AAPL", "STK"), ("ES", "FUT"), ("CL", "FUT"), ("EUR", "CASH"), ("SPX", "IND")]


@pytest.mark.parametrize("around", HOURS_DAYS)
@pytest.mark.parametrize(("symbol", "sec_type"), HOURS_INSTRUMENTS)
def test_hours_strings_give_back_exactly_our_sessions(
    rd: RefData, symbol: str, sec_type: str, around: date
) -> None:
    check_hours_strings(
        rd, rd.resolve(ContractQuery(symbol=symbol, sec_type=sec_type), around)[0], around
    )


@settings(max_examples=60, deadline=None)
@given(
    instrument=st.sampled_from(HOURS_INSTRUMENTS),
    around=st.dates(min_value=date(2020, 1, 1), max_value=date(2028, 12, 20)),
)
def test_hours_strings_of_any_week_give_back_exactly_our_sessions(
    rd: RefData, instrument: tuple[str, str], around: date
) -> None:
    symbol, sec_type = instrument
    check_hours_strings(
        rd, rd.resolve(ContractQuery(symbol=symbol, sec_type=sec_type), around)[0], around
    )


def check_hours_strings(rd: RefData, inst: Instrument, around: date) -> None:
    """ib_async and an independent reader of IB's format both get back exactly the sessions
    that touch the window's days; every window day is described once, closed or open."""
    tz = ZoneInfo(inst.time_zone_id)
    window = [around + timedelta(days=d) for d in range(-1, 7)]
    near = rd.sessions_between(
        inst,
        datetime.combine(window[0] - timedelta(days=3), datetime.min.time(), tz),
        datetime.combine(window[-1] + timedelta(days=3), datetime.min.time(), tz),
    )
    details = ContractDetails(
        timeZoneId=inst.time_zone_id,
        tradingHours=rd.trading_hours(inst, around),
        liquidHours=rd.liquid_hours(inst, around),
    )
    for text, parsed, spans in (
        (details.tradingHours, details.tradingSessions(), [(s.open, s.close) for s in near]),
        (
            details.liquidHours,
            details.liquidSessions(),
            [(s.liquid_open, s.liquid_close) for s in near],
        ),
    ):
        touching = [
            (a, b)
            for a, b in spans
            if a.astimezone(tz).date() <= window[-1] and b.astimezone(tz).date() >= window[0]
        ]
        assert [(t.start, t.end) for t in parsed] == touching
        dates, open_spans = parse_ib_hours(text, inst.time_zone_id)
        assert open_spans == touching
        assert dates == sorted(dates)
        open_days = {
            d
            for a, b in touching
            for d in window
            if a.astimezone(tz).date() <= d <= b.astimezone(tz).date()
        }
        closed_days = [d for d in window if f"{d:%Y%m%d}:CLOSED" in text.split(";")]
        assert closed_days == [d for d in window if d not in open_days]
        assert len(dates) == len(touching) + len(closed_days)


# ----- user extension files --------------------------------------------------------------


def write(tmp_path: Path, doc: dict[str, Any], name: str = "extra.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_extension_file_overrides_and_adds_instruments(tmp_path: Path) -> None:
    # fmt: off
    extra = write(
        tmp_path,
        {
            "instruments": [
                {"template": "us_stock", "con_id": 265598, "symbol": "AAPL",
                 "primary_exchange": "NASDAQ", "long_name": "APPLE INC",
                 "model": {"price": 123.45}},
                {"template": "us_stock", "con_id": 990500001, "symbol": "ACME",
                 "primary_exchange": "NYSE", "long_name": "ACME CORP",
                 "model": {"price": 42.0, "vol": 0.3}},
                {"template": "us_etf", "con_id": 990500002, "symbol": "IWM",
                 "primary_exchange": "ARCA", "model": {"price": 200.0}},
            ],
            "option_chains": [
                {"template": "us_equity_option", "code": 5, "underlying_con_id": 990500001,
                 "strike_bands": [[0.2, 1.0]], "model": {"iv": 0.4}},
            ],
        },
    )
    # fmt: on
    rd = RefData.load([extra])
    aapl = rd.by_con_id(265598)
    assert aapl is not None
    assert aapl.model.price == 123.45
    assert aapl.valid_exchanges.startswith("SMART,")  # the shipped template still applies
    acme = one(rd, symbol="ACME", sec_type="STK", exchange="SMART")
    assert (acme.con_id, acme.calendar, acme.time_zone_id) == (990500001, "us_equity", "US/Eastern")
    # Same symbol + secType + currency replaces the shipped IWM, whatever its conId.
    assert rd.by_con_id(9579970) is None
    assert one(rd, symbol="IWM", sec_type="STK").con_id == 990500002
    assert rd.option_params("ACME", "STK", 990500001, "", MONDAY)[0].strikes[0] == 34.0
    # A replacement is the later entry alone: nothing of the shipped AAPL entry is merged in.
    assert (aapl.sec_ids, aapl.industry, aapl.trading_class) == ((), "", "AAPL")
    assert RefData.load().by_con_id(265598) != aapl  # loading never mutates shared state


# fmt: off
BAD_FILES: list[tuple[dict[str, Any], str]] = [
    ({"instruments": [{"con_id": 1, "symbol": "X", "sec_type": "STK", "exchange": "SMART",
                       "currency": "USD", "min_tick": "abc", "model": {"price": 1}}]},
     "$.instruments[0].min_tick: expected a number"),
    ({"instruments": [{"template": "us_stock", "con_id": 5, "symbol": "X", "colour": "red",
                       "model": {"price": 1}}]},
     "$.instruments[0].colour: expected an Instrument field name"),
    ({"instruments": [{"template": "us_stock", "con_id": 5, "symbol": "X",
                       "calendar": "lunar", "model": {"price": 1}}]},
     "$.instruments[0].calendar: expected one of the calendars"),
    ({"instruments": [{"template": "us_stock", "con_id": 1_500_000_000, "symbol": "X",
                       "model": {"price": 1}}]},
     "$.instruments[0].con_id: expected a conId from 1 to 1099999999"),
    ({"instruments": [{"template": "us_stock", "con_id": 7, "symbol": "X"}]},
     "$.instruments[0].model.price: expected a reference price > 0, got nothing"),
    ({"instruments": [{"template": "nope", "con_id": 7, "symbol": "X"}]},
     "$.instruments[0].template: expected one of the templates"),
    ({"calendars": {"late": {"time_zone": "Mars/Olympus", "weekdays": ["MON"],
                             "open": "09:00", "close": "10:00"}}},
     "$.calendars.late.time_zone: expected an IANA time zone"),
    ({"futures": [{"template": "cme_future", "code": 9, "symbol": "YM", "exchange": "CBOT",
                   "months": "HMUZ", "listed": 4, "last_trade": "third_friday",
                   "model": {"driver_con_id": 31337}}]},
     "$.futures[0].model.driver_con_id: expected the conId of a listed instrument"),
    ({"option_chains": [{"code": 99, "underlying_con_id": 265598}]},
     "$.option_chains[0].code: expected an integer from 0 to 15"),
    ({"option_chains": [{"code": 9, "underlying_con_id": 265598,
                         "strike_bands": [[0.1, 0.3]]}]},
     "$.option_chains[0].strike_bands: expected a list of [fraction 0..1, step multiple"),
    ({"instruments": [{"template": "us_stock", "con_id": 7, "symbol": "X",
                   "model": {"price": 1, "driver_con_id": 8}}]},
 "$.instruments[0].model.driver_con_id: expected 0 or another listed conId, got 8"),
({"calendars": {"x": {"time_zone": "UTC", "weekdays": ["MON"], "open": "9:00",
                      "close": "10:00"}}},
 '$.calendars.x.open: expected a time "HH:MM", got "9:00"'),
({"instruments": {}}, "$.instruments: expected a list"),
    ({"instrument": []}, "$.instrument: expected one of the sections"),
]
# fmt: on


@pytest.mark.parametrize(("doc", "needle"), BAD_FILES)
def test_bad_extension_file_names_file_path_and_expectation(
    tmp_path: Path, doc: dict[str, Any], needle: str
) -> None:
    path = write(tmp_path, doc)
    with pytest.raises(ValueError, match="^" + str(path).replace(".", r"\.")) as caught:
        RefData.load([path])
    assert needle in str(caught.value)


def test_unreadable_or_invalid_json_files_are_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"instruments": [\n  {"con_id": 1,}\n]}', encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON: .* line 2"):
        RefData.load([broken])
    with pytest.raises(ValueError, match=r"missing\.json: cannot read reference-data file"):
        RefData.load([tmp_path / "missing.json"])
