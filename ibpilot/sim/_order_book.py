"""The order engine's core: the lifecycle of working orders and matching, second by second.

:class:`OrderBook` holds the orders of one gateway and moves them through the state table
(``orders.TRANSITIONS``) as the market moves; the public face that accepts requests is
:class:`ibpilot.sim.matching.OrderEngine`, which documents the behaviour.  Events are
collected in ``_events`` and returned by the public call that caused them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ibpilot.sim import _order_checks as chk
from ibpilot.sim._marks import MarketMarks
from ibpilot.sim._order_hours import TradingHours, eastern_day
from ibpilot.sim._triggers import AUCTIONS, Liquidity, Second, elect, is_buy, working_limit
from ibpilot.sim.account import Account, commission, dec, multiplier
from ibpilot.sim.market import MarketModel, Trade
from ibpilot.sim.orders import (
    Execution,
    Fill,
    OrderError,
    OrderEvent,
    OrderStatus,
    OrderTrigger,
    OrderType,
    OrderUpdate,
    WorkingOrder,
    next_status,
)
from ibpilot.sim.refdata import Instrument, RefData

S, T = OrderStatus, OrderTrigger
Key = tuple[int, int]  # (client id, order id)
EXEC_PREFIX = "0000e0d5"
_TRADE_WINDOW = 600  # seconds of prints fetched at once
_BY_TRADER = "Cancelled by Trader"  # completedOrder's text for a client's cancel
_DONE_TEXT = {S.FILLED: "Filled", S.CANCELLED: "Cancelled", S.API_CANCELLED: "Cancelled"}


class OrderBook:
    """The orders of one gateway, their lifecycle and their matching."""

    def __init__(
        self,
        refdata: RefData,
        market: MarketModel,
        account: Account,
        duplicate_status: bool,
        cancel_latency: int,
        max_step: int,
    ) -> None:
        self.refdata = refdata
        self.market = market
        self.account = account
        self.duplicate_status = duplicate_status  # every OrderUpdate twice (IB does)
        self.cancel_latency = cancel_latency  # seconds in PendingCancel
        self.max_step = max_step  # seconds of matching per call at most
        self._hours = TradingHours(refdata)
        self._time: int | None = None  # last second processed
        self._t = 0  # the second being processed
        self._orders: dict[Key, WorkingOrder] = {}
        self._live: set[Key] = set()  # staged or working
        self._exec_seq = 0
        self._fills: list[Fill] = []
        self._events: list[OrderEvent] = []
        self._sec_t = -1
        self._secs: dict[int, tuple[Second, Liquidity]] = {}
        self._windows: dict[int, tuple[int, int, dict[int, list[Trade]]]] = {}
        self._marks_cache: tuple[int, MarketMarks] | None = None

    def _cancel(self, o: WorkingOrder) -> None:
        """A cancel request: ApiCancelled (staged), or PendingCancel then Cancelled + 202."""
        o = self._set(o, T.CANCEL)
        if o.status == S.API_CANCELLED:
            self._error(o.order_id, o.client_id, chk.CANCELLED)
            self._cascade(o, user=True)
        elif self.cancel_latency <= 0:
            self._confirm_cancel(o)
        else:
            self._store(replace(o, cancel_due=self._t + self.cancel_latency))

    def _confirm_cancel(self, o: WorkingOrder) -> None:
        o = self._set(o, T.CONFIRM_CANCEL, cancel_due=None)
        self._error(o.order_id, o.client_id, chk.CANCELLED)
        self._cascade(o, user=True)

    def _expire(self, o: WorkingOrder) -> None:
        self._cascade(self._set(o, T.EXPIRE, cancel_due=None), user=False)

    def _cascade(self, parent: WorkingOrder, user: bool) -> None:
        """Children of a parent that ended unfilled are cancelled with it."""
        for k in self._by_perm(self._live):
            child = self._orders[k]
            if child.client_id == parent.client_id and child.parent_id == parent.order_id:
                if user and child.status != S.PENDING_CANCEL:
                    self._cancel(child)
                elif not child.done:
                    self._expire(child)

    def _walk(self, now: int) -> None:
        assert self._time is not None  # set by _begin
        t, steps = self._time + 1, 0
        while t <= now:
            wake = min(
                (w for k in self._live if (w := self._wake(self._orders[k], t)) is not None),
                default=None,
            )
            if wake is None or wake > now:
                break
            t = wake
            if steps >= self.max_step:
                self._time = t - 1
                return
            self._t = t
            for key in self._by_perm(self._live):
                self._work(key, t, first=False)
            steps += 1
            t += 1
        self._time = max(self._time, now)

    def _wake(self, o: WorkingOrder, t: int) -> int | None:
        """The first second >= ``t`` at which ``o`` may need work (None: not by itself)."""
        if o.status == S.API_PENDING:
            return None
        cands = [x for x in (o.cancel_due, o.expires_at) if x is not None]
        cands += self._wake_by_kind(o, t)
        return max(min(cands), t) if cands else None

    def _wake_by_kind(self, o: WorkingOrder, t: int) -> list[int]:
        if o.placed_at > t:
            return [o.placed_at]
        if o.spec.order_type in AUCTIONS and o.auction_at is not None:
            if o.status == S.SUBMITTED:
                return [o.auction_at]
            return [o.auction_at, self._hours.next_start(o.inst, t, False) or o.auction_at]
        if self._parent_pending(o):
            return []
        if o.not_before is not None and o.not_before > t:
            return [o.not_before]
        if o.spec.tif == "OPG":
            return [] if o.auction_at is None else [o.auction_at]
        start = self._hours.next_start(o.inst, t, o.spec.outside_rth)
        out = [] if start is None else [start]
        if o.status == S.SUBMITTED and start != t:
            out.append(t)  # flips to PreSubmitted
        return out

    def _work(self, key: Key, t: int, first: bool) -> None:
        """One second of one order."""
        o = self._orders[key]
        if o.done or o.status == S.API_PENDING or o.placed_at > t:
            return
        if not self._lifecycle(o, t) and not self._held(o, t, first):
            self._match(key, o, t, first)

    def _lifecycle(self, o: WorkingOrder, t: int) -> bool:
        """Cancel confirmation, closing auction, expiry; True if one happened."""
        if o.cancel_due is not None and t >= o.cancel_due:
            self._confirm_cancel(o)
        elif o.spec.order_type in AUCTIONS and o.auction_at is not None and t >= o.auction_at:
            self._closing_auction(o)
        elif o.expires_at is not None and t >= o.expires_at:
            self._expire(o)
        else:
            return False
        return True

    def _held(self, o: WorkingOrder, t: int, first: bool) -> bool:
        """Status of an order that cannot match now; True if it cannot."""
        if self._parent_pending(o) or (o.not_before is not None and t < o.not_before):
            self._status(o, False)
        elif o.spec.tif == "OPG":
            self._opening_auction(o, t, first)
        elif o.spec.order_type in AUCTIONS:
            self._status(o, self._hours.tradable(o.inst, t, False))
        elif not self._hours.tradable(o.inst, t, o.spec.outside_rth):
            self._ioc(self._status(o, False))
        else:
            return False
        return True

    def _match(self, key: Key, o: WorkingOrder, t: int, first: bool) -> None:
        sec, liq = self._market(o.inst, t, first)
        o = elect(o, sec, o.inst.min_tick)
        self._store(o)
        kind, limit = working_limit(o)
        if kind == "none":
            self._ioc(self._status(o, False))
            return
        o = self._status(o, True)
        buy, rem = is_buy(o), o.remaining
        fills: list[tuple[Decimal, float]] = []
        if kind == "mid":
            fills.append(liq.midpoint(buy, rem, limit))
        else:
            fills.append(liq.touch(buy, rem, limit))
            left = rem - fills[0][0]
            if kind == "limit" and limit is not None and not first and left > 0:
                fills.append((liq.prints(buy, left, limit), limit))
        for qty, price in fills:
            if qty > 0 and not o.done:
                o = self._fill(o, qty, price)
        self._ioc(self._orders[key])

    def _ioc(self, o: WorkingOrder) -> None:
        if o.spec.tif == "IOC" and not o.done:
            self._expire(o)

    def _closing_auction(self, o: WorkingOrder) -> None:
        assert o.auction_at is not None  # checked by the caller
        price = self.market.quote(o.inst, o.auction_at - 1).last
        limit = o.spec.lmt_price if o.spec.order_type == OrderType.LOC else None
        if math.isnan(price) or not _within(is_buy(o), price, limit):  # nan: no print today
            return self._expire(o)
        self._fill(self._status(o, True), o.remaining, price)
        return None

    def _opening_auction(self, o: WorkingOrder, t: int, first: bool) -> None:
        if first or o.auction_at is None or t < o.auction_at:
            self._status(o, False)
            return
        sec, _ = self._market(o.inst, t, False)
        if not sec.trades:
            self._status(o, False)
            return
        price = sec.trades[0].price
        limit = o.spec.lmt_price if o.spec.order_type == OrderType.LMT else None
        if not _within(is_buy(o), price, limit):
            self._expire(o)
            return
        self._fill(self._status(o, True), o.remaining, price)

    def _parent_pending(self, o: WorkingOrder) -> bool:
        if not o.parent_id:
            return False
        parent = self._orders.get((o.client_id, o.parent_id))
        return parent is not None and parent.status != S.FILLED

    def _market(self, inst: Instrument, t: int, first: bool) -> tuple[Second, Liquidity]:
        """This second's quote, prints and shared liquidity (no prints on a first pass:
        an order placed during a second did not see its prints)."""
        if t != self._sec_t:
            self._sec_t, self._secs = t, {}
        got = self._secs.get(inst.con_id)
        if got is None:
            q = self.market.quote(inst, t)
            trades = self._trades_at(inst, t)
            got = self._secs[inst.con_id] = (
                Second(t, q, trades, inst.sec_type == "CASH"),
                Liquidity(q, trades),
            )
        sec, liq = got
        return (Second(t, sec.quote, [], sec.fx) if first else sec), liq

    def _trades_at(self, inst: Instrument, t: int) -> list[Trade]:
        w = self._windows.get(inst.con_id)
        if w is None or not w[0] <= t < w[1]:
            by: dict[int, list[Trade]] = {}
            for tr in self.market.trades(inst, t, t + _TRADE_WINDOW):
                by.setdefault(tr.time, []).append(tr)
            if len(self._windows) > 256:
                self._windows.clear()
            w = self._windows[inst.con_id] = (t, t + _TRADE_WINDOW, by)
        return w[2].get(t, [])

    def _fill(self, o: WorkingOrder, qty: Decimal, price: float) -> WorkingOrder:
        t, inst, buy = self._t, o.inst, is_buy(o)
        marks = self.marks(t)
        filled, value = o.filled + qty, o.fill_value + qty * dec(price)
        usd = value * multiplier(inst) * marks.rate(inst.currency)
        total_fee = commission(inst, filled, usd)
        fee = max(total_fee - o.commission, Decimal(0))
        realized = self.account.apply_fill(inst, buy, qty, price, fee, eastern_day(t))
        avg = float(value / filled)
        self._exec_seq += 1
        venue = inst.primary_exchange if inst.exchange == "SMART" else inst.exchange
        ex = Execution(
            f"{EXEC_PREFIX}.{t:08x}.{self._exec_seq:02x}.01", o.order_id, o.client_id,
            o.perm_id, inst.con_id, self.account.account_id, t, "BOT" if buy else "SLD", qty,
            price, filled, avg, o.spec.order_ref, venue or inst.exchange, float(fee),
            self.account.currency, None if realized is None else float(realized),
        )  # fmt: skip
        fill = Fill(ex, inst)
        self._fills.append(fill)
        self._events.append(fill)
        trigger = T.FILL if filled >= o.spec.total_quantity else T.PARTIAL_FILL
        o = self._set(o, trigger, force=True, filled=filled, fill_value=value,
                      commission=total_fee, avg_fill_price=avg, last_fill_price=price)  # fmt: skip
        self._after_fill(o, qty)
        return self._orders[(o.client_id, o.order_id)]

    def _after_fill(self, o: WorkingOrder, qty: Decimal) -> None:
        """OCA groups (type 1, and 0: cancel the others; 2/3: reduce them) and the implicit
        reduce-group of a bracket's children."""
        group, parent = o.spec.oca_group, o.parent_id
        for k in self._by_perm(self._live):
            s = self._orders[k]
            if s.perm_id == o.perm_id or s.done:
                continue
            if group and s.spec.oca_group == group:
                if o.spec.oca_type in (2, 3):
                    self._reduce(s, qty)
                else:
                    self._expire(s)
            elif not group and parent and s.client_id == o.client_id and s.parent_id == parent:
                self._reduce(s, qty)

    def _reduce(self, s: WorkingOrder, qty: Decimal) -> None:
        total = s.spec.total_quantity - qty
        if total <= s.filled or s.status == S.PENDING_CANCEL:
            self._expire(s)
        else:
            spec = replace(s.spec, total_quantity=total)
            self._set(s, T.MODIFY, force=s.status != S.API_PENDING, spec=spec)

    def _set(
        self, o: WorkingOrder, trigger: OrderTrigger, force: bool = False, **changes: Any
    ) -> WorkingOrder:
        """Apply ``trigger`` through the state table (raises IllegalTransition), store, and
        emit an OrderUpdate when the status changed (or ``force``)."""
        status = next_status(o.status, trigger)
        if (status in _DONE_TEXT or changes.get("rejected")) and o.completed_time is None:
            changes.setdefault("completed_time", self._t)
            by_trader = trigger in (T.CANCEL, T.CONFIRM_CANCEL)
            changes.setdefault(
                "completed_status", _BY_TRADER if by_trader else _DONE_TEXT.get(status, "")
            )
        new = replace(o, status=status, **changes)
        self._store(new)
        if trigger != T.TRANSMIT and (force or status != o.status):
            self._events.append(OrderUpdate(new))
            if self.duplicate_status:
                self._events.append(OrderUpdate(new, status_only=True))
        return new

    def _status(self, o: WorkingOrder, working: bool) -> WorkingOrder:
        if o.status == S.PENDING_CANCEL:
            return o
        return self._set(o, T.WORK if working else T.HOLD)

    def _store(self, o: WorkingOrder) -> None:
        key = (o.client_id, o.order_id)
        self._orders[key] = o
        if o.done:
            self._live.discard(key)
        else:
            self._live.add(key)

    def _error(self, order_id: int, client_id: int, err: tuple[int, str]) -> None:
        self._events.append(OrderError(order_id, client_id, err[0], err[1]))

    def _by_perm(self, keys: Iterable[Key]) -> list[Key]:
        return sorted(keys, key=lambda k: self._orders[k].perm_id)

    def marks(self, t: int) -> MarketMarks:
        """The account's marks at second ``t`` (quote midpoints)."""
        if self._marks_cache is None or self._marks_cache[0] != t:
            day = eastern_day(t)
            mm = MarketMarks(self.refdata, self.market, t, day, self.account.currency)
            self._marks_cache = (t, mm)
        return self._marks_cache[1]


def _within(buy: bool, price: float, limit: float | None) -> bool:
    return limit is None or (price <= limit if buy else price >= limit)
