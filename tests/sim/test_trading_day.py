"""A simulated trading day: three clients trade at random and the books balance to the cent.

Monday 2026-03-02 from 09:25 to 16:05 US/Eastern.  Two ib_async clients and one of IB's
official client place random orders drawn from a seeded ``random.Random`` (market, limit and
stop orders, buys and sells, DAY and GTC; stocks, the ES future and a SPY option; some
cancelled later).  At 16:05 the clock is held and everything is read back through the API:
executions with their commission reports, positions, account values, the portfolio and
reqPnL.  They must agree, to the cent, with the executions alone:

* cash: ``start - buys + sells - commissions`` (value = quantity x price x multiplier), except
  that ``TotalCashValue`` does not carry open futures' notional (``ibpilot.sim.account``): it
  adds it back, so futures reach cash only through closed trades' P&L and commissions;
* each position is the net executed quantity of its conId, at the average cost (commissions
  included) the executions give;
* realised P&L, replayed with the account's average-cost method, equals ``RealizedPnL``, the
  commission reports' realizedPNL and reqPnL's; unrealised P&L likewise;
* ``NetLiquidation`` is cash plus the positions marked at the portfolio's ``marketPrice``, and
  it is ``start + realised + unrealised`` (the day started flat, so that is also dailyPnL).

The clock runs at 1000x between orders.  Just before each planned order it is held, moved to
the order's exact second and the order is sent, so the day replays identically for a seed
(a client that the event loop stalls past a planned second sends its order a little late:
the books must balance all the same).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import ibapi.contract
import ibapi.execution
import ibapi.order
import ibapi.order_cancel
import pytest
from ib_async import IB, Contract, ExecutionFilter, Future, Option, Order, StartupFetch, Stock
from ibapi.account_summary_tags import AccountSummaryTags
from ibapi_app import IbapiClient

from ibpilot.sim import SimGateway
from ibpilot.sim.orders import OrderStatus
from ibpilot.sim.refdata import ContractQuery, Instrument

ET = ZoneInfo("US/Eastern")
ACCOUNT = "DU0000001"
START_CASH = Decimal(1_000_000)
HALF_CENT = Decimal("0.005")  # reported values are rounded to the cent
SEED = 20260302
FIRST_ORDER = datetime(2026, 3, 2, 9, 26, tzinfo=ET)
LAST_ORDER = datetime(2026, 3, 2, 15, 55, tzinfo=ET)
DAY_END = datetime(2026, 3, 2, 16, 5, tzinfo=ET)
ORDERS_PER_CLIENT = (25, 35)
# The gateway pushes account updates every 3 simulated minutes to every subscriber, and the
# fixture decodes every frame twice at teardown: one ib_async client subscribes (the other
# only syncs orders, executions and positions) and none asks for per-model updates.
FETCH_ORDERS = (
    StartupFetch.POSITIONS
    | StartupFetch.ORDERS_OPEN
    | StartupFetch.ORDERS_COMPLETE
    | StartupFetch.EXECUTIONS
)
FETCH_ACCOUNT = FETCH_ORDERS | StartupFetch.ACCOUNT_UPDATES
MIN_EXECUTIONS = 40  # the seed gives many more; fewer means the day did not trade
DAY_SPEED = 1000  # simulated seconds per real second between orders
HOLD_SPEED = 1e-9  # the clock cannot stop; at this speed it stays within the same second
LEAD_REAL = 0.1  # real seconds before a planned order at which the clock is held
UNSET_DOUBLE = 1.7976931348623157e308


# --- what is traded ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Product:
    """A contract the clients trade, with the scale of its moves and its order sizes."""

    sec_type: str
    symbol: str
    exchange: str
    month: str = ""
    strike: float = 0.0
    right: str = ""
    multiplier: str = ""
    move: float = 1.0  # a typical half-hour move, in price units
    sizes: tuple[int, int] = (1, 1)  # (lowest, highest) number of lots
    lot: int = 1


PRODUCTS = {
    "AAPL": Product("STK", "AAPL", "SMART", move=0.8, sizes=(1, 10), lot=10),
    "MSFT": Product("STK", "MSFT", "SMART", move=1.5, sizes=(1, 10), lot=5),
    "SPY": Product("STK", "SPY", "SMART", move=1.0, sizes=(1, 10), lot=10),
    "ES": Product("FUT", "ES", "CME", month="202603", multiplier="50", move=6.0, sizes=(1, 3)),
    "SPY 680C": Product(
        "OPT", "SPY", "SMART", "20260306", 680.0, "C", "100", move=0.25, sizes=(1, 5)
    ),
}
PRODUCT_WEIGHTS = {"AAPL": 2, "MSFT": 2, "SPY": 2, "ES": 2, "SPY 680C": 2}


# --- the plan ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PlannedOrder:
    """One random order; its price is set from the quote of the second it is sent."""

    at: int  # simulated epoch second
    client: int  # index into the day's clients
    product: str
    action: str
    quantity: int
    order_type: str  # MKT, LMT or STP
    # in moves: how far a limit is behind the touch (< 0: marketable), a stop beyond it
    offset: float
    tif: str
    cancel_at: int | None  # cancel then if still working


def _plan(rng: random.Random, clients: int) -> list[PlannedOrder]:
    first, last = int(FIRST_ORDER.timestamp()), int(LAST_ORDER.timestamp())
    names, weights = list(PRODUCT_WEIGHTS), list(PRODUCT_WEIGHTS.values())
    plan = []
    for client in range(clients):
        for _ in range(rng.randint(*ORDERS_PER_CLIENT)):
            at = rng.randint(first, last)
            name = rng.choices(names, weights)[0]
            product = PRODUCTS[name]
            order_type = rng.choices(["MKT", "LMT", "STP"], [1, 2, 1])[0]
            offset = rng.uniform(-0.3, 1.5) if order_type == "LMT" else rng.uniform(0.1, 1.5)
            cancel = rng.random() < 0.3 and order_type != "MKT"
            plan.append(
                PlannedOrder(
                    at=at,
                    client=client,
                    product=name,
                    action=rng.choice(["BUY", "SELL"]),
                    quantity=rng.randint(*product.sizes) * product.lot,
                    order_type=order_type,
                    offset=offset,
                    tif=rng.choices(["DAY", "GTC"], [4, 1])[0],
                    cancel_at=min(at + rng.randint(60, 5400), last) if cancel else None,
                )
            )
    return sorted(plan, key=lambda p: (p.at, p.client))


def _on_tick(price: float, tick: float) -> float:
    return float(Decimal(round(price / tick)) * Decimal(repr(tick)))


def _price(order: PlannedOrder, bid: float, ask: float, tick: float) -> float:
    """The limit or stop price of ``order`` sent when the market is ``bid``/``ask``."""
    distance = order.offset * PRODUCTS[order.product].move
    buy = order.action == "BUY"
    if order.order_type == "LMT":
        price = bid - distance if buy else ask + distance
    else:  # a stop beyond the market: above it to buy, under it to sell
        price = ask + distance if buy else bid - distance
    return max(_on_tick(price, tick), tick)


# --- executions as the clients report them ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class Exec:
    exec_id: str
    client_id: int
    perm_id: int
    con_id: int
    sec_type: str
    multiplier: Decimal
    bought: bool
    shares: Decimal
    price: Decimal
    cum_qty: Decimal
    time: datetime
    commission: Decimal  # from the commission report
    realized: Decimal | None  # the commission report's realizedPNL (None: unset)


def _money(x: float | str) -> Decimal:
    return Decimal(repr(x) if isinstance(x, float) else x)


def _exec_time(when: datetime | str) -> datetime:
    if isinstance(when, datetime):
        return when
    stamp, zone = when.rsplit(" ", 1)
    return datetime.strptime(stamp, "%Y%m%d %H:%M:%S").replace(tzinfo=ZoneInfo(zone))


def _execution(contract: Any, e: Any, report: Any) -> Exec:
    """One execution from ib_async's or ibapi's objects (both keep IB's field names)."""
    commission = getattr(report, "commission", None)
    if commission is None:  # ibapi 10.3x renamed it
        commission = report.commissionAndFees
    realized = report.realizedPNL
    return Exec(
        e.execId,
        e.clientId,
        e.permId,
        contract.conId,
        contract.secType,
        Decimal(contract.multiplier or 1),
        e.side == "BOT",
        Decimal(str(e.shares)),
        _money(e.price),
        Decimal(str(e.cumQty)),
        _exec_time(e.time),
        _money(commission),
        None if realized >= UNSET_DOUBLE else _money(realized),
    )


# --- the clients ------------------------------------------------------------------------------
class Trader(Protocol):
    client_id: int

    async def place(self, product: str, order: PlannedOrder, price: float) -> int: ...

    def cancel(self, order_id: int) -> None: ...

    async def executions(self) -> list[Exec]:
        """This client's executions (reqExecutions filtered by its client id)."""
        ...


def _async_contract(p: Product) -> Contract:
    if p.sec_type == "FUT":
        return Future(p.symbol, p.month, p.exchange)
    if p.sec_type == "OPT":
        return Option(p.symbol, p.month, p.strike, p.right, p.exchange, p.multiplier, "USD")
    return Stock(p.symbol, p.exchange, "USD")


def _order_fields(order: PlannedOrder, price: float) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "action": order.action,
        "totalQuantity": order.quantity,
        "orderType": order.order_type,
        "tif": order.tif,
        "orderRef": f"day-{order.client}-{order.at}",
    }
    if order.order_type == "LMT":
        fields["lmtPrice"] = price
    elif order.order_type == "STP":
        fields["auxPrice"] = price
    return fields


@dataclass
class AsyncTrader:
    """An ib_async client."""

    ib: IB
    client_id: int
    fetch: StartupFetch  # what connectAsync subscribes to and syncs
    contracts: dict[str, Contract] = field(default_factory=dict)
    orders: dict[int, Order] = field(default_factory=dict)

    async def start(self, port: int) -> None:
        await self.ib.connectAsync(
            "127.0.0.1",
            port,
            clientId=self.client_id,
            timeout=5,
            raiseSyncErrors=True,
            fetchFields=self.fetch,
        )
        for name, product in PRODUCTS.items():
            contract = _async_contract(product)
            await self.ib.qualifyContractsAsync(contract)
            self.contracts[name] = contract

    async def place(self, product: str, order: PlannedOrder, price: float) -> int:
        trade = self.ib.placeOrder(self.contracts[product], Order(**_order_fields(order, price)))
        self.orders[trade.order.orderId] = trade.order
        return int(trade.order.orderId)

    def cancel(self, order_id: int) -> None:
        self.ib.cancelOrder(self.orders[order_id])

    async def executions(self) -> list[Exec]:
        """ib_async keeps the commission reports on the fills it saw live (a reqExecutions
        answer about a known execId is a fresh copy without one)."""
        fills = await self.ib.reqExecutionsAsync(ExecutionFilter(clientId=self.client_id))
        live = {f.execution.execId: f.commissionReport for f in self.ib.fills()}
        assert sorted(live) == sorted(f.execution.execId for f in fills), (
            f"client {self.client_id}: the fills seen live are not those reqExecutions lists"
        )
        return [_execution(f.contract, f.execution, live[f.execution.execId]) for f in fills]

    async def every_exec_id(self) -> list[str]:
        """reqExecutions with an empty filter: the account's executions, whoever placed them."""
        return [f.execution.execId for f in await self.ib.reqExecutionsAsync(ExecutionFilter())]


def _ibapi_contract(p: Product) -> ibapi.contract.Contract:
    c = ibapi.contract.Contract()
    c.symbol, c.secType, c.exchange, c.currency = p.symbol, p.sec_type, p.exchange, "USD"
    c.lastTradeDateOrContractMonth, c.multiplier = p.month, p.multiplier
    if p.sec_type == "OPT":
        c.strike, c.right = p.strike, p.right
    return c


@dataclass
class IbapiTrader:
    """IB's official client."""

    app: IbapiClient
    client_id: int
    next_id: int = 0
    _req_id: int = 9000

    async def start(self, port: int) -> None:
        await self.app.connect(port, self.client_id)
        (self.next_id,) = await self.app.wait_for("nextValidId")

    async def place(self, product: str, order: PlannedOrder, price: float) -> int:
        o = ibapi.order.Order()
        for name, value in _order_fields(order, price).items():
            setattr(o, name, Decimal(value) if name == "totalQuantity" else value)
        order_id, self.next_id = self.next_id, self.next_id + 1
        self.app.client.placeOrder(order_id, _ibapi_contract(PRODUCTS[product]), o)
        return order_id

    def cancel(self, order_id: int) -> None:
        self.app.client.cancelOrder(order_id, ibapi.order_cancel.OrderCancel())

    async def executions(self) -> list[Exec]:
        """execDetails, each followed by its commissionAndFeesReport."""
        self._req_id += 1
        req_id, mark = self._req_id, len(self.app.calls())
        flt = ibapi.execution.ExecutionFilter()
        flt.clientId = self.client_id
        self.app.client.reqExecutions(req_id, flt)
        await self.app.wait_for("execDetailsEnd", lambda a: a[0] == req_id)
        calls = self.app.calls()[mark:]
        reports = {a[0].execId: a[0] for n, a in calls if n == "commissionAndFeesReport"}
        details = [a for n, a in calls if n == "execDetails" and a[0] == req_id]
        return [_execution(contract, e, reports[e.execId]) for _, contract, e in details]


# --- the day ----------------------------------------------------------------------------------
async def _eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


def _instrument(gateway: SimGateway, p: Product) -> Instrument:
    query = ContractQuery(
        symbol=p.symbol,
        sec_type=p.sec_type,
        last_trade_date_or_contract_month=p.month,
        strike=p.strike,
        right=p.right,
        exchange=p.exchange if p.sec_type != "STK" else "",
    )
    [inst] = gateway.refdata.resolve(query, DAY_END.date())
    return inst


@dataclass
class Day:
    """Drives the gateway's clock and the clients through the plan.  Prices are set from the
    simulator's quotes and orders are known to have arrived from its order engine: the test
    reads its results through the API only."""

    gateway: SimGateway
    traders: list[Trader]
    late: int = 0  # orders sent after their planned second (the event loop stalled)
    placed: dict[tuple[int, int], int] = field(default_factory=dict)  # (client, at) -> orderId
    instruments: dict[str, Instrument] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.instruments = {n: _instrument(self.gateway, p) for n, p in PRODUCTS.items()}

    async def run_to(self, t: int) -> int:
        """Run the clock fast until just before ``t``, then hold it at ``t`` (or at the second
        it overshot to); returns the second the clock is held at."""
        clock, engine = self.gateway.clock, self.gateway.core.desk.engine
        lead = DAY_SPEED * LEAD_REAL
        if clock.now() < t - lead:
            clock.set_speed(DAY_SPEED)
            await asyncio.sleep((t - lead - clock.now()) / DAY_SPEED)
        clock.set_speed(HOLD_SPEED)
        if int(clock.now()) < t:
            clock.jump_to(datetime.fromtimestamp(t, UTC))
        elif int(clock.now()) > t:
            self.late += 1
            t = int(clock.now())
        await _eventually(lambda: (engine.time or 0) >= t, "the order engine to catch up")
        return t

    async def place(self, order: PlannedOrder) -> None:
        trader = self.traders[order.client]
        inst = self.instruments[order.product]
        quote = self.gateway.market.quote(inst, int(self.gateway.clock.now()))
        price = _price(order, quote.bid, quote.ask, inst.min_tick)
        order_id = await trader.place(order.product, order, price)
        engine = self.gateway.core.desk.engine
        await _eventually(
            lambda: engine.order(trader.client_id, order_id) is not None, "the order to arrive"
        )
        self.placed[(order.client, order.at)] = order_id

    async def cancel(self, order: PlannedOrder) -> None:
        trader = self.traders[order.client]
        order_id = self.placed[(order.client, order.at)]
        engine = self.gateway.core.desk.engine
        working = engine.order(trader.client_id, order_id)
        if working is None or working.done or working.status == OrderStatus.PENDING_CANCEL:
            return
        trader.cancel(order_id)
        await _eventually(
            lambda: (o := engine.order(trader.client_id, order_id)) is not None and o.done,
            "the cancel",
        )

    async def run(self, plan: list[PlannedOrder]) -> None:
        events: list[tuple[int, int, PlannedOrder]] = [(p.at, 0, p) for p in plan]
        events += [(p.cancel_at, 1, p) for p in plan if p.cancel_at is not None]
        events.sort(key=lambda e: (e[0], e[1], e[2].client, e[2].at))
        for at, kind, order in events:
            await self.run_to(at)
            if kind == 0:
                await self.place(order)
            else:
                await self.cancel(order)
        await self.run_to(int(DAY_END.timestamp()))


# --- the books, replayed from the executions --------------------------------------------------
@dataclass
class Book:
    """One conId's position under the account's average-cost method."""

    quantity: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)  # signed, commissions included
    notional: Decimal = Decimal(0)  # futures: the open position's signed notional
    multiplier: Decimal = Decimal(1)
    sec_type: str = ""


@dataclass
class Replay:
    books: dict[int, Book] = field(default_factory=lambda: defaultdict(Book))
    cash: Decimal = START_CASH  # start - buys + sells - commissions
    realized: Decimal = Decimal(0)
    realized_by_exec: dict[str, Decimal | None] = field(default_factory=dict)


def _replay(executions: list[Exec]) -> Replay:
    """Apply every execution in the order the account did: by time, then by order (permId)
    within a second, then by cumulative quantity within an order."""
    r = Replay()
    for e in sorted(executions, key=lambda e: (e.time, e.perm_id, e.cum_qty)):
        b = r.books[e.con_id]
        b.multiplier, b.sec_type = e.multiplier, e.sec_type
        sign = Decimal(1) if e.bought else Decimal(-1)
        qty, fee = e.shares, e.commission
        r.cash += -sign * qty * e.price * e.multiplier - fee
        realized: Decimal | None = None
        if b.quantity * sign < 0:  # reduces the position, and maybe reverses it
            closing = min(qty, abs(b.quantity))
            fee_close = fee * closing / qty
            share = b.cost * closing / abs(b.quantity)
            realized = -sign * closing * e.price * e.multiplier - share - fee_close
            b.notional -= b.notional * closing / abs(b.quantity)
            b.cost -= share
            b.quantity += sign * closing
            if b.quantity == 0:
                b.cost = b.notional = Decimal(0)
            r.realized += realized
            qty, fee = qty - closing, fee - fee_close
        if qty > 0:
            b.cost += sign * qty * e.price * e.multiplier + fee
            if e.sec_type == "FUT":
                b.notional += sign * qty * e.price * e.multiplier
            b.quantity += sign * qty
        r.realized_by_exec[e.exec_id] = realized
    return r


# --- reading the end of the day ---------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Mark:
    position: Decimal
    market_price: Decimal
    market_value: Decimal
    average_cost: Decimal


async def _account_updates(app: IbapiClient) -> tuple[dict[str, str], dict[int, Mark]]:
    """A fresh reqAccountUpdates: the USD account values and the portfolio by conId."""
    mark = len(app.calls())
    app.client.reqAccountUpdates(True, ACCOUNT)
    await app.wait_for("accountDownloadEnd")
    calls = app.calls()[mark:]
    app.client.reqAccountUpdates(False, ACCOUNT)
    values = {a[0]: a[1] for n, a in calls if n == "updateAccountValue" and a[2] == "USD"}
    rows = [a for n, a in calls if n == "updatePortfolio"]
    portfolio = {
        contract.conId: Mark(Decimal(pos), _money(price), _money(value), _money(avg))
        for contract, pos, price, value, avg, *_ in rows
    }
    return values, portfolio


async def _summary(app: IbapiClient) -> dict[str, str]:
    mark = len(app.calls())
    app.client.reqAccountSummary(9901, "All", AccountSummaryTags.AllTags)
    await app.wait_for("accountSummaryEnd", lambda a: a[0] == 9901)
    app.client.cancelAccountSummary(9901)
    return {a[2]: a[3] for n, a in app.calls()[mark:] if n == "accountSummary" and a[0] == 9901}


async def _orders(app: IbapiClient) -> dict[int, tuple[str, Decimal]]:
    """Every order of the day by permId: (status, filled quantity), from reqCompletedOrders
    (completedStatus for the done ones) and reqAllOpenOrders (orderStatus for the others)."""
    mark = len(app.calls())
    app.client.reqCompletedOrders(False)
    await app.wait_for("completedOrdersEnd")
    app.client.reqAllOpenOrders()
    await app.wait_for("openOrderEnd")
    calls = app.calls()[mark:]
    done = {
        order.permId: (state.completedStatus, order.filledQuantity)
        for n, (_, order, state) in ((n, a) for n, a in calls if n == "completedOrder")
    }
    working = {a[5]: (a[1], a[2]) for n, a in calls if n == "orderStatus"}
    assert not set(done) & set(working), "an order is both completed and open"
    return done | working


def _near(reported: Decimal | float | str, exact: Decimal, tolerance: Decimal = HALF_CENT) -> bool:
    value = reported if isinstance(reported, Decimal) else _money(reported)
    return abs(value - exact) <= tolerance


# --- the checks -------------------------------------------------------------------------------
def _assert_orders(orders: dict[int, tuple[str, Decimal]], executions: list[Exec]) -> None:
    """Each order's filled quantity is the sum of its executions; the day filled orders and
    the clients cancelled some."""
    executed: dict[int, Decimal] = defaultdict(Decimal)
    for e in executions:
        executed[e.perm_id] += e.shares
    assert set(executed) <= set(orders), "an execution of an order nobody reports"
    assert {p: filled for p, (_, filled) in orders.items() if filled} == dict(executed)
    statuses = Counter(status for status, _ in orders.values())
    assert statuses["Filled"] > 0
    assert statuses["Cancelled by Trader"] > 0


def _assert_commission_reports(executions: list[Exec], r: Replay, ibapi_client: int) -> None:
    """Every commission report's realizedPNL is the replay's (ib_async turns IB's "unset"
    into 0; ibapi keeps it)."""
    for e in executions:
        expected = r.realized_by_exec[e.exec_id]
        if e.client_id == ibapi_client:
            assert (e.realized is None) == (expected is None), e
        assert _near(e.realized or 0, expected or Decimal(0), Decimal("1e-6")), e


def _assert_positions(positions: list[Any], r: Replay) -> None:
    """reqPositions: the net executed quantity and the average cost of every conId."""
    held = {p.contract.conId: p for p in positions if p.position}
    open_books = {c: b for c, b in r.books.items() if b.quantity}
    assert {c: Decimal(str(p.position)) for c, p in held.items()} == {
        c: b.quantity for c, b in open_books.items()
    }
    for con_id, p in held.items():
        b = open_books[con_id]
        assert math.isclose(p.avgCost, float(b.cost / b.quantity), rel_tol=1e-9), p


@dataclass(frozen=True, slots=True)
class Valuation:
    value: Decimal  # the positions at the portfolio's marketPrice
    unrealized: Decimal
    futures_notional: Decimal  # of the open futures, at their average cost


def _value(portfolio: dict[int, Mark], r: Replay) -> Valuation:
    """The open positions marked at the portfolio's prices; each portfolio row's position,
    marketValue and averageCost agree with the replay."""
    value = unrealized = notional = Decimal(0)
    for con_id, b in r.books.items():
        if not b.quantity:
            continue
        m = portfolio[con_id]
        worth = b.quantity * m.market_price * b.multiplier
        assert m.position == b.quantity
        assert _near(m.market_value, worth, Decimal("1e-6"))
        assert _near(m.average_cost, b.cost / b.quantity, Decimal("1e-6"))
        value += worth
        unrealized += worth - b.cost
        notional += b.notional if b.sec_type == "FUT" else 0
    return Valuation(value, unrealized, notional)


# --- the test ---------------------------------------------------------------------------------
@pytest.mark.timeout(90)
async def test_a_random_trading_day_of_three_clients_balances_to_the_cent(
    gateway: SimGateway,
) -> None:
    first, second = AsyncTrader(IB(), 1, FETCH_ORDERS), AsyncTrader(IB(), 2, FETCH_ACCOUNT)
    official = IbapiTrader(IbapiClient(), 3)
    traders: list[Trader] = [first, second, official]
    await first.start(gateway.port)
    await second.start(gateway.port)
    await official.start(gateway.port)
    try:
        plan = _plan(random.Random(SEED), len(traders))
        day = Day(gateway, traders)
        await day.run(plan)

        # executions: each client's own; together, the account's, each once
        own = [await t.executions() for t in traders]
        for trader, mine in zip(traders, own, strict=True):
            assert all(e.client_id == trader.client_id for e in mine)
        executions = [e for mine in own for e in mine]
        ids = [e.exec_id for e in executions]
        assert len(ids) == len(set(ids)), "an execution was reported to two clients"
        assert sorted(ids) == sorted(await first.every_exec_id())
        assert len(executions) >= MIN_EXECUTIONS, f"only {len(executions)} executions"
        assert {e.sec_type for e in executions} == {"STK", "FUT", "OPT"}
        r = _replay(executions)
        _assert_orders(await _orders(official.app), executions)
        _assert_commission_reports(executions, r, official.client_id)
        _assert_positions(await first.ib.reqPositionsAsync(), r)

        # the account: three ways of asking agree, and the books balance to the cent
        values, portfolio = await _account_updates(official.app)
        summary = await _summary(official.app)
        by_ib_async = {v.tag: v.value for v in await second.ib.accountSummaryAsync()}
        tags = ("TotalCashValue", "NetLiquidation")
        assert {t: values[t] for t in tags} == {t: summary[t] for t in tags}
        assert {t: by_ib_async[t] for t in tags} == {t: summary[t] for t in tags}
        # ib_async's account updates were last pushed with the last fill: realised P&L holds
        pushed = {v.tag: v.value for v in second.ib.accountValues() if v.currency == "USD"}
        assert pushed["RealizedPnL"] == values["RealizedPnL"]
        v = _value(portfolio, r)
        assert _near(Decimal(summary["TotalCashValue"]), r.cash + v.futures_notional)
        assert _near(Decimal(values["CashBalance"]), r.cash + v.futures_notional)
        assert _near(Decimal(values["RealizedPnL"]), r.realized)
        assert _near(Decimal(values["UnrealizedPnL"]), v.unrealized)
        netliq = Decimal(summary["NetLiquidation"])
        assert _near(netliq, r.cash + v.value)
        assert _near(netliq, START_CASH + r.realized + v.unrealized)

        # reqPnL: the same realised and unrealised P&L; the day started flat, so the daily
        # P&L is the change of the net liquidation value
        pnl = second.ib.reqPnL(ACCOUNT)
        await _eventually(lambda: not math.isnan(pnl.realizedPnL), "reqPnL")
        assert _near(_money(pnl.realizedPnL), r.realized)
        assert _near(_money(pnl.unrealizedPnL), v.unrealized)
        assert _near(_money(pnl.dailyPnL), r.cash + v.value - START_CASH)
        print(  # shown with -s: what the seed made of the day
            f"{len(plan)} orders, {len(executions)} executions, {day.late} sent late; "
            f"realized {r.realized:.2f}, unrealized {v.unrealized:.2f}, NetLiquidation {netliq}"
        )
    finally:
        first.ib.disconnect()
        second.ib.disconnect()
        await official.app.disconnect()
