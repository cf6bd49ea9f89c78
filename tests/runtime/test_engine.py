"""The engine end to end, with the paper broker and the real MemoryLedger.

Bars are one minute long from Monday 2 March 2026, 09:30 US/Eastern; the mandate trades
09:30-16:00.  The paper broker consumes its feed only as the engine reads it, so every run is
deterministic and no test sleeps for a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ibpilot.broker.base import Bar as BrokerBar
from ibpilot.broker.base import (
    BrokerError,
    ConnectionEvent,
    ConnectionState,
    Contract,
    ExecutionReport,
    OrderRequest,
)
from ibpilot.broker.base import Side as BSide
from ibpilot.broker.paper import PaperBroker
from ibpilot.config import Environment, LoadedStrategy, OnStop, StrategyConfig, spec_hash
from ibpilot.engine import Engine
from ibpilot.gate import TradingState
from ibpilot.ledger import Entry, EntryKind, MemoryLedger
from ibpilot.oms import IntentState
from ibpilot.strategies import Bar, Context, Fill, Strategy

D = Decimal
K = EntryKind
START = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)  # 09:30 US/Eastern
AAPL = Contract(265598, "AAPL", "STK", "SMART", "USD", time_zone="US/Eastern")
MANDATE: dict[str, Any] = {
    "allowed_symbols": ["AAPL", "MSFT"],
    "max_order_quantity": 200,
    "max_order_notional": 100_000,
    "max_position": 200,
    "max_daily_loss": 100_000,
    "trading_hours": {"start": "09:30", "end": "16:00", "time_zone": "US/Eastern"},
}


def loaded(params: dict[str, Any] | None = None, **mandate: Any) -> LoadedStrategy:
    raw = {
        "name": "test", "strategy": "sma_cross",
        "params": params if params is not None else {"fast": 5, "slow": 20, "quantity": 100},
        "instruments": [{"symbol": "AAPL"}], "warmup": "1 D", "mandate": MANDATE | mandate,
    }  # fmt: skip
    return LoadedStrategy(
        StrategyConfig.model_validate(raw), spec_hash(raw), json.dumps(raw).encode()
    )


def bar(i: int, price: float | Decimal) -> BrokerBar:
    p = D(str(price))
    return BrokerBar(
        AAPL.con_id, START + timedelta(minutes=i), p, p + D("0.05"), p - D("0.05"), p, D(1000)
    )


def paper(**kwargs: Any) -> PaperBroker:
    return PaperBroker([AAPL], start=START, **kwargs)


def engine(
    ledger: MemoryLedger, broker: PaperBroker, strategy: Strategy | None = None,
    config: LoadedStrategy | None = None, **kwargs: Any,
) -> Engine:  # fmt: skip
    return Engine(
        config or loaded(), broker, ledger, broker.now, environment=Environment.PAPER,
        strategy=strategy, feed_bar_seconds=60, rng=random.Random(0), **kwargs,
    )  # fmt: skip


def of(ledger: MemoryLedger, kind: EntryKind) -> list[Entry]:
    return list(ledger.entries(kind=kind))


def ids(entries: list[Entry]) -> list[str]:
    return [str(e.payload["intent_id"]) for e in entries]


class Scripted(Strategy):
    """Runs ``actions[n]`` on the n-th live bar (0-based); counts fills."""

    def __init__(self, actions: dict[int, Callable[[Context], None]]) -> None:
        self.actions, self.bars, self.fills = actions, 0, []

    def on_bar(self, ctx: Context, bar: Bar, **kwargs: Any) -> None:
        if ctx.warming_up:
            return
        action = self.actions.get(self.bars)
        self.bars += 1
        if action is not None:
            action(ctx)

    def on_fill(self, ctx: Context, fill: Fill, **kwargs: Any) -> None:
        self.fills.append(fill)


def buy(quantity: int = 100, symbol: str = "AAPL", **kwargs: Any) -> Callable[[Context], None]:
    return lambda ctx: ctx.propose_order(symbol, "BUY", quantity, **kwargs)


async def until(check: Callable[[], bool]) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting for the engine")


# ---------------------------------------------------------------------------------------------
# A strategy through the whole path


async def test_sma_cross_trades_and_every_order_has_exactly_one_intent() -> None:
    broker, ledger = paper(), MemoryLedger()
    broker.preload(bar(i, 100) for i in range(-40, 0))
    broker.push(*(bar(i, round(100 + 5 * math.sin(i / 12), 2)) for i in range(300)))
    broker.end()
    bot = engine(ledger, broker)
    await bot.run()

    placed = [o.intent_id for o in broker.placed]
    assert len(placed) >= 4
    assert (
        sorted(ids(of(ledger, K.INTENT))) == sorted(placed) == sorted(ids(of(ledger, K.ORDER_SENT)))
    )
    assert len(set(placed)) == len(placed)
    assert [e.kind for e in ledger.entries()][:4] == [
        K.START,
        K.CONFIG_LOADED,
        K.SPEC_HASH,
        K.CONNECTION,
    ]
    assert [e.kind for e in ledger.entries()][-1] is K.STOP
    assert {e.spec_hash for e in ledger.entries()} == {bot.spec_hash}
    assert ledger.verify().ok
    held = {p.symbol: p.quantity for p in await broker.positions()}
    status = bot.status()
    assert status.positions == held
    assert all(e.payload["allowed"] for e in of(ledger, K.DECISION))
    assert status.last_decisions[-1].allowed
    assert len(of(ledger, K.FILL)) == len(placed) == len(of(ledger, K.COMMISSION))


async def test_partial_fills_are_tracked_to_the_end() -> None:
    broker, ledger = paper(max_fill_quantity=D(30)), MemoryLedger()
    strategy = Scripted({0: buy(100)})
    broker.push(*(bar(i, 100 + i) for i in range(8)))
    broker.end()
    bot = engine(ledger, broker, strategy)
    await bot.run()
    [intent_id] = ids(of(ledger, K.INTENT))
    fills = of(ledger, K.FILL)
    assert [D(str(f.payload["quantity"])) for f in fills] == [30, 30, 30, 10]
    assert [f.payload["state"] for f in fills][-2:] == ["PARTIALLY_FILLED", "FILLED"]
    assert [f.quantity for f in strategy.fills] == [30, 30, 30, 10]
    assert bot.status().positions == {"AAPL": D(100)}
    assert {f.intent_id for f in strategy.fills} == {intent_id}


# ---------------------------------------------------------------------------------------------
# Refusals: ledgered with their reasons, nothing reaches the broker


@pytest.mark.parametrize(
    ("action", "at_minute", "code"),
    [
        (buy(1, "TSLA"), 0, "SYMBOL_NOT_ALLOWED"),
        (buy(500), 0, "MAX_ORDER_QUANTITY"),
        (buy(1, order_type="STP", stop_price=99), 0, "ORDER_TYPE_NOT_ALLOWED"),
        (buy(1), 7 * 60, "OUTSIDE_TRADING_HOURS"),  # 16:30 US/Eastern
    ],
)
async def test_a_refused_proposal_is_ledgered_with_reasons_and_never_sent(
    action: Callable[[Context], None], at_minute: int, code: str
) -> None:
    broker, ledger = paper(), MemoryLedger()
    broker.push(bar(at_minute, 100), bar(at_minute + 1, 100))
    broker.end()
    await engine(ledger, broker, Scripted({0: action})).run()
    [decision] = of(ledger, K.DECISION)
    assert decision.payload["allowed"] is False
    reasons = decision.payload["reasons"]
    assert isinstance(reasons, list)
    assert code in [r["code"] for r in reasons]  # type: ignore[index]
    assert len(of(ledger, K.PROPOSAL)) == 1
    assert of(ledger, K.INTENT) == []
    assert broker.placed == []


# ---------------------------------------------------------------------------------------------
# Strategy errors


class Raising(Strategy):
    def __init__(self, failures: int) -> None:
        self.failures = failures

    def on_bar(self, ctx: Context, bar: Bar, **kwargs: Any) -> None:
        if self.failures:
            self.failures -= 1
            ctx.propose_order("AAPL", "BUY", 1)  # dropped with the failed hook
            raise RuntimeError("strategy bug")
        ctx.propose_order("AAPL", "BUY", 1)


async def test_strategy_exceptions_are_ledgered_and_the_bot_halts_after_n() -> None:
    broker, ledger = paper(), MemoryLedger()
    broker.push(*(bar(i, 100) for i in range(5)))
    broker.end()
    bot = engine(ledger, broker, Raising(failures=3), max_strategy_errors=3)
    await bot.run()
    errors = of(ledger, K.STRATEGY_ERROR)
    assert [e.payload["count"] for e in errors] == [1, 2, 3]
    assert errors[0].payload["error"] == "RuntimeError"
    assert "strategy bug" in str(errors[0].payload["traceback"])
    [halt] = of(ledger, K.HALT)
    assert halt.payload["source"] == "strategy_errors"
    decisions = of(ledger, K.DECISION)  # bars 4 and 5 propose again: refused, halted
    assert len(decisions) == 2
    assert all(d.payload["reasons"][0]["code"] == "HALTED" for d in decisions)  # type: ignore[index]
    assert broker.placed == []
    assert bot.status().trading_state is TradingState.HALTED
    assert bot.status().strategy_errors == 3


async def test_a_bad_parameter_halts_at_start_but_the_bot_runs() -> None:
    broker, ledger = paper(), MemoryLedger()
    broker.push(bar(0, 100))
    broker.end()
    bot = engine(ledger, broker, config=loaded({"fast": 5, "slow": 3, "quantity": 1}))
    await bot.run()
    assert of(ledger, K.STRATEGY_ERROR)[0].payload["hook"] == "on_start"
    assert of(ledger, K.HALT)[0].payload["reason"] == "the strategy failed to start"


# ---------------------------------------------------------------------------------------------
# Crash and restart: an intent is never sent twice


class SimulatedCrash(BaseException):
    """The process dies (not an Exception: nothing in the engine catches it)."""


class CrashingPaper(PaperBroker):
    def __init__(self, crash: str | None, **kwargs: Any) -> None:
        super().__init__([AAPL], start=START, **kwargs)
        self.crash = crash

    async def place(self, order: OrderRequest) -> int:
        if self.crash == "after":  # IB got the order; the bot died before ORDER_SENT
            await super().place(order)
        if self.crash is not None:
            raise SimulatedCrash
        return await super().place(order)


@pytest.mark.parametrize("broker_got_it", [True, False])
async def test_a_crash_between_intent_and_order_sent_never_sends_the_intent_twice(
    broker_got_it: bool,
) -> None:
    broker, ledger = CrashingPaper("after" if broker_got_it else "before"), MemoryLedger()
    broker.push(*(bar(i, 100 + i) for i in range(10)))
    broker.end()
    with pytest.raises(SimulatedCrash):
        await engine(
            ledger, broker, Scripted({1: lambda ctx: ctx.target_position("AAPL", 100)})
        ).run()
    [crashed] = ids(of(ledger, K.INTENT))
    assert of(ledger, K.ORDER_SENT) == []
    assert of(ledger, K.STOP) == []

    broker.crash = None  # the restarted bot: same ledger, same account
    restart = Scripted({1: lambda ctx: ctx.target_position("AAPL", 100)})
    bot = engine(ledger, broker, restart)
    await bot.run()
    findings = {
        (e.payload["finding"], e.payload.get("intent_id")) for e in of(ledger, K.RECONCILIATION)
    }
    assert ("unconfirmed", crashed) in findings
    assert [o.intent_id for o in broker.placed].count(crashed) == (1 if broker_got_it else 0)
    assert bot.status().positions == {"AAPL": D(100)}
    if broker_got_it:
        assert ("matched", crashed) in findings
        assert len(broker.placed) == 1, "the target was reached by the crashed intent's fill"
        assert [f.intent_id for f in restart.fills] == [crashed]
    else:
        assert ("missing", crashed) in findings
        [(_, new)] = [(o, o.intent_id) for o in broker.placed]
        assert new != crashed, "a new decision, with a new intent, not a re-send"
    mine = [e.payload for e in ledger.entries() if e.payload.get("intent_id") == crashed]
    states = [p["state"] for p in mine if "state" in p]
    assert states[-1] == (IntentState.FILLED if broker_got_it else IntentState.MISSING)
    assert ledger.verify().ok


async def test_a_restart_takes_positions_from_the_broker() -> None:
    broker, ledger = paper(), MemoryLedger()
    broker.push(*(bar(i, 100) for i in range(3)))
    await asyncio.wait_for(
        _run_until_stopped(engine(ledger, broker, Scripted({0: buy(40)})), broker), 5
    )
    broker.push(bar(3, 100))
    broker.end()
    bot = engine(ledger, broker, Scripted({}))
    await bot.run()
    assert bot.status().positions == {"AAPL": D(40)}
    [*_, start_positions] = [
        e for e in of(ledger, K.RECONCILIATION) if e.payload["finding"] == "positions"
    ]
    assert start_positions.payload["positions"] == {"AAPL": "40"}


async def _run_until_stopped(bot: Engine, broker: PaperBroker) -> None:
    task = asyncio.create_task(bot.run())
    await until(lambda: bool(broker.placed) and bot.status().open_orders == ())
    await bot.stop("test")
    await task


# ---------------------------------------------------------------------------------------------
# Loss limit, kill switch, ticket, stop


async def test_a_daily_loss_breach_halts_and_flattens_through_the_gate() -> None:
    broker, ledger = paper(), MemoryLedger()
    prices = [100, 100, 99, 97, 94, 92, 91, 90, 90, 90]
    broker.push(*(bar(i, p) for i, p in enumerate(prices)))
    broker.end()
    config = loaded(max_daily_loss=500, flatten_on_daily_loss=True)
    bot = engine(ledger, broker, Scripted({0: buy(100)}), config=config)
    await bot.run()
    [halt] = of(ledger, K.HALT)
    assert halt.payload["source"] == "daily_loss"
    assert [e.payload["action"] for e in of(ledger, K.KILL_SWITCH)] == ["flatten"]
    sources = [e.payload["source"] for e in of(ledger, K.PROPOSAL)]
    assert sources == ["strategy", "flatten"]
    assert all(e.payload["allowed"] for e in of(ledger, K.DECISION))
    assert bot.status().positions == {}
    assert bot.status().trading_state is TradingState.HALTED


async def test_a_restart_on_the_same_day_keeps_the_days_loss_for_the_limit() -> None:
    ledger, config = MemoryLedger(), loaded(max_daily_loss=500)
    sell = lambda ctx: ctx.propose_order("AAPL", "SELL", 100)  # noqa: E731
    broker = paper()
    broker.push(*(bar(i, p) for i, p in enumerate([100, 100, 100, 96, 96, 96])))
    broker.end()
    first = engine(ledger, broker, Scripted({0: buy(100), 2: sell}), config=config)
    await first.run()
    lost = first.status().realized_pnl
    assert -500 < lost < -300  # a loss under the limit: no halt
    assert of(ledger, K.HALT) == []
    assert of(ledger, K.PNL)[-1].payload["realized"] == str(lost)

    broker = paper()  # a restart later the same day, flat
    broker.push(*(bar(i, p) for i, p in enumerate([96, 96, 96, 94, 93, 93, 93], start=30)))
    broker.end()
    second = engine(ledger, broker, Scripted({0: buy(100)}), config=config)
    await second.run()
    [note] = [e for e in of(ledger, K.NOTE) if "pnl_restored" in e.payload]
    assert note.payload["realized"] == str(lost)
    [halt] = of(ledger, K.HALT)  # 2-3 a share more on 100: over 500 today, not since the start
    assert halt.payload["source"] == "daily_loss"
    assert "MAX_DAILY_LOSS" in str(halt.payload["reason"])

    broker = PaperBroker([AAPL], start=START + timedelta(days=1))  # the next day: from zero
    broker.push(*(bar(i, 93) for i in range(24 * 60, 24 * 60 + 3)))
    broker.end()
    third = engine(ledger, broker, Scripted({}), config=config)
    await third.run()
    assert len([e for e in of(ledger, K.NOTE) if "pnl_restored" in e.payload]) == 1
    assert third.status().realized_pnl == 0


async def test_the_kill_switch_ticket_and_stop_while_running() -> None:
    broker, ledger = paper(), MemoryLedger()
    strategy = Scripted({0: buy(10, order_type="LMT", limit_price=50)})  # far below: stays open
    broker.push(*(bar(i, 100) for i in range(3)))
    bot = engine(ledger, broker, strategy)
    task = asyncio.create_task(bot.run())
    await until(lambda: len(bot.status().open_orders) == 1)
    [resting] = bot.status().open_orders
    assert resting.state is IntentState.WORKING

    assert await bot.cancel_all("test") == [resting.intent_id]
    await until(lambda: bot.status().open_orders == ())
    await bot.halt("operator says so")
    refused = await bot.submit_order("AAPL", "BUY", D(5))
    assert refused is not None
    assert refused.codes == ("HALTED",)
    await bot.resume()
    allowed = await bot.submit_order("AAPL", "BUY", D(5), order_type="LMT", limit_price=D(50))
    assert allowed is not None
    assert allowed.allowed
    status = bot.status()
    assert status.connection is ConnectionState.CONNECTED
    assert [d.source for d in status.last_decisions] == ["strategy", "dashboard", "dashboard"]
    assert len(status.open_orders) == 1

    await bot.stop("test over")
    await task
    [stop] = of(ledger, K.STOP)
    assert stop.payload["reason"] == "test over"
    assert stop.payload["cancelled"] == [status.open_orders[0].intent_id]
    assert [e.kind for e in ledger.entries() if e.kind in (K.HALT, K.RESUME, K.KILL_SWITCH)] == [
        K.KILL_SWITCH, K.HALT, K.RESUME,
    ]  # fmt: skip
    assert broker.cancel_requests == [resting.intent_id, status.open_orders[0].intent_id]


async def test_a_halt_outlives_a_restart_until_an_operator_resumes() -> None:
    ledger = MemoryLedger()
    broker = paper()
    broker.push(bar(0, 100))
    first = engine(ledger, broker)
    task = asyncio.create_task(first.run())
    await until(lambda: first.status().connection is ConnectionState.CONNECTED)
    await first.halt("operator says so")
    await first.stop("restart")
    await task

    broker = paper()  # the bot starts again on the same ledger: still halted
    broker.push(bar(0, 100), bar(1, 100))
    strategy = Scripted({0: buy(10)})
    second = engine(ledger, broker, strategy)
    task = asyncio.create_task(second.run())
    await until(lambda: len(of(ledger, K.DECISION)) == 1)
    status = second.status()
    assert status.trading_state is TradingState.HALTED
    assert status.halt_reason is not None
    assert status.halt_reason.startswith("operator says so (halted since ")
    [note] = [e for e in of(ledger, K.NOTE) if "halted_at_start" in e.payload]
    assert note.payload["source"] == "operator"
    [refused] = of(ledger, K.DECISION)
    assert [r["code"] for r in refused.payload["reasons"]] == ["HALTED"]  # type: ignore[index,union-attr]
    assert broker.placed == []
    await second.resume("operator")
    allowed = await second.submit_order("AAPL", "BUY", D(5))
    assert allowed is not None
    assert allowed.allowed
    await second.stop("test over")
    await task

    broker = paper()  # resumed: a restart trades
    broker.push(bar(0, 100))
    broker.end()
    third = engine(ledger, broker, Scripted({0: buy(10)}))
    await third.run()
    assert third.status().trading_state is TradingState.ACTIVE
    assert len(broker.placed) == 1
    assert len([e for e in of(ledger, K.NOTE) if "halted_at_start" in e.payload]) == 1
    assert ledger.verify().ok


async def test_leave_open_orders_on_stop() -> None:
    broker, ledger = paper(), MemoryLedger()
    broker.push(bar(0, 100), bar(1, 100))
    broker.end()
    base = loaded()
    leave = base.config.model_copy(update={"on_stop": OnStop.LEAVE_OPEN_ORDERS})
    config = LoadedStrategy(leave, base.spec_hash, b"")
    await engine(
        ledger, broker, Scripted({0: buy(10, order_type="LMT", limit_price=50)}), config
    ).run()
    [stop] = of(ledger, K.STOP)
    assert stop.payload["cancelled"] == []
    assert len(stop.payload["open_orders"]) == 1  # type: ignore[arg-type]
    assert broker.cancel_requests == []


async def test_a_changed_strategy_file_halts_and_stops() -> None:
    broker, ledger = paper(), MemoryLedger()
    bot = engine(ledger, broker, Scripted({}))
    task = asyncio.create_task(bot.run())
    await until(lambda: bool(of(ledger, K.RECONCILIATION)))
    await bot.integrity_violation("f" * 64)
    await task
    kinds = [e.kind for e in ledger.entries()][-4:]
    assert kinds == [K.MANDATE_INTEGRITY_VIOLATION, K.HALT, K.ALERT, K.STOP]
    assert of(ledger, K.ALERT)[0].payload["kind"] == "halt"
    assert of(ledger, K.STOP)[0].payload["reason"] == "MANDATE_INTEGRITY_VIOLATION"


# ---------------------------------------------------------------------------------------------
# The connection


async def test_lost_connectivity_refuses_orders_and_a_reconnect_reconciles() -> None:
    broker, ledger = paper(), MemoryLedger()
    lost = ConnectionEvent(ConnectionState.IB_LOST, START, 1100, "CONNECTIVITY_LOST")
    restored = "CONNECTIVITY_RESTORED_DATA_LOST"
    back = ConnectionEvent(ConnectionState.CONNECTED, START, 1101, restored, data_lost=True)
    broker.push(bar(0, 100), lost, bar(1, 100), back, bar(2, 100))
    broker.end()
    bot = engine(ledger, broker, Scripted({1: buy(1), 2: buy(1)}))
    await bot.run()
    decisions = of(ledger, K.DECISION)
    assert decisions[0].payload["allowed"] is False
    codes = [r["code"] for r in decisions[0].payload["reasons"]]  # type: ignore[attr-defined]
    assert codes[0] == "CONNECTIVITY_LOST"  # and the quotes are stale: NO_QUOTE too
    assert decisions[1].payload["allowed"] is True
    assert [e.payload["state"] for e in of(ledger, K.CONNECTION)] == [
        "connected",
        "ib_lost",
        "connected",
    ]
    reasons = Counter(e.payload["reason"] for e in of(ledger, K.RECONCILIATION))
    assert reasons["reconnect"] == 2  # the OMS summary and the positions


# ---------------------------------------------------------------------------------------------
# The paper broker's fills


async def test_the_paper_broker_fills_like_a_backtest_should() -> None:
    broker = paper()
    await broker.connect()
    await broker.subscribe(AAPL)

    def order(intent_id: str, side: str, quantity: int, limit: str | None = None) -> OrderRequest:
        return OrderRequest(intent_id, AAPL, BSide(side), D(quantity), "LMT" if limit else "MKT",
                            D(limit) if limit else None)  # fmt: skip

    await broker.place(order("mkt", "BUY", 100))
    await broker.place(order("lmt", "SELL", 10, "101.5"))
    await broker.place(order("far", "BUY", 1000, "50"))
    await broker.place(replace(order("x", "BUY", 1), order_type="STP"))
    broker.push(BrokerBar(AAPL.con_id, START, D(100), D(102), D(99), D(101), D(5000)))
    broker.end()
    events = [e async for e in broker.events()]
    fills = {e.intent_id: e for e in events if isinstance(e, ExecutionReport)}
    assert fills["mkt"].price == 100  # the next bar's open
    assert fills["mkt"].commission == D("1.0000")  # 100 x 0.005 = 0.50, at least 1.00
    assert fills["lmt"].price == D("101.5")  # crossed: at the limit
    assert "far" not in fills
    rejected = [e for e in events if isinstance(e, BrokerError)]
    assert [(e.code, e.intent_id) for e in rejected] == [(201, "x")]
    await broker.cancel("far")
    await broker.cancel("mkt")
    await broker.cancel("nobody")
    codes = [e.code async for e in broker.events() if isinstance(e, BrokerError)]
    assert codes == [202, 10148, 10147]
    assert [p.quantity for p in await broker.positions()] == [90]
    account = await broker.account()
    assert account.realized_pnl == D(15) - 2  # (101.5 - 100) x 10, less two commissions
