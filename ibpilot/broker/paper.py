"""An in-process paper broker for backtests and tests: the Broker protocol without a network.

Driven by a feed: :meth:`PaperBroker.push` bars and quotes (and, to script faults, connection
events or errors), then :meth:`PaperBroker.end`.  Data is consumed lazily, one item each time
the reader of :meth:`PaperBroker.events` has handled everything before it, so a backtest is
deterministic and never looks ahead: an order placed while handling bar *t* fills on bar
*t+1* at the earliest.

Fills: MKT at the next bar's open, or the next quote's ask (BUY) / bid (SELL); LMT when the
price crosses the limit (a bar's low/high, a quote's ask/bid), at the limit or better (a gap
fills at the open).  Other order types are rejected (IB error 201, status Inactive).
``max_fill_quantity`` splits fills over several bars or quotes (partial fills).  Commission
is IB's fixed US-stock rate: 0.005 per share, at least 1.00, at most 1% of the trade value.
Each bar is followed by a quote at its close (``quotes_from_bars``), before the bar itself,
so the gate has a current quote in a bar-only backtest.  ``orderRef`` is the intent id.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from ibpilot.broker.base import (
    AccountSnapshot,
    Bar,
    BrokerError,
    BrokerEvent,
    BrokerOrderStatus,
    BrokerRequestError,
    ConnectionEvent,
    ConnectionInfo,
    Contract,
    ContractRef,
    ExecutionReport,
    OrderReport,
    OrderRequest,
    Position,
    Quote,
    Side,
)
from ibpilot.errors import by_name

ZERO = Decimal(0)
_OPEN = frozenset({BrokerOrderStatus.SUBMITTED, BrokerOrderStatus.PRE_SUBMITTED})
_DURATION_SECONDS = {"S": 1, "D": 86_400, "W": 7 * 86_400, "M": 30 * 86_400, "Y": 365 * 86_400}
FeedItem = Bar | Quote | ConnectionEvent | BrokerError


class _End:
    """The feed is over: events() ends once everything before it was delivered."""


class _Wake:
    """Wakes a waiting events(): after disconnect(), or with news from place()/cancel()."""


@dataclass(slots=True)
class _Order:
    request: OrderRequest
    order_id: int
    perm_id: int
    status: BrokerOrderStatus
    time: datetime
    filled: Decimal = ZERO
    value: Decimal = ZERO  # sum of quantity x price

    @property
    def remaining(self) -> Decimal:
        return self.request.quantity - self.filled

    def report(self) -> OrderReport:
        r = self.request
        avg = self.value / self.filled if self.filled else None
        return OrderReport(
            r.intent_id, self.order_id, self.perm_id, r.contract.con_id, r.side, r.quantity,
            self.filled, self.remaining, self.status, avg, self.time,
        )  # fmt: skip


@dataclass(slots=True)
class _Holding:
    quantity: Decimal = ZERO
    avg_price: Decimal = ZERO


class PaperBroker:
    """The Broker protocol in-process. ``placed`` lists every order sent, in order (for tests)."""

    def __init__(
        self, contracts: Iterable[Contract], *, start: datetime, account: str = "DU0000001",
        cash: Decimal = Decimal(1_000_000), bar_seconds: int = 60,
        spread: Decimal = Decimal("0.01"), quotes_from_bars: bool = True,
        max_fill_quantity: Decimal | None = None,
    ) -> None:  # fmt: skip
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self.contracts = {c.con_id: c for c in contracts}
        self.account_id, self.bar_seconds, self.spread = account, bar_seconds, spread
        self.quotes_from_bars, self.max_fill_quantity = quotes_from_bars, max_fill_quantity
        self.placed: list[OrderRequest] = []
        self.cancel_requests: list[str] = []
        self.subscribed: set[int] = set()
        self._now, self._cash, self._realized = start, cash, ZERO
        self._inbox: asyncio.Queue[FeedItem | _End | _Wake] = asyncio.Queue()
        self._outbox: deque[BrokerEvent] = deque()
        self._connected, self._generation, self._ended = False, 0, False
        self._orders: dict[int, _Order] = {}
        self._executions: list[ExecutionReport] = []
        self._holdings: dict[int, _Holding] = {}
        self._marks: dict[int, Decimal] = {}
        self._history: dict[int, list[Bar]] = {}
        self._next_order_id = 0

    # -- the feed -----------------------------------------------------------------------------

    def push(self, *items: FeedItem) -> None:
        """Queue market data (or a scripted connection event / error) for events() to consume."""
        for item in items:
            self._inbox.put_nowait(item)

    def preload(self, bars: Iterable[Bar]) -> None:
        """Bars that are history before the run (warm-up data): no events, no fills."""
        for bar in bars:
            self._history.setdefault(bar.con_id, []).append(bar)
            self._marks[bar.con_id] = bar.close

    def end(self) -> None:
        """No more data: events() ends after delivering everything pushed before."""
        self._inbox.put_nowait(_End())

    def now(self) -> datetime:
        """The feed's time: the end of the last bar, or the last quote's time (a backtest clock)."""
        return self._now

    # -- the Broker protocol ------------------------------------------------------------------

    async def connect(self) -> ConnectionInfo:
        self._connected = True
        self._generation += 1
        self._outbox.clear()  # a new session hears only what happens from now on
        return ConnectionInfo((self.account_id,), 178, "paper", 0, 0, self._now)

    async def disconnect(self) -> None:
        self._connected = False
        self._generation += 1
        self._inbox.put_nowait(_Wake())

    async def events(self) -> AsyncIterator[BrokerEvent]:
        generation = self._generation
        while self._connected and generation == self._generation:
            if self._outbox:
                yield self._outbox.popleft()
            elif self._ended:
                return
            else:
                item = await self._inbox.get()
                if isinstance(item, _End):
                    self._ended = True
                elif not isinstance(item, _Wake):
                    self._consume(item)

    async def resolve(self, ref: ContractRef) -> Contract:
        for contract in self.contracts.values():
            if contract.con_id == ref.con_id or (
                not ref.con_id
                and (contract.symbol, contract.sec_type) == (ref.symbol, ref.sec_type)
            ):
                return contract
        entry = by_name("NO_SECURITY_DEFINITION")
        raise BrokerRequestError(entry, f"the paper broker has no {ref.sec_type} {ref.symbol}", 200)

    async def history(
        self, contract: Contract, *, end: datetime | None, duration: str, bar_size: str,
        what_to_show: str = "TRADES", use_rth: bool = True,
    ) -> list[Bar]:  # fmt: skip
        """The bars seen so far (preloaded or fed) within ``duration`` before ``end`` (or now).

        ``bar_size`` is not resampled: the paper broker returns the feed's own bars.
        """
        count, unit = duration.split()
        until = end or self._now
        since = until - timedelta(seconds=int(count) * _DURATION_SECONDS[unit])
        return [b for b in self._history.get(contract.con_id, []) if since <= b.time < until]

    async def subscribe(self, contract: Contract) -> None:
        self.subscribed.add(contract.con_id)

    async def unsubscribe(self, contract: Contract) -> None:
        self.subscribed.discard(contract.con_id)

    def reserve_order_ids(self, up_to: int) -> None:
        """Never use an order id at or below ``up_to``."""
        self._next_order_id = max(self._next_order_id, up_to)

    async def place(self, order: OrderRequest) -> int:
        """Accept an order (Submitted), or reject it (error 201, Inactive): see the module doc.

        Raises BrokerRequestError NOT_CONNECTED when not connected.
        """
        self._require_connection()
        self.placed.append(order)
        self._next_order_id += 1
        order_id = self._next_order_id
        record = _Order(order, order_id, 900_000 + order_id, BrokerOrderStatus.SUBMITTED, self._now)
        self._orders[order_id] = record
        problem = self._problem(order)
        if problem:
            record.status = BrokerOrderStatus.INACTIVE
            self._error(
                201, "ORDER_REJECTED", f"Order rejected - reason: {problem}", order.intent_id
            )
        self._outbox.append(record.report())
        self._inbox.put_nowait(_Wake())  # a reader waiting for data hears it now
        return order_id

    async def cancel(self, intent_id: str) -> None:
        """Cancel (status Cancelled + error 202), or error 10147 / 10148 like IB."""
        self._require_connection()
        self.cancel_requests.append(intent_id)
        record = next((o for o in self._orders.values() if o.request.intent_id == intent_id), None)
        if record is None:
            self._error(10147, "CANCEL_NOT_FOUND", "Order to cancel is not found.", intent_id)
        elif record.status not in _OPEN:
            message = f"Order cannot be cancelled, state: {record.status}."
            self._error(10148, "CANCEL_REFUSED", message, intent_id, terminal=False)
        else:
            record.status, record.time = BrokerOrderStatus.CANCELLED, self._now
            self._error(202, "ORDER_CANCELLED", "Order Canceled - reason:", intent_id)
            self._outbox.append(record.report())
        self._inbox.put_nowait(_Wake())

    async def open_orders(self) -> Sequence[OrderReport]:
        return [o.report() for o in self._orders.values() if o.status in _OPEN]

    async def completed_orders(self) -> Sequence[OrderReport]:
        return [o.report() for o in self._orders.values() if o.status not in _OPEN]

    async def executions(self, since: datetime | None = None) -> Sequence[ExecutionReport]:
        return [e for e in self._executions if since is None or e.time >= since]

    async def positions(self) -> Sequence[Position]:
        return [
            Position(
                con_id, self.contracts[con_id].symbol, h.quantity, h.avg_price * self._mult(con_id)
            )
            for con_id, h in self._holdings.items()
            if h.quantity
        ]

    async def account(self) -> AccountSnapshot:
        value, unrealized = ZERO, ZERO
        for con_id, h in self._holdings.items():
            mark, mult = self._marks.get(con_id, h.avg_price), self._mult(con_id)
            value += h.quantity * mark * mult
            unrealized += h.quantity * (mark - h.avg_price) * mult
        net = self._cash + value
        return AccountSnapshot(self.account_id, net, self._cash, self._realized, unrealized, net)

    # -- matching -----------------------------------------------------------------------------

    def _consume(self, item: FeedItem) -> None:
        if isinstance(item, Bar):
            self._history.setdefault(item.con_id, []).append(item)
            self._now = max(self._now, item.time + timedelta(seconds=self.bar_seconds))
            self._match(item.con_id, item)
            self._marks[item.con_id] = item.close
            if self.quotes_from_bars and item.con_id in self.subscribed:
                half = self.spread / 2
                close = item.close
                self._outbox.append(
                    Quote(item.con_id, self._now, close - half, close + half, close)
                )
            if item.con_id in self.subscribed:
                self._outbox.append(item)
        elif isinstance(item, Quote):
            self._now = max(self._now, item.time)
            self._match(item.con_id, item)
            mid = (item.bid + item.ask) / 2 if item.bid and item.ask else item.last
            if mid is not None:
                self._marks[item.con_id] = mid
            if item.con_id in self.subscribed:
                self._outbox.append(item)
        else:
            self._outbox.append(item)

    def _match(self, con_id: int, data: Bar | Quote) -> None:
        for record in [o for o in self._orders.values() if o.status in _OPEN]:
            if record.request.contract.con_id != con_id:
                continue
            price = _fill_price(record.request, data)
            if price is None:
                continue
            quantity = record.remaining
            if self.max_fill_quantity is not None:
                quantity = min(quantity, self.max_fill_quantity)
            self._execute(record, quantity, price)

    def _execute(self, record: _Order, quantity: Decimal, price: Decimal) -> None:
        r, mult = record.request, self._mult(record.request.contract.con_id)
        commission = max(Decimal(1), quantity * Decimal("0.005"))
        commission = min(commission, quantity * price * mult / 100).quantize(Decimal("0.0001"))
        exec_id = f"0000paper.{record.order_id:08d}.{len(self._executions) + 1:06d}.01"
        execution = ExecutionReport(
            exec_id, r.intent_id, record.order_id, record.perm_id, r.contract.con_id, r.side,
            quantity, price, self._now, commission,
        )  # fmt: skip
        self._executions.append(execution)
        record.filled += quantity
        record.value += quantity * price
        record.time = self._now
        if not record.remaining:
            record.status = BrokerOrderStatus.FILLED
        signed = quantity if r.side is Side.BUY else -quantity
        self._book(r.contract.con_id, signed, price, mult)
        self._cash -= signed * price * mult + commission
        self._realized -= commission
        self._outbox.extend([execution, record.report()])

    def _book(self, con_id: int, signed: Decimal, price: Decimal, mult: Decimal) -> None:
        h = self._holdings.setdefault(con_id, _Holding())
        after = h.quantity + signed
        if h.quantity and (h.quantity > 0) != (signed > 0):  # reducing, maybe crossing zero
            closed = min(abs(signed), abs(h.quantity))
            self._realized += (price - h.avg_price) * closed * (1 if h.quantity > 0 else -1) * mult
            if after and (after > 0) != (h.quantity > 0):
                h.avg_price = price
        elif after:
            h.avg_price = (h.avg_price * h.quantity + price * signed) / after
        h.quantity = after

    # -- helpers ------------------------------------------------------------------------------

    def _mult(self, con_id: int) -> Decimal:
        contract = self.contracts.get(con_id)
        return contract.multiplier if contract is not None else Decimal(1)

    def _problem(self, order: OrderRequest) -> str:
        if order.contract.con_id not in self.contracts:
            return f"unknown contract {order.contract.con_id}"
        if order.quantity <= 0:
            return "quantity must be positive"
        if order.order_type not in ("MKT", "LMT"):
            return f"the paper broker does not simulate {order.order_type} orders"
        if (order.order_type == "LMT") != (order.limit_price is not None):
            return "a LMT order needs a limit price; a MKT order takes none"
        return ""

    def _error(
        self, code: int, name: str, message: str, intent_id: str, *, terminal: bool = True
    ) -> None:
        self._outbox.append(BrokerError(code, name, message, self._now, intent_id, terminal))

    def _require_connection(self) -> None:
        if not self._connected:
            raise BrokerRequestError(by_name("NOT_CONNECTED"), "the paper broker is not connected")


def _fill_price(order: OrderRequest, data: Bar | Quote) -> Decimal | None:
    """The price ``order`` fills at on ``data``, or None if it does not fill there."""
    buy = order.side is Side.BUY
    if isinstance(data, Bar):
        touch: Decimal | None = data.open
        crossed = order.limit_price is not None and (
            data.low <= order.limit_price if buy else data.high >= order.limit_price
        )
    else:
        touch = (data.ask if buy else data.bid) or data.last
        crossed = (
            touch is not None
            and order.limit_price is not None
            and (touch <= order.limit_price if buy else touch >= order.limit_price)
        )
    if order.order_type == "MKT" or touch is None:
        return touch
    if not crossed or order.limit_price is None:
        return None
    if isinstance(data, Quote):
        return touch
    return min(order.limit_price, data.open) if buy else max(order.limit_price, data.open)
