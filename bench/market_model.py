"""Timings of the simulator's price model on the shipped reference data.

Run: ``.venv/bin/python bench/market_model.py``.  Targets: a year of daily bars for one stock
< 1.5 s cold and fast when cached; one day of 1-min bars < 50 ms warm; quote() < 20 us warm.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime

from ibpilot.sim.market import MarketModel
from ibpilot.sim.refdata import ContractQuery, RefData

SEED = 42


def timed(label: str, fn: Callable[[], object], repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    per_call = (time.perf_counter() - start) / repeat
    unit, scale = ("us", 1e6) if per_call < 1e-3 else ("ms", 1e3)
    print(f"{label:<52} {per_call * scale:10.1f} {unit}")
    return per_call


def main() -> None:
    ref = RefData.load()
    on = date(2026, 3, 3)
    (aapl,) = ref.resolve(ContractQuery(symbol="AAPL", sec_type="STK"), on)
    (es, *_) = ref.resolve(ContractQuery(symbol="ES", sec_type="FUT"), on)
    calls = [
        i
        for i in ref.resolve(ContractQuery(symbol="SPY", sec_type="OPT", right="C"), on)
        if i.last_trade_date >= "20260320"
    ]
    noon = int(datetime(2026, 3, 3, 17, 0, tzinfo=UTC).timestamp())
    day_start, day_end = noon - 13 * 3600, noon + 11 * 3600

    model = MarketModel(ref, SEED)
    year = (date(2025, 1, 1), date(2025, 12, 31))
    timed(
        "daily bars, 1 year, AAPL TRADES RTH, cold",
        lambda: model.daily_bars(aapl, *year, "TRADES", True),
    )
    timed(
        "daily bars, 1 year, AAPL TRADES RTH, cached",
        lambda: model.daily_bars(aapl, *year, "TRADES", True),
        20,
    )
    timed(
        "daily bars, 1 year, AAPL MIDPOINT all hours, cold",
        lambda: model.daily_bars(aapl, *year, "MIDPOINT", False),
    )

    model = MarketModel(ref, SEED)
    timed(
        "1-min bars, 1 day, AAPL TRADES, cold",
        lambda: model.bars(aapl, day_start, day_end, 60, "TRADES", False),
    )
    timed(
        "1-min bars, 1 day, AAPL TRADES, warm",
        lambda: model.bars(aapl, day_start, day_end, 60, "TRADES", False),
        20,
    )
    timed(
        "1-min bars, 1 day, AAPL MIDPOINT, warm",
        lambda: model.bars(aapl, day_start, day_end, 60, "MIDPOINT", False),
        20,
    )
    timed(
        "5-sec bars, 1 hour, AAPL TRADES, warm",
        lambda: model.bars(aapl, noon - 3600, noon, 5, "TRADES", False),
        20,
    )
    timed(
        "1-sec bars, 2000 s, AAPL BID, warm",
        lambda: model.bars(aapl, noon - 2000, noon, 1, "BID", False),
        20,
    )
    timed("trades(), 1 hour, AAPL, warm", lambda: model.trades(aapl, noon - 3600, noon), 20)

    timed("quote(), AAPL, warm", lambda: model.quote(aapl, noon), 20_000)
    seconds = iter(range(noon, noon + 10**6))
    timed("quote(), AAPL, next second, warm", lambda: model.quote(aapl, next(seconds)), 20_000)
    timed("quote(), ES front month, cold session", lambda: model.quote(es, noon))
    timed("quote(), ES front month, warm", lambda: model.quote(es, noon), 20_000)
    timed("quote(), SPY call, cold session", lambda: model.quote(calls[len(calls) // 2], noon))
    timed("quote(), SPY call, warm", lambda: model.quote(calls[len(calls) // 2], noon), 20_000)
    timed("mid(), AAPL, warm", lambda: model.mid(aapl, noon), 20_000)
    timed(
        "head_timestamp(), AAPL TRADES",
        lambda: MarketModel(ref, SEED).head_timestamp(aapl, "TRADES", True),
    )


if __name__ == "__main__":
    main()
