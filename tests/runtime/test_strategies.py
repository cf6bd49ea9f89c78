"""Strategies: loading by name, the read-only Context, target_position, hook wrapping, sma_cross."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ibpilot.config import SecType
from ibpilot.gate import Side
from ibpilot.strategies import (
    Bar,
    BarBuilder,
    Context,
    ContextData,
    Strategy,
    StrategyLoadError,
    call_hook,
    load_strategy_class,
)
from ibpilot.strategies.base import freeze
from ibpilot.strategies.sma_cross import SmaCross

D = Decimal
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def context(params: dict[str, Any] | None = None) -> tuple[Context, ContextData]:
    data = ContextData(
        lambda: NOW, freeze(params or {}), {"AAPL": (SecType.STK, D(1)), "ES": (SecType.FUT, D(50))}
    )
    return Context(data), data


def orders(data: ContextData) -> list[tuple[str, Side, Decimal]]:
    return [(p.symbol, p.side, p.quantity) for p in data.take_proposals()]


# ---------------------------------------------------------------------------------------------
# Loading


def test_a_template_name_loads_its_class() -> None:
    assert load_strategy_class("sma_cross") is SmaCross


def test_a_user_class_loads_from_package_module_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_strats.py").write_text(
        textwrap.dedent("""
            from ibpilot.strategies import Strategy
            class Mine(Strategy):
                pass
            class NotOne:
                pass
            value = 3
        """)
    )
    (tmp_path / "broken_strats.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_strategy_class("my_strats:Mine").__name__ == "Mine"
    cases = {
        "nope": "no such template (templates: sma_cross",
        "no_such_module_xyz:Thing": "cannot import 'no_such_module_xyz'",
        "broken_strats:Thing": "importing 'broken_strats' raised RuntimeError: boom at import",
        "my_strats:Missing": "'my_strats' has no 'Missing'",
        "my_strats:NotOne": "'NotOne' is not a subclass of ibpilot.strategies.Strategy",
        "my_strats:value": "'value' is not a subclass",
        ":Mine": 'expected "package.module:Class"',
    }
    for name, message in cases.items():
        with pytest.raises(StrategyLoadError) as raised:
            load_strategy_class(name)
        assert message in str(raised.value), name
        assert "\n" not in str(raised.value)


# ---------------------------------------------------------------------------------------------
# The Context


def test_views_are_read_only_copies() -> None:
    ctx, data = context({"levels": [1, 2], "inner": {"a": 1}})
    with pytest.raises(TypeError):
        ctx.params["levels"] = 3  # type: ignore[index]
    assert ctx.params["levels"] == (1, 2)
    with pytest.raises(TypeError):
        ctx.params["inner"]["a"] = 2  # type: ignore[index]
    data.positions["AAPL"] = D(10)
    positions = ctx.positions
    data.positions["AAPL"] = D(20)
    assert positions["AAPL"] == 10
    with pytest.raises(TypeError):
        positions["AAPL"] = D(1)  # type: ignore[index]
    bar = Bar("AAPL", NOW, D(1), D(1), D(1), D(1), D(1))
    data.add_bar(bar)
    assert ctx.history("AAPL") == (bar,)
    assert ctx.history("AAPL", 0) == ()
    assert ctx.closes("MSFT") == ()
    assert ctx.symbols == ("AAPL", "ES")
    assert ctx.now == NOW
    assert not hasattr(ctx, "__dict__"), "a Context has no room for a broker or a ledger"


def test_propose_order_builds_a_strategy_proposal_or_raises() -> None:
    ctx, data = context()
    ctx.propose_order("ES", "buy", 2, "LMT", limit_price=5000.25)
    [proposal] = data.take_proposals()
    assert proposal.source == "strategy"
    assert (proposal.side, proposal.quantity, proposal.limit_price) == (Side.BUY, 2, D("5000.25"))
    assert (proposal.sec_type, proposal.multiplier) == (SecType.FUT, 50)
    for bad, error in [
        ({"side": "HOLD"}, ValueError), ({"quantity": 0}, ValueError),
        ({"quantity": "lots"}, ValueError), ({"quantity": True}, TypeError),
        ({"quantity": float("nan")}, ValueError), ({"order_type": "ICEBERG"}, ValueError),
    ]:  # fmt: skip
        args: dict[str, Any] = {"symbol": "AAPL", "side": "BUY", "quantity": 1} | bad
        with pytest.raises(error):
            ctx.propose_order(**args)
    assert data.proposals == []


def test_target_position_counts_positions_open_orders_and_queued_proposals() -> None:
    ctx, data = context()
    ctx.target_position("AAPL", 100)
    assert orders(data) == [("AAPL", Side.BUY, 100)]
    data.pending["AAPL"] = D(100)  # that order is open now
    ctx.target_position("AAPL", 100)
    assert orders(data) == []
    data.pending.clear()
    data.positions["AAPL"] = D(100)
    ctx.target_position("AAPL", -50)  # crossing zero: close, then open the other side
    assert orders(data) == [("AAPL", Side.SELL, 100), ("AAPL", Side.SELL, 50)]
    ctx.target_position("AAPL", 40)
    ctx.target_position("AAPL", 0)  # the queued SELL 60 counts
    assert orders(data) == [("AAPL", Side.SELL, 60), ("AAPL", Side.SELL, 40)]


# ---------------------------------------------------------------------------------------------
# Hook wrapping


class Faulty(Strategy):
    def on_bar(self, ctx: Context, bar: Bar, **kwargs: Any) -> None:
        ctx.target_position(bar.symbol, 10)
        raise ZeroDivisionError("bad maths")

    async def on_tick(self, ctx: Context, quote: Any, **kwargs: Any) -> None:  # type: ignore[override]
        pass


def test_a_raising_hook_becomes_a_failure_with_its_traceback() -> None:
    ctx, _ = context()
    bar = Bar("AAPL", NOW, D(1), D(1), D(1), D(1), D(1))
    failure = call_hook(Faulty(), "on_bar", ctx, bar)
    assert failure is not None
    assert (failure.hook, failure.error, failure.message) == (
        "on_bar",
        "ZeroDivisionError",
        "bad maths",
    )
    assert "in on_bar" in failure.traceback
    assert call_hook(Faulty(), "on_start", ctx) is None
    async_failure = call_hook(Faulty(), "on_tick", ctx, None)
    assert async_failure is not None
    assert "hooks must be plain functions" in async_failure.message


# ---------------------------------------------------------------------------------------------
# sma_cross


def feed(strategy: SmaCross, ctx: Context, data: ContextData, closes: list[float]) -> list[Any]:
    placed = []
    for i, close in enumerate(closes):
        price = D(str(close))
        bar = Bar("AAPL", NOW + timedelta(minutes=i), price, price, price, price, D(100))
        data.add_bar(bar)
        assert call_hook(strategy, "on_bar", ctx, bar) is None
        for symbol, side, quantity in orders(data):
            placed.append((i, side, quantity))
            data.positions[symbol] = data.positions.get(symbol, D(0)) + (
                quantity if side is Side.BUY else -quantity
            )
    return placed


def started(params: dict[str, Any]) -> tuple[SmaCross, Context, ContextData]:
    ctx, data = context(params)
    strategy = SmaCross()
    strategy.on_start(ctx)
    return strategy, ctx, data


DOWN_UP_DOWN = [10, 9, 8, 7, 6, 7, 8, 9, 10, 11, 10, 9, 8, 7, 6]


def test_sma_cross_goes_long_on_the_cross_up_and_flat_on_the_cross_down() -> None:
    strategy, ctx, data = started({"fast": 2, "slow": 4, "quantity": 10})
    assert feed(strategy, ctx, data, DOWN_UP_DOWN) == [(6, Side.BUY, 10), (11, Side.SELL, 10)]


def test_sma_cross_goes_short_when_allowed() -> None:
    strategy, ctx, data = started({"fast": 2, "slow": 4, "quantity": 10, "allow_short": True})
    placed = feed(strategy, ctx, data, DOWN_UP_DOWN)
    assert placed == [(6, Side.BUY, 10), (11, Side.SELL, 10), (11, Side.SELL, 10)]
    assert data.positions["AAPL"] == -10


def test_sma_cross_does_not_trade_while_warming_up() -> None:
    strategy, ctx, data = started({"fast": 2, "slow": 4, "quantity": 10})
    data.warming_up = True
    assert feed(strategy, ctx, data, DOWN_UP_DOWN[:9]) == []  # the cross up is in the warm-up
    data.warming_up = False
    live = feed(strategy, ctx, data, [11, 10, 9, 8, 7, 6, 7, 8, 9, 10])
    assert [(side, quantity) for _, side, quantity in live] == [(Side.BUY, 10)]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"quantity": 10, "fast": 5, "slow": 5}, "must be less than slow"),
        ({"quantity": 10, "fast": 0}, "params.fast must be a whole number"),
        ({"quantity": 10, "slow": 2.5}, "params.slow must be a whole number"),
        ({}, "params.quantity must be a number > 0"),
        ({"quantity": -1}, "params.quantity must be a number > 0"),
        ({"quantity": 1, "allow_short": "yes"}, "params.allow_short must be true or false"),
    ],
)
def test_sma_cross_refuses_bad_parameters(params: dict[str, Any], message: str) -> None:
    ctx, _ = context(params)
    failure = call_hook(SmaCross(), "on_start", ctx)
    assert failure is not None
    assert message in failure.message


def test_hooks_have_defaults_that_do_nothing() -> None:
    ctx, data = context()
    hooks: list[Callable[..., None]] = [Strategy().on_start, Strategy().on_stop]
    for hook in hooks:
        hook(ctx, future_argument=1)
    assert data.proposals == []


# ---------------------------------------------------------------------------------------------
# Bars of the strategy's bar_size


def five_second_bar(second: int, price: int, symbol: str = "AAPL") -> Bar:
    p = D(price)
    return Bar(symbol, NOW + timedelta(seconds=second), p, p + 1, p - 1, p, D(10))


def test_five_second_bars_make_one_minute_bars_when_the_minute_ends() -> None:
    builder, zone = BarBuilder("1 min", 5), ZoneInfo("US/Eastern")
    done = [b for s in range(0, 60, 5) for b in builder.add(five_second_bar(s, 100 + s), zone)]
    assert len(done) == 1
    [minute] = done
    assert (minute.time, minute.open, minute.high, minute.low) == (NOW, 100, 156, 99)
    assert (minute.close, minute.volume) == (155, 120)


def test_a_gap_completes_the_open_bar_when_the_next_period_starts() -> None:
    builder, zone = BarBuilder("1 min", 5), ZoneInfo("US/Eastern")
    assert builder.add(five_second_bar(0, 100), zone) == []
    [first] = builder.add(five_second_bar(65, 101), zone)  # 10:01:05: 10:00 is over
    assert (first.time, first.close) == (NOW, 100)
    assert builder.add(five_second_bar(0, 100, "MSFT"), zone) == []  # per symbol


def test_day_bars_follow_the_instruments_time_zone() -> None:
    builder, zone = BarBuilder("1 day", 60), ZoneInfo("US/Eastern")
    evening = Bar("AAPL", datetime(2026, 3, 3, 0, 30, tzinfo=UTC), D(1), D(2), D(1), D(2), D(1))
    assert builder.add(five_second_bar(0, 100), zone) == []
    assert builder.add(evening, zone) == []  # 19:30 in New York: still Monday
    next_day = Bar("AAPL", datetime(2026, 3, 3, 14, 30, tzinfo=UTC), D(3), D(3), D(3), D(3), D(1))
    [monday] = builder.add(next_day, zone)
    assert (monday.open, monday.close, monday.high) == (100, 2, 101)
