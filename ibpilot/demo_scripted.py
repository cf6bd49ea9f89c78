"""``ibpilot demo --scripted``: a short scripted ib_async session against the simulator.

It starts the simulator on a free loopback port with an accelerated clock, then connects
with ib_async (the runtime's client library) exactly as against IB Gateway, and prints what
it does: qualify contracts, read quotes, stream a few seconds of ticks, and download history.
Nothing here needs an IBKR account.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime

from ib_async import IB, Contract, Forex, Future, Index, Stock

from ibpilot.sim import SimGateway

SPEED = 60.0  # one simulated minute per real second


def _say(text: str) -> None:
    print(text, flush=True)


def _fmt(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x:,.5f}" if abs(x) < 10 else f"{x:,.2f}"


async def run_scripted(seed: int = 1) -> int:
    """Run the scripted ib_async session; returns 0 when every step answered."""
    start = datetime.fromisoformat("2026-03-02T09:29:00-05:00")  # just before the open
    async with SimGateway("127.0.0.1", 0, seed=seed, speed=SPEED, start=start) as gw:
        _say(
            f"[sim] simulated IB Gateway on 127.0.0.1:{gw.port}, seed {seed}, "
            f"clock {gw.clock.now_dt():%Y-%m-%d %H:%M} UTC at {SPEED:g}x"
        )
        ib = IB()
        await ib.connectAsync("127.0.0.1", gw.port, clientId=1, timeout=10, raiseSyncErrors=True)
        try:
            await _session(ib)
        finally:
            ib.disconnect()
    _say("[demo] done")
    return 0


async def _session(ib: IB) -> None:
    server_time = await ib.reqCurrentTimeAsync()
    _say(
        f"[ib_async] connected: server version {ib.client.serverVersion()}, "
        f"account {', '.join(ib.managedAccounts())}, server time {server_time:%Y-%m-%d %H:%M:%S %Z}"
    )
    contracts: list[Contract] = [
        Stock("AAPL", "SMART", "USD"),
        Stock("SPY", "SMART", "USD"),
        Index("SPX", "CBOE", "USD"),
        Forex("EURUSD"),
        Future("ES", exchange="CME", lastTradeDateOrContractMonth=""),
    ]
    details = await ib.reqContractDetailsAsync(contracts[-1])
    fronts = [d.contract for d in details if d.contract is not None]
    contracts[-1] = min(fronts, key=lambda c: c.lastTradeDateOrContractMonth)
    qualified = [c for c in await ib.qualifyContractsAsync(*contracts) if isinstance(c, Contract)]
    if len(qualified) != len(contracts):
        raise RuntimeError("the simulator did not qualify every demo contract")
    for c in qualified:
        _say(
            f"[qualify] {c.localSymbol or c.symbol:<8} {c.secType:<4} conId {c.conId:<10} "
            f"{c.exchange}/{c.primaryExchange or '-'} {c.currency}"
        )

    tickers = await ib.reqTickersAsync(*qualified)
    for c, t in zip(qualified, tickers, strict=True):
        _say(
            f"[quote] {c.localSymbol or c.symbol:<8} bid {_fmt(t.bid)} "
            f"ask {_fmt(t.ask)} last {_fmt(t.last)} close {_fmt(t.close)}"
        )

    aapl = qualified[0]
    ticker = ib.reqMktData(aapl)
    _say("[stream] AAPL for 3 seconds (3 simulated minutes):")
    for _ in range(3):
        await asyncio.sleep(1.0)
        _say(
            f"[stream] AAPL bid {_fmt(ticker.bid)} x {_fmt(ticker.bidSize)}  "
            f"ask {_fmt(ticker.ask)} x {_fmt(ticker.askSize)}  last {_fmt(ticker.last)}  "
            f"volume {_fmt(ticker.volume)}"
        )
    ib.cancelMktData(aapl)

    bars = await ib.reqHistoricalDataAsync(
        aapl, endDateTime="", durationStr="5 D", barSizeSetting="1 day",
        whatToShow="TRADES", useRTH=True,
    )  # fmt: skip
    _say(f"[history] AAPL daily bars, last {len(bars)} sessions:")
    for b in bars:
        _say(
            f"[history] {b.date}  O {_fmt(b.open)} H {_fmt(b.high)} L {_fmt(b.low)} "
            f"C {_fmt(b.close)} V {b.volume:,.0f}"
        )
    minute = await ib.reqHistoricalDataAsync(
        qualified[1], endDateTime="", durationStr="1800 S", barSizeSetting="5 mins",
        whatToShow="MIDPOINT", useRTH=False,
    )  # fmt: skip
    _say(f"[history] SPY 5-minute midpoint bars over the last 30 minutes: {len(minute)}")
    for b in minute[-3:]:
        ohlc = f"O {_fmt(b.open)} H {_fmt(b.high)} L {_fmt(b.low)} C {_fmt(b.close)}"
        _say(f"[history] {b.date}  {ohlc}")
