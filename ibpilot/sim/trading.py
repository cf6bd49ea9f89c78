"""Orders and the account, served to clients: the order engine behind the wire.

:class:`TradingDesk` belongs to the gateway (orders and the account outlive any
connection, as with IB).  Sessions hand it order and account requests; it runs them
through the sans-IO :class:`~ibpilot.sim.matching.OrderEngine` and routes the events to
the client that owns each order (openOrder + orderStatus, execDetails +
commissionReport, errors), and keeps each client's account subscriptions (positions,
account updates, summaries, PnL) up to date as fills happen.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ibpilot.sim import order_messages as om
from ibpilot.sim import outbound as out
from ibpilot.sim.account import Account
from ibpilot.sim.feed import ContractNotFound, resolve_one
from ibpilot.sim.matching import OrderEngine
from ibpilot.sim.order_wire import CancelOrder, PlaceOrder
from ibpilot.sim.orders import (
    Fill,
    OrderError,
    OrderEvent,
    WhatIf,
    WorkingOrder,
)
from ibpilot.sim.requests import (
    ReqAccountSummary,
    ReqAccountUpdates,
    ReqAccountUpdatesMulti,
    ReqExecutions,
    ReqPnL,
    ReqPnLSingle,
)

if TYPE_CHECKING:
    from ibpilot.sim.core import GatewayCore
    from ibpilot.sim.session import ClientSession

log = logging.getLogger("ibpilot.sim")

ACCOUNT_PUSH_SECONDS = 180  # IB refreshes account values every 3 minutes
PNL_PUSH_REAL_SECONDS = 1.0  # IB sends PnL about once a second


@dataclass(slots=True)
class _Subscriptions:
    """What one client asked to be kept informed about."""

    account_updates: bool = False
    positions: bool = False
    summaries: dict[int, tuple[str, ...]] = field(default_factory=dict)  # reqId -> tags
    multi: dict[int, str] = field(default_factory=dict)  # reqId -> model code
    pnl: dict[int, Any] = field(default_factory=dict)  # reqId -> last sent (for changes)
    pnl_single: dict[int, tuple[int, Any]] = field(default_factory=dict)  # reqId -> (conId, last)
    last_pnl_push: float = 0.0


class TradingDesk:
    """The gateway's orders and account, and who hears about them."""

    def __init__(self, core: GatewayCore, starting_cash: Decimal) -> None:
        self.core = core
        account = Account(core.config.account, cash=starting_cash)
        self.engine = OrderEngine(core.refdata, core.market, account)
        self._subs: dict[int, _Subscriptions] = {}  # by client id
        self._last_account_push = 0
        self.changed = False  # something worth persisting happened

    @property
    def account_id(self) -> str:
        return self.core.config.account

    def _now(self) -> int:
        return int(self.core.clock.now())

    def _subs_of(self, session: ClientSession) -> _Subscriptions:
        return self._subs.setdefault(session.client_id, _Subscriptions())

    def drop_client(self, session: ClientSession) -> None:
        """A client went away: its subscriptions end (its orders stay)."""
        self._subs.pop(session.client_id, None)

    # --- orders ---------------------------------------------------------------
    def place(self, session: ClientSession, req: PlaceOrder) -> None:
        """placeOrder (new or modify)."""
        # IB books an order without an account to the user's (only) account, and every
        # openOrder/completedOrder names it
        account = req.order.account or self.account_id
        spec = replace(req.order, client_id=session.client_id, account=account)
        try:
            inst = resolve_one(self.core, req.contract)
        except ContractNotFound as exc:
            session.error(spec.order_id, 200, exc.text)
            return
        self.core.reserve_order_ids(spec.order_id)
        self._route(self.engine.place(spec, inst, self._now()))

    def cancel(self, session: ClientSession, req: CancelOrder) -> None:
        """cancelOrder."""
        self._route(self.engine.cancel(req.order_id, session.client_id, self._now()))

    def global_cancel(self, session: ClientSession) -> None:
        """reqGlobalCancel: every open order of every client."""
        self._route(self.engine.global_cancel(self._now(), session.client_id))

    def open_orders(self, session: ClientSession, all_clients: bool) -> None:
        """reqOpenOrders (own) / reqAllOpenOrders (every client's), then openOrderEnd."""
        client = None if all_clients else session.client_id
        for order in self.engine.open_orders(client):
            self._send_order(session, order)
        session.send(out.open_order_end())

    def completed_orders(self, session: ClientSession) -> None:
        """reqCompletedOrders: today's filled and cancelled orders, then the end marker."""
        sv = session.server_version
        for order in self.engine.completed_orders(self._now()):
            parent = self.engine.order(order.client_id, order.spec.parent_id)
            session.send(
                om.completed_order(
                    order.spec,
                    om.WireContract.from_instrument(order.inst),
                    order.perm_id,
                    str(order.status),
                    order.filled,
                    order.completed_time or self._now(),
                    order.completed_status,
                    sv,
                    parent_perm_id=parent.perm_id if parent else 0,
                )
            )
        session.send(out.completed_orders_end())

    def executions(self, session: ClientSession, req: ReqExecutions) -> None:
        """reqExecutions with IB's filter; then execDetailsEnd."""
        flt = req.filter
        try:
            fills = self.engine.executions(
                self._now(), client_id=flt.client_id, account=flt.account, time=flt.time,
                symbol=flt.symbol, sec_type=flt.sec_type, exchange=flt.exchange, side=flt.side,
            )  # fmt: skip
        except ValueError as exc:
            session.error(req.req_id, 321, f"Error validating request.-'bX' : cause - {exc}")
            fills = []
        for fill in fills:
            self._send_fill(session, fill, req.req_id)
        session.send(out.exec_details_end(req.req_id))

    # --- account ----------------------------------------------------------------
    def positions(self, session: ClientSession, subscribe: bool) -> None:
        """reqPositions (every position, then positionEnd; updates follow) / cancelPositions."""
        subs = self._subs_of(session)
        subs.positions = subscribe
        if subscribe:
            for pos in self.engine.account.positions():
                session.send(self._position_message(pos.inst, pos.quantity, pos.avg_cost))
            session.send(out.position_end())

    def account_updates(self, session: ClientSession, req: ReqAccountUpdates) -> None:
        """reqAccountUpdates: values, portfolio, time, download end; updates until unsubscribed."""
        subs = self._subs_of(session)
        subs.account_updates = req.subscribe
        if req.subscribe:
            self._push_account(session)
            session.send(out.account_download_end(req.account or self.account_id))

    def account_updates_multi(self, session: ClientSession, req: ReqAccountUpdatesMulti) -> None:
        """reqAccountUpdatesMulti: the same values keyed by request id, then the end marker."""
        self._subs_of(session).multi[req.req_id] = req.model_code
        self._push_multi(session, req.req_id, req.model_code)
        session.send(out.account_update_multi_end(req.req_id))

    def account_summary(self, session: ClientSession, req: ReqAccountSummary) -> None:
        """reqAccountSummary for the requested tags, then accountSummaryEnd."""
        tags = tuple(t.strip() for t in req.tags.split(",") if t.strip())
        self._subs_of(session).summaries[req.req_id] = tags
        self._push_summary(session, req.req_id, tags)
        session.send(out.account_summary_end(req.req_id))

    def pnl(self, session: ClientSession, req: ReqPnL) -> None:
        """reqPnL: daily, unrealised and realised P&L, pushed as they change."""
        subs = self._subs_of(session)
        subs.pnl[req.req_id] = None
        self._push_pnl(session, subs)

    def pnl_single(self, session: ClientSession, req: ReqPnLSingle) -> None:
        """reqPnLSingle: one position's P&L, pushed as it changes."""
        subs = self._subs_of(session)
        subs.pnl_single[req.req_id] = (req.con_id, None)
        self._push_pnl(session, subs)

    def cancel_subscription(self, session: ClientSession, kind: str, req_id: int) -> None:
        """cancelAccountSummary / cancelAccountUpdatesMulti / cancelPnL / cancelPnLSingle."""
        subs = self._subs_of(session)
        tables: dict[str, dict[int, Any]] = {
            "summary": subs.summaries,
            "multi": subs.multi,
            "pnl": subs.pnl,
            "pnl_single": subs.pnl_single,
        }
        tables[kind].pop(req_id, None)

    # --- time -------------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Match resting orders up to ``now``; refresh account subscribers."""
        second = int(now)
        self._route(self.engine.advance(second))
        if second - self._last_account_push >= ACCOUNT_PUSH_SECONDS:
            self._last_account_push = second
            self._push_all_accounts()
        real = time.monotonic()
        for client_id, subs in list(self._subs.items()):
            session = self.core.sessions.get(client_id)
            if session is None or (not subs.pnl and not subs.pnl_single):
                continue
            if real - subs.last_pnl_push >= PNL_PUSH_REAL_SECONDS:
                self._push_pnl(session, subs)

    # --- routing ----------------------------------------------------------------
    def _route(self, events: list[OrderEvent]) -> None:
        if not events:
            return
        self.changed = True
        filled: set[int] = set()
        sessions = self.core.sessions
        for event in events:
            if isinstance(event, OrderError):
                target = sessions.get(event.client_id)
                if target is not None:
                    target.error(event.order_id, event.code, event.text)
            elif isinstance(event, Fill):
                filled.add(event.inst.con_id)
                target = sessions.get(event.execution.client_id)
                if target is not None:
                    self._send_fill(target, event, -1)
            else:
                target = sessions.get(event.order.client_id)
                if target is None:
                    continue
                if isinstance(event, WhatIf):
                    self._send_what_if(target, event)
                else:
                    self._send_order(target, event.order, status_only=event.status_only)
        if filled:
            self._push_all_accounts(frozenset(filled))

    def _send_order(
        self, session: ClientSession, order: WorkingOrder, status_only: bool = False
    ) -> None:
        if not status_only:
            spec = order.spec
            if order.trail_stop is not None:
                spec = replace(spec, trail_stop_price=order.trail_stop)
            session.send(
                om.open_order(
                    spec,
                    om.WireContract.from_instrument(order.inst),
                    order.perm_id,
                    om.OrderState(str(order.status)),
                    session.server_version,
                )
            )
        session.send(
            om.order_status(
                order.order_id,
                str(order.status),
                order.filled,
                order.remaining,
                order.avg_fill_price,
                order.perm_id,
                order.spec.parent_id,
                order.last_fill_price,
                order.client_id,
                order.why_held,
                order.mkt_cap_price,
            )
        )

    def _send_what_if(self, session: ClientSession, event: WhatIf) -> None:
        o = event.order
        state = om.OrderState(
            str(o.status),
            init_margin_before=float(event.init_margin_before),
            maint_margin_before=float(event.maint_margin_before),
            equity_with_loan_before=float(event.equity_with_loan_before),
            init_margin_change=float(event.init_margin_after - event.init_margin_before),
            maint_margin_change=float(event.maint_margin_after - event.maint_margin_before),
            equity_with_loan_change=float(
                event.equity_with_loan_after - event.equity_with_loan_before
            ),
            init_margin_after=float(event.init_margin_after),
            maint_margin_after=float(event.maint_margin_after),
            equity_with_loan_after=float(event.equity_with_loan_after),
            commission=float(event.commission),
            commission_currency=event.commission_currency,
        )
        contract = om.WireContract.from_instrument(o.inst)
        session.send(om.open_order(o.spec, contract, o.perm_id, state, session.server_version))

    def _send_fill(self, session: ClientSession, fill: Fill, req_id: int) -> None:
        contract = om.WireContract.from_instrument(fill.inst)
        session.send(om.exec_details(req_id, fill.execution, contract, session.server_version))
        session.send(om.commission_report(fill.execution))

    # --- account pushes -----------------------------------------------------------
    def _position_message(self, inst: Any, quantity: Decimal, avg_cost: Decimal) -> list[Any]:
        contract = om.WireContract.from_instrument(inst)
        return om.position(self.account_id, contract, quantity, float(avg_cost))

    def _push_all_accounts(self, changed: frozenset[int] = frozenset()) -> None:
        """Refresh every subscriber; positions only for the conIds in ``changed`` (as IB
        sends a position when it changes, not with the periodic account refresh)."""
        positions = [p for p in self.engine.account.positions() if p.inst.con_id in changed]
        closed = changed - {p.inst.con_id for p in positions}
        for client_id, subs in list(self._subs.items()):
            session = self.core.sessions.get(client_id)
            if session is None:
                continue
            if subs.account_updates:
                self._push_account(session)
            if subs.positions:
                for pos in positions:
                    session.send(self._position_message(pos.inst, pos.quantity, pos.avg_cost))
                for con_id in closed:
                    inst = self.core.refdata.by_con_id(con_id)
                    if inst is not None:
                        session.send(self._position_message(inst, Decimal(0), Decimal(0)))
            for req_id, tags in subs.summaries.items():
                self._push_summary(session, req_id, tags)
            for req_id, model in subs.multi.items():
                self._push_multi(session, req_id, model)

    def _account_rows(self) -> list[tuple[str, str, str]]:
        """(key, value, currency) rows of reqAccountUpdates."""
        now = self._now()
        values = self.engine.account_values(now)
        ccy = values.currency
        rows = [("AccountCode", self.account_id, ""), ("AccountReady", "true", "")]
        rows += [("AccountType", "INDIVIDUAL", ""), ("Currency", ccy, ccy)]
        rows += [(tag, value, ccy) for tag, value in values.tags().items()]
        for currency, cash in self.engine.account.reported_cash_balances().items():
            rows.append(("CashBalance", f"{cash.quantize(Decimal('0.01'))}", currency))
        return rows

    def _push_account(self, session: ClientSession) -> None:
        acct = self.account_id
        for key, value, ccy in self._account_rows():
            session.send(om.account_value(key, value, ccy, acct))
        for item in self.engine.portfolio(self._now()):
            session.send(
                om.portfolio_value(
                    om.WireContract.from_instrument(item.inst),
                    item.position,
                    float(item.market_price),
                    float(item.market_value),
                    float(item.average_cost),
                    float(item.unrealized_pnl),
                    float(item.realized_pnl),
                    acct,
                )
            )
        session.send(om.account_update_time(self.core.clock.now_dt().strftime("%H:%M")))

    def _push_multi(self, session: ClientSession, req_id: int, model_code: str) -> None:
        acct = self.account_id
        for key, value, ccy in self._account_rows():
            session.send(om.account_update_multi(req_id, acct, model_code, key, value, ccy))

    def _push_summary(self, session: ClientSession, req_id: int, tags: tuple[str, ...]) -> None:
        values = self.engine.account_values(self._now())
        known = values.tags()
        wanted = set(tags)
        everything = not wanted or "All" in wanted
        acct = self.account_id
        if everything or "AccountType" in wanted:
            session.send(om.account_summary(req_id, acct, "AccountType", "INDIVIDUAL", ""))
        for tag, value in known.items():
            if everything or tag in wanted:
                session.send(om.account_summary(req_id, acct, tag, value, values.currency))

    def _push_pnl(self, session: ClientSession, subs: _Subscriptions) -> None:
        now = self._now()
        subs.last_pnl_push = time.monotonic()
        if subs.pnl:
            p = self.engine.pnl(now)
            current = (p.daily_pnl, p.unrealized_pnl, p.realized_pnl)
            for req_id, last in list(subs.pnl.items()):
                if current != last:
                    subs.pnl[req_id] = current
                    session.send(om.pnl(req_id, *(float(v) for v in current)))
        for req_id, (con_id, last) in list(subs.pnl_single.items()):
            single = self.engine.pnl_single(con_id, now)
            if single is None or single == last:
                continue
            subs.pnl_single[req_id] = (con_id, single)
            session.send(
                om.pnl_single(
                    req_id,
                    single.position,
                    float(single.daily_pnl),
                    float(single.unrealized_pnl),
                    float(single.realized_pnl),
                    float(single.value),
                )
            )
