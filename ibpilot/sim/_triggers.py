"""Price rules of the order engine (pure): ticks, triggers, trailing stops, liquidity.

* Simulated types are *elected* by prints (the model's trades, IB's default "last"
  trigger); FX has no prints, so buys look at the ask and sells at the bid.  STP: a BUY
  stop triggers at a price >= the stop, a SELL stop at <= the stop.  MIT/LIT: a BUY
  triggers at <= the trigger price (buy below), a SELL at >= (sell above).
* TRAIL: the stop follows the best price since activation at the trailing amount
  (``aux_price``, or ``trailing_percent`` of the price) and never moves back; it triggers
  like a STP.  TRAIL LIMIT's limit is the stop at the trigger -/+ ``lmt_price_offset``
  (SELL/BUY).
* One simulated second of one instrument offers our orders the displayed size at the
  touch (shared by every order of ours that second) and each model print's size once per
  side; see :class:`Liquidity`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from decimal import Decimal

from ibpilot.sim.market import Quote, Trade
from ibpilot.sim.orders import OrderType, WorkingOrder

STOPS = frozenset({OrderType.STP, OrderType.STP_LMT})
TOUCHES = frozenset({OrderType.MIT, OrderType.LIT})
TRAILS = frozenset({OrderType.TRAIL, OrderType.TRAIL_LIMIT})
SIMULATED = STOPS | TOUCHES | TRAILS
AUCTIONS = frozenset({OrderType.MOC, OrderType.LOC})
BECOME_LIMIT = frozenset({OrderType.STP_LMT, OrderType.LIT, OrderType.TRAIL_LIMIT})


def conforms(price: float, tick: float) -> bool:
    """Is ``price`` a whole number of ``tick``s (decimal arithmetic, no float noise)."""
    ratio = Decimal(repr(price)) / Decimal(repr(tick))
    return ratio == ratio.to_integral_value()


def round_tick(price: float, tick: float) -> float:
    """``price`` rounded to the nearest tick, as the float nearest the decimal value."""
    return float(Decimal(round(price / tick)) * Decimal(repr(tick)))


def is_buy(o: WorkingOrder) -> bool:
    return o.spec.action.upper() == "BUY"


@dataclass(frozen=True, slots=True)
class Second:
    """What the market did in one second: the quote at its end and its prints."""

    t: int
    quote: Quote
    trades: list[Trade]
    fx: bool  # no prints: quotes elect triggers


def _trigger_prices(o: WorkingOrder, sec: Second) -> list[float]:
    if sec.fx:
        return [sec.quote.ask if is_buy(o) else sec.quote.bid]
    return [tr.price for tr in sec.trades]


def _trail_amount(o: WorkingOrder, price: float) -> float:
    pct = o.spec.trailing_percent
    if pct is not None and pct > 0:
        return price * pct / 100.0
    return o.spec.aux_price or 0.0


def _trail_reference(o: WorkingOrder, sec: Second) -> float:
    q = sec.quote
    if not sec.fx and not math.isnan(q.last):
        return q.last
    return q.ask if is_buy(o) else q.bid


def elect(o: WorkingOrder, sec: Second, tick: float) -> WorkingOrder:
    """The order after this second's trigger prices: ``triggered`` set when elected, the
    trailing stop moved; unchanged for non-simulated or already triggered orders."""
    typ = o.spec.order_type
    if o.triggered or typ not in SIMULATED:
        return o
    buy = is_buy(o)
    if typ in TRAILS:
        return _trail(o, sec, tick)
    level = o.spec.aux_price if o.spec.aux_price is not None else math.nan
    for p in _trigger_prices(o, sec):
        stop_hit = (p >= level) if buy else (p <= level)
        touch_hit = (p <= level) if buy else (p >= level)
        if (typ in STOPS and stop_hit) or (typ in TOUCHES and touch_hit):
            return replace(o, triggered=True)
    return o


def _trail(o: WorkingOrder, sec: Second, tick: float) -> WorkingOrder:
    buy = is_buy(o)
    ref, stop = o.trail_ref, o.trail_stop
    if ref is None or stop is None:
        ref = _trail_reference(o, sec)
        amount = _trail_amount(o, ref)
        initial = o.spec.trail_stop_price
        stop = initial if initial else round_tick(ref + amount if buy else ref - amount, tick)
    for p in _trigger_prices(o, sec):
        if (p >= stop) if buy else (p <= stop):
            offset = o.spec.lmt_price_offset or 0.0
            limit = round_tick(stop + offset if buy else stop - offset, tick)
            return replace(o, trail_ref=ref, trail_stop=stop, triggered=True, trigger_limit=limit)
        if (p < ref) if buy else (p > ref):
            ref = p
            moved = round_tick(p + _trail_amount(o, p) if buy else p - _trail_amount(o, p), tick)
            stop = min(stop, moved) if buy else max(stop, moved)
    return replace(o, trail_ref=ref, trail_stop=stop)


def working_limit(o: WorkingOrder) -> tuple[str, float | None]:
    """How the order trades now: ("market", None), ("limit", price), ("mid", cap or None),
    or ("none", None) while it waits for a trigger or an auction."""
    typ = o.spec.order_type
    if o.spec.tif == "OPG" or typ in AUCTIONS:
        return "none", None
    if typ == OrderType.MKT:
        return "market", None
    if typ == OrderType.LMT:
        return "limit", o.spec.lmt_price
    if typ == OrderType.MIDPRICE:
        return "mid", o.spec.lmt_price
    if not o.triggered:
        return "none", None
    if typ == OrderType.TRAIL_LIMIT:
        return "limit", o.trigger_limit
    if typ in BECOME_LIMIT:
        return "limit", o.spec.lmt_price
    return "market", None


@dataclass(slots=True)
class Liquidity:
    """What one second offers our orders: displayed size at the touch, shared by all our
    orders that second, and each print's size, once for our buyers and once for sellers."""

    quote: Quote
    trades: list[Trade]
    ask_left: int = 0
    bid_left: int = 0
    buy_prints: list[int] = field(default_factory=list)
    sell_prints: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ask_left = self.quote.ask_size
        self.bid_left = self.quote.bid_size
        self.buy_prints = [tr.size for tr in self.trades]
        self.sell_prints = [tr.size for tr in self.trades]

    def touch(self, buy: bool, qty: Decimal, limit: float | None) -> tuple[Decimal, float]:
        """Take up to ``qty`` at the opposite touch if it is within ``limit``."""
        price = self.quote.ask if buy else self.quote.bid
        if limit is not None and ((price > limit) if buy else (price < limit)):
            return Decimal(0), price
        return self._take_touch(buy, qty), price

    def midpoint(self, buy: bool, qty: Decimal, cap: float | None) -> tuple[Decimal, float]:
        """MIDPRICE: take up to ``qty`` (bounded by the opposite displayed size) at the
        midpoint, unless the midpoint is beyond the cap."""
        price = self.quote.midpoint
        if cap is not None and ((price > cap) if buy else (price < cap)):
            return Decimal(0), price
        return self._take_touch(buy, qty), price

    def prints(self, buy: bool, qty: Decimal, limit: float) -> Decimal:
        """Quantity a resting limit gets from prints at or through ``limit`` (filled at it)."""
        pool = self.buy_prints if buy else self.sell_prints
        got = Decimal(0)
        for i, tr in enumerate(self.trades):
            if got >= qty:
                break
            if pool[i] > 0 and ((tr.price <= limit) if buy else (tr.price >= limit)):
                take = min(qty - got, Decimal(pool[i]))
                pool[i] -= int(take)
                got += take
        return got

    def _take_touch(self, buy: bool, qty: Decimal) -> Decimal:
        left = self.ask_left if buy else self.bid_left
        take = min(qty, Decimal(left))
        if take <= 0:
            return Decimal(0)
        if buy:
            self.ask_left -= int(take)
        else:
            self.bid_left -= int(take)
        return take
