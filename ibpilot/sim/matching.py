"""The simulated gateway's order engine: IB's order lifecycle against the price model.

Sans-IO: every method takes the simulated time ``now`` (integer UTC epoch seconds) and
returns the events the server must send (:class:`OrderUpdate`, :class:`Fill`,
:class:`OrderError`, :class:`WhatIf`, defined in ``orders.py``).  Orders belong to the
gateway, keyed by (clientId, orderId); every status change goes through the state table
``orders.TRANSITIONS``.  Behaviour, and where IB left us to choose:

* ``place`` first brings the market up to ``now`` (:meth:`advance`), then validates as IB
  does.  Not accepted, error only: 321 (read-only mode, foreign account), 103 (id not above
  the client's highest and not a working order of it), 104 (modify of a filled order), 105
  (a modify changing action, type, parent or contract), 434, 387 (unknown order type, or
  MOC/LOC/OPG/MIDPRICE on a non-stock), 110 (off-tick price).  Rejected (record with status
  **Inactive**, then error 201 "Order rejected - Reason: ..."): missing prices, bad TIF,
  an index contract, an unknown/dead parent, insufficient margin, a configured fault
  (:meth:`reject_next`).  The order id counts as used once read-only and duplicate checks
  pass.  A modify that fails a check leaves the working order unchanged.
* ``transmit=False`` orders are *staged* in ApiPending with no events, until an order of the
  same bracket arrives with ``transmit=True`` (or a modify transmits them); then the whole
  group goes out.  Children wait PreSubmitted until the parent is completely filled (a
  parent cancelled after a partial fill takes its children with it), and siblings of a
  bracket reduce each other like an OCA type 3 group.  OCA groups are account-wide by name;
  types 1 (and 0) cancel the others on any fill, 2 and 3 reduce them by the filled quantity.
* PreSubmitted while an order cannot work: parent unfilled, goodAfterTime ahead, outside
  its hours (liquid hours, or trading hours with outsideRth), a simulated type not yet
  triggered, OPG before the open, MOC/LOC outside liquid hours; Submitted otherwise.
* Cancels (own orders only; client 0 has no special rights, there are no manual TWS orders):
  PendingCancel, then (after ``cancel_latency`` seconds; fills may race it) Cancelled +
  error 202; a staged order goes to ApiCancelled + 202.  IB's own cancels (DAY expiry at
  the end of liquid or trading hours, IOC remainder, OPG/LOC not executed, OCA siblings,
  children of a parent that IB cancelled) send orderStatus Cancelled without an error.
* Matching, second by second: marketable orders take the opposite touch up to its displayed
  size (shared by all our orders that second), the rest works on; resting limits fill at
  their price from prints at or through it (each print's size once per side) or at the
  touch when it crosses; MIDPRICE at the midpoint up to the displayed size; MOC/LOC in full
  at the last print before the liquid close; OPG in full at the first print at/after the
  liquid open.  IOC gets one matching pass when it becomes active.  outsideRth is honoured
  for every order type (IB holds some, e.g. stock market orders, until the open).
* ``advance`` jumps over time when no order can act; it runs at most ``max_step`` seconds
  of matching per call (the rest on the next call).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ibpilot.sim import _order_checks as chk
from ibpilot.sim import _order_snapshot as snap
from ibpilot.sim._order_book import Key, OrderBook, S, T
from ibpilot.sim._order_hours import eastern_day, eastern_midnight, parse_ib_time
from ibpilot.sim._triggers import AUCTIONS, is_buy
from ibpilot.sim.account import (
    Account,
    AccountValues,
    PnL,
    PnLSingle,
    PortfolioItem,
    commission,
    dec,
    multiplier,
)
from ibpilot.sim.market import MarketModel
from ibpilot.sim.orders import (
    Fill,
    OrderError,
    OrderEvent,
    OrderSpec,
    OrderUpdate,
    WhatIf,
    WorkingOrder,
)
from ibpilot.sim.refdata import Instrument, RefData

__all__ = ["Fill", "OrderEngine", "OrderError", "OrderEvent", "OrderUpdate", "WhatIf"]

FIRST_PERM_ID = 1_000_000_001
KEEP_SECONDS = 7 * 86_400  # completed orders and executions are kept a week
PRUNE_EVERY = 86_400


class OrderEngine(OrderBook):
    """Orders, executions and the account of one simulated gateway; see the module doc."""

    def __init__(
        self,
        refdata: RefData,
        market: MarketModel,
        account: Account | None = None,
        *,
        read_only: bool = False,
        duplicate_status: bool = False,
        cancel_latency: int = 0,
        max_step: int = 3600,
        first_perm_id: int = FIRST_PERM_ID,
    ) -> None:
        """``read_only``: IB's Read-Only API setting (321; no order information);
        ``duplicate_status``: send every order update twice, as IB often does;
        ``cancel_latency``: seconds an order stays PendingCancel (fills may race it);
        ``max_step``: seconds of matching one call does at most."""
        acct = account if account is not None else Account()
        super().__init__(refdata, market, acct, duplicate_status, cancel_latency, max_step)
        self.read_only = read_only
        self._high_water: dict[int, int] = {}
        self._next_perm = first_perm_id
        self._rejects: list[str] = []
        self._pruned = 0  # when completed orders and executions were last pruned

    # ----- public: ids, faults ------------------------------------------------------------
    @property
    def next_perm_id(self) -> int:
        """The permId the next accepted order gets (unique per account, increasing)."""
        return self._next_perm

    @property
    def time(self) -> int | None:
        """The last simulated second processed (None before the first call)."""
        return self._time

    def highest_order_id(self, client_id: int) -> int:
        """The highest order id ``client_id`` has used (0 if none)."""
        return self._high_water.get(client_id, 0)

    def max_order_id(self) -> int:
        """The highest order id any client has used (for nextValidId)."""
        return max(self._high_water.values(), default=0)

    def reject_next(self, count: int, reason: str) -> None:
        """Fault: reject the next ``count`` new orders with 201 and ``reason``."""
        self._rejects += [reason] * count

    # ----- public: requests -----------------------------------------------------------------
    def place(self, spec: OrderSpec, inst: Instrument, now: int) -> list[OrderEvent]:
        """placeOrder: a new order, or a modify of a working one with the same id."""
        now = self._begin(now)
        self._place(spec, inst, now)
        return self._end()

    def cancel(self, order_id: int, client_id: int, now: int) -> list[OrderEvent]:
        """cancelOrder from ``client_id`` (only its own orders: others are 'not found').

        Errors: 321 read-only, 10147 unknown (or another client's), 10148 already
        filled/cancelled/rejected, 161 already PendingCancel."""
        now = self._begin(now)
        o = self._orders.get((client_id, order_id))
        if self.read_only:
            self._error(order_id, client_id, chk.READ_ONLY)
        elif o is None:
            self._error(order_id, client_id, (10147, chk.not_found_text(order_id)))
        elif o.done:
            text = chk.not_cancellable_text(order_id, o.status.value)
            self._error(order_id, client_id, (10148, text))
        elif o.status == S.PENDING_CANCEL:
            self._error(order_id, client_id, (161, chk.cancel_pending_text(o.perm_id)))
        else:
            self._cancel(o)
        return self._end()

    def global_cancel(self, now: int, client_id: int = 0) -> list[OrderEvent]:
        """reqGlobalCancel: every staged or working order of every client."""
        now = self._begin(now)
        if self.read_only:
            self._error(-1, client_id, chk.READ_ONLY)
            return self._end()
        for key in self._by_perm(self._live):
            o = self._orders[key]
            if not o.done and o.status != S.PENDING_CANCEL:
                self._cancel(o)
        return self._end()

    def advance(self, now: int) -> list[OrderEvent]:
        """Match working orders against the market up to ``now`` (see the module doc)."""
        self._begin(now)
        return self._end()

    # ----- public: queries --------------------------------------------------------------------
    def order(self, client_id: int, order_id: int) -> WorkingOrder | None:
        return self._orders.get((client_id, order_id))

    def open_orders(self, client_id: int | None = None) -> list[WorkingOrder]:
        """reqOpenOrders (one client) / reqAllOpenOrders (None): working orders by permId;
        nothing in read-only mode."""
        if self.read_only:
            return []
        return [
            o
            for o in (self._orders[k] for k in self._by_perm(self._live))
            if o.status != S.API_PENDING and (client_id is None or o.client_id == client_id)
        ]

    def completed_orders(self, now: int) -> list[WorkingOrder]:
        """reqCompletedOrders: orders filled, cancelled or rejected since US/Eastern midnight."""
        if self.read_only:
            return []
        since = eastern_midnight(now)
        done = [o for o in self._orders.values() if o.done and (o.completed_time or 0) >= since]
        return sorted(done, key=lambda o: (o.completed_time or 0, o.perm_id))

    def executions(
        self,
        now: int,
        *,
        client_id: int = 0,
        account: str = "",
        time: str = "",
        symbol: str = "",
        sec_type: str = "",
        exchange: str = "",
        side: str = "",
    ) -> list[Fill]:
        """reqExecutions: today's executions (since US/Eastern midnight) matching IB's
        ExecutionFilter fields (empty/0 = any; ``time`` "yyyymmdd hh:mm:ss" US/Eastern or
        "yyyymmdd-hh:mm:ss" UTC = at or after).  Raises ValueError for a malformed time."""
        since = max(eastern_midnight(now), parse_ib_time(time) if time else 0)
        want_side = {"BUY": "BOT", "SELL": "SLD"}.get(side.upper(), side.upper())
        out = []
        for f in self._fills:
            ex, inst = f.execution, f.inst
            if ex.time < since or (client_id and ex.client_id != client_id):
                continue
            if (account and ex.account != account) or (symbol and inst.symbol != symbol.upper()):
                continue
            if sec_type and inst.sec_type != sec_type.upper():
                continue
            if (exchange and ex.exchange != exchange.upper()) or (
                want_side and ex.side != want_side
            ):
                continue
            out.append(f)
        return out

    def account_values(self, now: int) -> AccountValues:
        return self.account.values(self.marks(now), eastern_day(now))

    def portfolio(self, now: int) -> list[PortfolioItem]:
        return self.account.portfolio(self.marks(now))

    def pnl(self, now: int) -> PnL:
        """reqPnL: daily P&L since US/Eastern midnight."""
        start = self.marks(eastern_midnight(now))
        return self.account.pnl(self.marks(now), start, eastern_day(now))

    def pnl_single(self, con_id: int, now: int) -> PnLSingle | None:
        start = self.marks(eastern_midnight(now))
        return self.account.pnl_single(con_id, self.marks(now), start, eastern_day(now))

    # ----- placing ------------------------------------------------------------------------------
    def _place(self, spec: OrderSpec, inst: Instrument, now: int) -> None:
        key = (spec.client_id, spec.order_id)
        old = self._orders.get(key)
        if self.read_only:
            return self._error(spec.order_id, spec.client_id, chk.READ_ONLY)
        if spec.account and spec.account != self.account.account_id:
            return self._error(spec.order_id, spec.client_id, chk.INVALID_ACCOUNT)
        if old is not None and not old.done:
            return self._modify(old, spec, inst, now)
        if old is not None and old.status == S.FILLED:
            return self._error(spec.order_id, spec.client_id, chk.MODIFY_FILLED)
        if spec.order_id <= self._high_water.get(spec.client_id, 0):
            return self._error(spec.order_id, spec.client_id, chk.DUPLICATE_ID)
        self._high_water[spec.client_id] = spec.order_id
        bad = chk.check_spec(spec, inst)
        if bad is not None:
            return self._error(spec.order_id, spec.client_id, bad)
        o = WorkingOrder(spec, inst, self._next_perm, S.PENDING_SUBMIT, now)
        self._next_perm += 1
        reason = chk.reject_reason(spec, inst) or self._context_reject(o, now)
        if reason is not None:
            return self._reject(o, reason)
        not_before, expires_at, auction_at = self._times(spec, inst, now)
        o = replace(o, not_before=not_before, expires_at=expires_at, auction_at=auction_at)
        if spec.what_if:
            return self._what_if(o, now)
        if not spec.transmit:
            self._store(replace(o, status=S.API_PENDING))  # staged: the initial state
            return None
        self._store(o)
        return self._transmit(o, now)

    def _context_reject(self, o: WorkingOrder, now: int) -> str | None:
        """201 reasons that depend on the gateway: faults, parent, hours, margin."""
        if self._rejects:
            return self._rejects.pop(0)
        spec = o.spec
        if spec.parent_id:
            parent = self._orders.get((spec.client_id, spec.parent_id))
            if parent is None:
                return f"Parent order {spec.parent_id} not found"
            if parent.done and parent.status != S.FILLED:
                return f"Parent order {spec.parent_id} is {parent.status.value}"
        _, expires_at, auction_at = self._times(spec, o.inst, now)
        auction = spec.order_type in AUCTIONS or spec.tif == "OPG"
        if auction_at is None if auction else (spec.tif == "DAY" and expires_at is None):
            return "Exchange is closed."
        if spec.parent_id or spec.what_if:
            return None
        return self.account.check_order(
            o.inst, is_buy(o), spec.total_quantity, self._ref_price(o, now), self.marks(now)
        )

    def _times(
        self, spec: OrderSpec, inst: Instrument, now: int
    ) -> tuple[int | None, int | None, int | None]:
        """(not_before, expires_at, auction_at) of an order placed (modified) at ``now``."""
        not_before = parse_ib_time(spec.good_after_time) if spec.good_after_time else None
        start = max(now, not_before or now)
        expires_at = auction_at = None
        if spec.order_type in AUCTIONS:
            auction_at = self._hours.closing_auction(inst, start)
        elif spec.tif == "OPG":
            got = self._hours.opening_auction(inst, start)
            auction_at, expires_at = got if got is not None else (None, None)
        elif spec.tif == "DAY":
            expires_at = self._hours.day_end(inst, start, spec.outside_rth)
        elif spec.tif == "GTD":
            expires_at = parse_ib_time(spec.good_till_date)
        return not_before, expires_at, auction_at

    def _ref_price(self, o: WorkingOrder, now: int) -> float:
        """The price a margin check assumes: the order's limit/stop, else the touch."""
        spec = o.spec
        for p in (spec.lmt_price, spec.aux_price if spec.order_type in ("STP", "MIT") else None):
            if p is not None and p > 0:
                return p
        q = self.market.quote(o.inst, now)
        return q.ask if is_buy(o) else q.bid

    def _reject(self, o: WorkingOrder, reason: str) -> None:
        self._store(o)
        self._set(o, T.REJECT, rejected=True, completed_status="Rejected")
        self._error(o.order_id, o.client_id, (chk.REJECTED, chk.rejected_text(reason)))

    def _what_if(self, o: WorkingOrder, now: int) -> None:
        marks, buy, qty = self.marks(now), is_buy(o), o.spec.total_quantity
        price = self._ref_price(o, now)
        before, after, elv = self.account.what_if(o.inst, buy, qty, price, marks)
        value = qty * dec(price) * multiplier(o.inst) * marks.rate(o.inst.currency)
        fee = commission(o.inst, qty, value)
        self._events.append(WhatIf(replace(o, status=S.PRE_SUBMITTED), before[0], after[0],
                                   before[1], after[1], elv, elv - fee, fee,
                                   self.account.currency))  # fmt: skip

    def _modify(self, old: WorkingOrder, spec: OrderSpec, inst: Instrument, now: int) -> None:
        oid, cid = spec.order_id, spec.client_id
        if chk.modify_mismatch(old.spec, spec, old.inst.con_id, inst.con_id):
            return self._error(oid, cid, chk.MODIFY_MISMATCH)
        bad = chk.check_spec(spec, inst)
        if bad is not None:
            return self._error(oid, cid, bad)
        reason = chk.reject_reason(spec, inst)
        if reason is None and old.status == S.PENDING_CANCEL:
            reason = "The order is being cancelled"
        if reason is None and spec.total_quantity <= old.filled:
            reason = "The order quantity cannot be reduced to or below the filled quantity"
        extra = spec.total_quantity - old.spec.total_quantity
        if reason is None and extra > 0 and not spec.parent_id:
            o = replace(old, spec=spec)
            price = self._ref_price(o, now)
            reason = self.account.check_order(inst, is_buy(o), extra, price, self.marks(now))
        if reason is not None:
            return self._error(oid, cid, (chk.REJECTED, chk.rejected_text(reason)))
        not_before, expires_at, auction_at = self._times(spec, inst, now)
        changes: dict[str, Any] = {"spec": spec, "inst": inst, "not_before": not_before,
                                   "expires_at": expires_at, "auction_at": auction_at}  # fmt: skip
        trail = ("aux_price", "trailing_percent", "trail_stop_price")
        if not old.triggered and any(getattr(old.spec, f) != getattr(spec, f) for f in trail):
            changes.update(trail_ref=None, trail_stop=None)
        staged = old.status == S.API_PENDING
        o = self._set(old, T.MODIFY, force=not staged, **changes)
        if staged:
            return self._transmit(o, now) if spec.transmit else None
        return self._first_pass((cid, oid), now)

    def _transmit(self, o: WorkingOrder, now: int) -> None:
        """Release ``o`` with the staged orders of its bracket, then give each a first pass."""
        cid, own = o.client_id, (o.client_id, o.order_id)
        root = o.parent_id or o.order_id
        group = {(cid, root)} | {
            k for k in self._live if k[0] == cid and self._orders[k].parent_id == root
        }
        keys = self._by_perm(
            k
            for k in group
            if k == own or (k in self._live and self._orders[k].status == S.API_PENDING)
        )
        for k in keys:
            if self._orders[k].status == S.API_PENDING:
                self._set(self._orders[k], T.TRANSMIT)
        for k in keys:
            self._first_pass(k, now)

    def _first_pass(self, key: Key, now: int) -> None:
        if self._time is not None and self._time >= now:
            self._work(key, now, first=True)
        else:  # advance was capped: the walk reaches ``now`` later
            self._status(self._orders[key], False)

    # ----- the walk ----------------------------------------------------------------------------
    def _begin(self, now: int) -> int:
        self._events = []
        if self._time is None:
            self._time = now
        self._walk(now)
        self._t = max(now, self._time)
        if self._t - self._pruned >= PRUNE_EVERY:
            self._prune(self._t - KEEP_SECONDS)
            self._pruned = self._t
        return self._t

    def _end(self) -> list[OrderEvent]:
        events, self._events = self._events, []
        return events

    def _prune(self, before: int) -> None:
        """Forget executions and completed orders older than ``before``."""
        self._fills = [f for f in self._fills if f.execution.time >= before]
        old = [k for k, o in self._orders.items() if o.done and (o.completed_time or 0) < before]
        for k in old:
            del self._orders[k]

    # ----- snapshot -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The whole engine and its account as JSON-safe data (``--state FILE``)."""
        return {
            "version": 1,
            "time": self._time,
            "high_water": {str(c): i for c, i in self._high_water.items()},
            "next_perm_id": self._next_perm,
            "exec_seq": self._exec_seq,
            "rejects": list(self._rejects),
            "orders": [snap.order_to_dict(self._orders[k]) for k in self._by_perm(self._orders)],
            "executions": [
                {
                    "execution": snap.execution_to_dict(f.execution),
                    "inst": snap.inst_to_dict(f.inst),
                }
                for f in self._fills
            ],
            "account": self.account.to_dict(),
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], refdata: RefData, market: MarketModel, **options: Any
    ) -> OrderEngine:
        """Rebuild from :meth:`to_dict` (``options`` as for the constructor).  Raises
        ValueError for an unknown version or conId, KeyError for a malformed dict."""
        if data.get("version") != 1:
            raise ValueError(f"unknown order-engine snapshot version {data.get('version')!r}")

        def lookup(con_id: int) -> Instrument:
            inst = refdata.by_con_id(con_id)
            if inst is None:
                raise ValueError(f"snapshot names conId {con_id}, which reference data lacks")
            return inst

        account = Account.from_dict(data["account"], lookup)
        eng = cls(refdata, market, account, first_perm_id=int(data["next_perm_id"]), **options)
        eng._time = data["time"]
        eng._high_water = {int(c): int(i) for c, i in data["high_water"].items()}
        eng._exec_seq = int(data["exec_seq"])
        eng._rejects = list(data["rejects"])
        for row in data["orders"]:
            eng._store(snap.order_from_dict(row, lookup))
        eng._fills = [
            Fill(snap.execution_from_dict(r["execution"]), snap.inst_from_dict(r["inst"], lookup))
            for r in data["executions"]
        ]
        return eng
