"""History and live are one story: what streamed live is what history returns later.

The gateway runs on an accelerated clock through the ES futures daily close
(16:00 Central) and the reopen an hour later (17:00 Central).  Live trade ticks
(IB's official client, which reports each trade's time with tick 45) and live
5-second bars (ib_async) are recorded; afterwards the same period is requested
as history and must match exactly.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from ib_async import IB, Contract, Future, Stock
from ibapi.contract import Contract as IbContract
from ibapi_app import IbapiClient

from ibpilot.sim import SimGateway

CT = ZoneInfo("US/Central")
ET = ZoneInfo("US/Eastern")
LAST, LAST_TIMESTAMP = 4, 45

BEFORE_CLOSE = datetime(2026, 3, 2, 15, 58, tzinfo=CT)
CLOSE = datetime(2026, 3, 2, 16, 0, tzinfo=CT)
REOPEN = datetime(2026, 3, 2, 17, 0, tzinfo=CT)
AFTER_REOPEN = datetime(2026, 3, 2, 17, 2, tzinfo=CT)


async def _front_es(ib: IB) -> Contract:
    details = await ib.reqContractDetailsAsync(Future("ES", exchange="CME"))
    contracts = [d.contract for d in details if d.contract is not None]
    return min(contracts, key=lambda c: c.lastTradeDateOrContractMonth)


async def _wait_until(gateway: SimGateway, when: datetime, limit: float = 30.0) -> None:
    for _ in range(int(limit / 0.02)):
        if gateway.clock.now() >= when.timestamp():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"simulated clock did not reach {when}")


def _trades_from_ticks(app: IbapiClient, req_id: int) -> list[tuple[int, float]]:
    """(trade time, price) pairs: each LAST tickPrice is followed by its tick-45 time."""
    trades: list[tuple[int, float]] = []
    price: float | None = None
    for name, args in app.calls():
        if not args or args[0] != req_id:
            continue
        if name == "tickPrice" and args[1] == LAST:
            price = float(args[2])
        elif name == "tickString" and args[1] == LAST_TIMESTAMP and price is not None:
            trades.append((int(args[2]), price))
            price = None
    return trades


@pytest.mark.sim(start=BEFORE_CLOSE, speed=600)
async def test_live_ticks_and_bars_through_the_close_and_reopen_equal_history(
    gateway: SimGateway, ib: IB
) -> None:
    es = await _front_es(ib)
    app = IbapiClient()
    await app.connect(gateway.port, client_id=2)
    try:
        contract = IbContract()
        contract.conId, contract.exchange = es.conId, "CME"
        app.client.reqMktData(1001, contract, "", False, False, [])
        bars = ib.reqRealTimeBars(es, 5, "TRADES", False)
        subscribed_at = int(gateway.clock.now())
        # a minute past the end: the feed steps every 50 ms, so let it catch up
        await _wait_until(gateway, AFTER_REOPEN + timedelta(minutes=1))
        app.client.cancelMktData(1001)
        ib.cancelRealTimeBars(bars)
        await asyncio.sleep(0.1)
        live_trades = [
            t
            for t in _trades_from_ticks(app, 1001)
            if subscribed_at < t[0] < AFTER_REOPEN.timestamp()
        ]
    finally:
        await app.disconnect()

    # "240 S" counts trading time only: 15:58-16:00 and 17:00-17:02 Central
    seconds = await ib.reqHistoricalDataAsync(
        es, "20260302 17:02:00 US/Central", "240 S", "1 secs", "TRADES", False, formatDate=2
    )
    history_trades = [  # 1-second bars with a trade (the others are flat at the last price)
        (int(b.date.timestamp()), b.close)
        for b in seconds
        if b.date.timestamp() > subscribed_at and b.barCount > 0
    ]
    assert len(history_trades) > 10
    assert live_trades == history_trades

    # nothing traded while the market was shut, live or in history
    shut = (CLOSE.timestamp(), REOPEN.timestamp())
    assert not [t for t in live_trades if shut[0] <= t[0] < shut[1]]
    assert any(t[0] < shut[0] for t in live_trades)
    assert any(t[0] >= shut[1] for t in live_trades)

    five = await ib.reqHistoricalDataAsync(
        es, "20260302 17:02:00 US/Central", "240 S", "5 secs", "TRADES", False, formatDate=2
    )
    by_time = {int(b.date.timestamp()): b for b in five}
    streamed = [b for b in bars if b.time.timestamp() < AFTER_REOPEN.timestamp()]
    assert len(streamed) >= 5
    for live in streamed:
        hist = by_time.get(int(live.time.timestamp()))
        assert hist is not None, (live, sorted(by_time)[:3], sorted(by_time)[-3:], subscribed_at)
        assert (live.open_, live.high, live.low, live.close) == (
            hist.open, hist.high, hist.low, hist.close,
        )  # fmt: skip
        assert (live.volume, live.count) == (hist.volume, hist.barCount)
        assert live.wap == pytest.approx(hist.average, abs=1e-9)


@pytest.mark.sim(start=datetime(2026, 3, 2, 9, 29, tzinfo=ET), speed=120)
async def test_stock_opens_at_0930_and_rth_history_starts_there(
    gateway: SimGateway, ib: IB
) -> None:
    [spy] = await ib.qualifyContractsAsync(Stock("SPY", "SMART", "USD"))
    assert isinstance(spy, Contract)
    bars = ib.reqRealTimeBars(spy, 5, "TRADES", True)  # regular hours only
    await _wait_until(gateway, datetime(2026, 3, 2, 9, 31, tzinfo=ET))
    ib.cancelRealTimeBars(bars)
    live = [b for b in bars if b.time < datetime(2026, 3, 2, 9, 31, tzinfo=ET)]
    assert live
    assert min(b.time for b in live) >= datetime(2026, 3, 2, 9, 30, tzinfo=ET)
    hist = await ib.reqHistoricalDataAsync(
        spy, "20260302 09:31:00 US/Eastern", "60 S", "5 secs", "TRADES", True
    )
    assert hist[0].date == datetime(2026, 3, 2, 9, 30, tzinfo=ET)
    closes = {b.date.timestamp(): b.close for b in hist}
    assert all(closes[b.time.timestamp()] == b.close for b in live)
