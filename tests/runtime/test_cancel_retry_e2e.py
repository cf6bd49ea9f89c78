"""A cancel the bot could not ask reaches the gateway as soon as it can: the engine, IbkrBroker
and the simulated gateway over real sockets.

An operator's cancel-all while the gateway is down cannot reach IB (NOT_CONNECTED).  The bot
asks again after the reconciliation that follows the reconnect, without waiting for another
cancel-all: the order must not keep working (and fill) because the link blinked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from test_ibkr_broker import make_broker

from ibpilot.broker.base import ConnectionState
from ibpilot.config import Environment, LoadedStrategy, StrategyConfig, spec_hash
from ibpilot.engine import Engine
from ibpilot.ledger import Entry, EntryKind, MemoryLedger
from ibpilot.oms import IntentState
from ibpilot.sim import SimGateway
from ibpilot.strategies import Context, Quote, Strategy

K = EntryKind
OPEN = datetime.fromisoformat("2026-03-02T10:00:00-05:00")  # a Monday, market open


class RestingBuy(Strategy):
    """One BUY LMT far below the market on the first live quote: it rests at the gateway."""

    def __init__(self) -> None:
        self.proposed = False

    def on_tick(self, ctx: Context, quote: Quote, **kwargs: Any) -> None:
        if ctx.warming_up or self.proposed:
            return
        self.proposed = True
        ctx.propose_order(quote.symbol, "BUY", 10, "LMT", limit_price="1.00", tif="GTC")


def strategy_file() -> LoadedStrategy:
    raw = {
        "name": "cancel retry", "strategy": "test_cancel_retry_e2e:RestingBuy",
        "instruments": [{"symbol": "AAPL", "primary_exchange": "NASDAQ"}],
        "bar_size": "1 min", "warmup": "600 S", "on_stop": "leave_open_orders",
        "mandate": {
            "allowed_symbols": ["AAPL"], "allowed_order_types": ["LMT"],
            "max_order_quantity": 10, "max_order_notional": 100_000, "max_position": 100,
            "max_daily_loss": 100_000, "max_orders_per_minute": 100,
            "trading_hours": {"start": "09:30", "end": "16:00", "time_zone": "America/New_York",
                              "days": ["MON", "TUE", "WED", "THU", "FRI"]},
        },
    }  # fmt: skip
    return LoadedStrategy(
        StrategyConfig.model_validate(raw), spec_hash(raw), json.dumps(raw).encode()
    )


async def until(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def about(ledger: MemoryLedger, intent_id: str) -> list[Entry]:
    return [e for e in ledger.entries() if e.payload.get("intent_id") == intent_id]


@pytest.mark.sim(start=OPEN, speed=10)
async def test_a_cancel_asked_while_the_gateway_is_down_reaches_it_once_it_is_back(
    gateway: SimGateway,
) -> None:
    ledger, strategy = MemoryLedger(), RestingBuy()
    bot = Engine(
        strategy_file(), make_broker(gateway.port), ledger, gateway.clock.now_dt,
        environment=Environment.PAPER, strategy=strategy,
    )  # fmt: skip
    run = asyncio.create_task(bot.run())
    try:
        await until("the order working", lambda: [i.state for i in bot.status().open_orders]
                    == [IntentState.WORKING])  # fmt: skip
        (intent,) = bot.status().open_orders
        gateway.faults.start_restart(down=1.5)
        await until("the link down", lambda: bot.status().connection
                    is not ConnectionState.CONNECTED)  # fmt: skip
        assert await bot.cancel_all("operator") == [intent.intent_id]
        # not asked (the link is down); nothing else asks: the bot does, once reconciled
        await until("the order cancelled at the gateway", lambda: not bot.status().open_orders)
    finally:
        await bot.stop("test over")
        await run

    trail = about(ledger, intent.intent_id)
    failed = next(e for e in trail if e.kind is K.NOTE)
    assert "cancel_failed" in failed.payload
    retry = next(e for e in trail if e.kind is K.CANCEL_SENT and e.seq > failed.seq)
    assert retry.payload["reason"] == "operator"  # asked again by the bot itself
    reconciled = [e.seq for e in ledger.entries(kind=K.RECONCILIATION) if e.seq > failed.seq]
    assert reconciled
    assert reconciled[0] < retry.seq  # once the reconnect's reconciliation had passed
    answers = [e.payload for e in trail if e.kind is K.ORDER_STATUS and e.seq > retry.seq]
    assert [a.get("status") for a in answers if "status" in a][-1] == "Cancelled"  # the gateway's
    assert trail[-1].payload["state"] == "CANCELLED"
    assert ledger.verify().ok
