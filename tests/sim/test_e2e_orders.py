"""Orders end to end, through ib_async and IB's official client over real sockets.

Every order type and time in force the order engine serves (``ibpilot/sim/matching.py``)
is placed by both clients against a real SimGateway.  Each test observes the order's
states in the order the client saw them, its executions and commission reports, and the
account after (positions, TotalCashValue, NetLiquidation, to the cent).

Where the market will be is known in advance: the gateway's price model is deterministic
(seed 7), so each case reads it (:class:`Market`) to put trigger prices a few ticks away
and to know the second and the price each fill must have.  The simulated clock runs at real
speed while an order is placed, then jumps ahead (``SimClock.jump_to``): the engine still
matches second by second up to the new time, so a trigger, the close or an expiry happens at
the second it would have, and the test takes a fraction of a real second.

A small adapter layer (:class:`Driver`: :class:`AsyncDriver` for ib_async, reading
``Trade.log``/``fills``/``commissionReport``; :class:`IbapiDriver` for ibapi, reading its
``orderStatus``/``openOrder``/``execDetails``/``commissionAndFeesReport`` callbacks) gives
the tests one vocabulary; each test runs once per client.  The ``gateway`` fixture decodes
every frame sent with both clients' decoders at teardown, and any error the simulator logs
fails the test.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import operator
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import ib_async
import pytest
from ibapi.contract import Contract as IbapiContract
from ibapi.execution import ExecutionFilter as IbapiExecutionFilter
from ibapi.order import Order as IbapiOrder
from ibapi.order_cancel import OrderCancel
from ibapi_app import IbapiClient

from ibpilot.sim import SimGateway
from ibpilot.sim.market import Quote, Trade

ET = ZoneInfo("US/Eastern")
ACCOUNT = "DU0000001"
START_CASH = Decimal(1_000_000)
AAPL, MSFT = 265598, 272093
CENT = Decimal("0.01")
TICK = 0.01
UNSET_DOUBLE = 1.7976931348623157e308
FIRST_PERM_ID = 1_000_000_001
QTY = 100  # the quote shows at least 100 shares a side and prints are 100+: one fill each
GUARD = 3  # simulated seconds after placement in which a trigger must not fire yet
HORIZON = 4 * 3600  # how far ahead a trigger is looked for
CLIENT_IDS = {"ib_async": 1, "ibapi": 11}
OTHER = {"ib_async": "ibapi", "ibapi": "ib_async"}
TIMEOUT = 5.0

# The gateway fixture's Monday, 2026-03-02 (EST): liquid hours 09:30-16:00 US/Eastern.
PREOPEN, OPEN, MORNING = "09:25:00", "09:30:00", "09:35:00"
BEFORE_CLOSE, LAST_MINUTE, CLOSE = "15:58:00", "15:59:00", "16:00:00"
ACCOUNT_TAGS = (
    "NetLiquidation", "TotalCashValue", "GrossPositionValue", "InitMarginReq", "MaintMarginReq",
    "AvailableFunds", "ExcessLiquidity", "BuyingPower", "EquityWithLoanValue",
)  # fmt: skip


def et(hms: str, day: int = 2) -> datetime:
    """An instant of March 2026 in US/Eastern."""
    return datetime.fromisoformat(f"2026-03-{day:02d}T{hms}").replace(tzinfo=ET)


def epoch(hms: str, day: int = 2) -> int:
    return int(et(hms, day).timestamp())


def at(hms: str, speed: float = 1.0) -> pytest.MarkDecorator:
    """Start the gateway's clock at ``hms`` US/Eastern on the Monday."""
    return pytest.mark.sim(start=et(hms), speed=speed)


def cents(x: Decimal) -> Decimal:
    return x.quantize(CENT, ROUND_HALF_UP)


def dec(x: float | int | str) -> Decimal:
    """The decimal a wire float stands for (its shortest repr), as the ledger books it."""
    return Decimal(repr(x) if isinstance(x, float) else x)


def ticks(price: float, n: int) -> float:
    """``price`` moved by ``n`` ticks, as the float of the exact decimal."""
    return float(dec(price) + n * dec(TICK))


def on_tick(price: float) -> float:
    """``price`` rounded to the nearest tick."""
    return float((dec(price) / dec(TICK)).quantize(Decimal(1)) * dec(TICK))


def ib_commission(shares: Decimal, value: Decimal) -> Decimal:
    """IB's fixed stock commission of one order: 0.005 USD a share, min 1 USD, max 1%."""
    return cents(min(max(shares * Decimal("0.005"), Decimal(1)), value * Decimal("0.01")))


# --- the market, known in advance ------------------------------------------------------------
class Market:
    """Where the simulated market is and will be (the gateway's own price model)."""

    def __init__(self, gateway: SimGateway, con_id: int = AAPL) -> None:
        inst = gateway.refdata.by_con_id(con_id)
        assert inst is not None
        self.gateway = gateway
        self.inst = inst
        self.model = gateway.core.market

    def now(self) -> int:
        return int(self.gateway.clock.now())

    def jump(self, t: int) -> None:
        """Move the simulated clock to ``t`` (the engine walks every second up to it)."""
        self.gateway.clock.jump_to(datetime.fromtimestamp(t, UTC))

    def quote(self, t: int) -> Quote:
        return self.model.quote(self.inst, t)

    def mid(self, t: int) -> Decimal:
        """The mark the account values a position at (the quote's midpoint)."""
        return dec(self.quote(t).midpoint)

    def prints(self, a: int, b: int) -> list[Trade]:
        """Prints from second ``a`` to second ``b``, both included."""
        return self.model.trades(self.inst, a, b + 1)

    def low(self, a: int, b: int) -> float:
        """The lowest bid or print from ``a`` to ``b``."""
        bids = [self.quote(t).bid for t in range(a, b + 1)]
        return min(bids + [tr.price for tr in self.prints(a, b)])

    def high(self, a: int, b: int) -> float:
        """The highest ask or print from ``a`` to ``b``."""
        asks = [self.quote(t).ask for t in range(a, b + 1)]
        return max(asks + [tr.price for tr in self.prints(a, b)])

    def first_print(self, a: int, pred: Callable[[float], bool]) -> int:
        """The first second from ``a`` on with a print satisfying ``pred``."""
        for tr in self.prints(a, a + HORIZON):
            if pred(tr.price):
                return tr.time
        raise AssertionError(f"the model never prints such a price within {HORIZON}s")

    def limit_fill(self, buy: bool, limit: float, a: int) -> tuple[int, float]:
        """(second, price) a working limit order gets filled, from second ``a`` on: at the
        opposite touch if it is within the limit, else at the limit from a print through it."""
        for t in range(a, a + HORIZON):
            q = self.quote(t)
            touch = q.ask if buy else q.bid
            if (touch <= limit) if buy else (touch >= limit):
                return t, touch
            through = [p.price for p in self.prints(t, t)]
            if any((p <= limit) if buy else (p >= limit) for p in through):
                return t, limit
        raise AssertionError(f"a limit at {limit} never fills within {HORIZON}s")

    def trail(self, t_place: int, amount: Callable[[float], float]) -> tuple[int, float, float]:
        """A SELL trailing stop placed at ``t_place``: (trigger second, initial stop, stop at
        the trigger), by the documented rule (the stop follows the best print at ``amount``
        below it, starting from the last price, and never moves back)."""
        ref = self.quote(t_place).last
        first = stop = on_tick(ref - amount(ref))
        for tr in self.prints(t_place + 1, t_place + HORIZON):
            if tr.price <= stop:
                return tr.time, first, stop
            if tr.price > ref:
                ref = tr.price
                stop = max(stop, on_tick(ref - amount(ref)))
        raise AssertionError("the trailing stop never triggers")


# --- what the clients saw ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Exec:
    """One execution as a client decoded it, joined with its commission report."""

    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    time: int
    symbol: str
    side: str
    shares: Decimal
    price: float
    order_ref: str
    account: str
    commission: Decimal | None  # None until the commission report came
    realized_pnl: float | None  # None when unset (an opening fill)

    @property
    def signed(self) -> Decimal:
        return self.shares if self.side == "BOT" else -self.shares


@dataclass(frozen=True, slots=True)
class Seen:
    """An order as a client decoded it from openOrder or completedOrder."""

    order_id: int
    client_id: int
    perm_id: int
    symbol: str
    action: str
    quantity: Decimal
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    order_ref: str
    account: str
    outside_rth: bool
    parent_id: int
    oca_group: str
    trail_stop_price: float | None
    status: str


def _price(x: Any) -> float | None:
    return None if x is None or float(x) >= UNSET_DOUBLE else float(x)


def _seen(contract: Any, order: Any, status: str) -> Seen:
    """Both clients' Contract/Order classes use IB's attribute names."""
    return Seen(
        order.orderId, order.clientId, order.permId, contract.symbol, order.action,
        Decimal(str(order.totalQuantity)).normalize(), order.orderType, _price(order.lmtPrice),
        _price(order.auxPrice), order.tif, order.orderRef, order.account, bool(order.outsideRth),
        order.parentId, order.ocaGroup, _price(order.trailStopPrice), status,
    )  # fmt: skip


def _exec(contract: Any, ex: Any, commission: Decimal | None, realized: float | None) -> Exec:
    when = ex.time
    if isinstance(when, str):  # ibapi: "20260302 09:35:00 US/Eastern"
        stamp, zone = when[:17], when[18:]
        when = datetime.strptime(stamp, "%Y%m%d %H:%M:%S").replace(tzinfo=ZoneInfo(zone))
    return Exec(
        ex.execId, ex.orderId, ex.clientId, ex.permId, int(when.timestamp()), contract.symbol,
        ex.side, Decimal(str(ex.shares)).normalize(), ex.price, ex.orderRef, ex.acctNumber,
        commission, realized,
    )  # fmt: skip


def _merged(statuses: Iterable[str]) -> list[str]:
    """Consecutive duplicates merged (IB may repeat a status)."""
    out: list[str] = []
    for s in statuses:
        if not out or out[-1] != s:
            out.append(s)
    return out


@dataclass(frozen=True)
class Ord:
    """An order in IB's field names, the same for both clients (None: leave unset)."""

    action: str
    orderType: str
    totalQuantity: int = QTY
    lmtPrice: float | None = None
    auxPrice: float | None = None
    tif: str = "DAY"
    outsideRth: bool = False
    orderRef: str = ""
    transmit: bool = True
    parentId: int = 0
    ocaGroup: str = ""
    ocaType: int = 0
    trailingPercent: float | None = None
    lmtPriceOffset: float | None = None

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


async def until(
    cond: Callable[[], bool], what: Callable[[], str], timeout: float = TIMEOUT
) -> None:
    """Poll ``cond``; AssertionError with ``what()`` after ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s: {what()}")
        await asyncio.sleep(0.01)


class Driver(abc.ABC):
    """One client library, seen through the vocabulary the tests need."""

    kind: str
    client_id: int

    @abc.abstractmethod
    def place(self, order: Ord, symbol: str = "AAPL", order_id: int | None = None) -> int:
        """placeOrder (with the next id unless ``order_id``); returns the order id used."""

    @abc.abstractmethod
    def take_order_id(self) -> int:
        """The next order id, taken from the client's own sequence."""

    @abc.abstractmethod
    def modify(self, order_id: int, **changes: Any) -> None:
        """placeOrder again with the same id and some fields changed."""

    @abc.abstractmethod
    def cancel(self, order_id: int) -> None: ...

    @abc.abstractmethod
    def global_cancel(self) -> None: ...

    @abc.abstractmethod
    def statuses(self, order_id: int) -> list[str]:
        """The order's states as the gateway reported them, in order (repeats merged)."""

    @abc.abstractmethod
    def fills(self, order_id: int) -> list[Exec]:
        """The order's live executions."""

    @abc.abstractmethod
    def open_orders_seen(self, order_id: int) -> list[Seen]:
        """Every openOrder the client decoded for the order."""

    @abc.abstractmethod
    def errors(self, order_id: int) -> list[tuple[int, str]]:
        """(code, text) of every error aimed at the order id."""

    @abc.abstractmethod
    async def open_orders(self, all_clients: bool = False) -> list[Seen]:
        """reqOpenOrders / reqAllOpenOrders."""

    @abc.abstractmethod
    async def completed_orders(self) -> list[Seen]: ...

    @abc.abstractmethod
    async def executions(self, **flt: Any) -> list[Exec]:
        """reqExecutions with ExecutionFilter fields (symbol=, side=, time=, ...)."""

    @abc.abstractmethod
    async def positions(self) -> dict[int, tuple[Decimal, float]]:
        """reqPositions: {conId: (position, avgCost)} of non-zero positions."""

    @abc.abstractmethod
    async def account_summary(self) -> dict[str, str]:
        """reqAccountSummary: {tag: value} of the account."""

    @abc.abstractmethod
    async def pnl(self) -> tuple[float, float, float]:
        """reqPnL's first report: (daily, unrealized, realized)."""

    @abc.abstractmethod
    async def pnl_single(self, con_id: int) -> tuple[Decimal, float, float, float, float]:
        """reqPnLSingle's first report: (position, daily, unrealized, realized, value)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    async def wait_statuses(self, order_id: int, expected: list[str]) -> None:
        """Until the order's states begin with ``expected``."""
        await until(
            lambda: self.statuses(order_id)[: len(expected)] == expected,
            lambda: (
                f"{self.kind}: order {order_id} went {self.statuses(order_id)}, "
                f"expected {expected} (errors {self.errors(order_id)})"
            ),
        )

    async def wait_error(self, order_id: int, code: int) -> str:
        await until(
            lambda: any(c == code for c, _ in self.errors(order_id)),
            lambda: f"{self.kind}: no error {code} for {order_id}; got {self.errors(order_id)}",
        )
        return next(text for c, text in self.errors(order_id) if c == code)

    async def wait_fills(self, order_id: int, shares: int) -> list[Exec]:
        """Until the order's fills (with their commissions) add up to ``shares``."""

        def done() -> bool:
            got = self.fills(order_id)
            return sum(f.shares for f in got) >= shares and all(
                f.commission is not None for f in got
            )

        await until(done, lambda: f"{self.kind}: fills of {order_id}: {self.fills(order_id)}")
        return self.fills(order_id)

    async def barrier(self) -> None:
        """Everything the gateway sent before now has been dispatched."""
        await self.open_orders()


class AsyncDriver(Driver):
    """ib_async: Trade.log for states, Trade.fills with their commissionReport."""

    kind = "ib_async"

    def __init__(self, ib: ib_async.IB, client_id: int) -> None:
        self.ib = ib
        self.client_id = client_id
        self.trades: dict[int, ib_async.Trade] = {}
        self.decoded: list[Seen] = []
        self._errors: list[tuple[int, int, str]] = []
        ib.errorEvent += lambda req_id, code, text, contract: self._errors.append(
            (req_id, code, text)
        )
        original = ib.wrapper.openOrder

        def open_order(order_id: int, contract: Any, order: Any, state: Any) -> None:
            self.decoded.append(_seen(contract, order, state.status))  # as decoded
            original(order_id, contract, order, state)

        ib.wrapper.openOrder = open_order  # type: ignore[method-assign,assignment]  # a tap

    @classmethod
    async def connect(cls, gateway: SimGateway, client_id: int) -> AsyncDriver:
        ib = ib_async.IB()
        await ib.connectAsync(
            "127.0.0.1", gateway.port, clientId=client_id, timeout=5, raiseSyncErrors=True
        )
        return cls(ib, client_id)

    def place(self, order: Ord, symbol: str = "AAPL", order_id: int | None = None) -> int:
        o = ib_async.Order(**order.fields())
        o.orderId = order_id or 0  # 0: ib_async takes its next id
        trade = self.ib.placeOrder(ib_async.Stock(symbol, "SMART", "USD"), o)
        self.trades[trade.order.orderId] = trade
        return int(trade.order.orderId)

    def take_order_id(self) -> int:
        return int(self.ib.client.getReqId())

    def modify(self, order_id: int, **changes: Any) -> None:
        trade = self.trades[order_id]
        for name, value in changes.items():
            setattr(trade.order, name, value)
        self.ib.placeOrder(trade.contract, trade.order)

    def cancel(self, order_id: int) -> None:
        self.ib.cancelOrder(self.trades[order_id].order)

    def global_cancel(self) -> None:
        self.ib.reqGlobalCancel()  # type: ignore[no-untyped-call]  # ib_async is untyped

    def statuses(self, order_id: int) -> list[str]:
        # log[0] is ib_async's own PendingSubmit; error entries and "Modify" are its own too
        log = self.trades[order_id].log[1:]
        return _merged(e.status for e in log if not e.errorCode and e.message != "Modify")

    def fills(self, order_id: int) -> list[Exec]:
        out = []
        for f in self.trades[order_id].fills:
            report = f.commissionReport
            commission = dec(report.commission) if report.execId else None
            out.append(_exec(f.contract, f.execution, commission, report.realizedPNL or None))
        return out

    def open_orders_seen(self, order_id: int) -> list[Seen]:
        return [s for s in self.decoded if s.order_id == order_id]

    def errors(self, order_id: int) -> list[tuple[int, str]]:
        return [(code, text) for rid, code, text in self._errors if rid == order_id]

    async def open_orders(self, all_clients: bool = False) -> list[Seen]:
        before = len(self.decoded)
        request = self.ib.reqAllOpenOrdersAsync if all_clients else self.ib.reqOpenOrdersAsync
        await asyncio.wait_for(request(), TIMEOUT)
        return self.decoded[before:]

    async def completed_orders(self) -> list[Seen]:
        trades = await asyncio.wait_for(self.ib.reqCompletedOrdersAsync(False), TIMEOUT)
        return [_seen(t.contract, t.order, t.orderStatus.status) for t in trades]

    async def executions(self, **flt: Any) -> list[Exec]:
        fills = await asyncio.wait_for(
            self.ib.reqExecutionsAsync(ib_async.ExecutionFilter(**flt)), TIMEOUT
        )
        return [_exec(f.contract, f.execution, None, None) for f in fills]

    async def positions(self) -> dict[int, tuple[Decimal, float]]:
        got = await asyncio.wait_for(self.ib.reqPositionsAsync(), TIMEOUT)
        return {
            p.contract.conId: (Decimal(str(p.position)).normalize(), p.avgCost)
            for p in got
            if p.position
        }

    async def account_summary(self) -> dict[str, str]:
        self.ib.wrapper.acctSummary.clear()
        await asyncio.wait_for(self.ib.reqAccountSummaryAsync(), TIMEOUT)
        return {v.tag: v.value for v in self.ib.wrapper.acctSummary.values()
                if v.account == ACCOUNT}  # fmt: skip

    async def pnl(self) -> tuple[float, float, float]:
        p = self.ib.reqPnL(ACCOUNT)
        await until(lambda: p.dailyPnL == p.dailyPnL, lambda: "no pnl")  # nan until the first
        self.ib.cancelPnL(ACCOUNT)
        return p.dailyPnL, p.unrealizedPnL, p.realizedPnL

    async def pnl_single(self, con_id: int) -> tuple[Decimal, float, float, float, float]:
        p = self.ib.reqPnLSingle(ACCOUNT, "", con_id)
        await until(lambda: p.value == p.value, lambda: "no pnlSingle")
        self.ib.cancelPnLSingle(ACCOUNT, "", con_id)
        return dec(p.position), p.dailyPnL, p.unrealizedPnL, p.realizedPnL, p.value

    async def close(self) -> None:
        self.ib.disconnect()


class IbapiDriver(Driver):
    """IB's official client: its orderStatus/openOrder/execDetails/commission callbacks."""

    kind = "ibapi"

    def __init__(self, app: IbapiClient, client_id: int, next_id: int) -> None:
        self.app = app
        self.client_id = client_id
        self._next_id = next_id
        self._next_req = 9000
        self.sent: dict[int, tuple[IbapiContract, IbapiOrder]] = {}

    @classmethod
    async def connect(cls, gateway: SimGateway, client_id: int) -> IbapiDriver:
        app = IbapiClient()
        await app.connect(gateway.port, client_id)
        (next_id,) = await app.wait_for("nextValidId")
        await app.wait_for("managedAccounts")
        return cls(app, client_id, next_id)

    def _req_id(self) -> int:
        self._next_req += 1
        return self._next_req

    def take_order_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def place(self, order: Ord, symbol: str = "AAPL", order_id: int | None = None) -> int:
        if order_id is None:
            order_id = self.take_order_id()
        self._next_id = max(self._next_id, order_id + 1)
        contract = IbapiContract()
        contract.symbol, contract.secType, contract.exchange = symbol, "STK", "SMART"
        contract.currency = "USD"
        o = IbapiOrder()
        for name, value in order.fields().items():
            setattr(o, name, value)
        o.totalQuantity = Decimal(order.totalQuantity)
        self.sent[order_id] = (contract, o)
        self.app.client.placeOrder(order_id, contract, o)
        return order_id

    def modify(self, order_id: int, **changes: Any) -> None:
        contract, o = self.sent[order_id]
        for name, value in changes.items():
            setattr(o, name, Decimal(value) if name == "totalQuantity" else value)
        self.app.client.placeOrder(order_id, contract, o)

    def cancel(self, order_id: int) -> None:
        self.app.client.cancelOrder(order_id, OrderCancel())

    def global_cancel(self) -> None:
        self.app.client.reqGlobalCancel(OrderCancel())

    def statuses(self, order_id: int) -> list[str]:
        return _merged(a[1] for _, a in self.app.calls("orderStatus") if a[0] == order_id)

    def fills(self, order_id: int) -> list[Exec]:
        reports = {r.execId: r for _, (r,) in self.app.calls("commissionAndFeesReport")}
        out = []
        for _, (req_id, contract, ex) in self.app.calls("execDetails"):
            if req_id == -1 and ex.orderId == order_id:
                r = reports.get(ex.execId)
                commission = None if r is None else dec(r.commissionAndFees)
                realized = None if r is None else _price(r.realizedPNL)
                out.append(_exec(contract, ex, commission, realized))
        return out

    def open_orders_seen(self, order_id: int) -> list[Seen]:
        return [
            _seen(c, o, s.status) for _, (oid, c, o, s) in self.app.calls("openOrder")
            if oid == order_id
        ]  # fmt: skip

    def errors(self, order_id: int) -> list[tuple[int, str]]:
        return [(code, text) for _, code, text in self.app.errors(order_id)]

    async def _request(self, send: Callable[[], None], end: str, req_id: int | None = None) -> int:
        """Send a request; wait for its end marker; returns the index calls start at."""
        start = len(self.app.calls())
        send()

        def ended() -> bool:
            return any(
                n == end and (req_id is None or a[0] == req_id) for n, a in self.app.calls()[start:]
            )

        await until(ended, lambda: f"ibapi: no {end}")
        return start

    def _since(self, start: int, name: str) -> list[tuple[Any, ...]]:
        return [a for n, a in self.app.calls()[start:] if n == name]

    async def open_orders(self, all_clients: bool = False) -> list[Seen]:
        c = self.app.client
        start = await self._request(c.reqAllOpenOrders if all_clients else c.reqOpenOrders,
                                    "openOrderEnd")  # fmt: skip
        return [_seen(c, o, s.status) for _, c, o, s in self._since(start, "openOrder")]

    async def completed_orders(self) -> list[Seen]:
        start = await self._request(
            lambda: self.app.client.reqCompletedOrders(False), "completedOrdersEnd"
        )
        return [_seen(c, o, s.status) for c, o, s in self._since(start, "completedOrder")]

    async def executions(self, **flt: Any) -> list[Exec]:
        req_id = self._req_id()
        f = IbapiExecutionFilter()
        for name, value in flt.items():
            setattr(f, name, value)
        start = await self._request(
            lambda: self.app.client.reqExecutions(req_id, f), "execDetailsEnd", req_id
        )
        return [
            _exec(contract, ex, None, None)
            for rid, contract, ex in self._since(start, "execDetails")
            if rid == req_id
        ]

    async def positions(self) -> dict[int, tuple[Decimal, float]]:
        start = await self._request(self.app.client.reqPositions, "positionEnd")
        self.app.client.cancelPositions()
        return {
            c.conId: (Decimal(pos).normalize(), avg)
            for _, c, pos, avg in self._since(start, "position")
            if pos
        }

    async def account_summary(self) -> dict[str, str]:
        req_id = self._req_id()
        start = await self._request(
            lambda: self.app.client.reqAccountSummary(req_id, "All", "All"),
            "accountSummaryEnd",
            req_id,
        )
        self.app.client.cancelAccountSummary(req_id)
        return {
            tag: value
            for rid, account, tag, value, _ in self._since(start, "accountSummary")
            if rid == req_id and account == ACCOUNT
        }

    async def pnl(self) -> tuple[float, float, float]:
        req_id = self._req_id()
        start = len(self.app.calls())
        self.app.client.reqPnL(req_id, ACCOUNT, "")
        await until(lambda: bool(self._since(start, "pnl")), lambda: "ibapi: no pnl")
        self.app.client.cancelPnL(req_id)
        _, daily, unrealized, realized = self._since(start, "pnl")[0]
        return daily, unrealized, realized

    async def pnl_single(self, con_id: int) -> tuple[Decimal, float, float, float, float]:
        req_id = self._req_id()
        start = len(self.app.calls())
        self.app.client.reqPnLSingle(req_id, ACCOUNT, "", con_id)
        await until(lambda: bool(self._since(start, "pnlSingle")), lambda: "ibapi: no pnlSingle")
        self.app.client.cancelPnLSingle(req_id)
        _, pos, daily, unrealized, realized, value = self._since(start, "pnlSingle")[0]
        return Decimal(pos).normalize(), daily, unrealized, realized, value

    async def close(self) -> None:
        await self.app.disconnect()


async def connect(kind: str, gateway: SimGateway, client_id: int | None = None) -> Driver:
    cid = CLIENT_IDS[kind] if client_id is None else client_id
    if kind == "ib_async":
        return await AsyncDriver.connect(gateway, cid)
    return await IbapiDriver.connect(gateway, cid)


# --- fixtures ------------------------------------------------------------------------------
class _SimulatorErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.getMessage()[:200]} {record.exc_text or ''}"[:600])


@pytest.fixture(autouse=True)
def simulator_errors() -> Iterator[None]:
    """A failed engine step is logged by the gateway, not raised: fail the test on one."""
    handler = _SimulatorErrors()
    logger = logging.getLogger("ibpilot.sim")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    assert not handler.messages, f"the simulator logged errors: {handler.messages}"


@pytest.fixture(params=["ib_async", "ibapi"])
async def client(request: pytest.FixtureRequest, gateway: SimGateway) -> AsyncIterator[Driver]:
    """The client under test (each test runs once with each library)."""
    driver = await connect(request.param, gateway)
    yield driver
    await driver.close()


@pytest.fixture
async def other(client: Driver, gateway: SimGateway) -> AsyncIterator[Driver]:
    """A second connection, with the other library."""
    driver = await connect(OTHER[client.kind], gateway)
    yield driver
    await driver.close()


@pytest.fixture
def market(gateway: SimGateway) -> Market:
    return Market(gateway)


# --- checks shared by the tests ------------------------------------------------------------
async def assert_account(client: Driver, market: Market, fills: list[Exec]) -> None:
    """Positions, TotalCashValue and NetLiquidation follow from ``fills`` (every fill of
    the account so far, all in AAPL) to the cent."""
    assert all(f.symbol == "AAPL" and f.commission is not None for f in fills), fills
    t_a = market.now()
    positions = await client.positions()
    summary = await client.account_summary()
    t_b = market.now()
    qty = sum((f.signed for f in fills), Decimal(0))
    flows = sum((f.signed * dec(f.price) for f in fills), Decimal(0))
    fees = sum((f.commission or Decimal(0) for f in fills), Decimal(0))
    cash = START_CASH - flows - fees
    if qty:
        assert set(positions) == {AAPL}
        held, avg_cost = positions[AAPL]
        assert held == qty
        if len({f.side for f in fills}) == 1:  # opened in one direction: cost / quantity
            assert avg_cost == pytest.approx(float((flows + fees) / qty), abs=1e-9)
    else:
        assert AAPL not in positions
    assert summary["TotalCashValue"] == str(cents(cash))
    marks = {str(cents(cash + qty * market.mid(t))) for t in range(t_a, t_b + 1)}
    assert summary["NetLiquidation"] in marks, (summary["NetLiquidation"], marks)


def assert_echoed(seen: Seen, order: Ord, status: str) -> None:
    """openOrder gives back what was placed, with the account and the current status."""
    assert (seen.action, seen.quantity, seen.order_type, seen.tif) == (
        order.action, Decimal(order.totalQuantity), order.orderType, order.tif,
    )  # fmt: skip
    assert (seen.lmt_price, seen.outside_rth, seen.order_ref) == (
        order.lmtPrice, order.outsideRth, order.orderRef,
    )  # fmt: skip
    if order.orderType != "TRAIL" or order.trailingPercent is None:
        assert seen.aux_price == order.auxPrice
    assert seen.account == ACCOUNT
    assert seen.status == status
    assert seen.perm_id >= FIRST_PERM_ID


# --- every order type and time in force ----------------------------------------------------
@dataclass(frozen=True)
class Plan:
    """An order, and what must become of it.

    ``steps``: (simulated time to jump to first, or None; how many states to wait for);
    by default one step waiting for all of ``statuses``.  ``fill_window``: the seconds its
    one execution may happen in (None: it never fills); ``fill_price(t)``: the price a fill
    at second ``t`` must have.  ``trail``: (possible initial stops, possible final stops).
    """

    order: Ord
    statuses: list[str]
    steps: tuple[tuple[int | None, int], ...] = ()
    fill_window: tuple[int, int] | None = None
    fill_price: Callable[[int], float] = field(default=lambda t: float("nan"))
    trail: tuple[set[float], set[float]] | None = None


FILLS_NOW = ["Submitted", "Filled"]
TRIGGERED = ["PreSubmitted", "Submitted", "Filled"]


def _soon(t0: int) -> tuple[int, int]:
    """The seconds an order placed at ``t0`` and filled on arrival can be filled in."""
    return t0, t0 + 2


def mkt_buy(m: Market, t0: int) -> Plan:
    return Plan(Ord("BUY", "MKT"), FILLS_NOW, fill_window=_soon(t0),
                fill_price=lambda t: m.quote(t).ask)  # fmt: skip


def mkt_sell_short(m: Market, t0: int) -> Plan:
    return Plan(Ord("SELL", "MKT"), FILLS_NOW, fill_window=_soon(t0),
                fill_price=lambda t: m.quote(t).bid)  # fmt: skip


def lmt_marketable(m: Market, t0: int) -> Plan:
    limit = ticks(m.quote(t0).ask, 5)  # fills at the ask, better than its limit
    return Plan(Ord("BUY", "LMT", lmtPrice=limit), FILLS_NOW, fill_window=_soon(t0),
                fill_price=lambda t: m.quote(t).ask)  # fmt: skip


def lmt_resting(m: Market, t0: int) -> Plan:
    limit = ticks(m.low(t0 - 1, t0 + GUARD), -2)
    t, price = m.limit_fill(True, limit, t0 + GUARD)
    return Plan(Ord("BUY", "LMT", lmtPrice=limit), FILLS_NOW, ((None, 1), (t + 2, 2)),
                (t, t), lambda _: price)  # fmt: skip


def _stop_below(m: Market, t0: int) -> tuple[float, int]:
    """A price a few ticks under everything printed or bid around ``t0``, and the first
    second a print reaches it.  Where it can, the level is one the bid reaches at another
    second than the prints do, so that only a trigger by prints fills when expected."""
    low = m.low(t0 - 1, t0 + GUARD)
    found = []
    for n in range(2, 9):
        level = ticks(low, -n)
        by_print = m.first_print(t0 + GUARD, partial(operator.ge, level))
        bids = (t for t in range(t0 + GUARD, by_print + 1) if m.quote(t).bid <= level)
        by_bid = next(bids, None)
        found.append((by_bid == by_print, n, level, by_print))
    _, _, level, second = min(found)
    return level, second


def stp(m: Market, t0: int) -> Plan:
    stop, t = _stop_below(m, t0)  # a SELL stop: held until a print at or below it
    return Plan(Ord("SELL", "STP", auxPrice=stop), TRIGGERED, ((None, 1), (t + 2, 3)),
                (t, t), lambda x: m.quote(x).bid)  # fmt: skip


def stp_lmt(m: Market, t0: int) -> Plan:
    stop, t = _stop_below(m, t0)
    limit = ticks(min(stop, m.quote(t).bid), -2)  # marketable once triggered
    order = Ord("SELL", "STP LMT", lmtPrice=limit, auxPrice=stop)
    return Plan(order, TRIGGERED, ((None, 1), (t + 2, 3)), (t, t), lambda x: m.quote(x).bid)


def mit(m: Market, t0: int) -> Plan:
    trigger, t = _stop_below(m, t0)  # a BUY if touched: held until a print at or below
    return Plan(Ord("BUY", "MIT", auxPrice=trigger), TRIGGERED, ((None, 1), (t + 2, 3)),
                (t, t), lambda x: m.quote(x).ask)  # fmt: skip


def lit(m: Market, t0: int) -> Plan:
    trigger, t = _stop_below(m, t0)
    _, price = m.limit_fill(True, trigger, t)  # then a limit at the trigger price
    order = Ord("BUY", "LIT", lmtPrice=trigger, auxPrice=trigger)
    return Plan(order, TRIGGERED, ((None, 1), (t + 2, 3)), (t, t), lambda _: price)


def _trail(m: Market, t0: int, order: Ord, amount: Callable[[float], float]) -> Plan:
    """Placed within two seconds of t0 (the clock runs at real speed while it is placed)."""
    outcomes = [m.trail(t, amount) for t in (t0, t0 + 1, t0 + 2)]
    lo, hi = min(o[0] for o in outcomes), max(o[0] for o in outcomes)
    trail = ({o[1] for o in outcomes}, {o[2] for o in outcomes})
    if order.orderType == "TRAIL":
        price: Callable[[int], float] = lambda x: m.quote(x).bid  # noqa: E731
    else:  # TRAIL LIMIT: a limit at the stop less the offset once triggered
        fills = {m.limit_fill(False, ticks(o[2], -2), o[0]) for o in outcomes}
        assert {t for t, _ in fills} == {o[0] for o in outcomes}, "fills when triggered"
        price = dict(fills).__getitem__
    return Plan(order, TRIGGERED, ((None, 1), (hi + 2, 3)), (lo, hi), price, trail)


def trail_amount(m: Market, t0: int) -> Plan:
    return _trail(m, t0, Ord("SELL", "TRAIL", auxPrice=0.1), lambda p: 0.1)


def trail_percent(m: Market, t0: int) -> Plan:
    order = Ord("SELL", "TRAIL", trailingPercent=0.05)
    return _trail(m, t0, order, lambda p: p * 0.05 / 100)


def trail_limit(m: Market, t0: int) -> Plan:
    order = Ord("SELL", "TRAIL LIMIT", auxPrice=0.1, lmtPriceOffset=0.02)
    return _trail(m, t0, order, lambda p: 0.1)


def _closing_print(m: Market) -> float:
    return m.quote(epoch(CLOSE) - 1).last


def moc(m: Market, t0: int) -> Plan:
    close = epoch(CLOSE)
    return Plan(Ord("BUY", "MOC"), FILLS_NOW, ((None, 1), (close + 2, 2)), (close, close),
                lambda _: _closing_print(m))  # fmt: skip


def loc_within(m: Market, t0: int) -> Plan:
    close, price = epoch(CLOSE), _closing_print(m)
    order = Ord("BUY", "LOC", lmtPrice=ticks(price, 5))
    return Plan(order, FILLS_NOW, ((None, 1), (close + 2, 2)), (close, close), lambda _: price)


def loc_beyond(m: Market, t0: int) -> Plan:
    order = Ord("BUY", "LOC", lmtPrice=ticks(_closing_print(m), -5))  # IB cancels it
    return Plan(order, ["Submitted", "Cancelled"], ((None, 1), (epoch(CLOSE) + 2, 2)))


def midprice(m: Market, t0: int) -> Plan:
    order = Ord("BUY", "MIDPRICE", lmtPrice=ticks(m.quote(t0).ask, 10))
    return Plan(order, FILLS_NOW, fill_window=_soon(t0),
                fill_price=lambda t: m.quote(t).midpoint)  # fmt: skip


def ioc_marketable(m: Market, t0: int) -> Plan:
    order = Ord("BUY", "LMT", lmtPrice=ticks(m.quote(t0).ask, 5), tif="IOC")
    return Plan(order, FILLS_NOW, fill_window=_soon(t0), fill_price=lambda t: m.quote(t).ask)


def ioc_not_marketable(m: Market, t0: int) -> Plan:
    order = Ord("BUY", "LMT", lmtPrice=ticks(m.quote(t0).bid, -50), tif="IOC")
    return Plan(order, ["Submitted", "Cancelled"])  # the remainder is cancelled at once


def _opening_print(m: Market) -> Trade:
    return m.prints(epoch(OPEN), epoch(OPEN) + 60)[0]


def opg_market(m: Market, t0: int) -> Plan:
    first = _opening_print(m)  # the opening auction: the first print at/after the open
    return Plan(Ord("BUY", "MKT", tif="OPG"), TRIGGERED, ((None, 1), (first.time + 2, 3)),
                (first.time, first.time), lambda _: first.price)  # fmt: skip


def opg_limit_beyond(m: Market, t0: int) -> Plan:
    order = Ord("BUY", "LMT", lmtPrice=ticks(_opening_print(m).price, -50), tif="OPG")
    return Plan(order, ["PreSubmitted", "Cancelled"], ((None, 1), (epoch(OPEN) + 60, 2)))


def day_expires_at_the_close(m: Market, t0: int) -> Plan:
    close = epoch(CLOSE)
    order = Ord("BUY", "LMT", lmtPrice=ticks(m.low(t0 - 1, close), -5))
    return Plan(order, ["Submitted", "Cancelled"], ((None, 1), (close + 2, 2)))


def gtc_works_across_the_close(m: Market, t0: int) -> Plan:
    close, reopen = epoch(CLOSE), epoch(OPEN, day=3)
    limit = ticks(min(m.low(t0 - 1, close), m.low(reopen, reopen + 5)), -5)
    steps = ((None, 1), (close + 2, 2), (reopen + 2, 3))
    return Plan(Ord("BUY", "LMT", lmtPrice=limit, tif="GTC"),
                ["Submitted", "PreSubmitted", "Submitted"], steps)  # fmt: skip


def outside_rth_fills_before_the_open(m: Market, t0: int) -> Plan:
    order = Ord("BUY", "LMT", lmtPrice=ticks(m.quote(t0).ask, 5), outsideRth=True)
    return Plan(order, FILLS_NOW, fill_window=_soon(t0), fill_price=lambda t: m.quote(t).ask)


def rth_only_waits_for_the_open(m: Market, t0: int) -> Plan:
    opening = epoch(OPEN)
    return Plan(Ord("BUY", "MKT"), TRIGGERED, ((None, 1), (opening + 2, 3)),
                (opening, opening), lambda t: m.quote(t).ask)  # fmt: skip


CASES = [
    pytest.param(mkt_buy, id="MKT-buy-fills-at-the-ask", marks=at(MORNING)),
    pytest.param(mkt_sell_short, id="MKT-sell-short-fills-at-the-bid", marks=at(MORNING)),
    pytest.param(lmt_marketable, id="LMT-marketable-fills-at-the-ask", marks=at(MORNING)),
    pytest.param(lmt_resting, id="LMT-rests-then-fills-at-its-price", marks=at(MORNING)),
    pytest.param(stp, id="STP-held-until-a-print-through-it", marks=at(MORNING)),
    pytest.param(stp_lmt, id="STP-LMT-becomes-a-limit-when-triggered", marks=at(MORNING)),
    pytest.param(trail_amount, id="TRAIL-amount-follows-the-high", marks=at(MORNING)),
    pytest.param(trail_percent, id="TRAIL-percent-follows-the-high", marks=at(MORNING)),
    pytest.param(trail_limit, id="TRAIL-LIMIT-limit-below-the-stop", marks=at(MORNING)),
    pytest.param(moc, id="MOC-fills-at-the-closing-print", marks=at(BEFORE_CLOSE)),
    pytest.param(loc_within, id="LOC-within-its-limit-fills-at-the-close", marks=at(BEFORE_CLOSE)),
    pytest.param(loc_beyond, id="LOC-beyond-its-limit-is-cancelled", marks=at(BEFORE_CLOSE)),
    pytest.param(mit, id="MIT-held-until-touched-then-market", marks=at(MORNING)),
    pytest.param(lit, id="LIT-held-until-touched-then-limit", marks=at(MORNING)),
    pytest.param(midprice, id="MIDPRICE-fills-at-the-midpoint", marks=at(MORNING)),
    pytest.param(ioc_marketable, id="IOC-marketable-fills", marks=at(MORNING)),
    pytest.param(ioc_not_marketable, id="IOC-not-marketable-is-cancelled", marks=at(MORNING)),
    pytest.param(opg_market, id="OPG-fills-at-the-opening-print", marks=at(PREOPEN)),
    pytest.param(opg_limit_beyond, id="OPG-beyond-its-limit-is-cancelled", marks=at(PREOPEN)),
    pytest.param(day_expires_at_the_close, id="DAY-expires-at-the-close", marks=at(LAST_MINUTE)),
    pytest.param(
        gtc_works_across_the_close, id="GTC-works-across-the-close", marks=at(LAST_MINUTE)
    ),
    pytest.param(
        outside_rth_fills_before_the_open, id="outsideRth-fills-pre-market", marks=at(PREOPEN)
    ),
    pytest.param(
        rth_only_waits_for_the_open, id="RTH-only-MKT-waits-for-the-open", marks=at(PREOPEN)
    ),
]


@pytest.mark.parametrize("case", CASES)
async def test_order_lifecycle(
    case: Callable[[Market, int], Plan], client: Driver, market: Market
) -> None:
    plan = case(market, market.now())
    order = replace(plan.order, orderRef=f"{client.kind}:{plan.order.orderType}:{plan.order.tif}")
    oid = client.place(order)
    for jump, count in plan.steps or ((None, len(plan.statuses)),):
        if jump is not None:
            market.jump(jump)
        await client.wait_statuses(oid, plan.statuses[:count])
    await client.barrier()
    assert client.statuses(oid) == plan.statuses

    seen = client.open_orders_seen(oid)
    assert seen, "no openOrder"
    assert_echoed(seen[-1], order, plan.statuses[-1])
    perm_id = seen[-1].perm_id
    assert {s.perm_id for s in seen} == {perm_id}
    if plan.trail is not None:
        assert seen[0].trail_stop_price in plan.trail[0]
        assert seen[-1].trail_stop_price in plan.trail[1]
    assert all(code != 202 for code, _ in client.errors(oid)), client.errors(oid)

    if plan.fill_window is None:
        assert client.fills(oid) == []
        await assert_account(client, market, [])
        return
    [fill] = await client.wait_fills(oid, QTY)
    lo, hi = plan.fill_window
    assert lo <= fill.time <= hi
    assert fill.price == plan.fill_price(fill.time)
    if order.lmtPrice is not None:  # at or better than its limit (MIDPRICE: its cap)
        assert (
            fill.price <= order.lmtPrice if order.action == "BUY" else fill.price >= order.lmtPrice
        )
    assert (fill.side, fill.shares) == ("BOT" if order.action == "BUY" else "SLD", Decimal(QTY))
    assert (fill.order_id, fill.perm_id, fill.order_ref) == (oid, perm_id, order.orderRef)
    assert (fill.account, fill.client_id) == (ACCOUNT, client.client_id)
    assert fill.commission == ib_commission(Decimal(QTY), QTY * dec(fill.price))
    await assert_account(client, market, [fill])


# --- modify, cancel, global cancel ---------------------------------------------------------
def far_below(m: Market, seconds: int = 600) -> float:
    """A buy limit the market does not reach in the next ``seconds``."""
    t0 = m.now()
    return ticks(m.low(t0 - 1, t0 + seconds), -5)


def far_above(m: Market, seconds: int = 600) -> float:
    t0 = m.now()
    return ticks(m.high(t0 - 1, t0 + seconds), 5)


@at(MORNING)
async def test_modify_changes_price_and_quantity_then_fills(client: Driver, market: Market) -> None:
    low = far_below(market)
    oid = client.place(Ord("BUY", "LMT", lmtPrice=low, orderRef="modified"))
    await client.wait_statuses(oid, ["Submitted"])
    perm_id = client.open_orders_seen(oid)[-1].perm_id

    lower = ticks(low, -10)
    client.modify(oid, lmtPrice=lower, totalQuantity=2 * QTY)
    await until(
        lambda: client.open_orders_seen(oid)[-1].lmt_price == lower,
        lambda: f"no modified openOrder: {client.open_orders_seen(oid)[-1]}",
    )
    [working] = [s for s in await client.open_orders() if s.order_id == oid]
    assert (working.lmt_price, working.quantity, working.perm_id, working.status) == (
        lower, Decimal(2 * QTY), perm_id, "Submitted",
    )  # fmt: skip
    assert client.fills(oid) == []

    limit = ticks(market.quote(market.now()).ask, 5)
    client.modify(oid, lmtPrice=limit)  # now marketable: fills at the ask
    market.jump(market.now() + 30)  # in case the ask shows fewer shares than the order
    fills = await client.wait_fills(oid, 2 * QTY)
    assert all(f.price == market.quote(f.time).ask <= limit for f in fills)
    assert all((f.perm_id, f.order_ref) == (perm_id, "modified") for f in fills)
    await client.wait_statuses(oid, ["Submitted", "Filled"])
    assert client.statuses(oid) == ["Submitted", "Filled"]
    value = sum((f.shares * dec(f.price) for f in fills), Decimal(0))
    assert sum(f.commission or 0 for f in fills) == ib_commission(Decimal(2 * QTY), value)
    await assert_account(client, market, fills)


@at(MORNING)
async def test_cancel_goes_pending_cancel_then_cancelled_with_error_202(
    client: Driver, market: Market
) -> None:
    oid = client.place(Ord("BUY", "LMT", lmtPrice=far_below(market), orderRef="to-cancel"))
    await client.wait_statuses(oid, ["Submitted"])
    perm_id = client.open_orders_seen(oid)[-1].perm_id
    client.cancel(oid)
    await client.wait_statuses(oid, ["Submitted", "PendingCancel", "Cancelled"])
    assert await client.wait_error(oid, 202) == "Order Canceled - reason:"
    await client.barrier()
    assert client.statuses(oid) == ["Submitted", "PendingCancel", "Cancelled"]
    assert oid not in {s.order_id for s in await client.open_orders()}
    [done] = [s for s in await client.completed_orders() if s.perm_id == perm_id]
    assert (done.status, done.order_ref, done.account) == ("Cancelled", "to-cancel", ACCOUNT)
    assert client.fills(oid) == []
    await assert_account(client, market, [])


@at(MORNING)
async def test_global_cancel_cancels_the_orders_of_every_client(
    client: Driver, other: Driver, market: Market
) -> None:
    mine = client.place(Ord("BUY", "LMT", lmtPrice=far_below(market)))
    theirs = other.place(Ord("SELL", "LMT", lmtPrice=far_above(market)))
    await client.wait_statuses(mine, ["Submitted"])
    await other.wait_statuses(theirs, ["Submitted"])
    assert len(await client.open_orders(all_clients=True)) == 2

    client.global_cancel()
    for driver, oid in ((client, mine), (other, theirs)):
        await driver.wait_statuses(oid, ["Submitted", "PendingCancel", "Cancelled"])
        assert await driver.wait_error(oid, 202) == "Order Canceled - reason:"
    assert await client.open_orders(all_clients=True) == []
    assert await other.open_orders(all_clients=True) == []


# --- brackets and OCA groups ---------------------------------------------------------------
@at(MORNING)
async def test_bracket_children_wait_for_the_parent_and_one_exit_cancels_the_other(
    client: Driver, market: Market
) -> None:
    t0 = market.now()
    entry = ticks(market.low(t0 - 1, t0 + GUARD), -2)
    t_entry, entry_price = market.limit_fill(True, entry, t0 + GUARD)
    target = ticks(entry, 8)
    t_exit, exit_price = market.limit_fill(False, target, t_entry)
    assert t_exit > t_entry + 1, "the take-profit must be seen working before it fills"
    stop = ticks(market.low(t_entry, t_exit), -5)  # not reached before the take-profit

    parent = client.place(Ord("BUY", "LMT", lmtPrice=entry, transmit=False, orderRef="entry"))
    take = client.place(Ord("SELL", "LMT", lmtPrice=target, parentId=parent, transmit=False,
                            orderRef="take-profit"))  # fmt: skip
    await client.barrier()
    assert (client.statuses(parent), client.statuses(take)) == ([], [])  # staged, not sent
    loss = client.place(Ord("SELL", "STP", auxPrice=stop, parentId=parent, orderRef="stop-loss"))
    await client.wait_statuses(parent, ["Submitted"])
    await client.wait_statuses(take, ["PreSubmitted"])
    await client.wait_statuses(loss, ["PreSubmitted"])
    assert {s.parent_id for oid in (take, loss) for s in client.open_orders_seen(oid)} == {parent}

    market.jump(t_entry + 1)  # the parent fills: the take-profit starts working
    await client.wait_statuses(parent, ["Submitted", "Filled"])
    await client.wait_statuses(take, ["PreSubmitted", "Submitted"])
    market.jump(t_exit + 2)  # the take-profit fills: the stop-loss is cancelled
    await client.wait_statuses(take, ["PreSubmitted", "Submitted", "Filled"])
    await client.wait_statuses(loss, ["PreSubmitted", "Cancelled"])
    await client.barrier()
    assert client.statuses(parent) == ["Submitted", "Filled"]
    assert client.statuses(take) == ["PreSubmitted", "Submitted", "Filled"]
    assert client.statuses(loss) == ["PreSubmitted", "Cancelled"]
    assert all(code != 202 for code, _ in client.errors(loss))  # cancelled by IB, not by us

    [bought] = await client.wait_fills(parent, QTY)
    [sold] = await client.wait_fills(take, QTY)
    assert (bought.time, bought.price, bought.order_ref) == (t_entry, entry_price, "entry")
    assert (sold.time, sold.price, sold.order_ref) == (t_exit, exit_price, "take-profit")
    assert client.fills(loss) == []
    await assert_account(client, market, [bought, sold])


@at(MORNING)
async def test_oca_group_fill_cancels_the_other_orders_of_the_group(
    client: Driver, market: Market
) -> None:
    group = f"oca-{client.kind}"
    resting = client.place(Ord("BUY", "LMT", lmtPrice=far_below(market), ocaGroup=group,
                               ocaType=1))  # fmt: skip
    await client.wait_statuses(resting, ["Submitted"])
    limit = ticks(market.quote(market.now()).ask, 5)
    taking = client.place(Ord("BUY", "LMT", lmtPrice=limit, ocaGroup=group, ocaType=1))
    await client.wait_statuses(taking, ["Submitted", "Filled"])
    await client.wait_statuses(resting, ["Submitted", "Cancelled"])
    await client.barrier()
    assert client.statuses(resting) == ["Submitted", "Cancelled"]
    assert client.open_orders_seen(resting)[-1].oca_group == group
    assert all(code != 202 for code, _ in client.errors(resting))
    [fill] = await client.wait_fills(taking, QTY)
    assert fill.price == market.quote(fill.time).ask
    assert client.fills(resting) == []
    await assert_account(client, market, [fill])


# --- rejections ----------------------------------------------------------------------------
async def assert_never_placed(client: Driver, market: Market, oid: int) -> None:
    """An order refused without a record: no openOrder, no state, nothing working."""
    await client.barrier()
    assert client.statuses(oid) == []
    assert client.open_orders_seen(oid) == []
    assert oid not in {s.order_id for s in await client.open_orders()}
    assert client.fills(oid) == []
    await assert_account(client, market, [])


@at(MORNING)
async def test_unknown_contract_is_refused_with_error_200(client: Driver, market: Market) -> None:
    oid = client.place(Ord("BUY", "MKT"), symbol="NOSUCHSYM")
    text = await client.wait_error(oid, 200)
    assert text == "No security definition has been found for the request"
    await assert_never_placed(client, market, oid)


@at(MORNING)
async def test_price_off_the_minimum_tick_is_refused_with_error_110(
    client: Driver, market: Market
) -> None:
    oid = client.place(Ord("BUY", "LMT", lmtPrice=far_below(market) + 0.005))
    text = await client.wait_error(oid, 110)
    assert text == "The price does not conform to the minimum price variation for this contract."
    await assert_never_placed(client, market, oid)


@at(MORNING)
async def test_stale_order_id_is_refused_with_error_103(client: Driver, market: Market) -> None:
    base = client.take_order_id()
    working = client.place(Ord("BUY", "LMT", lmtPrice=far_below(market)), order_id=base + 10)
    await client.wait_statuses(working, ["Submitted"])
    stale = client.place(Ord("BUY", "MKT"), order_id=base + 5)  # unused, but not above 10
    assert await client.wait_error(stale, 103) == "Duplicate order id"
    await assert_never_placed(client, market, stale)
    assert client.statuses(working) == ["Submitted"]  # the working order is untouched


@at(MORNING)
async def test_insufficient_buying_power_is_rejected_with_error_201(
    client: Driver, market: Market
) -> None:
    qty = 10_000  # about 2.8 million dollars: its initial margin exceeds the equity
    t0 = market.now()
    oid = client.place(Ord("BUY", "MKT", totalQuantity=qty))
    text = await client.wait_error(oid, 201)
    margins = {cents(qty * dec(market.quote(t).ask) / 2) for t in range(t0, market.now() + 1)}
    assert any(
        text == "Order rejected - Reason: YOUR ORDER IS NOT ACCEPTED. IN ORDER TO OBTAIN THE "
        "DESIRED POSITION YOUR EQUITY WITH LOAN VALUE [1000000.00 USD] MUST EXCEED THE "
        f"INITIAL MARGIN [{m} USD] (insufficient funds)"
        for m in margins
    ), text
    await client.wait_statuses(oid, ["Inactive"])
    await client.barrier()
    assert client.statuses(oid) == ["Inactive"]
    assert oid not in {s.order_id for s in await client.open_orders()}
    assert client.fills(oid) == []
    await assert_account(client, market, [])


@at(MORNING)
async def test_rejection_by_ib_is_error_201_with_its_reason(
    client: Driver, market: Market, gateway: SimGateway
) -> None:
    gateway.faults.reject_next(1, "Order size exceeds the risk limit")
    rejected = client.place(Ord("BUY", "MKT", orderRef="rejected"))
    text = await client.wait_error(rejected, 201)
    assert text == "Order rejected - Reason: Order size exceeds the risk limit"
    await client.wait_statuses(rejected, ["Inactive"])
    assert client.open_orders_seen(rejected)[-1].order_ref == "rejected"
    accepted = client.place(Ord("BUY", "MKT"))  # the fault was for one order only
    [fill] = await client.wait_fills(accepted, QTY)
    assert client.statuses(rejected) == ["Inactive"]
    assert client.fills(rejected) == []
    await assert_account(client, market, [fill])


@at(MORNING)
async def test_read_only_api_refuses_orders_and_cancels_with_error_321(
    client: Driver, market: Market, gateway: SimGateway
) -> None:
    working = client.place(Ord("BUY", "LMT", lmtPrice=far_below(market)))
    await client.wait_statuses(working, ["Submitted"])
    gateway.faults.read_only(True)
    client.cancel(working)
    refused = client.place(Ord("BUY", "MKT"))
    read_only = (
        "Error validating request:-'bh' : cause - The API interface is currently in Read-Only mode."
    )
    assert await client.wait_error(working, 321) == read_only
    assert await client.wait_error(refused, 321) == read_only
    gateway.faults.read_only(False)
    [still] = await client.open_orders()
    assert (still.order_id, still.status) == (working, "Submitted")
    assert all(code != 202 for code, _ in client.errors(working))
    await assert_never_placed(client, market, refused)


# --- commissions, queries, P&L and the account ---------------------------------------------
@at(MORNING)
async def test_an_order_filled_in_pieces_pays_the_per_share_commission_once(
    client: Driver, market: Market
) -> None:
    qty = 3100  # more than the quote ever shows (30 lots): at least two executions
    oid = client.place(Ord("BUY", "MKT", totalQuantity=qty))
    await client.wait_statuses(oid, ["Submitted"])
    market.jump(market.now() + 60)
    fills = await client.wait_fills(oid, qty)
    await client.wait_statuses(oid, ["Submitted", "Filled"])
    assert len(fills) >= 2
    assert len({f.exec_id for f in fills}) == len(fills)
    assert all(f.price == market.quote(f.time).ask for f in fills)
    total = Decimal(0)
    for f in fills:  # each execution is charged the increase of the order's commission
        before = ib_commission(total, Decimal(1_000_000_000)) if total else Decimal(0)
        total += f.shares
        assert f.commission == ib_commission(total, Decimal(1_000_000_000)) - before
    value = sum((f.shares * dec(f.price) for f in fills), Decimal(0))
    assert sum((f.commission or Decimal(0) for f in fills), Decimal(0)) == ib_commission(
        Decimal(qty), value
    ) == Decimal("15.50")  # fmt: skip
    await assert_account(client, market, fills)


@at(MORNING)
async def test_open_and_completed_orders_and_filtered_executions(
    client: Driver, other: Driver, market: Market
) -> None:
    async def placed(driver: Driver, order: Ord, symbol: str = "AAPL") -> int:
        oid = driver.place(order, symbol)  # one at a time: two sockets race each other
        await until(lambda: bool(driver.statuses(oid)), lambda: f"{order} not acknowledged")
        return oid

    bought = await placed(client, Ord("BUY", "MKT", orderRef="buy-aapl"))
    market.jump(market.now() + 600)
    since = datetime.fromtimestamp(market.now(), ET).strftime("%Y%m%d %H:%M:%S")
    market.jump(market.now() + 5)
    sold = await placed(client, Ord("SELL", "MKT", totalQuantity=40, orderRef="sell-aapl"))
    msft = await placed(client, Ord("BUY", "MKT", totalQuantity=10, orderRef="buy-msft"), "MSFT")
    working = await placed(client, Ord("BUY", "LMT", lmtPrice=far_below(market),
                                       orderRef="working"))  # fmt: skip
    theirs = await placed(other, Ord("SELL", "LMT", lmtPrice=far_above(market), orderRef="theirs"))
    cancelled = await placed(other, Ord("SELL", "LMT", lmtPrice=far_above(market)))
    other.cancel(cancelled)
    await other.wait_statuses(cancelled, ["Submitted", "PendingCancel", "Cancelled"])
    await client.wait_fills(bought, QTY)
    await client.wait_fills(sold, 40)
    await client.wait_fills(msft, 10)

    perm = {oid: client.open_orders_seen(oid)[-1].perm_id for oid in (bought, sold, msft, working)}
    perm_theirs = [other.open_orders_seen(oid)[-1].perm_id for oid in (theirs, cancelled)]
    in_order = [perm[bought], perm[sold], perm[msft], perm[working], *perm_theirs]
    assert in_order == sorted(set(in_order)), "permIds are unique and increasing"

    own = await client.open_orders()
    assert [(s.order_id, s.order_ref, s.status, s.account) for s in own] == [
        (working, "working", "Submitted", ACCOUNT)
    ]
    everyone = await client.open_orders(all_clients=True)
    assert {(s.perm_id, s.client_id, s.order_ref) for s in everyone} == {
        (perm[working], client.client_id, "working"),
        (perm_theirs[0], other.client_id, "theirs"),
    }

    completed = {s.perm_id: s for s in await client.completed_orders()}
    assert {p: (s.status, s.order_ref) for p, s in completed.items()} == {
        perm[bought]: ("Filled", "buy-aapl"),
        perm[sold]: ("Filled", "sell-aapl"),
        perm[msft]: ("Filled", "buy-msft"),
        perm_theirs[1]: ("Cancelled", ""),
    }
    assert completed[perm[msft]].symbol == "MSFT"

    def refs(execs: list[Exec]) -> list[str]:
        return sorted(e.order_ref for e in execs)

    assert refs(await client.executions()) == ["buy-aapl", "buy-msft", "sell-aapl"]
    assert refs(await client.executions(symbol="MSFT")) == ["buy-msft"]
    assert refs(await client.executions(side="SELL")) == ["sell-aapl"]
    assert refs(await client.executions(symbol="AAPL", side="BUY")) == ["buy-aapl"]
    assert refs(await client.executions(time=since)) == ["buy-msft", "sell-aapl"]
    assert refs(await client.executions(clientId=other.client_id)) == []
    [sale] = await other.executions(side="SELL", symbol="AAPL")  # any client sees them
    assert (sale.order_id, sale.client_id, sale.shares, sale.account) == (
        sold, client.client_id, Decimal(40), ACCOUNT,
    )  # fmt: skip


@at(MORNING)
async def test_pnl_and_pnl_single_follow_the_fills(client: Driver, market: Market) -> None:
    opened = client.place(Ord("BUY", "MKT"))
    [buy] = await client.wait_fills(opened, QTY)
    market.jump(market.now() + 300)
    closed = client.place(Ord("SELL", "MKT", totalQuantity=40))
    [sell] = await client.wait_fills(closed, 40)
    assert buy.commission is not None
    assert sell.commission is not None

    unit_cost = (QTY * dec(buy.price) + buy.commission) / QTY
    realized = 40 * (dec(sell.price) - unit_cost) - sell.commission
    assert buy.realized_pnl is None
    assert sell.realized_pnl == pytest.approx(float(realized), abs=1e-6)

    t_a = market.now()
    daily, unrealized, realized_today = await client.pnl()
    position, daily_1, unrealized_1, realized_1, value = await client.pnl_single(AAPL)
    t_b = market.now()
    assert position == 60
    assert cents(dec(realized_today)) == cents(dec(realized_1)) == cents(realized)

    def at_mark(t: int) -> tuple[Decimal, Decimal, Decimal]:
        worth = 60 * market.mid(t)
        open_pnl = worth - 60 * unit_cost
        return cents(open_pnl), cents(realized + open_pnl), cents(worth)

    marks = {at_mark(t) for t in range(t_a, t_b + 1)}
    assert (cents(dec(unrealized)), cents(dec(daily)), cents(60 * market.mid(t_a))) in marks or (
        cents(dec(unrealized)), cents(dec(daily)), cents(60 * market.mid(t_b)),
    ) in marks  # fmt: skip
    assert (cents(dec(unrealized_1)), cents(dec(daily_1)), cents(dec(value))) in marks
    await assert_account(client, market, [buy, sell])


@at(MORNING)
async def test_account_summary_tags_agree_with_the_position(client: Driver, market: Market) -> None:
    oid = client.place(Ord("BUY", "MKT", totalQuantity=2 * QTY))
    market.jump(market.now() + 30)
    fills = await client.wait_fills(oid, 2 * QTY)
    t_a = market.now()
    summary = await client.account_summary()
    t_b = market.now()
    assert set(ACCOUNT_TAGS) | {"AccountType"} <= set(summary)
    assert summary["AccountType"] == "INDIVIDUAL"
    cash = START_CASH - sum((f.shares * dec(f.price) + (f.commission or 0) for f in fills),
                            Decimal(0))  # fmt: skip

    def tags_at(t: int) -> dict[str, str]:
        gross = 2 * QTY * market.mid(t)
        nlv, init, maint = cash + gross, gross / 2, gross / 4
        values = {
            "NetLiquidation": nlv, "TotalCashValue": cash, "GrossPositionValue": gross,
            "InitMarginReq": init, "MaintMarginReq": maint, "AvailableFunds": nlv - init,
            "ExcessLiquidity": nlv - maint, "BuyingPower": 4 * (nlv - init),
            "EquityWithLoanValue": nlv,
        }  # fmt: skip
        return {tag: str(cents(v)) for tag, v in values.items()}

    reported = {tag: summary[tag] for tag in ACCOUNT_TAGS}
    assert reported in [tags_at(t) for t in range(t_a, t_b + 1)], reported
