"""The Strategy base class user code subclasses, and the Context it trades through.

A strategy never sees the broker, the ledger or the engine (DESIGN.md: it proposes; the gate
decides; the OMS acts).  Its :class:`Context` offers read-only views (positions, quotes, bars
per symbol, parameters, the time) and two actions, :meth:`Context.propose_order` and
:meth:`Context.target_position`, which queue proposals: the engine takes them through the gate
after the hook returns.  Every hook takes ``**kwargs`` so the interface can grow, and every hook
call goes through :func:`call_hook`: an exception becomes a :class:`StrategyFailure` that the
engine records as a STRATEGY_ERROR ledger entry; the proposals of a failed hook are dropped.
"""

from __future__ import annotations

import inspect
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any, TypeVar

from ibpilot.broker.base import Side
from ibpilot.config import OrderType, SecType
from ibpilot.gate import Proposal, Source, TimeInForce

ZERO = Decimal(0)
HOOKS = ("on_start", "on_bar", "on_tick", "on_fill", "on_stop")


class StrategyLoadError(Exception):
    """A strategy name that cannot be loaded: a configuration a human must fix (one line)."""


@dataclass(frozen=True, slots=True)
class Bar:
    """A completed bar of the strategy's ``bar_size``; ``time`` is its start (UTC)."""

    symbol: str
    time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    time: datetime
    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of one of this strategy's intents; ``corrects`` names a replaced fill."""

    intent_id: str
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    time: datetime
    commission: Decimal | None = None
    corrects: str | None = None


_UNIT_SECONDS = {"secs": 1, "min": 60, "mins": 60, "hour": 3600, "hours": 3600}


class BarBuilder:
    """The strategy's ``bar_size`` bars from a feed's shorter bars (IB streams 5-second bars).

    A bar is complete when a feed bar reaches its end (``feed_seconds`` is the feed bars'
    length), or when a bar of the next period arrives; day, week and month bars (periods in
    the instrument's time zone) complete only then.  A bar's time is its period's start.
    """

    def __init__(self, bar_size: str, feed_seconds: int) -> None:
        count, self.unit = bar_size.split()
        self.step = int(count) * _UNIT_SECONDS.get(self.unit, 0)
        self.feed = timedelta(seconds=feed_seconds)
        self._open: dict[str, tuple[object, Bar]] = {}

    def add(self, bar: Bar, zone: tzinfo) -> list[Bar]:
        """The bars ``bar`` completes (none, one, or the previous and this one)."""
        key, start, end = self._period(bar.time, zone)
        done: list[Bar] = []
        current = self._open.pop(bar.symbol, None)
        if current is not None and current[0] != key:
            done.append(current[1])
            current = None
        if current is None:
            merged = replace(bar, time=start or bar.time)
        else:
            b = current[1]
            high, low = max(b.high, bar.high), min(b.low, bar.low)
            merged = replace(b, high=high, low=low, close=bar.close, volume=b.volume + bar.volume)
        if end is not None and bar.time + self.feed >= end:
            done.append(merged)
        else:
            self._open[bar.symbol] = (key, merged)
        return done

    def _period(self, t: datetime, zone: tzinfo) -> tuple[object, datetime | None, Any]:
        if self.step:
            start = datetime.fromtimestamp(t.timestamp() // self.step * self.step, t.tzinfo)
            return start, start, start + timedelta(seconds=self.step)
        local = t.astimezone(zone)
        week, month = local.isocalendar()[:2], (local.year, local.month)
        return {"day": local.date(), "week": week, "month": month}[self.unit], None, None


class Strategy:
    """Override any hook. Parameters are ``ctx.params``; state lives on ``self``.

    Hooks are plain (not async) methods. Whatever they raise is recorded, never propagated.
    """

    def on_start(self, ctx: Context, **kwargs: Any) -> None:
        """Once, before warm-up: validate ``ctx.params`` and set up state."""

    def on_bar(self, ctx: Context, bar: Bar, **kwargs: Any) -> None:
        """Each completed bar of each instrument (during warm-up too: see ``ctx.warming_up``)."""

    def on_tick(self, ctx: Context, quote: Quote, **kwargs: Any) -> None:
        """Each quote update."""

    def on_fill(self, ctx: Context, fill: Fill, **kwargs: Any) -> None:
        """Each execution of one of this strategy's orders."""

    def on_stop(self, ctx: Context, **kwargs: Any) -> None:
        """Once, when the bot stops; proposals made here are not sent."""


@dataclass(slots=True)
class ContextData:
    """The engine's side of a Context: the state it keeps current and the proposals queued."""

    now: Callable[[], datetime]
    params: Mapping[str, Any]
    instruments: dict[str, tuple[SecType, Decimal]]  # symbol -> (sec_type, multiplier)
    history_limit: int = 2000
    positions: dict[str, Decimal] = field(default_factory=dict)
    pending: dict[str, Decimal] = field(default_factory=dict)  # signed open-order quantity
    quotes: dict[str, Quote] = field(default_factory=dict)
    history: dict[str, deque[Bar]] = field(default_factory=dict)
    proposals: list[Proposal] = field(default_factory=list)
    warming_up: bool = False

    def add_bar(self, bar: Bar) -> None:
        bars = self.history.setdefault(bar.symbol, deque(maxlen=self.history_limit))
        bars.append(bar)

    def take_proposals(self) -> list[Proposal]:
        taken, self.proposals = self.proposals, []
        return taken


def freeze(value: Any) -> Any:
    """JSON values made read-only: objects become mapping proxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: freeze(inner) for key, inner in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(inner) for inner in value)
    return value


_DEFAULT_INSTRUMENT = (SecType.STK, Decimal(1))
_E = TypeVar("_E", bound=StrEnum)
_MEMBERS: dict[type[StrEnum], dict[str, StrEnum]] = {
    kind: {str(member): member for member in kind} for kind in (Side, OrderType, TimeInForce)
}


def _member(kind: type[_E], value: str) -> _E:
    """``kind(value)`` (raises ValueError), by a dict look-up for a plain string."""
    found = _MEMBERS[kind].get(value) if type(value) is str else None
    return found if isinstance(found, kind) else kind(value)


def _quantity(value: object, name: str = "quantity") -> Decimal:
    if type(value) is int:  # the usual case: exact, finite
        return Decimal(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


class Context:
    """What a strategy sees and does. Views are copies or read-only; actions queue proposals."""

    __slots__ = ("_data",)

    def __init__(self, data: ContextData) -> None:
        self._data = data

    @property
    def now(self) -> datetime:
        return self._data.now()

    @property
    def params(self) -> Mapping[str, Any]:
        """The strategy file's ``params``, read-only."""
        return self._data.params

    @property
    def symbols(self) -> tuple[str, ...]:
        """The strategy's instruments."""
        return tuple(self._data.instruments)

    @property
    def warming_up(self) -> bool:
        """True while history is replayed: proposals are not sent then."""
        return self._data.warming_up

    @property
    def positions(self) -> Mapping[str, Decimal]:
        """Signed positions by symbol (the broker's, updated by fills), a copy."""
        return MappingProxyType(dict(self._data.positions))

    def position(self, symbol: str) -> Decimal:
        return self._data.positions.get(symbol, ZERO)

    def pending(self, symbol: str) -> Decimal:
        """The signed quantity of open orders (BUY positive), not yet filled."""
        return self._data.pending.get(symbol, ZERO)

    def quote(self, symbol: str) -> Quote | None:
        return self._data.quotes.get(symbol)

    def history(self, symbol: str, n: int | None = None) -> tuple[Bar, ...]:
        """The last ``n`` (default all kept) completed bars of ``symbol``, oldest first."""
        bars = tuple(self._data.history.get(symbol, ()))
        return bars if n is None else bars[-n:] if n > 0 else ()

    def closes(self, symbol: str, n: int | None = None) -> tuple[Decimal, ...]:
        return tuple(bar.close for bar in self.history(symbol, n))

    def propose_order(
        self, symbol: str, side: str, quantity: object, order_type: str = "MKT",
        limit_price: object = None, stop_price: object = None, *, tif: str = "DAY",
    ) -> None:  # fmt: skip
        """Queue an order; the gate decides after the hook returns (see the ledger/on_fill).

        Raises ValueError (or TypeError) for a malformed order: an unknown side, order type or
        TIF, a quantity or price that is not a positive number.
        """
        sec_type, multiplier = self._data.instruments.get(symbol, _DEFAULT_INSTRUMENT)
        limit = None if limit_price is None else _quantity(limit_price, "limit_price")
        stop = None if stop_price is None else _quantity(stop_price, "stop_price")
        proposal = Proposal(
            source=Source.STRATEGY, symbol=symbol, side=_member(Side, str(side).upper()),
            quantity=_quantity(quantity), order_type=_member(OrderType, order_type),
            sec_type=sec_type, limit_price=limit, stop_price=stop, tif=_member(TimeInForce, tif),
            multiplier=multiplier,
        )  # fmt: skip
        self._data.proposals.append(proposal)

    def target_position(self, symbol: str, quantity: object) -> None:
        """Queue the market order(s) that take ``symbol`` to ``quantity`` (signed).

        Open orders and proposals queued earlier in this hook count as if filled.  Crossing
        zero is two orders: one that closes the position, one that opens the other side.
        """
        target = _quantity(quantity)
        current = self.position(symbol) + self.pending(symbol)
        for queued in self._data.proposals:
            if queued.symbol == symbol:
                current += queued.quantity if queued.side is Side.BUY else -queued.quantity
        legs = [target - current]
        if current * target < 0:
            legs = [-current, target]
        for leg in legs:
            if leg:
                self.propose_order(symbol, "BUY" if leg > 0 else "SELL", abs(leg))


@dataclass(frozen=True, slots=True)
class StrategyFailure:
    """A hook raised: what the STRATEGY_ERROR ledger entry records."""

    hook: str
    error: str
    message: str
    traceback: str


def call_hook(strategy: Strategy, hook: str, ctx: Context, *args: object) -> StrategyFailure | None:
    """Call ``strategy.<hook>(ctx, *args)``; an exception becomes a StrategyFailure (never raised).

    An ``async def`` hook is a failure too: hooks must be plain functions.
    """
    try:
        result = getattr(strategy, hook)(ctx, *args)
    except Exception as exc:
        text = "".join(traceback.format_exception(exc))
        return StrategyFailure(hook, type(exc).__name__, str(exc)[:1000], text[-4000:])
    if result is not None and inspect.iscoroutine(result):
        result.close()
        message = f"{type(strategy).__name__}.{hook} is async: hooks must be plain functions"
        return StrategyFailure(hook, "TypeError", message, "")
    return None
