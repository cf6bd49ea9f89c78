"""The shortcuts taken on the path from a tick to an order give what the general rules give.

Each one is checked against the rule it stands in for: the quote conversion against
``price``/``dec``, the engine's cached trading day against the time-zone conversion, the
engine's event loop against stop() and cancellation.  (Timings are the benchmarks' business:
``bench/tick_to_order.py``; nothing here measures time.)
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import ib_async
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ibpilot.book import DaySpan
from ibpilot.broker import _ibkr_convert as cv
from ibpilot.broker.base import Contract
from ibpilot.broker.base import Quote as BrokerQuote
from ibpilot.broker.paper import PaperBroker
from ibpilot.config import Environment, LoadedStrategy, StrategyConfig, spec_hash
from ibpilot.engine import Engine
from ibpilot.ledger import EntryKind, MemoryLedger
from ibpilot.strategies import Strategy

START = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
AAPL = Contract(265598, "AAPL", "STK", "SMART", "USD", time_zone="US/Eastern")

# -- the quote conversion ---------------------------------------------------------------------

ib_numbers = st.floats() | st.sampled_from(
    [-1.0, 0.0, -0.0, 1.0, cv.UNSET_DOUBLE, math.inf, -math.inf, math.nan, 2.0**53 + 1]
)


def _same(a: Decimal | None, b: Decimal | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and str(a) == str(b))


@settings(max_examples=500, deadline=None)
@given(numbers=st.lists(ib_numbers, min_size=5, max_size=5))
def test_a_ticker_converts_as_the_general_rules_say(numbers: list[float]) -> None:
    bid, ask, last, bid_size, ask_size = numbers
    ticker = ib_async.Ticker(contract=ib_async.Contract(conId=7), time=START)
    ticker.bid, ticker.ask, ticker.last = bid, ask, last  # the constructor resets them
    ticker.bidSize, ticker.askSize = bid_size, ask_size
    quote = cv.quote_of(ticker, START)
    assert quote is not None
    assert _same(quote.bid, cv.price(bid))
    assert _same(quote.ask, cv.price(ask))
    assert _same(quote.last, cv.price(last))
    assert _same(quote.bid_size, cv.dec(bid_size))
    assert _same(quote.ask_size, cv.dec(ask_size))


# -- the trading day --------------------------------------------------------------------------

ZONES = ["US/Eastern", "Europe/London", "Asia/Tokyo", "America/Havana", "America/Santiago",
         "Asia/Beirut", "Australia/Lord_Howe", "UTC"]  # fmt: skip
instants = st.datetimes(
    min_value=datetime(2020, 1, 1),  # noqa: DTZ001  (hypothesis adds the zone)
    max_value=datetime(2035, 12, 31),  # noqa: DTZ001
    timezones=st.just(UTC),
)


@settings(max_examples=500, deadline=None)
@given(now=instants, zone=st.sampled_from(ZONES))
def test_the_cached_trading_day_is_the_converted_one(now: datetime, zone: str) -> None:
    tz = ZoneInfo(zone)
    day = now.astimezone(tz).date()
    span = DaySpan.of(day, tz)
    if span is None:  # the engine converts every time on such a day
        return
    assert span.start <= now < span.end
    for edge in (span.start, span.end - timedelta(microseconds=1)):
        assert edge.astimezone(tz).date() == day
    assert span.end.astimezone(tz).date() == day + timedelta(days=1)


def test_a_midnight_that_does_not_exist_still_bounds_the_day() -> None:
    havana = ZoneInfo("America/Havana")  # clocks go from 00:00 to 01:00 on 2026-03-08
    span = DaySpan.of(date(2026, 3, 8), havana)
    assert span is not None
    assert span.end - span.start == timedelta(hours=23)


# -- the event loop ---------------------------------------------------------------------------


class _Idle(Strategy):
    def __init__(self) -> None:
        self.ticks = 0

    def on_tick(self, ctx: Any, quote: Any, **kwargs: Any) -> None:
        self.ticks += 1


def _loaded() -> LoadedStrategy:
    raw = {
        "name": "test", "strategy": "sma_cross", "instruments": [{"symbol": "AAPL"}],
        "warmup": "1 D", "mandate": {
            "allowed_symbols": ["AAPL"], "max_order_quantity": 1, "max_order_notional": 1000,
            "max_position": 1, "max_daily_loss": 1000,
            "trading_hours": {"start": "09:30", "end": "16:00", "time_zone": "US/Eastern"},
        },
    }  # fmt: skip
    config = StrategyConfig.model_validate(raw)
    return LoadedStrategy(config, spec_hash(raw), json.dumps(raw).encode())


def _engine(ledger: MemoryLedger, broker: PaperBroker, strategy: Strategy) -> Engine:
    return Engine(
        _loaded(), broker, ledger, broker.now, environment=Environment.PAPER,
        strategy=strategy, feed_bar_seconds=60, rng=random.Random(0),
    )  # fmt: skip


async def _started(bot: Engine, ledger: MemoryLedger) -> asyncio.Task[None]:
    task = asyncio.create_task(bot.run())
    for _ in range(1000):  # bounded: the engine reaches its loop within a few hundred hops
        if any(e.kind is EntryKind.RECONCILIATION for e in ledger.entries()):
            break
        await asyncio.sleep(0)
    for _ in range(50):
        await asyncio.sleep(0)  # now waiting for the next event
    return task


async def test_stop_ends_the_wait_for_the_next_event_at_once() -> None:
    broker, ledger, strategy = PaperBroker([AAPL], start=START), MemoryLedger(), _Idle()
    bot = _engine(ledger, broker, strategy)
    task = await _started(bot, ledger)
    assert not task.done()
    await asyncio.wait_for(bot.stop("test"), 5)  # no event will ever come
    await asyncio.wait_for(task, 5)
    [stop] = [e for e in ledger.entries() if e.kind is EntryKind.STOP]
    assert stop.payload["reason"] == "test"
    assert task.cancelling() == 0  # the engine took back the cancel that ended its wait


async def test_cancelling_the_run_while_it_waits_is_a_crash_not_a_stop() -> None:
    broker, ledger = PaperBroker([AAPL], start=START), MemoryLedger()
    task = await _started(_engine(ledger, broker, _Idle()), ledger)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert not any(e.kind is EntryKind.STOP for e in ledger.entries())


async def test_events_queued_before_a_stop_are_handled_in_order_until_then() -> None:
    broker, ledger, strategy = PaperBroker([AAPL], start=START), MemoryLedger(), _Idle()
    bot = _engine(ledger, broker, strategy)
    task = await _started(bot, ledger)
    quotes = [
        BrokerQuote(AAPL.con_id, START + timedelta(seconds=i), Decimal(100), Decimal(101))
        for i in range(5)
    ]
    broker.push(*quotes)
    for _ in range(200):
        if strategy.ticks == len(quotes):
            break
        await asyncio.sleep(0)
    assert strategy.ticks == len(quotes)
    await asyncio.wait_for(bot.stop("test"), 5)
    await asyncio.wait_for(task, 5)
