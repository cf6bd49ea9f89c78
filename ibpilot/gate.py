"""The mandate gate: ``decide(proposal, mandate, state) -> Decision``, a pure function.

No I/O and no clock: the time is ``state.now`` (UTC-aware).  Every failing rule is reported,
each as a :class:`Reason` with a machine-readable code, a message and the numbers (limit,
actual).  A refusal is a decision, never an exception.

A proposal is REDUCING when it shrinks an existing position without crossing zero, counting
open orders on the same side (a SELL of q with position p and pending sells s reduces iff
``q <= p - s``).  An EMERGENCY proposal is a reducing one from source "flatten" or "kill".
Which rules apply (``_RULES`` below is the table):

==========================  =======  ========  =========
rule                        opening  reducing  emergency
==========================  =======  ========  =========
LIVE_NOT_ALLOWED            yes      yes       yes
CONNECTIVITY_LOST           yes      yes       yes
NOT_RECONCILED              yes      yes       yes
HALTED / REDUCE_ONLY        yes      no        no
SYMBOL/SEC_TYPE/ORDER_TYPE  yes      yes       yes
INVALID_ORDER               yes      yes       yes
NO_QUOTE (require_quote)    yes      yes       no
PRICE_COLLAR                yes      yes       yes (skipped when there is no quote)
MIN_PRICE                   yes      no        no
MAX_ORDER_QUANTITY/NOTIONAL yes      no        no  (a reducing order is bounded by the position)
MAX_POSITION                yes      no        no
MAX_GROSS_EXPOSURE          yes      no        no
MAX_DAILY_LOSS              yes      no        no
MAX_ORDERS_PER_MINUTE       yes      yes       no
OUTSIDE_TRADING_HOURS       yes      yes       no
==========================  =======  ========  =========

CONNECTIVITY_LOST refuses everything while the link to IB is down (the socket closed, or
IB's 1100 with the socket kept): an order sent then is lost or rejected, and quotes are stale.
NOT_RECONCILED refuses everything after a (re)connect until the runtime has reconciled its
intents with the broker's orders and executions: before that it does not know what it holds.

Limits are inclusive: a value equal to its limit is allowed.  Whatever the proposal, when
realised + unrealised P&L is a loss above ``max_daily_loss`` the decision says ``halt`` (and
``flatten`` if the mandate asks for it).  The trading state (ACTIVE / REDUCING / HALTED) and
its transition table live here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from ibpilot.broker.base import Side  # one Side for the gate, the OMS and the broker
from ibpilot.config import Environment, Mandate, OrderType, SecType

ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_WINDOW = timedelta(seconds=60)
_NEEDS_LIMIT = frozenset({OrderType.LMT, OrderType.STP_LMT, OrderType.LOC, OrderType.LIT})
_NEEDS_STOP = frozenset({OrderType.STP, OrderType.STP_LMT, OrderType.MIT, OrderType.LIT})
_COLLAR_AT_LIMIT = frozenset({OrderType.LMT, OrderType.LOC})
_COLLAR_AT_TOUCH = frozenset({OrderType.MKT, OrderType.MOC})


class Source(StrEnum):
    STRATEGY = "strategy"
    CLI = "cli"
    DASHBOARD = "dashboard"
    FLATTEN = "flatten"
    KILL = "kill"


class TimeInForce(StrEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    GTD = "GTD"
    OPG = "OPG"
    FOK = "FOK"
    DTC = "DTC"


class ReasonCode(StrEnum):
    LIVE_NOT_ALLOWED = "LIVE_NOT_ALLOWED"
    CONNECTIVITY_LOST = "CONNECTIVITY_LOST"
    NOT_RECONCILED = "NOT_RECONCILED"
    HALTED = "HALTED"
    REDUCE_ONLY = "REDUCE_ONLY"
    SYMBOL_NOT_ALLOWED = "SYMBOL_NOT_ALLOWED"
    SEC_TYPE_NOT_ALLOWED = "SEC_TYPE_NOT_ALLOWED"
    ORDER_TYPE_NOT_ALLOWED = "ORDER_TYPE_NOT_ALLOWED"
    INVALID_ORDER = "INVALID_ORDER"
    NO_QUOTE = "NO_QUOTE"
    MIN_PRICE = "MIN_PRICE"
    PRICE_COLLAR = "PRICE_COLLAR"
    MAX_ORDER_QUANTITY = "MAX_ORDER_QUANTITY"
    MAX_ORDER_NOTIONAL = "MAX_ORDER_NOTIONAL"
    MAX_POSITION = "MAX_POSITION"
    MAX_GROSS_EXPOSURE = "MAX_GROSS_EXPOSURE"
    MAX_DAILY_LOSS = "MAX_DAILY_LOSS"
    MAX_ORDERS_PER_MINUTE = "MAX_ORDERS_PER_MINUTE"
    OUTSIDE_TRADING_HOURS = "OUTSIDE_TRADING_HOURS"


class LinkState(StrEnum):
    """The link to IB as the gate sees it."""

    UP = "up"  # connected and reconciled
    IB_LOST = "ib_lost"  # 1100: the socket is up, IB is not
    DISCONNECTED = "disconnected"  # no socket (reconnecting)
    RECONCILING = "reconciling"  # connected, the broker's orders and fills not yet reconciled


# ---------------------------------------------------------------------------------------------
# Trading state: a table of transitions


class TradingState(StrEnum):
    ACTIVE = "ACTIVE"  # every rule applies
    REDUCING = "REDUCING"  # only reducing proposals (e.g. wind-down, operator's reduce-only)
    HALTED = "HALTED"  # only reducing proposals; resuming needs an operator


class TradingTrigger(StrEnum):
    REDUCE_ONLY = "reduce_only"
    HALT = "halt"  # kill switch, daily loss limit, integrity violation
    RESUME = "resume"


TRADING_TRANSITIONS: Mapping[tuple[TradingState, TradingTrigger], TradingState] = {
    (TradingState.ACTIVE, TradingTrigger.REDUCE_ONLY): TradingState.REDUCING,
    (TradingState.ACTIVE, TradingTrigger.HALT): TradingState.HALTED,
    (TradingState.REDUCING, TradingTrigger.REDUCE_ONLY): TradingState.REDUCING,
    (TradingState.REDUCING, TradingTrigger.HALT): TradingState.HALTED,
    (TradingState.REDUCING, TradingTrigger.RESUME): TradingState.ACTIVE,
    (TradingState.HALTED, TradingTrigger.HALT): TradingState.HALTED,
    (TradingState.HALTED, TradingTrigger.RESUME): TradingState.ACTIVE,
}


class IllegalTransition(Exception):
    """A trading-state trigger that the table does not allow from the current state (a bug)."""

    def __init__(self, state: TradingState, trigger: TradingTrigger) -> None:
        self.state, self.trigger = state, trigger
        super().__init__(f"trading state {state} does not accept {trigger!r}")


def next_trading_state(state: TradingState, trigger: TradingTrigger) -> TradingState:
    """The state after ``trigger``. Raises IllegalTransition when the table has no such edge."""
    try:
        return TRADING_TRANSITIONS[state, trigger]
    except KeyError:
        raise IllegalTransition(state, trigger) from None


def trading_state_markdown() -> str:
    """The transition table as Markdown, generated from ``TRADING_TRANSITIONS``."""
    rows = [f"| {s} | {t} | {n} |" for (s, t), n in TRADING_TRANSITIONS.items()]
    return "\n".join(["| state | trigger | next |", "|---|---|---|", *rows]) + "\n"


# ---------------------------------------------------------------------------------------------
# Inputs and outputs


def _check_positive(name: str, value: Decimal | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
        raise ValueError(f"{name} must be a positive finite Decimal, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Proposal:
    """An order someone wants sent. Raises ValueError on a non-positive quantity or price."""

    source: Source
    symbol: str
    side: Side
    quantity: Decimal
    order_type: OrderType
    sec_type: SecType = SecType.STK
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None  # the trigger (auxPrice) of STP, STP LMT, MIT, LIT
    tif: TimeInForce = TimeInForce.DAY
    multiplier: Decimal = Decimal(1)  # contract multiplier, for notional and exposure
    intent_id: str | None = None

    def __post_init__(self) -> None:
        _check_positive("quantity", self.quantity)
        _check_positive("limit_price", self.limit_price, optional=True)
        _check_positive("stop_price", self.stop_price, optional=True)
        _check_positive("multiplier", self.multiplier)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quote:
    """The current quote of a symbol; ``stale`` when the feed is known to be down."""

    bid: Decimal | None = None
    ask: Decimal | None = None
    last: Decimal | None = None
    time: datetime | None = None
    stale: bool = False

    @property
    def mid(self) -> Decimal | None:
        """The midpoint of a two-sided quote, else None."""
        if self.bid is None or self.ask is None or self.bid <= 0 or self.ask <= 0:
            return None
        return (self.bid + self.ask) / 2

    def touch(self, side: Side) -> Decimal | None:
        """The price a market order would meet: the ask for a BUY, the bid for a SELL."""
        price = self.ask if side is Side.BUY else self.bid
        return price if price is not None and price > 0 else None


Sessions = tuple[tuple[datetime, datetime], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GateState:
    """Everything the gate needs to know, as of ``now``. Raises ValueError on a naive ``now``."""

    now: datetime
    environment: Environment
    trading_state: TradingState = TradingState.ACTIVE
    link: LinkState = LinkState.UP
    halt_reason: str | None = None
    positions: Mapping[str, Decimal] = field(default_factory=dict)  # signed units
    pending_buys: Mapping[str, Decimal] = field(default_factory=dict)  # open BUY remaining
    pending_sells: Mapping[str, Decimal] = field(default_factory=dict)  # open SELL remaining
    quotes: Mapping[str, Quote] = field(default_factory=dict)
    marks: Mapping[str, Decimal] = field(default_factory=dict)  # exposure prices, else quotes
    multipliers: Mapping[str, Decimal] = field(default_factory=dict)  # default 1
    realized_pnl: Decimal = ZERO  # today
    unrealized_pnl: Decimal = ZERO
    recent_orders: tuple[datetime, ...] = ()  # when orders were sent (the last minute counts)
    sessions: Mapping[str, Sessions] = field(default_factory=dict)  # liquid hours, [open, close)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("GateState.now must be timezone-aware")

    @property
    def halted(self) -> bool:
        return self.trading_state is TradingState.HALTED


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a rule refused: a code for machines, a message for people, the numbers compared."""

    code: ReasonCode
    message: str
    limit: Decimal | None = None
    actual: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer. ``halt``/``flatten``: the daily loss limit is breached."""

    allowed: bool
    reasons: tuple[Reason, ...] = ()
    halt: bool = False
    flatten: bool = False
    reducing: bool = False

    @property
    def codes(self) -> tuple[ReasonCode, ...]:
        return tuple(reason.code for reason in self.reasons)


# ---------------------------------------------------------------------------------------------
# The rules


@dataclass(frozen=True, slots=True)
class _Check:
    proposal: Proposal
    mandate: Mandate
    state: GateState
    reducing: bool
    emergency: bool
    quote: Quote | None  # the symbol's quote if current (not stale, not too old)
    price: Decimal | None  # the order's valuation price: limit, else touch, else last

    def no_quote(self) -> Reason:
        return Reason(ReasonCode.NO_QUOTE, f"no current quote for {self.proposal.symbol}")


_Rule = Callable[[_Check], Reason | None]


def _live(c: _Check) -> Reason | None:
    if c.state.environment is Environment.LIVE and not c.mandate.allow_live:
        return Reason(
            ReasonCode.LIVE_NOT_ALLOWED, "live trading: the mandate's allow_live is false"
        )
    return None


def _link(c: _Check) -> Reason | None:
    link = c.state.link
    if link is LinkState.IB_LOST:
        return Reason(ReasonCode.CONNECTIVITY_LOST, "IB connectivity lost (1100): no orders")
    if link is LinkState.DISCONNECTED:
        return Reason(ReasonCode.CONNECTIVITY_LOST, "not connected to IB: no orders")
    if link is LinkState.RECONCILING:
        message = "reconciliation with the broker has not finished: no orders yet"
        return Reason(ReasonCode.NOT_RECONCILED, message)
    return None


def _trading_state(c: _Check) -> Reason | None:
    if c.state.trading_state is TradingState.HALTED:
        why = f" ({c.state.halt_reason})" if c.state.halt_reason else ""
        return Reason(ReasonCode.HALTED, f"halted{why}: only orders that reduce a position pass")
    if c.state.trading_state is TradingState.REDUCING:
        return Reason(
            ReasonCode.REDUCE_ONLY, "reduce-only: only orders that reduce a position pass"
        )
    return None


def _symbol(c: _Check) -> Reason | None:
    if c.proposal.symbol not in c.mandate.allowed_symbols:
        return Reason(ReasonCode.SYMBOL_NOT_ALLOWED, f"{c.proposal.symbol!r} is not allowed")
    return None


def _sec_type(c: _Check) -> Reason | None:
    if c.proposal.sec_type not in c.mandate.allowed_sec_types:
        return Reason(ReasonCode.SEC_TYPE_NOT_ALLOWED, f"{c.proposal.sec_type} is not allowed")
    return None


def _order_type(c: _Check) -> Reason | None:
    if c.proposal.order_type not in c.mandate.allowed_order_types:
        return Reason(ReasonCode.ORDER_TYPE_NOT_ALLOWED, f"{c.proposal.order_type} is not allowed")
    return None


def _order_fields(c: _Check) -> Reason | None:
    p, problems = c.proposal, []
    if (p.order_type in _NEEDS_LIMIT) != (p.limit_price is not None):
        problems.append(f"{p.order_type} {'needs' if p.limit_price is None else 'takes no'} limit")
    if (p.order_type in _NEEDS_STOP) != (p.stop_price is not None):
        problems.append(f"{p.order_type} {'needs' if p.stop_price is None else 'takes no'} stop")
    return Reason(ReasonCode.INVALID_ORDER, "; ".join(problems) + " price") if problems else None


def _quote_required(c: _Check) -> Reason | None:
    if c.mandate.require_quote and (c.quote is None or c.quote.mid is None):
        return c.no_quote()
    return None


def _min_price(c: _Check) -> Reason | None:
    limit = c.mandate.min_price
    if limit is None:
        return None
    if c.price is None:
        return c.no_quote()
    if c.price < limit:
        return Reason(ReasonCode.MIN_PRICE, f"price {c.price} is below {limit}", limit, c.price)
    return None


def _collar(c: _Check) -> Reason | None:
    pct, p = c.mandate.price_collar_pct, c.proposal
    at_limit = p.order_type in _COLLAR_AT_LIMIT
    if pct is None or not (at_limit or p.order_type in _COLLAR_AT_TOUCH):
        return None  # stop-triggered orders: their prices are about future moves
    if at_limit and p.limit_price is None:
        return None  # INVALID_ORDER says so
    price = p.limit_price if at_limit else c.quote.touch(p.side) if c.quote else None
    mid = c.quote.mid if c.quote is not None else None
    if price is None or mid is None:
        return None if c.emergency else c.no_quote()
    distance = abs(price - mid) / mid * _HUNDRED
    if distance > pct:
        message = f"{price} is {distance:.2f}% from the midpoint {mid} (collar {pct}%)"
        return Reason(ReasonCode.PRICE_COLLAR, message, pct, distance)
    return None


def _order_quantity(c: _Check) -> Reason | None:
    limit, quantity = c.mandate.max_order_quantity, c.proposal.quantity
    if quantity > limit:
        message = f"quantity {quantity} is above {limit}"
        return Reason(ReasonCode.MAX_ORDER_QUANTITY, message, limit, quantity)
    return None


def _order_notional(c: _Check) -> Reason | None:
    if c.price is None:
        return c.no_quote()
    limit = c.mandate.max_order_notional
    notional = c.proposal.quantity * c.price * c.proposal.multiplier
    if notional > limit:
        message = f"notional {notional} is above {limit}"
        return Reason(ReasonCode.MAX_ORDER_NOTIONAL, message, limit, notional)
    return None


def _position_after(state: GateState, proposal: Proposal) -> Decimal:
    """The symbol's position if this and every open order on the same side fill."""
    position = state.positions.get(proposal.symbol, ZERO)
    if proposal.side is Side.BUY:
        return position + state.pending_buys.get(proposal.symbol, ZERO) + proposal.quantity
    return position - state.pending_sells.get(proposal.symbol, ZERO) - proposal.quantity


def _position(c: _Check) -> Reason | None:
    limit, after = c.mandate.max_position, abs(_position_after(c.state, c.proposal))
    if after > limit:
        message = f"position would reach {after} {c.proposal.symbol}, above {limit}"
        return Reason(ReasonCode.MAX_POSITION, message, limit, after)
    return None


def _exposure_price(c: _Check, symbol: str) -> Decimal | None:
    if symbol in c.state.marks:
        return c.state.marks[symbol]
    if symbol == c.proposal.symbol and c.price is not None:
        return c.price
    quote = c.state.quotes.get(symbol)
    if quote is None:
        return None
    return quote.mid if quote.mid is not None else quote.last


def _gross_exposure(c: _Check) -> Reason | None:
    limit, state, symbol = c.mandate.max_gross_exposure, c.state, c.proposal.symbol
    if limit is None:
        return None
    total = ZERO
    for held in sorted({symbol, *state.positions, *state.pending_buys, *state.pending_sells}):
        position = state.positions.get(held, ZERO)
        worst = max(
            abs(position + state.pending_buys.get(held, ZERO)),
            abs(position - state.pending_sells.get(held, ZERO)),
        )
        if held == symbol:
            worst = max(worst, abs(_position_after(state, c.proposal)))
        price = _exposure_price(c, held)
        if worst and price is None:
            return Reason(ReasonCode.NO_QUOTE, f"no price for {held} to value gross exposure")
        multiplier = c.proposal.multiplier if held == symbol else state.multipliers.get(held, 1)
        total += worst * (price or ZERO) * multiplier
    if total > limit:
        message = f"gross exposure would reach {total}, above {limit}"
        return Reason(ReasonCode.MAX_GROSS_EXPOSURE, message, limit, total)
    return None


def daily_loss(state: GateState) -> Decimal:
    """Today's loss as a positive number (negative when the day is in profit)."""
    return -(state.realized_pnl + state.unrealized_pnl)


def daily_loss_breached(mandate: Mandate, state: GateState) -> bool:
    """True when today's realised + unrealised loss is above the mandate's max_daily_loss."""
    return daily_loss(state) > mandate.max_daily_loss


def _daily_loss(c: _Check) -> Reason | None:
    if daily_loss_breached(c.mandate, c.state):
        limit, loss = c.mandate.max_daily_loss, daily_loss(c.state)
        message = f"today's loss {loss} is above {limit}: the bot halts"
        return Reason(ReasonCode.MAX_DAILY_LOSS, message, limit, loss)
    return None


def _rate(c: _Check) -> Reason | None:
    limit = c.mandate.orders_per_minute(c.state.environment)
    if len(c.state.recent_orders) < limit:
        return None  # even if every one of them counts, this order is within the limit
    since = c.state.now - _WINDOW
    count = sum(1 for sent in c.state.recent_orders if sent > since) + 1
    if count > limit:
        message = f"this would be order {count} in 60 s, above {limit} per minute"
        return Reason(ReasonCode.MAX_ORDERS_PER_MINUTE, message, Decimal(limit), Decimal(count))
    return None


def _hours(c: _Check) -> Reason | None:
    now, symbol, window = c.state.now, c.proposal.symbol, c.mandate.trading_hours
    sessions = c.state.sessions.get(symbol)
    problem = ""
    if window is None and sessions is None:
        problem = f"no trading hours known for {symbol} and the mandate sets none"
    elif sessions is not None and not any(start <= now < end for start, end in sessions):
        problem = f"{now:%Y-%m-%d %H:%M} UTC is outside {symbol}'s liquid hours"
    elif window is not None and not window.contains(now):
        problem = (
            f"{now:%Y-%m-%d %H:%M} UTC is outside {window.start:%H:%M}-{window.end:%H:%M} "
            f"{window.time_zone} on {', '.join(window.days)}"
        )
    return Reason(ReasonCode.OUTSIDE_TRADING_HOURS, problem) if problem else None


class _Scope(StrEnum):
    ALL = "all"  # opening, reducing and emergency proposals
    NOT_EMERGENCY = "not_emergency"  # opening and reducing
    OPENING = "opening"  # only proposals that do not reduce a position


_RULES: tuple[tuple[_Rule, _Scope], ...] = (
    (_live, _Scope.ALL),
    (_link, _Scope.ALL),
    (_trading_state, _Scope.OPENING),
    (_symbol, _Scope.ALL),
    (_sec_type, _Scope.ALL),
    (_order_type, _Scope.ALL),
    (_order_fields, _Scope.ALL),
    (_quote_required, _Scope.NOT_EMERGENCY),
    (_min_price, _Scope.OPENING),
    (_collar, _Scope.ALL),
    (_order_quantity, _Scope.OPENING),
    (_order_notional, _Scope.OPENING),
    (_position, _Scope.OPENING),
    (_gross_exposure, _Scope.OPENING),
    (_daily_loss, _Scope.OPENING),
    (_rate, _Scope.NOT_EMERGENCY),
    (_hours, _Scope.NOT_EMERGENCY),
)
# The rules each kind of proposal meets, in table order: (opening, reducing, emergency).
_SCOPES_OF = (
    {_Scope.ALL, _Scope.NOT_EMERGENCY, _Scope.OPENING},
    {_Scope.ALL, _Scope.NOT_EMERGENCY},
    {_Scope.ALL},
)
_OPENING, _REDUCING, _EMERGENCY = (
    tuple(rule for rule, scope in _RULES if scope in scopes) for scopes in _SCOPES_OF
)


def is_reducing(proposal: Proposal, state: GateState) -> bool:
    """True if the proposal shrinks the position without crossing zero (open orders counted)."""
    position = state.positions.get(proposal.symbol, ZERO)
    if proposal.side is Side.SELL:
        return proposal.quantity <= position - state.pending_sells.get(proposal.symbol, ZERO)
    return proposal.quantity <= -position - state.pending_buys.get(proposal.symbol, ZERO)


def _current_quote(mandate: Mandate, state: GateState, symbol: str) -> Quote | None:
    quote = state.quotes.get(symbol)
    if quote is None or quote.stale:
        return None
    if mandate.max_quote_age_s is not None:
        max_age = timedelta(seconds=mandate.max_quote_age_s)
        if quote.time is None or state.now - quote.time > max_age:
            return None
    return quote


def _valuation_price(proposal: Proposal, quote: Quote | None) -> Decimal | None:
    if proposal.limit_price is not None:
        return proposal.limit_price
    if quote is None:
        return None
    touch = quote.touch(proposal.side)
    return touch if touch is not None else quote.last


def decide(proposal: Proposal, mandate: Mandate, state: GateState) -> Decision:
    """Check ``proposal`` against every rule of ``mandate`` that applies to it; never raises."""
    reducing = is_reducing(proposal, state)
    emergency = reducing and proposal.source in (Source.FLATTEN, Source.KILL)
    quote = _current_quote(mandate, state, proposal.symbol)
    check = _Check(
        proposal, mandate, state, reducing, emergency, quote, _valuation_price(proposal, quote)
    )
    rules = (_EMERGENCY if emergency else _REDUCING) if reducing else _OPENING
    reasons: list[Reason] = []
    for rule in rules:
        reason = rule(check)
        if reason is not None and reason not in reasons:
            reasons.append(reason)
    halt = daily_loss_breached(mandate, state)
    return Decision(
        allowed=not reasons,
        reasons=tuple(reasons),
        halt=halt,
        flatten=halt and mandate.flatten_on_daily_loss,
        reducing=reducing,
    )
