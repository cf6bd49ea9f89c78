"""Orders for the IB adapter: the intent id in orderRef, order spacing, and the reports.

Reports come from ib_async's events with two corrections: a status ib_async made up after an
error (Cancelled on 462, 404, 10147...; "ValidationError" on warnings) is not reported (the
BrokerError for that code says what happened, terminal or not per the catalogue), and
``openOrder`` of an order placed here is not reported (its ``orderStatus`` messages are, and
ib_async's copy of the status lags behind on openOrder).  A live fill is reported when
execDetails arrives, without commission, and again with the same ``exec_id`` when IB's
commissionReport follows (IB sends them as two messages).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import ib_async

from ibpilot.broker import _ibkr_convert as cv
from ibpilot.broker._ibkr_connect import bounded
from ibpilot.broker.base import (
    BrokerEvent,
    BrokerRequestError,
    ExecutionReport,
    OrderReport,
    OrderRequest,
)
from ibpilot.errors import ErrorName, by_name

Spend = Callable[[float], Awaitable[None]]


class OrderDesk:
    """Places and cancels orders through one ib_async client and reports what IB says."""

    def __init__(
        self,
        ib: ib_async.IB,
        spend: Spend,
        publish: Callable[[BrokerEvent], None],
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        *,
        spacing_ms: int,
        request_timeout: float,
    ) -> None:
        self._ib, self._spend, self._publish = ib, spend, publish
        self._clock, self._monotonic, self._sleep = clock, monotonic, sleep
        self._spacing = spacing_ms / 1000
        self._timeout = request_timeout
        self._lock = asyncio.Lock()
        self._last_order_at: float | None = None
        self._order_by_intent: dict[str, int] = {}
        self._intent_by_order: dict[int, str] = {}
        self._live_execs: set[str] = set()
        self.order_id_floor = 0  # ids up to this were used before (the ledger says so)
        ib.orderStatusEvent += self._on_order_status
        ib.openOrderEvent += self._on_open_order
        ib.execDetailsEvent += self._on_exec_details
        ib.commissionReportEvent += self._on_commission

    @property
    def highest_order_id(self) -> int:
        """The highest order id this client is known to have used: placed through this desk,
        reported by IB for this client id (open orders, fills), or the runtime's floor."""
        mine = self._ib.wrapper.clientId
        seen = [key[1] for key in self._ib.wrapper.trades  # keyed (clientId, orderId) or permId
                if isinstance(key, tuple) and key[0] == mine]  # fmt: skip
        seen += [f.execution.orderId for f in self._ib.wrapper.fills.values()
                 if f.execution.clientId == mine]  # fmt: skip
        return max([*self._intent_by_order, *seen, self.order_id_floor], default=0)

    def intent_of(self, order_id: int) -> str:
        """The intent id of an order id ("" when it is not an order of this client)."""
        if order_id <= 0:
            return ""
        intent = self._intent_by_order.get(order_id)
        if intent is not None:
            return intent
        trade = self._ib.wrapper.trades.get((self._ib.wrapper.clientId, order_id))
        return str(trade.order.orderRef) if trade is not None else ""

    async def place(
        self, order: OrderRequest, account: str, still_allowed: Callable[[], None]
    ) -> int:
        """Send ``order`` (spaced, paced); ``still_allowed`` raises if the link went away
        while waiting.  Raises ValueError when the intent was placed before."""
        if order.intent_id in self._order_by_intent:
            placed = self._order_by_intent[order.intent_id]
            raise ValueError(f"intent {order.intent_id!r} was already placed (order id {placed})")
        async with self._lock:
            if self._spacing and self._last_order_at is not None:
                wait = self._last_order_at + self._spacing - self._monotonic()
                if wait > 0:
                    await self._sleep(wait)
            await self._spend(1)
            still_allowed()
            trade = self._ib.placeOrder(cv.ib_contract(order.contract), cv.ib_order(order, account))
            self._last_order_at = self._monotonic()
        order_id = int(trade.order.orderId)
        self._order_by_intent[order.intent_id] = order_id
        self._intent_by_order[order_id] = order.intent_id
        return order_id

    async def cancel(self, intent_id: str) -> None:
        """cancelOrder for the order carrying ``intent_id`` (placed here, or bound from an
        earlier session of this client id).  Raises BrokerRequestError ORDER_NOT_FOUND."""
        order_id = self._order_by_intent.get(intent_id)
        client_id = self._ib.wrapper.clientId
        if order_id is None:
            for trade in self._ib.trades():
                if trade.order.orderRef == intent_id and trade.order.clientId == client_id:
                    order_id = int(trade.order.orderId)
                    break
        if order_id is None:
            detail = f"no order with orderRef {intent_id!r} is known to client id {client_id}"
            raise BrokerRequestError(by_name(ErrorName.ORDER_NOT_FOUND), detail)
        await self._spend(1)
        cv.raw_client(self._ib).cancelOrder(order_id, "")

    async def open_orders(self) -> Sequence[OrderReport]:
        await self._spend(1)
        trades = await bounded(self._ib.reqAllOpenOrdersAsync, "reqAllOpenOrders", self._timeout)
        now = self._clock()
        unique = {id(t): t for t in trades}  # an order placed meanwhile is listed twice
        return [r for r in (cv.order_report(t, now) for t in unique.values()) if r is not None]

    async def completed_orders(self) -> Sequence[OrderReport]:
        await self._spend(1)
        request = functools.partial(self._ib.reqCompletedOrdersAsync, False)
        trades = await bounded(request, "reqCompletedOrders", self._timeout)
        now = self._clock()
        return [r for r in (cv.completed_report(t, now) for t in trades) if r is not None]

    async def executions(self, since: datetime | None) -> Sequence[ExecutionReport]:
        await self._spend(1)
        fills = await bounded(self._ib.reqExecutionsAsync, "reqExecutions", self._timeout)
        stored = self._ib.wrapper.fills  # commission reports land on the fill stored first
        out = []
        for fill in fills:
            known = stored.get(fill.execution.execId, fill)
            report = cv.execution_report(fill, known.commissionReport)
            if since is None or report.time >= since:
                out.append(report)
        return out

    # --- ib_async's events ------------------------------------------------------------------
    def _on_order_status(self, trade: ib_async.Trade) -> None:
        if trade.log and trade.log[-1].errorCode:
            return  # ib_async's own status after an error; the BrokerError says what happened
        report = cv.order_report(trade, self._clock())
        if report is not None:
            self._publish(report)

    def _on_open_order(self, trade: ib_async.Trade) -> None:
        if trade.order.orderId in self._intent_by_order:
            return  # ours: its orderStatus messages report it
        report = cv.order_report(trade, self._clock())
        if report is not None:
            self._publish(report)

    def _on_exec_details(self, trade: ib_async.Trade, fill: ib_async.Fill) -> None:
        self._live_execs.add(fill.execution.execId)
        self._publish(cv.execution_report(fill))

    def _on_commission(
        self, trade: ib_async.Trade, fill: ib_async.Fill, report: ib_async.CommissionReport
    ) -> None:
        if fill.execution.execId in self._live_execs:
            self._live_execs.discard(fill.execution.execId)
            self._publish(cv.execution_report(fill, report))
