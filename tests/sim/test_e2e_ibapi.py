"""End to end with IB's official client: ``ibapi`` over a real socket to a real SimGateway.

Every request the runtime needs is sent through ibapi's own ``EClient`` with its own
``Contract`` objects, and the values its ``Decoder`` hands to the ``EWrapper`` are
asserted (not just "no error").  The ``gateway`` fixture decodes every frame sent with
both ib_async's and ibapi's decoders at teardown and fails on any leftover or missing
field; the ``ib_async_decoder_errors`` fixture fails on any ib_async decode error.

The simulated clock starts on Monday 2026-03-02 09:25 US/Eastern (pre-market), seed 7.
Historical requests that must be reproducible end on Friday's close, before that start.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import ibapi.client
import pytest
from ib_async import IB, Option, Stock
from ibapi.common import BarData
from ibapi.contract import Contract, ContractDetails
from ibapi_app import IbapiClient

from ibpilot.sim import SimGateway

CLIENT_ID = 11
ACCOUNT = "DU0000001"
ET = ZoneInfo("US/Eastern")
SIM_DAY = date(2026, 3, 2)  # the gateway fixture's first (simulated) day
FRIDAY_CLOSE = "20260227 16:00:00 US/Eastern"  # the last regular close before SIM_DAY
AAPL_CON_ID = 265598
SPX_CON_ID = 416904

INTRADAY_FORMAT_1 = re.compile(r"^\d{8} \d\d:\d\d:\d\d US/Eastern$")
DAY_FORMAT = re.compile(r"^\d{8}$")
EPOCH_FORMAT = re.compile(r"^\d{10}$")

# tick types (IB's TickTypeEnum)
BID_SIZE, BID, ASK, ASK_SIZE, LAST, LAST_SIZE = 0, 1, 2, 3, 4, 5
HIGH, LOW, VOLUME, CLOSE, OPEN, LAST_TIMESTAMP = 6, 7, 8, 9, 14, 45
TICK_CALLBACKS = ("tickPrice", "tickSize", "tickString", "tickGeneric")


# --- contracts, built with ibapi's own Contract ------------------------------------------
def stock(symbol: str = "AAPL") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "STK", "SMART", "USD"
    return c


def future(symbol: str, exchange: str, month: str = "") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "FUT", exchange, "USD"
    c.lastTradeDateOrContractMonth = month
    return c


def forex(base: str = "EUR", quote: str = "USD") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = base, "CASH", "IDEALPRO", quote
    return c


def index(symbol: str = "SPX", exchange: str = "CBOE") -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "IND", exchange, "USD"
    return c


def option(symbol: str, expiry: str, strike: float, right: str) -> Contract:
    c = Contract()
    c.symbol, c.secType, c.exchange, c.currency = symbol, "OPT", "SMART", "USD"
    c.lastTradeDateOrContractMonth, c.strike, c.right = expiry, strike, right
    return c


# --- fixtures and helpers ------------------------------------------------------------------
@pytest.fixture
async def app(gateway: SimGateway) -> AsyncIterator[IbapiClient]:
    """ibapi's EClient connected to the gateway, past the nextValidId/managedAccounts start."""
    client = IbapiClient()
    await client.connect(gateway.port, CLIENT_ID)
    await client.wait_for("nextValidId")
    await client.wait_for("managedAccounts")
    yield client
    await client.disconnect()


async def wait_until(cond: Callable[[], bool], what: str, timeout: float = 5) -> None:
    """Poll ``cond`` until true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout}s")
        await asyncio.sleep(0.01)


def args_of(app: IbapiClient, name: str, req_id: int) -> list[tuple[Any, ...]]:
    """Arguments of every ``name`` callback for ``req_id`` (the first argument)."""
    return [a for _, a in app.calls(name) if a and a[0] == req_id]


def ticks(app: IbapiClient, req_id: int) -> list[tuple[str, tuple[Any, ...]]]:
    """Every tick callback of one market-data request, in arrival order."""
    return [(n, a) for n, a in app.calls() if n in TICK_CALLBACKS and a[0] == req_id]


def _tick_values(
    app: IbapiClient, name: str, req_id: int, tick_type: int, upto: int | None
) -> list[Any]:
    calls = app.calls()[:upto]
    return [a[2] for n, a in calls if n == name and a[0] == req_id and a[1] == tick_type]


def prices(app: IbapiClient, req_id: int, tick_type: int, upto: int | None = None) -> list[float]:
    """Prices of one tick type, in arrival order (of the first ``upto`` callbacks)."""
    return _tick_values(app, "tickPrice", req_id, tick_type, upto)


def sizes(app: IbapiClient, req_id: int, tick_type: int, upto: int | None = None) -> list[Decimal]:
    """Sizes of one tick type, in arrival order (of the first ``upto`` callbacks)."""
    return _tick_values(app, "tickSize", req_id, tick_type, upto)


async def barrier(app: IbapiClient) -> int:
    """Round-trip a reqCurrentTime; returns the index of its answer among all callbacks.

    The gateway answers requests in order and ibapi dispatches in order, so every
    callback caused before the requests sent so far were served comes before it.
    """
    before = len(app.calls("currentTime"))
    app.client.reqCurrentTime()
    await wait_until(lambda: len(app.calls("currentTime")) > before, "currentTime")
    names = [n for n, _ in app.calls()]
    seen = 0
    for i, name in enumerate(names):
        if name == "currentTime":
            seen += 1
            if seen == before + 1:
                return i
    raise AssertionError("currentTime vanished")  # pragma: no cover


async def contract_details(
    app: IbapiClient, req_id: int, contract: Contract
) -> list[ContractDetails]:
    app.client.reqContractDetails(req_id, contract)
    await app.wait_for("contractDetailsEnd", lambda a: a[0] == req_id)
    return [a[1] for a in args_of(app, "contractDetails", req_id)]


async def history(
    app: IbapiClient,
    req_id: int,
    contract: Contract,
    end: str,
    duration: str,
    bar_size: str,
    what: str,
    use_rth: int,
    format_date: int,
    timeout: float = 8,
) -> tuple[list[BarData], str, str]:
    """reqHistoricalData (no keepUpToDate): (bars, start, end) once historicalDataEnd came."""
    app.client.reqHistoricalData(
        req_id, contract, end, duration, bar_size, what, use_rth, format_date, False, []
    )
    try:
        done = await app.wait_for("historicalDataEnd", lambda a: a[0] == req_id, timeout)
    except TimeoutError:
        raise AssertionError(f"no historicalDataEnd; errors: {app.errors(req_id)}") from None
    bars = [a[1] for a in args_of(app, "historicalData", req_id)]
    return bars, done[1], done[2]


def parse_bar_time(text: str, format_date: int) -> datetime:
    """An intraday bar's date as sent with formatDate 1 or 2, as an aware datetime."""
    if format_date == 2:
        assert EPOCH_FORMAT.match(text), text
        return datetime.fromtimestamp(int(text), ET)
    assert INTRADAY_FORMAT_1.match(text), text
    return datetime.strptime(text[:17], "%Y%m%d %H:%M:%S").replace(tzinfo=ET)


def _day(text: str) -> date:
    assert DAY_FORMAT.match(text), text
    return date(int(text[:4]), int(text[4:6]), int(text[6:8]))


def assert_ohlc(bar: BarData, what: str) -> None:
    assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high, bar
    if what == "TRADES":
        assert bar.low <= float(bar.wap) <= bar.high, bar
        if bar.barCount == 0:  # no trade in the bar: flat at the last price, as IB sends
            assert bar.volume == 0, bar
            assert bar.open == bar.high == bar.low == bar.close == float(bar.wap), bar
        else:
            assert bar.volume > 0, bar
            assert bar.barCount > 0, bar
    else:  # IB sends -1 for volume, WAP and count of quote bars
        assert bar.volume == -1, bar
        assert bar.wap == -1, bar
        assert bar.barCount == -1, bar


# --- connection ------------------------------------------------------------------------------
async def test_connect_gives_next_valid_id_account_and_farm_notices(app: IbapiClient) -> None:
    assert app.client.serverVersion() == 178
    assert app.calls("connectAck")
    (next_id,) = await app.wait_for("nextValidId")
    assert next_id >= 1
    assert await app.wait_for("managedAccounts") == (ACCOUNT,)
    for code in (2104, 2106, 2158):  # market data, HMDS and sec-def farms are OK
        assert "farm connection is OK" in await app.wait_error(-1, code)
    # the handshake's connection time is the simulated clock's, not the wall clock's
    conn_time = app.client.twsConnectionTime()  # ibapi keeps the handshake's raw bytes
    conn_text = conn_time.decode() if isinstance(conn_time, bytes) else conn_time
    conn_day = date(int(conn_text[:4]), int(conn_text[4:6]), int(conn_text[6:8]))
    assert abs((conn_day - SIM_DAY).days) <= 1


async def test_current_time_is_the_simulated_clock(app: IbapiClient, gateway: SimGateway) -> None:
    app.client.reqCurrentTime()
    (stamp,) = await app.wait_for("currentTime")
    assert isinstance(stamp, int)
    assert abs(stamp - gateway.clock.epoch()) <= 2
    local = datetime.fromtimestamp(stamp, ET)
    assert local.date() == SIM_DAY
    assert (local.hour, local.minute) == (9, 25)


async def test_req_ids_answers_the_next_valid_order_id(app: IbapiClient) -> None:
    (first,) = await app.wait_for("nextValidId")
    app.client.reqIds(-1)
    await wait_until(lambda: len(app.calls("nextValidId")) == 2, "a second nextValidId")
    assert app.calls("nextValidId")[1][1] == (first,)


async def test_req_managed_accts_lists_the_account(app: IbapiClient) -> None:
    app.client.reqManagedAccts()
    await wait_until(lambda: len(app.calls("managedAccounts")) == 2, "a second managedAccounts")
    assert app.calls("managedAccounts")[1][1] == (ACCOUNT,)


# --- contract details ------------------------------------------------------------------------
async def test_stock_contract_details_carry_ibs_fields(app: IbapiClient) -> None:
    (d,) = await contract_details(app, 10, stock("AAPL"))
    c = d.contract
    assert (c.conId, c.symbol, c.secType, c.currency) == (AAPL_CON_ID, "AAPL", "STK", "USD")
    assert (c.exchange, c.primaryExchange, c.localSymbol) == ("SMART", "NASDAQ", "AAPL")
    assert c.tradingClass == d.marketName == "NMS"
    assert d.minTick == 0.01
    assert d.longName == "APPLE INC"
    assert d.timeZoneId == "US/Eastern"
    assert d.stockType == "COMMON"
    assert "SMART" in d.validExchanges.split(",")
    assert len(d.marketRuleIds.split(",")) == len(d.validExchanges.split(","))
    assert "LMT" in d.orderTypes.split(",")
    assert "20260302:0400-20260302:2000" in d.tradingHours.split(";")
    assert "20260302:0930-20260302:1600" in d.liquidHours.split(";")
    assert "20260307:CLOSED" in d.liquidHours.split(";")  # Saturday
    assert [(t.tag, t.value) for t in d.secIdList] == [("ISIN", "US0378331005")]
    assert (d.minSize, d.sizeIncrement, d.suggestedSizeIncrement) == (1, 1, 100)
    assert args_of(app, "contractDetailsEnd", 10) == [(10,)]


async def test_contract_details_by_con_id_alone_find_the_stock(app: IbapiClient) -> None:
    c = Contract()
    c.conId = AAPL_CON_ID
    found = await contract_details(app, 11, c)
    assert found
    assert {(d.contract.conId, d.contract.symbol, d.contract.secType) for d in found} == {
        (AAPL_CON_ID, "AAPL", "STK")
    }


async def test_future_contract_details_for_one_month(app: IbapiClient) -> None:
    (d,) = await contract_details(app, 12, future("ES", "CME", "202606"))
    c = d.contract
    assert (c.symbol, c.secType, c.exchange, c.currency) == ("ES", "FUT", "CME", "USD")
    assert c.multiplier == "50"
    assert d.contractMonth == "202606"
    # Juneteenth (Friday 19 June 2026) moves the last trading day to the Thursday
    assert c.lastTradeDateOrContractMonth == d.realExpirationDate == "20260618"
    assert (c.localSymbol, c.tradingClass) == ("ESM6", "ES")
    assert d.minTick == 0.25
    assert d.timeZoneId == "US/Central"
    assert (d.underConId, d.underSymbol, d.underSecType) == (SPX_CON_ID, "SPX", "IND")
    assert c.conId > 0
    assert "20260302:0830-20260302:1500" in d.liquidHours.split(";")


async def test_future_contract_details_without_month_list_the_live_expiries(
    app: IbapiClient,
) -> None:
    found = await contract_details(app, 13, future("ES", "CME"))
    assert len(found) >= 4
    expiries = [d.contract.lastTradeDateOrContractMonth for d in found]
    assert expiries == sorted(expiries)
    assert all(e >= "20260302" for e in expiries)
    assert len({d.contract.conId for d in found}) == len(found)
    assert all(d.contract.localSymbol.startswith("ES") for d in found)
    assert all(d.contract.multiplier == "50" for d in found)


async def test_forex_contract_details_are_idealpro_cash(app: IbapiClient) -> None:
    (d,) = await contract_details(app, 14, forex("EUR", "USD"))
    c = d.contract
    assert (c.symbol, c.secType, c.exchange, c.currency) == ("EUR", "CASH", "IDEALPRO", "USD")
    assert c.localSymbol == c.tradingClass == "EUR.USD"
    assert d.minTick == 0.00005
    assert d.validExchanges == "IDEALPRO"
    assert c.multiplier == ""
    assert d.tradingHours


async def test_option_contract_details_carry_strike_right_and_multiplier(
    app: IbapiClient,
) -> None:
    (d,) = await contract_details(app, 15, option("AAPL", "20260320", 230, "C"))
    c = d.contract
    assert (c.symbol, c.secType, c.strike, c.right) == ("AAPL", "OPT", 230.0, "C")
    assert c.lastTradeDateOrContractMonth == "20260320"
    assert c.multiplier == "100"
    assert c.localSymbol == "AAPL  260320C00230000"  # OCC symbology
    assert c.tradingClass == "AAPL"
    assert d.contractMonth == "202603"
    assert (d.underConId, d.underSymbol, d.underSecType) == (AAPL_CON_ID, "AAPL", "STK")
    assert "20260302:0930-20260302:1600" in d.tradingHours.split(";")


async def test_unknown_symbol_gets_error_200_and_no_details(app: IbapiClient) -> None:
    app.client.reqContractDetails(16, stock("ZZZZQX"))
    text = await app.wait_error(16, 200)
    assert text == "No security definition has been found for the request"
    await barrier(app)
    assert args_of(app, "contractDetails", 16) == []
    assert args_of(app, "contractDetailsEnd", 16) == []


async def test_matching_symbols_describe_the_stock(app: IbapiClient) -> None:
    app.client.reqMatchingSymbols(17, "AAPL")
    (_, samples) = await app.wait_for("symbolSamples", lambda a: a[0] == 17)
    by_con_id = {s.contract.conId: s for s in samples}
    aapl = by_con_id[AAPL_CON_ID]
    c = aapl.contract
    assert (c.symbol, c.secType, c.primaryExchange, c.currency) == ("AAPL", "STK", "NASDAQ", "USD")
    assert c.description == "APPLE INC"
    assert "OPT" in aapl.derivativeSecTypes


async def test_sec_def_opt_params_list_a_chain_whose_contracts_exist(app: IbapiClient) -> None:
    app.client.reqSecDefOptParams(18, "AAPL", "", "STK", AAPL_CON_ID)
    await app.wait_for("securityDefinitionOptionParameterEnd", lambda a: a[0] == 18)
    rows = args_of(app, "securityDefinitionOptionParameter", 18)
    assert rows
    exchanges = {r[1] for r in rows}
    assert "SMART" in exchanges
    for _, _exchange, und_con_id, trading_class, multiplier, expirations, strikes in rows:
        assert (und_con_id, trading_class, multiplier) == (AAPL_CON_ID, "AAPL", "100")
        assert expirations
        assert strikes
        assert all(DAY_FORMAT.match(e) and e >= "20260302" for e in expirations)
    smart = next(r for r in rows if r[1] == "SMART")
    expirations, strikes = sorted(smart[5]), sorted(smart[6])
    assert "20260320" in expirations
    assert 230.0 in strikes
    # a contract named by the chain resolves
    (d,) = await contract_details(app, 19, option("AAPL", "20260320", 230.0, "P"))
    assert (d.contract.strike, d.contract.right, d.contract.multiplier) == (230.0, "P", "100")


# --- market data -------------------------------------------------------------------------------
@pytest.mark.sim(speed=10)
async def test_streaming_market_data_delivers_quotes_trades_and_session_stats(
    app: IbapiClient,
) -> None:
    app.client.reqMktData(20, stock("AAPL"), "", False, False, [])
    params = await app.wait_for("tickReqParams", lambda a: a[0] == 20)
    assert params[1] == 0.01
    assert params[3] == 3
    assert await app.wait_for("marketDataType", lambda a: a[0] == 20) == (20, 1)
    await wait_until(
        lambda: (
            all(prices(app, 20, t) for t in (BID, ASK, LAST, HIGH, LOW, CLOSE, OPEN))
            and all(sizes(app, 20, t) for t in (BID_SIZE, ASK_SIZE, LAST_SIZE, VOLUME))
        ),
        "bid/ask/last, sizes, volume and session stats",
    )
    first_count = len(ticks(app, 20))
    await wait_until(lambda: len(ticks(app, 20)) > first_count + 10, "ticks to keep coming")
    cut = await barrier(app)  # whole feed steps before it: the values are consistent
    bids, asks = prices(app, 20, BID, cut), prices(app, 20, ASK, cut)
    assert 100 < bids[-1] < asks[-1] < 400
    assert all(abs(a - b) < 1 for a, b in zip(bids, asks, strict=False))
    assert all(s > 0 for t in (BID_SIZE, ASK_SIZE, LAST_SIZE) for s in sizes(app, 20, t, cut))
    volumes = sizes(app, 20, VOLUME, cut)
    assert volumes == sorted(volumes)
    assert volumes[-1] > 0
    highs, lows = prices(app, 20, HIGH, cut), prices(app, 20, LOW, cut)
    lasts = prices(app, 20, LAST, cut)
    assert highs == sorted(highs)
    assert lows == sorted(lows, reverse=True)
    assert lows[-1] <= lasts[-1] <= highs[-1]
    assert lows[-1] <= min(lasts)
    assert max(lasts) <= highs[-1]
    stamps = [int(a[2]) for a in args_of(app, "tickString", 20) if a[1] == LAST_TIMESTAMP]
    assert stamps
    assert stamps == sorted(stamps)
    assert datetime.fromtimestamp(stamps[-1], ET).date() == SIM_DAY
    assert not app.errors(20)


@pytest.mark.sim(speed=10)
async def test_cancel_mkt_data_stops_the_ticks(app: IbapiClient, gateway: SimGateway) -> None:
    app.client.reqMktData(21, stock("SPY"), "", False, False, [])
    await wait_until(lambda: len(ticks(app, 21)) >= 20, "SPY ticks")
    app.client.cancelMktData(21)
    cut = await barrier(app)
    assert gateway.core.lines.in_use == 0
    await asyncio.sleep(0.5)  # 5 simulated seconds: a live stream would tick
    late = [n for i, (n, a) in enumerate(app.calls()) if i > cut and n in TICK_CALLBACKS]
    assert late == []
    assert not app.errors(21)


async def test_cancel_mkt_data_of_an_unknown_id_is_error_300(app: IbapiClient) -> None:
    app.client.cancelMktData(22)
    text = await app.wait_error(22, 300)
    assert "22" in text


@pytest.mark.sim(speed=10)
async def test_snapshot_ends_with_tick_snapshot_end_and_nothing_after(
    app: IbapiClient, gateway: SimGateway
) -> None:
    app.client.reqMktData(23, stock("AAPL"), "", True, False, [])
    await app.wait_for("tickSnapshotEnd", lambda a: a[0] == 23)
    assert prices(app, 23, BID)
    assert prices(app, 23, ASK)
    assert prices(app, 23, BID)[0] < prices(app, 23, ASK)[0]
    assert prices(app, 23, LAST)
    assert sizes(app, 23, VOLUME)
    assert gateway.core.lines.in_use == 0  # a snapshot holds no market-data line
    await asyncio.sleep(0.5)
    calls = app.calls()
    end = next(i for i, (n, a) in enumerate(calls) if n == "tickSnapshotEnd" and a[0] == 23)
    assert [n for n, a in calls[end + 1 :] if n in TICK_CALLBACKS and a[0] == 23] == []


async def test_frozen_market_data_type_is_reported_while_the_market_is_shut(
    app: IbapiClient,
) -> None:
    app.client.reqMarketDataType(2)
    app.client.reqMktData(24, index("SPX"), "", False, False, [])  # cash index opens at 09:30
    app.client.reqMktData(25, stock("AAPL"), "", False, False, [])  # pre-market is trading
    assert await app.wait_for("marketDataType", lambda a: a[0] == 24) == (24, 2)
    assert await app.wait_for("marketDataType", lambda a: a[0] == 25) == (25, 1)
    await wait_until(lambda: prices(app, 24, CLOSE), "SPX's previous close")
    assert prices(app, 24, BID) == []  # an index has no quotes
    assert not app.errors(24)
    assert not app.errors(25)


async def test_invalid_market_data_type_is_refused(app: IbapiClient) -> None:
    app.client.reqMarketDataType(7)
    await app.wait_for("error", lambda a: a[2] == 321)


# --- real-time bars ------------------------------------------------------------------------------
@pytest.mark.sim(speed=60)
@pytest.mark.parametrize(
    ("contract", "what"),
    [(stock("AAPL"), "TRADES"), (forex("EUR", "USD"), "MIDPOINT"), (stock("SPY"), "BID")],
    ids=["AAPL-TRADES", "EURUSD-MIDPOINT", "SPY-BID"],
)
async def test_real_time_bars_come_every_five_seconds_until_cancelled(
    app: IbapiClient, gateway: SimGateway, contract: Contract, what: str
) -> None:
    app.client.reqRealTimeBars(30, contract, 5, what, False, [])
    await wait_until(lambda: len(args_of(app, "realtimeBar", 30)) >= 4, "4 real-time bars")
    bars = args_of(app, "realtimeBar", 30)
    times = [b[1] for b in bars]
    assert all(t % 5 == 0 for t in times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    if what == "TRADES":  # a 5-second interval without prints has no TRADES bar here
        assert all(g > 0 and g % 5 == 0 for g in gaps), gaps
    else:  # quotes exist every second of trading hours
        assert gaps == [5] * len(gaps)
    assert times[-1] <= gateway.clock.epoch()
    assert datetime.fromtimestamp(times[0], ET).date() == SIM_DAY
    for _, _t, open_, high, low, close, volume, wap, count in bars:
        assert low <= min(open_, close) <= max(open_, close) <= high
        if what == "TRADES":
            assert volume >= 0
            assert count >= 0
            if count:
                assert low <= float(wap) <= high
        else:  # IB sends -1 for volume, WAP and count of quote bars
            assert (volume, wap, count) == (-1, -1, -1)
    app.client.cancelRealTimeBars(30)
    cut = await barrier(app)
    assert gateway.core.feed.subscription_count == 0
    await asyncio.sleep(0.3)  # 18 simulated seconds: 3 more bars if not cancelled
    late = [n for i, (n, _) in enumerate(app.calls()) if i > cut and n == "realtimeBar"]
    assert late == []
    assert not app.errors(30)


@pytest.mark.sim(speed=60)
async def test_real_time_trades_bars_of_forex_are_refused_and_other_streams_go_on(
    app: IbapiClient, gateway: SimGateway
) -> None:
    app.client.reqRealTimeBars(31, forex("EUR", "USD"), 5, "TRADES", False, [])
    app.client.reqRealTimeBars(32, stock("AAPL"), 5, "MIDPOINT", False, [])
    text = await app.wait_error(31, 162)
    assert "TRADES" in text
    assert "CASH" in text
    await wait_until(lambda: len(args_of(app, "realtimeBar", 32)) >= 2, "AAPL MIDPOINT bars")
    assert args_of(app, "realtimeBar", 31) == []
    assert gateway.core.lines.in_use == 1  # only the AAPL subscription holds a line


# --- historical data -----------------------------------------------------------------------------
@dataclass(frozen=True)
class HistoryCase:
    what: str
    duration: str
    bar_size: str
    end: str
    use_rth: int
    format_date: int
    count: int | None  # exact number of bars where IB's rules fix it
    first: str | None = None
    last: str | None = None
    start_text: str | None = None
    end_text: str | None = None


HISTORY_CASES = {
    "60S-1secs-TRADES": HistoryCase(
        "TRADES", "60 S", "1 secs", FRIDAY_CLOSE, 1, 1, 60,  # quiet seconds: flat bars
        first="20260227 15:59:00", last="20260227 15:59:59",
        start_text="20260227 15:59:00 US/Eastern", end_text=FRIDAY_CLOSE,
    ),
    "1800S-1min-MIDPOINT-epoch": HistoryCase(
        "MIDPOINT", "1800 S", "1 min", FRIDAY_CLOSE, 1, 2, 30,
        first="20260227 15:30:00", last="20260227 15:59:00",
        start_text="20260227 15:30:00 US/Eastern", end_text=FRIDAY_CLOSE,
    ),
    "1D-5mins-BID-rth": HistoryCase(
        "BID", "1 D", "5 mins", FRIDAY_CLOSE, 1, 1, 78,
        first="20260227 09:30:00", last="20260227 15:55:00",
        start_text="20260227 09:30:00 US/Eastern", end_text=FRIDAY_CLOSE,
    ),
    "1D-5mins-ASK-all-hours": HistoryCase(
        "ASK", "1 D", "5 mins", FRIDAY_CLOSE, 0, 1, 144,
        first="20260227 04:00:00", last="20260227 15:55:00",
        start_text="20260227 04:00:00 US/Eastern", end_text=FRIDAY_CLOSE,
    ),
    "1W-1hour-TRADES-rth": HistoryCase(
        "TRADES", "1 W", "1 hour", FRIDAY_CLOSE, 1, 1, 35,
        first="20260223 09:30:00", last="20260227 15:00:00",
    ),
    "1M-1day-TRADES": HistoryCase(
        "TRADES", "1 M", "1 day", "", 1, 1, 19,  # 20 weekdays in Feb 2-27, less Presidents' Day
        first="20260202", last="20260227",
    ),
    "1M-1day-MIDPOINT-epoch": HistoryCase(
        "MIDPOINT", "1 M", "1 day", "", 1, 2, 19, first="20260202", last="20260227"
    ),
    "1Y-1week-TRADES": HistoryCase("TRADES", "1 Y", "1 week", "", 1, 1, None),
    "1Y-1month-ASK": HistoryCase("ASK", "1 Y", "1 month", "", 1, 1, None),
}  # fmt: skip


@pytest.mark.parametrize("case", HISTORY_CASES.values(), ids=HISTORY_CASES.keys())
async def test_historical_bars_follow_ibs_bar_sizes_durations_and_formats(
    app: IbapiClient, case: HistoryCase
) -> None:
    bars, start_text, end_text = await history(
        app, 40, stock("AAPL"), case.end, case.duration, case.bar_size, case.what,
        case.use_rth, case.format_date,
    )  # fmt: skip
    assert bars
    assert not app.errors(40)
    if case.count is not None:
        assert len(bars) == case.count
    for bar in bars:
        assert_ohlc(bar, case.what)
    assert INTRADAY_FORMAT_1.match(start_text), start_text
    assert INTRADAY_FORMAT_1.match(end_text), end_text
    if case.start_text is not None:
        assert start_text == case.start_text
    if case.end_text is not None:
        assert end_text == case.end_text
    window_start = datetime.strptime(start_text[:17], "%Y%m%d %H:%M:%S").replace(tzinfo=ET)
    window_end = datetime.strptime(end_text[:17], "%Y%m%d %H:%M:%S").replace(tzinfo=ET)
    if case.bar_size in ("1 day", "1 week", "1 month"):
        days = [_day(b.date) for b in bars]
        assert all(DAY_FORMAT.match(b.date) for b in bars)  # for formatDate 2 as well
        assert days == sorted(set(days))
        assert all(d.weekday() < 5 for d in days)
        assert window_start.date() <= days[0]
        assert days[-1] <= window_end.date()
        labels = [f"{d:%Y%m%d}" for d in days]
        _check_long_bar_spacing(case.bar_size, days)
    else:
        times = [parse_bar_time(b.date, case.format_date) for b in bars]
        step = _bar_seconds(case.bar_size)
        assert times == sorted(set(times))
        assert all(window_start <= t < window_end for t in times)
        # bars start on the bar grid from local midnight, or at a session's (liquid) open
        off_grid = [t for t in times if (t.hour * 3600 + t.minute * 60 + t.second) % step]
        assert all(f"{t:%H:%M:%S}" in ("04:00:00", "09:30:00") for t in off_grid), off_grid
        labels = [f"{t:%Y%m%d %H:%M:%S}" for t in times]
    if case.first is not None:
        assert labels[0] == case.first
    if case.last is not None:
        assert labels[-1] == case.last


def _bar_seconds(bar_size: str) -> int:
    count, unit = bar_size.split()
    return int(count) * {"secs": 1, "min": 60, "mins": 60, "hour": 3600}[unit]


def _check_long_bar_spacing(bar_size: str, days: list[date]) -> None:
    gaps = [(b - a).days for a, b in itertools.pairwise(days)]
    if bar_size == "1 week":
        assert 50 <= len(days) <= 53
        assert all(5 <= g <= 9 for g in gaps), gaps
        assert len({d.isocalendar()[:2] for d in days}) == len(days)  # one bar a week
    elif bar_size == "1 month":
        assert 12 <= len(days) <= 13
        assert len({(d.year, d.month) for d in days}) == len(days)  # one bar a month
    else:
        assert all(1 <= g <= 4 for g in gaps), gaps


async def test_use_rth_keeps_stock_bars_inside_regular_hours(app: IbapiClient) -> None:
    rth, _, _ = await history(
        app, 41, stock("AAPL"), FRIDAY_CLOSE, "1 W", "30 mins", "TRADES", 1, 2
    )
    all_hours, _, _ = await history(
        app, 42, stock("AAPL"), "20260227 20:00:00 US/Eastern", "1 W", "30 mins", "TRADES", 0, 2
    )
    rth_times = [parse_bar_time(b.date, 2) for b in rth]
    assert len(rth_times) == 5 * 13
    assert all("09:30" <= f"{t:%H:%M}" < "16:00" for t in rth_times)
    outside = [t for t in (parse_bar_time(b.date, 2) for b in all_hours) if
               not "09:30" <= f"{t:%H:%M}" < "16:00"]  # fmt: skip
    assert any(t.hour < 9 for t in outside)  # pre-market from 04:00
    assert any(t.hour >= 16 for t in outside)  # after hours to 20:00
    assert all("04:00" <= f"{t:%H:%M}" < "20:00" for t in outside)
    assert not app.errors(41)
    assert not app.errors(42)


async def test_format_date_2_names_the_same_instants_as_format_date_1(app: IbapiClient) -> None:
    text, _, _ = await history(
        app, 43, stock("AAPL"), FRIDAY_CLOSE, "1 D", "15 mins", "MIDPOINT", 1, 1
    )
    epoch, _, _ = await history(
        app, 44, stock("AAPL"), FRIDAY_CLOSE, "1 D", "15 mins", "MIDPOINT", 1, 2
    )
    assert [parse_bar_time(b.date, 1) for b in text] == [parse_bar_time(b.date, 2) for b in epoch]
    assert [(b.open, b.high, b.low, b.close) for b in text] == [
        (b.open, b.high, b.low, b.close) for b in epoch
    ]


async def test_forex_history_has_quotes_but_no_trades(app: IbapiClient) -> None:
    bars, _, _ = await history(app, 45, forex("EUR", "USD"), "", "1 D", "1 hour", "MIDPOINT", 0, 1)
    assert bars
    for bar in bars:
        assert_ohlc(bar, "MIDPOINT")
        assert 0.5 < bar.close < 2
    app.client.reqHistoricalData(
        46, forex("EUR", "USD"), "", "1 D", "1 hour", "TRADES", 0, 1, False, []
    )
    text = await app.wait_error(46, 162)
    assert "TRADES" in text


async def test_unknown_bar_size_is_refused_with_ibs_list(app: IbapiClient) -> None:
    app.client.reqHistoricalData(47, stock("AAPL"), "", "1 D", "7 mins", "TRADES", 1, 1, False, [])
    text = await app.wait_error(47, 321)
    assert "1 secs, 5 secs" in text
    assert args_of(app, "historicalDataEnd", 47) == []


@pytest.mark.sim(speed=30)
async def test_keep_up_to_date_streams_the_current_bar_until_cancelled(
    app: IbapiClient, gateway: SimGateway
) -> None:
    app.client.reqHistoricalData(48, stock("AAPL"), "", "1800 S", "1 min", "TRADES", 0, 1, True, [])
    await app.wait_for("historicalDataEnd", lambda a: a[0] == 48)
    bars = [a[1] for a in args_of(app, "historicalData", 48)]
    assert bars
    last_time = parse_bar_time(bars[-1].date, 1)
    await wait_until(lambda: len(args_of(app, "historicalDataUpdate", 48)) >= 5, "5 updates")
    updates = [a[1] for a in args_of(app, "historicalDataUpdate", 48)]
    times = [parse_bar_time(u.date, 1) for u in updates]
    assert times == sorted(times)
    assert times[0] >= last_time
    assert all(t.second == 0 for t in times)
    assert times[-1] <= datetime.fromtimestamp(gateway.clock.now(), ET)
    for u in updates:  # the update's open, close, high, low order decoded right
        assert_ohlc(u, "TRADES")
    app.client.cancelHistoricalData(48)
    cut = await barrier(app)
    assert gateway.core.feed.subscription_count == 0
    await asyncio.sleep(0.3)  # 9 simulated seconds of pre-market trading
    late = [n for i, (n, _) in enumerate(app.calls()) if i > cut and n == "historicalDataUpdate"]
    assert late == []
    assert not app.errors(48)


async def test_keep_up_to_date_with_an_end_date_is_refused(app: IbapiClient) -> None:
    app.client.reqHistoricalData(
        49, stock("AAPL"), FRIDAY_CLOSE, "1800 S", "1 min", "TRADES", 0, 1, True, []
    )
    await app.wait_error(49, 321)


async def test_head_timestamp_is_the_earliest_bar_in_both_formats(app: IbapiClient) -> None:
    app.client.reqHeadTimeStamp(50, stock("AAPL"), "TRADES", 1, 1)
    app.client.reqHeadTimeStamp(51, stock("AAPL"), "TRADES", 1, 2)
    app.client.reqHeadTimeStamp(52, forex("EUR", "USD"), "MIDPOINT", 0, 2)
    (_, text) = await app.wait_for("headTimestamp", lambda a: a[0] == 50)
    (_, epoch) = await app.wait_for("headTimestamp", lambda a: a[0] == 51)
    (_, fx_epoch) = await app.wait_for("headTimestamp", lambda a: a[0] == 52)
    assert parse_bar_time(text, 1) == parse_bar_time(epoch, 2)
    head = parse_bar_time(text, 1)
    assert "09:30" <= f"{head:%H:%M}" < "16:00"  # useRTH: inside regular hours
    assert head.weekday() < 5
    assert head < datetime(2026, 1, 1, tzinfo=ET)
    assert parse_bar_time(fx_epoch, 2) < datetime(2026, 1, 1, tzinfo=ET)
    # and data exists there: a day of bars from the head on
    day = f"{head + timedelta(days=1):%Y%m%d} 00:00:00 US/Eastern"
    bars, _, _ = await history(app, 53, stock("AAPL"), day, "1 D", "1 hour", "TRADES", 1, 1)
    assert parse_bar_time(bars[0].date, 1) <= head + timedelta(hours=1)


# --- the two clients agree ---------------------------------------------------------------------
async def test_ib_async_and_ibapi_receive_identical_historical_bars(
    app: IbapiClient, ib: IB
) -> None:
    theirs, _, _ = await history(
        app, 60, stock("AAPL"), FRIDAY_CLOSE, "1 D", "5 mins", "TRADES", 1, 1
    )
    ours = await ib.reqHistoricalDataAsync(
        Stock("AAPL", "SMART", "USD"), FRIDAY_CLOSE, "1 D", "5 mins", "TRADES", True, 1,
        timeout=10,
    )  # fmt: skip
    assert len(ours) == len(theirs) == 78
    for a, b in zip(ours, theirs, strict=True):
        assert a.date == parse_bar_time(b.date, 1)
        assert (a.open, a.high, a.low, a.close) == (b.open, b.high, b.low, b.close)
        assert (a.volume, a.average, a.barCount) == (float(b.volume), float(b.wap), b.barCount)


async def test_ib_async_and_ibapi_decode_the_same_contract_details(
    app: IbapiClient, ib: IB
) -> None:
    (theirs,) = await contract_details(app, 61, stock("AAPL"))
    (ours,) = await ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))
    assert ours.contract is not None
    assert ours.contract.conId == theirs.contract.conId == AAPL_CON_ID
    assert ours.contract.primaryExchange == theirs.contract.primaryExchange
    for name in (
        "longName", "minTick", "timeZoneId", "tradingHours", "liquidHours", "validExchanges",
        "marketRuleIds", "stockType", "industry", "category",
    ):  # fmt: skip
        assert getattr(ours, name) == getattr(theirs, name), name


async def test_ib_async_and_ibapi_see_the_same_frozen_option_quote(
    app: IbapiClient, ib: IB
) -> None:
    # US options open at 09:30: before that, the quote is Friday's last one for everybody
    app.client.reqMktData(62, option("AAPL", "20260320", 230, "C"), "", True, False, [])
    await app.wait_for("tickSnapshotEnd", lambda a: a[0] == 62)
    (contract,) = await ib.qualifyContractsAsync(Option("AAPL", "20260320", 230, "C", "SMART"))
    assert contract is not None
    (ticker,) = await ib.reqTickersAsync(contract)
    assert ticker.bid == prices(app, 62, BID)[-1]
    assert ticker.ask == prices(app, 62, ASK)[-1]
    assert ticker.last == prices(app, 62, LAST)[-1]
    assert ticker.close == prices(app, 62, CLOSE)[-1]
    assert ticker.bidSize == float(sizes(app, 62, BID_SIZE)[-1])
    assert ticker.volume == float(sizes(app, 62, VOLUME)[-1])
    assert 0 < ticker.bid < ticker.ask


# --- older server versions -----------------------------------------------------------------------
@pytest.mark.parametrize("version", [157, 163, 165, 170, 176])
async def test_older_official_client_gets_its_own_server_version(
    gateway: SimGateway, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    monkeypatch.setattr(ibapi.client, "MAX_CLIENT_VER", version)
    client = IbapiClient()
    await client.connect(gateway.port, CLIENT_ID)
    try:
        assert client.client.serverVersion() == version
        await client.wait_for("nextValidId")
        assert await client.wait_for("managedAccounts") == (ACCOUNT,)
        (d,) = await contract_details(client, 70, stock("AAPL"))
        assert (d.contract.conId, d.contract.primaryExchange) == (AAPL_CON_ID, "NASDAQ")
        assert (d.minTick, d.longName, d.timeZoneId) == (0.01, "APPLE INC", "US/Eastern")
        assert d.stockType == "COMMON"
        assert "20260302:0930-20260302:1600" in d.liquidHours.split(";")
        if version >= 164:
            assert d.suggestedSizeIncrement == 100
        client.client.reqContractDetails(71, stock("ZZZZQX"))
        await client.wait_error(71, 200)
        client.client.reqMatchingSymbols(72, "AAPL")
        (_, samples) = await client.wait_for("symbolSamples", lambda a: a[0] == 72)
        assert AAPL_CON_ID in {s.contract.conId for s in samples}
        bars, _, _ = await history(
            client, 73, stock("AAPL"), FRIDAY_CLOSE, "1 D", "1 hour", "TRADES", 1, 1
        )
        assert len(bars) == 7
        client.client.reqMktData(74, stock("AAPL"), "", True, False, [])
        await client.wait_for("tickSnapshotEnd", lambda a: a[0] == 74)
        assert prices(client, 74, BID)
    finally:
        await client.disconnect()
