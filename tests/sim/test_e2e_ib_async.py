"""ib_async (the runtime's client) against the simulated gateway over a real socket.

Every request the simulator serves in part 1, with decoded values asserted.  The
``gateway`` fixture wire-checks every frame with both real decoders at teardown.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from ib_async import IB, Contract, Forex, Future, Index, Option, Stock

from ibpilot.sim import SimGateway

ET = ZoneInfo("US/Eastern")
AAPL_CON_ID = 265598


async def _qualified(ib: IB, contract: Contract) -> Contract:
    [c] = await ib.qualifyContractsAsync(contract)
    assert isinstance(c, Contract)
    return c


async def test_connect_completes_start_up_sync_and_reports_account(
    ib: IB, gateway: SimGateway
) -> None:
    # raiseSyncErrors=True in the fixture: any start-up request without its End marker fails
    assert ib.isConnected()
    assert ib.client.serverVersion() == 178
    assert ib.managedAccounts() == ["DU0000001"]
    assert ib.client.getReqId() >= 1
    server_time = await ib.reqCurrentTimeAsync()
    assert abs(server_time.timestamp() - gateway.clock.now()) < 5


async def test_farm_notices_arrive_after_start_api(gateway: SimGateway) -> None:
    client = IB()
    codes: list[int] = []
    client.errorEvent += lambda req_id, code, text, contract: codes.append(code)
    await client.connectAsync("127.0.0.1", gateway.port, clientId=5, timeout=5)
    try:
        assert [c for c in codes if c in (2104, 2106, 2158)] == [2104, 2106, 2158]
    finally:
        client.disconnect()


async def test_next_valid_id_never_goes_backwards_across_connections(gateway: SimGateway) -> None:
    seen = []
    for client_id in (11, 12, 11):
        client = IB()
        await client.connectAsync("127.0.0.1", gateway.port, clientId=client_id, timeout=5)
        seen.append(client.client._reqIdSeq)
        client.disconnect()
        await asyncio.sleep(0.05)
    assert seen == sorted(seen)
    assert seen[0] >= 1


async def test_req_ids_answers_next_valid_id(ib: IB, gateway: SimGateway) -> None:
    got: list[int] = []
    original = ib.wrapper.nextValidId

    def capture(order_id: int) -> None:
        got.append(order_id)
        original(order_id)

    ib.wrapper.nextValidId = capture  # type: ignore[method-assign]
    ib.client.reqIds(1)
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got == [gateway.core.next_order_id()]


async def test_managed_accounts_on_request(ib: IB) -> None:
    ib.client.reqManagedAccts()
    await asyncio.sleep(0.1)
    assert ib.managedAccounts() == ["DU0000001"]


async def test_stock_contract_details(ib: IB) -> None:
    [cd] = await ib.reqContractDetailsAsync(Stock("AAPL", "SMART", "USD"))
    c = cd.contract
    assert c is not None
    assert (c.conId, c.symbol, c.secType, c.exchange, c.primaryExchange, c.currency) == (
        AAPL_CON_ID, "AAPL", "STK", "SMART", "NASDAQ", "USD",
    )  # fmt: skip
    assert cd.minTick == 0.01
    assert cd.timeZoneId == "US/Eastern"
    assert cd.longName == "APPLE INC"
    assert "LMT" in cd.orderTypes.split(",")
    assert "20260302:0400-20260302:2000" in cd.tradingHours
    assert "20260302:0930-20260302:1600" in cd.liquidHours
    assert cd.stockType == "COMMON"


async def test_future_fx_index_and_option_details(ib: IB) -> None:
    futures = await ib.reqContractDetailsAsync(Future("ES", exchange="CME"))
    assert len(futures) >= 4
    es = min(
        (d.contract for d in futures if d.contract), key=lambda c: c.lastTradeDateOrContractMonth
    )
    assert es.multiplier == "50"
    assert es.lastTradeDateOrContractMonth > "20260302"
    assert es.localSymbol.startswith("ES")

    [fx] = await ib.reqContractDetailsAsync(Forex("EURUSD"))
    assert fx.contract is not None
    assert (fx.contract.secType, fx.contract.exchange, fx.contract.localSymbol) == (
        "CASH", "IDEALPRO", "EUR.USD",
    )  # fmt: skip

    [spx] = await ib.reqContractDetailsAsync(Index("SPX", "CBOE", "USD"))
    assert spx.contract is not None
    assert spx.contract.secType == "IND"

    chain = await ib.reqSecDefOptParamsAsync("SPY", "", "STK", 756733)
    assert chain
    smart = next(p for p in chain if p.exchange == "SMART")
    expiry = sorted(smart.expirations)[0]
    strike = sorted(smart.strikes)[len(smart.strikes) // 2]
    [opt] = await ib.reqContractDetailsAsync(Option("SPY", expiry, strike, "C", "SMART"))
    assert opt.contract is not None
    assert (opt.contract.strike, opt.contract.right, opt.contract.multiplier) == (
        strike,
        "C",
        "100",
    )


async def test_unknown_contract_gets_error_200_and_no_details(ib: IB) -> None:
    errors: list[tuple[int, int]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code))
    details = await ib.reqContractDetailsAsync(Stock("NOSUCHSYM", "SMART", "USD"))
    assert details == []
    assert any(code == 200 for _, code in errors)


async def test_matching_symbols(ib: IB) -> None:
    found = await ib.reqMatchingSymbolsAsync("AAP")
    assert found
    first = found[0].contract
    assert first is not None
    assert first.symbol == "AAPL"
    assert first.conId == AAPL_CON_ID
    assert "OPT" in found[0].derivativeSecTypes


async def test_option_chain_parameters(ib: IB) -> None:
    params = await ib.reqSecDefOptParamsAsync("AAPL", "", "STK", AAPL_CON_ID)
    smart = [p for p in params if p.exchange == "SMART"]
    assert len(smart) == 1
    assert smart[0].multiplier == "100"
    assert int(smart[0].underlyingConId) == AAPL_CON_ID
    assert len(smart[0].expirations) >= 8
    assert all(len(e) == 8 for e in smart[0].expirations)
    assert len(smart[0].strikes) > 20


@pytest.mark.sim(speed=30)
async def test_streaming_quotes_bid_ask_last_sizes_volume_and_session_stats(ib: IB) -> None:
    aapl = await _qualified(ib, Stock("AAPL", "SMART", "USD"))
    ticker = ib.reqMktData(aapl)
    await asyncio.sleep(1.5)  # 45 simulated seconds of pre-market trading
    assert ticker.bid > 0
    assert ticker.ask > ticker.bid
    assert ticker.bidSize > 0
    assert ticker.askSize > 0
    assert ticker.last > 0
    assert ticker.lastSize > 0
    assert ticker.volume > 0
    assert ticker.high >= ticker.low > 0
    assert ticker.close > 0
    assert ticker.open > 0
    assert ticker.minTick == 0.01
    assert round(ticker.bid / 0.01, 6).is_integer()
    volume_before = ticker.volume
    await asyncio.sleep(0.5)
    assert ticker.volume >= volume_before
    ib.cancelMktData(aapl)
    await asyncio.sleep(0.2)
    frozen = (ticker.bid, ticker.ask, ticker.volume)
    await asyncio.sleep(0.5)
    assert (ticker.bid, ticker.ask, ticker.volume) == frozen  # no ticks after the cancel


async def test_snapshot_quotes_end_with_tick_snapshot_end(ib: IB) -> None:
    contracts = [
        await _qualified(ib, Stock("SPY", "SMART", "USD")),
        await _qualified(ib, Forex("EURUSD")),
        await _qualified(ib, Index("SPX", "CBOE", "USD")),
    ]
    spy, eur, spx = await ib.reqTickersAsync(*contracts)
    assert 0 < spy.bid < spy.ask
    assert 0 < eur.bid < eur.ask < 2
    assert math.isnan(eur.last)  # IB sends no last price for FX
    assert spx.last > 0 or spx.close > 0  # an index has no quote, only values


@pytest.mark.sim(speed=20)
async def test_real_time_bars_every_five_seconds_then_cancel(ib: IB) -> None:
    spy = await _qualified(ib, Stock("SPY", "SMART", "USD"))
    bars = ib.reqRealTimeBars(spy, 5, "MIDPOINT", False)
    await asyncio.sleep(2.0)  # 40 simulated seconds
    assert len(bars) >= 5
    for b in bars:
        assert b.time.timestamp() % 5 == 0
        assert b.low <= min(b.open_, b.close) <= max(b.open_, b.close) <= b.high
    times = [b.time for b in bars]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    ib.cancelRealTimeBars(bars)
    await asyncio.sleep(0.3)
    count = len(bars)
    await asyncio.sleep(0.7)
    assert len(bars) == count


@pytest.mark.parametrize("what", ["TRADES", "MIDPOINT", "BID", "ASK"])
async def test_historical_bars_of_every_type(ib: IB, what: str) -> None:
    aapl = await _qualified(ib, Stock("AAPL", "SMART", "USD"))
    bars = await ib.reqHistoricalDataAsync(
        aapl, endDateTime="20260227 16:00:00 US/Eastern", durationStr="1 D",
        barSizeSetting="30 mins", whatToShow=what, useRTH=True,
    )  # fmt: skip
    assert len(bars) == 13  # 09:30-16:00 in half hours
    assert bars[0].date == datetime(2026, 2, 27, 9, 30, tzinfo=ET)
    assert bars[-1].date == datetime(2026, 2, 27, 15, 30, tzinfo=ET)
    for b in bars:
        assert b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high
    if what == "TRADES":
        assert all(b.volume > 0 and b.barCount > 0 for b in bars)
        assert all(b.low <= b.average <= b.high for b in bars)
    else:
        assert all(b.volume == -1 for b in bars)


async def test_bid_bars_sit_below_ask_bars(ib: IB) -> None:
    spy = await _qualified(ib, Stock("SPY", "SMART", "USD"))
    kwargs = {
        "endDateTime": "20260227 12:00:00 US/Eastern", "durationStr": "1800 S",
        "barSizeSetting": "1 min", "useRTH": True,
    }  # fmt: skip
    bids = await ib.reqHistoricalDataAsync(spy, whatToShow="BID", **kwargs)  # type: ignore[arg-type]
    asks = await ib.reqHistoricalDataAsync(spy, whatToShow="ASK", **kwargs)  # type: ignore[arg-type]
    mids = await ib.reqHistoricalDataAsync(spy, whatToShow="MIDPOINT", **kwargs)  # type: ignore[arg-type]
    assert len(bids) == len(asks) == len(mids) == 30
    for b, a, m in zip(bids, asks, mids, strict=True):
        assert b.date == a.date == m.date
        assert b.low < a.low
        assert b.high < a.high
        assert b.low <= m.low <= a.low


@pytest.mark.parametrize(
    ("duration", "bar_size", "expected"),
    [
        ("60 S", "1 secs", 60),
        ("1800 S", "1 min", 30),
        ("1 D", "5 mins", 78),
        ("1 W", "1 hour", 5 * 7),  # five sessions of 09:30..16:00: 7 hourly bars each
        ("1 M", "1 day", 22),  # 2026-01-28 .. 2026-02-27 less Presidents' Day
    ],
)
async def test_bar_sizes_and_durations(ib: IB, duration: str, bar_size: str, expected: int) -> None:
    aapl = await _qualified(ib, Stock("AAPL", "SMART", "USD"))
    bars = await ib.reqHistoricalDataAsync(
        aapl, endDateTime="20260227 16:00:00 US/Eastern", durationStr=duration,
        barSizeSetting=bar_size, whatToShow="MIDPOINT", useRTH=True,
    )  # fmt: skip
    assert len(bars) == expected
    days = {b.date.date() if isinstance(b.date, datetime) else b.date for b in bars}
    assert date(2026, 2, 16) not in days  # Presidents' Day: closed


async def test_use_rth_false_includes_extended_hours(ib: IB) -> None:
    aapl = await _qualified(ib, Stock("AAPL", "SMART", "USD"))
    common = {
        "endDateTime": "20260227 20:00:00 US/Eastern", "durationStr": "1 D",
        "barSizeSetting": "1 hour", "whatToShow": "TRADES",
    }  # fmt: skip
    rth = await ib.reqHistoricalDataAsync(aapl, useRTH=True, **common)  # type: ignore[arg-type]
    full = await ib.reqHistoricalDataAsync(aapl, useRTH=False, **common)  # type: ignore[arg-type]
    assert all((b.date.hour, b.date.minute) >= (9, 30) for b in rth)
    assert full[0].date == datetime(2026, 2, 27, 4, 0, tzinfo=ET)
    assert len(full) == 16  # 04:00..20:00
    assert sum(b.volume for b in full) > sum(b.volume for b in rth)


async def test_format_date_2_gives_epoch_seconds_and_daily_dates(ib: IB) -> None:
    aapl = await _qualified(ib, Stock("AAPL", "SMART", "USD"))
    intraday = await ib.reqHistoricalDataAsync(
        aapl, "20260227 10:00:00 US/Eastern", "1800 S", "5 mins", "TRADES", True, formatDate=2
    )
    assert intraday[0].date == datetime(2026, 2, 27, 14, 30, tzinfo=UTC)
    daily = await ib.reqHistoricalDataAsync(
        aapl, "20260227 16:00:00 US/Eastern", "5 D", "1 day", "TRADES", True, formatDate=2
    )
    assert [b.date for b in daily] == [date(2026, 2, d) for d in (23, 24, 25, 26, 27)]


@pytest.mark.sim(speed=60)
async def test_keep_up_to_date_streams_the_current_bar_until_cancelled(ib: IB) -> None:
    spy = await _qualified(ib, Stock("SPY", "SMART", "USD"))
    bars = await ib.reqHistoricalDataAsync(
        spy, "", "1800 S", "1 min", "MIDPOINT", False, keepUpToDate=True
    )
    initial = len(bars)
    updates: list[bool] = []
    bars.updateEvent += lambda b, has_new: updates.append(has_new)
    await asyncio.sleep(2.5)  # 150 simulated seconds: at least two new minute bars
    assert updates
    assert len(bars) >= initial + 2
    dates = [b.date for b in bars]
    assert dates == sorted(dates)
    ib.cancelHistoricalData(bars)
    await asyncio.sleep(0.3)
    count = len(updates)
    await asyncio.sleep(0.5)
    assert len(updates) == count


async def test_head_timestamp(ib: IB) -> None:
    aapl = await _qualified(ib, Stock("AAPL", "SMART", "USD"))
    head = await ib.reqHeadTimeStampAsync(aapl, "TRADES", True, 1)
    assert isinstance(head, datetime)
    assert head < datetime(2026, 1, 1, tzinfo=UTC)
    head2 = await ib.reqHeadTimeStampAsync(aapl, "TRADES", True, 2)
    assert isinstance(head2, datetime)
    assert abs((head2 - head).total_seconds()) < 1


async def test_market_data_type_frozen_before_the_open_still_answers(ib: IB) -> None:
    ib.reqMarketDataType(2)
    await asyncio.sleep(0.05)
    spy = await _qualified(ib, Stock("SPY", "SMART", "USD"))
    [t] = await ib.reqTickersAsync(spy)
    assert t.bid > 0
    assert t.marketDataType in (1, 2)


async def test_history_equals_between_two_connections_with_the_same_seed(
    gateway: SimGateway,
) -> None:
    results = []
    for client_id in (21, 22):
        client = IB()
        await client.connectAsync("127.0.0.1", gateway.port, clientId=client_id, timeout=5)
        c = await _qualified(client, Stock("MSFT", "SMART", "USD"))
        bars = await client.reqHistoricalDataAsync(
            c, "20260226 16:00:00 US/Eastern", "2 D", "15 mins", "TRADES", True
        )
        results.append([(b.date, b.open, b.high, b.low, b.close, b.volume) for b in bars])
        client.disconnect()
    assert results[0] == results[1]
    assert len(results[0]) == 2 * 26


async def test_same_seed_same_data_across_gateways() -> None:
    start = datetime(2026, 3, 2, 14, 25, tzinfo=UTC)
    closes = []
    for _ in range(2):
        async with SimGateway("127.0.0.1", 0, seed=42, start=start) as gw:
            client = IB()
            await client.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=5)
            c = await _qualified(client, Stock("QQQ", "SMART", "USD"))
            bars = await client.reqHistoricalDataAsync(
                c, "20260227 16:00:00 US/Eastern", "3 D", "1 hour", "TRADES", True
            )
            closes.append([b.close for b in bars])
            client.disconnect()
    assert closes[0] == closes[1]
    assert len(closes[0]) == 21


async def test_an_unserved_request_is_refused_on_its_own_request_id(ib: IB) -> None:
    errors: list[tuple[int, int, str]] = []
    ib.errorEvent += lambda req_id, code, text, contract: errors.append((req_id, code, text))
    aapl = await _qualified(ib, Stock("AAPL", "SMART", "USD"))
    ticks = await asyncio.wait_for(
        ib.reqHistoricalTicksAsync(aapl, "20260227 10:00:00 US/Eastern", "", 100, "TRADES", True),
        timeout=3,  # answered at once: not left to ib_async's own request timeout
    )
    assert ticks == []
    [(req_id, _, text)] = [e for e in errors if e[1] == 322]
    assert req_id > 0
    assert "REQ_HISTORICAL_TICKS" in text or "msg96" in text
