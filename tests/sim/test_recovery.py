"""Recovering after a reconnect (ib_rules 2.4): a client that comes back finds every order,
execution and position of the time it was away, through the API alone.

The scenario.  Before the open (09:25 US/Eastern, the clock at real speed) client 1 places
five orders, each tagged with an ``orderRef`` (the runtime's stable tag across reconnects):

* ``es-mkt``: buy 1 ES at market outside RTH; fills at once, while the client is there;
* ``fill-lmt``: an AAPL limit that the market reaches after the open: fills while away;
* ``stp``: a SPY stop that the market crosses after the open: triggers and fills while away;
* ``far-lmt``: an MSFT buy limit 20% under the market (DAY): stays open;
* ``gtc-far``: an MSFT sell limit 20% over the market (GTC): stays open.

Limit and stop prices are read off the price model's path over the first twenty minutes, so
each order does what its name says whatever the model draws.  The client then goes away (a
clean disconnect, a dropped socket, or a gateway restart), the clock runs at 1200x to 10:00
and is held there, and a client that remembers nothing (a fresh ``IB()`` or ``EClient``)
connects with the same client id and asks: open orders, completed orders, executions with
their commission reports, positions and the account's cash.  ib_async and IB's official client
must find the same.

Also: another client id sees the orders only through reqAllOpenOrders; the returning client
can cancel and modify what it recovered; a gateway restart keeps every order, execution and
position, and nextValidId goes back only when the restart rolls ids back, in which case the
rolled-back id names a working order (the hazard of Lean #242).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import ibapi.contract
import ibapi.execution
import ibapi.order
import pytest
from ib_async import (
    IB,
    Contract,
    ExecutionFilter,
    Future,
    LimitOrder,
    MarketOrder,
    Order,
    Stock,
    StopOrder,
)
from ibapi_app import IbapiClient

from ibpilot.sim import SimGateway
from ibpilot.sim.market import MarketModel
from ibpilot.sim.refdata import ContractQuery, Instrument

ET = ZoneInfo("US/Eastern")
OPEN = datetime(2026, 3, 2, 9, 30, tzinfo=ET)
BACK = datetime(2026, 3, 2, 10, 0, tzinfo=ET)  # the client is back at (just after) this time
PLAN_UNTIL = datetime(2026, 3, 2, 9, 50, tzinfo=ET)  # prices are chosen from the path so far
CLIENT_ID = 1
ES_MONTH = "202603"
START_CASH = Decimal(1_000_000)
CENT = Decimal("0.01")
AWAY_SPEED = 1200  # simulated seconds per real second while the client is away
HOLD_SPEED = 1e-9  # the clock cannot stop; at this speed it stays within the same second

ACKED = frozenset({"PreSubmitted", "Submitted", "Filled"})
STAYS_OPEN = frozenset({"far-lmt", "gtc-far"})
FILLS_AWAY = frozenset({"fill-lmt", "stp"})
FILLS_BEFORE = frozenset({"es-mkt"})
# IB's fixed pricing: 20 shares pay the 1 USD minimum, an ES contract 0.85
COMMISSION = {"STK": Decimal("1.00"), "FUT": Decimal("0.85")}


# --- the scenario -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Intent:
    """One order of the scenario, as the client means it."""

    ref: str
    symbol: str
    sec_type: str  # STK or FUT
    action: str
    quantity: int
    order_type: str  # MKT, LMT or STP
    price: float = 0.0  # the limit (LMT) or stop (STP) price
    tif: str = "DAY"
    outside_rth: bool = False


@dataclass(frozen=True, slots=True)
class Placed:
    """An order as the gateway acknowledged it before the client went away."""

    intent: Intent
    order_id: int
    perm_id: int
    con_id: int


def _epoch(dt: datetime) -> int:
    return int(dt.timestamp())


def _on_tick(price: float, tick: float) -> float:
    return float(Decimal(round(price / tick)) * Decimal(repr(tick)))


def _instrument(gateway: SimGateway, symbol: str, sec_type: str) -> Instrument:
    query = ContractQuery(symbol=symbol, sec_type=sec_type)
    [inst] = gateway.refdata.resolve(query, OPEN.date())
    return inst


def _path(market: MarketModel, inst: Instrument) -> tuple[float, float, float, float]:
    """(bid, ask) at the open, then the lowest and highest print until PLAN_UNTIL."""
    quote = market.quote(inst, _epoch(OPEN))
    prices = [t.price for t in market.trades(inst, _epoch(OPEN) + 1, _epoch(PLAN_UNTIL))]
    assert prices, f"no {inst.symbol} prints after the open"
    return quote.bid, quote.ask, min(prices), max(prices)


def _reached_limit(market: MarketModel, inst: Instrument) -> tuple[str, float]:
    """A limit that does not trade at the open and that later prints go through."""
    bid, ask, low, high = _path(market, inst)
    tick = inst.min_tick
    if bid - low >= 4 * tick:
        return "BUY", _on_tick((bid + low) / 2, tick)
    if high - ask >= 4 * tick:
        return "SELL", _on_tick((ask + high) / 2, tick)
    raise AssertionError(f"{inst.symbol} hardly moves after the open; pick another symbol")


def _crossed_stop(market: MarketModel, inst: Instrument) -> tuple[str, float]:
    """A stop away from the market at the open that later prints cross."""
    bid, ask, low, high = _path(market, inst)
    tick = inst.min_tick
    if high - ask >= 4 * tick:
        return "BUY", _on_tick((ask + high) / 2, tick)
    if bid - low >= 4 * tick:
        return "SELL", _on_tick((bid + low) / 2, tick)
    raise AssertionError(f"{inst.symbol} hardly moves after the open; pick another symbol")


def _scenario(gateway: SimGateway) -> list[Intent]:
    market = gateway.market
    lmt_action, limit = _reached_limit(market, _instrument(gateway, "AAPL", "STK"))
    stp_action, stop = _crossed_stop(market, _instrument(gateway, "SPY", "STK"))
    msft = market.quote(_instrument(gateway, "MSFT", "STK"), _epoch(OPEN))
    return [
        Intent("es-mkt", "ES", "FUT", "BUY", 1, "MKT", outside_rth=True),
        Intent("fill-lmt", "AAPL", "STK", lmt_action, 20, "LMT", limit),
        Intent("stp", "SPY", "STK", stp_action, 20, "STP", stop),
        Intent("far-lmt", "MSFT", "STK", "BUY", 10, "LMT", _on_tick(msft.bid * 0.8, 0.01)),
        Intent(
            "gtc-far", "MSFT", "STK", "SELL", 10, "LMT", _on_tick(msft.ask * 1.2, 0.01), tif="GTC"
        ),
    ]


# --- what a client finds when it comes back ---------------------------------------------------
@dataclass(frozen=True, slots=True)
class OpenOrder:
    order_id: int
    client_id: int
    perm_id: int
    ref: str
    status: str
    con_id: int
    filled: Decimal
    remaining: Decimal


@dataclass(frozen=True, slots=True)
class CompletedOrder:
    perm_id: int
    ref: str
    status: str
    filled: Decimal
    con_id: int


@dataclass(frozen=True, slots=True)
class Exec:
    exec_id: str
    order_id: int
    client_id: int
    perm_id: int
    ref: str
    side: str
    shares: Decimal
    price: Decimal
    con_id: int
    sec_type: str
    time: datetime


@dataclass(frozen=True, slots=True)
class Recovered:
    """Everything a fresh client learnt through the API after reconnecting."""

    open_orders: list[OpenOrder]
    completed: list[CompletedOrder]
    executions: list[Exec]
    commissions: dict[str, Decimal]  # by execId, from the commission reports
    positions: dict[int, Decimal]  # by conId
    cash: Decimal  # TotalCashValue
    since_open: list[str]  # execIds of reqExecutions filtered to the time after the open


def _money(x: float | str) -> Decimal:
    return Decimal(repr(x) if isinstance(x, float) else x)


def _exec_time(when: datetime | str) -> datetime:
    """execDetails' time: ib_async parses it; ibapi leaves ``yyyymmdd hh:mm:ss US/Eastern``."""
    if isinstance(when, datetime):
        return when
    stamp, zone = when.rsplit(" ", 1)
    return datetime.strptime(stamp, "%Y%m%d %H:%M:%S").replace(tzinfo=ZoneInfo(zone))


# The converters below read ib_async's and ibapi's objects alike: both keep IB's field names.
def _open_order(contract: Any, order: Any, status: str, filled: Any, remaining: Any) -> OpenOrder:
    return OpenOrder(
        order.orderId,
        order.clientId,
        order.permId,
        order.orderRef,
        status,
        contract.conId,
        Decimal(str(filled)),
        Decimal(str(remaining)),
    )


def _completed_order(contract: Any, order: Any, status: str) -> CompletedOrder:
    filled = Decimal(str(order.filledQuantity))
    return CompletedOrder(order.permId, order.orderRef, status, filled, contract.conId)


def _execution(contract: Any, e: Any) -> Exec:
    return Exec(
        e.execId,
        e.orderId,
        e.clientId,
        e.permId,
        e.orderRef,
        e.side,
        Decimal(str(e.shares)),
        _money(e.price),
        contract.conId,
        contract.secType,
        _exec_time(e.time),
    )


async def _eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _away_until_back(gateway: SimGateway) -> None:
    """Run the clock fast until the order engine has matched up to BACK, then hold it."""
    gateway.clock.set_speed(AWAY_SPEED)
    engine = gateway.core.desk.engine
    await _eventually(lambda: (engine.time or 0) >= _epoch(BACK), "the clock to reach 10:00", 15)
    gateway.clock.set_speed(HOLD_SPEED)


# --- ib_async ---------------------------------------------------------------------------------
def _async_contract(intent: Intent) -> Contract:
    if intent.sec_type == "FUT":
        return Future(intent.symbol, ES_MONTH, "CME")
    return Stock(intent.symbol, "SMART", "USD")


def _async_order(intent: Intent) -> Order:
    extra: dict[str, Any] = {
        "tif": intent.tif,
        "outsideRth": intent.outside_rth,
        "orderRef": intent.ref,
    }
    if intent.order_type == "MKT":
        return MarketOrder(intent.action, intent.quantity, **extra)
    if intent.order_type == "LMT":
        return LimitOrder(intent.action, intent.quantity, intent.price, **extra)
    return StopOrder(intent.action, intent.quantity, intent.price, **extra)


async def _connect(gateway: SimGateway, client_id: int) -> IB:
    ib = IB()
    await ib.connectAsync(
        "127.0.0.1", gateway.port, clientId=client_id, timeout=5, raiseSyncErrors=True
    )
    return ib


async def _place_with_ib_async(ib: IB, gateway: SimGateway) -> tuple[list[Placed], set[str]]:
    """Place the scenario; returns the acknowledged orders and the execIds received live."""
    placed_trades = []
    for intent in _scenario(gateway):
        contract = _async_contract(intent)
        await ib.qualifyContractsAsync(contract)
        placed_trades.append((intent, contract, ib.placeOrder(contract, _async_order(intent))))
    await _eventually(
        lambda: all(t.order.permId and t.orderStatus.status in ACKED for _, _, t in placed_trades),
        "every order to be acknowledged",
    )
    es_trade = next(t for i, _, t in placed_trades if i.ref == "es-mkt")
    await _eventually(
        lambda: (
            es_trade.orderStatus.status == "Filled"
            and all(f.commissionReport.execId for f in es_trade.fills)
        ),
        "the ES market order's fill and commission report",
    )
    placed = [Placed(i, t.order.orderId, t.order.permId, c.conId) for i, c, t in placed_trades]
    return placed, {f.execution.execId for f in ib.fills()}


async def _recover_with_ib_async(gateway: SimGateway) -> Recovered:
    """A fresh IB(): connectAsync syncs open orders, completed orders, executions, positions
    and account updates; then completed orders and executions are asked for again."""
    ib = await _connect(gateway, CLIENT_ID)
    try:
        completed = await ib.reqCompletedOrdersAsync(apiOnly=False)
        fills = await ib.reqExecutionsAsync()
        since_open = await ib.reqExecutionsAsync(
            ExecutionFilter(clientId=CLIENT_ID, time=f"{OPEN.astimezone(UTC):%Y%m%d-%H:%M:%S}")
        )
        # the start-up sync saw the same executions; ib_async attaches commission reports to
        # the fills it first saw (a repeated reqExecutions gets fresh, report-less copies)
        synced = {f.execution.execId: f for f in ib.fills()}
        assert sorted(synced) == sorted(f.execution.execId for f in fills)
        cash = [v for v in ib.accountValues() if v.tag == "TotalCashValue" and v.currency == "USD"]
        return Recovered(
            open_orders=[
                _open_order(t.contract, t.order, s.status, s.filled, s.remaining)
                for t in ib.openTrades()
                for s in (t.orderStatus,)
            ],
            completed=[
                _completed_order(t.contract, t.order, t.orderStatus.status) for t in completed
            ],
            executions=[_execution(f.contract, f.execution) for f in fills],
            commissions={x: _money(f.commissionReport.commission) for x, f in synced.items()},
            positions={p.contract.conId: Decimal(str(p.position)) for p in ib.positions()},
            cash=Decimal(cash[0].value),
            since_open=[f.execution.execId for f in since_open],
        )
    finally:
        ib.disconnect()


# --- IB's official client ---------------------------------------------------------------------
def _ibapi_contract(intent: Intent) -> ibapi.contract.Contract:
    c = ibapi.contract.Contract()
    c.symbol, c.secType, c.currency = intent.symbol, intent.sec_type, "USD"
    if intent.sec_type == "FUT":
        c.exchange, c.lastTradeDateOrContractMonth = "CME", ES_MONTH
    else:
        c.exchange = "SMART"
    return c


def _ibapi_order(intent: Intent) -> ibapi.order.Order:
    o = ibapi.order.Order()
    o.action, o.orderType = intent.action, intent.order_type
    o.totalQuantity = Decimal(intent.quantity)
    if intent.order_type == "LMT":
        o.lmtPrice = intent.price
    elif intent.order_type == "STP":
        o.auxPrice = intent.price
    o.tif, o.outsideRth, o.orderRef = intent.tif, intent.outside_rth, intent.ref
    return o


def _args_since(app: IbapiClient, mark: int, name: str) -> list[tuple[Any, ...]]:
    """Arguments of the ``name`` callbacks recorded after the first ``mark`` callbacks."""
    return [args for n, args in app.calls()[mark:] if n == name]


def _of(order_id: int) -> Callable[[tuple[Any, ...]], bool]:
    """A callback (openOrder, orderStatus) about ``order_id``."""
    return lambda args: args[0] == order_id


def _acked(order_id: int) -> Callable[[tuple[Any, ...]], bool]:
    """An orderStatus of ``order_id`` that says the gateway has it."""
    return lambda args: args[0] == order_id and args[1] in ACKED


async def _place_with_ibapi(app: IbapiClient, gateway: SimGateway) -> tuple[list[Placed], set[str]]:
    (next_id,) = await app.wait_for("nextValidId")
    placed = []
    for order_id, intent in enumerate(_scenario(gateway), start=next_id):
        app.client.placeOrder(order_id, _ibapi_contract(intent), _ibapi_order(intent))
        status = await app.wait_for("orderStatus", _acked(order_id))
        _, contract, _, _ = await app.wait_for("openOrder", _of(order_id))
        placed.append(Placed(intent, order_id, status[5], contract.conId))
    es_id = next(p.order_id for p in placed if p.intent.ref == "es-mkt")
    await app.wait_for("orderStatus", lambda a: a[0] == es_id and a[1] == "Filled")
    live = {args[2].execId for _, args in app.calls("execDetails")}
    reports = {args[0].execId for _, args in app.calls("commissionAndFeesReport")}
    assert live, "the ES market order filled while the client was there"
    assert live <= reports
    return placed, live


async def _recover_with_ibapi(gateway: SimGateway) -> Recovered:
    """A fresh EClient asks reqOpenOrders, reqCompletedOrders, reqExecutions, reqPositions and
    reqAccountSummary, each answer read between its request and its end marker."""
    app = IbapiClient()
    await app.connect(gateway.port, CLIENT_ID)
    try:
        await app.wait_for("nextValidId")
        mark = len(app.calls())
        app.client.reqOpenOrders()
        await app.wait_for("openOrderEnd")
        statuses = {a[0]: a for a in _args_since(app, mark, "orderStatus")}
        open_orders = [
            _open_order(contract, order, state.status, *statuses[order_id][2:4])
            for order_id, contract, order, state in _args_since(app, mark, "openOrder")
        ]

        mark = len(app.calls())
        app.client.reqCompletedOrders(False)
        await app.wait_for("completedOrdersEnd")
        completed = [
            _completed_order(contract, order, state.status)
            for contract, order, state in _args_since(app, mark, "completedOrder")
        ]

        mark = len(app.calls())
        app.client.reqExecutions(7001, ibapi.execution.ExecutionFilter())
        await app.wait_for("execDetailsEnd", lambda a: a[0] == 7001)
        executions = [
            _execution(contract, e)
            for req_id, contract, e in _args_since(app, mark, "execDetails")
            if req_id == 7001
        ]
        reports = _args_since(app, mark, "commissionAndFeesReport")
        commissions = {r.execId: _money(r.commissionAndFees) for (r,) in reports}
        assert len(commissions) == len(reports)

        mark = len(app.calls())
        since = ibapi.execution.ExecutionFilter()
        since.clientId, since.time = CLIENT_ID, f"{OPEN:%Y%m%d %H:%M:%S} US/Eastern"
        app.client.reqExecutions(7003, since)
        await app.wait_for("execDetailsEnd", lambda a: a[0] == 7003)
        since_open = [e.execId for req_id, _, e in _args_since(app, mark, "execDetails")]

        mark = len(app.calls())
        app.client.reqPositions()
        await app.wait_for("positionEnd")
        positions = {c.conId: q for _, c, q, _ in _args_since(app, mark, "position")}

        mark = len(app.calls())
        app.client.reqAccountSummary(7002, "All", "TotalCashValue")
        await app.wait_for("accountSummaryEnd", lambda a: a[0] == 7002)
        summary = _args_since(app, mark, "accountSummary")
        [cash] = [a[3] for a in summary if a[2] == "TotalCashValue"]
        app.client.cancelAccountSummary(7002)
        return Recovered(
            open_orders, completed, executions, commissions, positions, Decimal(cash), since_open
        )
    finally:
        await app.disconnect()


# --- the checks, the same whichever client recovered ------------------------------------------
def _assert_open_orders(placed: dict[str, Placed], got: Recovered) -> None:
    refs = Counter(o.ref for o in got.open_orders)
    assert refs == Counter(STAYS_OPEN), f"open orders after reconnecting: {refs}"
    for o in got.open_orders:
        p = placed[o.ref]
        assert (o.order_id, o.client_id, o.perm_id, o.con_id) == (
            p.order_id, CLIENT_ID, p.perm_id, p.con_id,
        )  # fmt: skip
        quantity = Decimal(p.intent.quantity)
        assert (o.status, o.filled, o.remaining) == ("Submitted", Decimal(0), quantity)


def _assert_executions(placed: dict[str, Placed], live: set[str], got: Recovered) -> None:
    by_perm = {p.perm_id: p for p in placed.values()}
    ids = [e.exec_id for e in got.executions]
    assert len(ids) == len(set(ids)), "an execution came back twice"
    assert live <= set(ids), "a fill seen before leaving is missing"
    assert set(got.commissions) == set(ids), "every execution has exactly one commission report"
    shares: dict[str, Decimal] = defaultdict(Decimal)
    fees: dict[str, Decimal] = defaultdict(Decimal)
    for e in got.executions:
        p = by_perm[e.perm_id]
        i = p.intent
        assert (e.ref, e.order_id, e.client_id, e.con_id) == (
            i.ref, p.order_id, CLIENT_ID, p.con_id,
        )  # fmt: skip
        assert e.side == ("BOT" if i.action == "BUY" else "SLD")
        if i.ref in FILLS_AWAY:
            assert e.time >= OPEN, f"{i.ref} filled at {e.time}, before the client left"
            assert e.exec_id not in live
        if i.order_type == "LMT":
            assert e.price <= _money(i.price) if i.action == "BUY" else e.price >= _money(i.price)
        assert e.price > 0
        shares[i.ref] += e.shares
        fees[i.ref] += got.commissions[e.exec_id]
    filled = FILLS_AWAY | FILLS_BEFORE
    assert dict(shares) == {r: placed[r].intent.quantity for r in filled}
    assert dict(fees) == {r: COMMISSION[placed[r].intent.sec_type] for r in filled}


def _assert_completed(placed: dict[str, Placed], got: Recovered) -> None:
    perms = [c.perm_id for c in got.completed]
    assert len(perms) == len(set(perms)), "a completed order came back twice"
    assert not set(perms) & {o.perm_id for o in got.open_orders}
    by_perm = {c.perm_id: c for c in got.completed}
    for ref in FILLS_AWAY | FILLS_BEFORE:
        p = placed[ref]
        c = by_perm[p.perm_id]
        assert (c.ref, c.status, c.filled, c.con_id) == (
            ref, "Filled", Decimal(p.intent.quantity), p.con_id,
        )  # fmt: skip


def _assert_books(got: Recovered) -> None:
    """Positions are the executions' net; cash moved by the stock trades and every commission
    (futures notional is not cash, see ibpilot.sim.account)."""
    net: dict[int, Decimal] = defaultdict(Decimal)
    cash = START_CASH - sum(got.commissions.values(), Decimal(0))
    for e in got.executions:
        signed = e.shares if e.side == "BOT" else -e.shares
        net[e.con_id] += signed
        if e.sec_type != "FUT":
            cash -= signed * e.price
    assert {c: q for c, q in got.positions.items() if q} == {c: q for c, q in net.items() if q}
    assert got.cash == cash.quantize(CENT)


def _assert_recovered(placed_list: Sequence[Placed], live: set[str], got: Recovered) -> None:
    placed = {p.intent.ref: p for p in placed_list}
    assert len(placed) == 5
    away = sorted(e.exec_id for e in got.executions if e.ref in FILLS_AWAY)
    assert not live & set(away)
    assert sorted(got.since_open) == away, "reqExecutions since the open: the fills while away"
    _assert_open_orders(placed, got)
    _assert_executions(placed, live, got)
    _assert_completed(placed, got)
    _assert_books(got)


# --- the tests --------------------------------------------------------------------------------
@pytest.mark.parametrize("leave", ["disconnect", "dropped socket"])
async def test_ib_async_recovers_every_order_execution_and_position_after_being_away(
    gateway: SimGateway, leave: str
) -> None:
    ib = await _connect(gateway, CLIENT_ID)
    placed, live = await _place_with_ib_async(ib, gateway)
    if leave == "disconnect":
        ib.disconnect()
    else:
        assert gateway.faults.drop_all() == 1
        await _eventually(lambda: not ib.isConnected(), "ib_async to see the drop")
    await _eventually(lambda: not gateway.core.sessions, "the gateway to release the client")
    await _away_until_back(gateway)

    got = await _recover_with_ib_async(gateway)

    _assert_recovered(placed, live, got)


@pytest.mark.parametrize("leave", ["disconnect", "dropped socket"])
async def test_official_client_recovers_every_order_execution_and_position_after_being_away(
    gateway: SimGateway, leave: str
) -> None:
    app = IbapiClient()
    await app.connect(gateway.port, CLIENT_ID)
    try:
        placed, live = await _place_with_ibapi(app, gateway)
        if leave == "dropped socket":
            assert gateway.faults.drop_all() == 1
            await app.wait_for("connectionClosed")
    finally:
        await app.disconnect()
    await _eventually(lambda: not gateway.core.sessions, "the gateway to release the client")
    await _away_until_back(gateway)

    got = await _recover_with_ibapi(gateway)

    _assert_recovered(placed, live, got)


async def test_ib_async_and_the_official_client_recover_the_same_state(
    gateway: SimGateway,
) -> None:
    ib = await _connect(gateway, CLIENT_ID)
    await _place_with_ib_async(ib, gateway)
    ib.disconnect()
    await _eventually(lambda: not gateway.core.sessions, "the gateway to release the client")
    await _away_until_back(gateway)

    by_ib_async = await _recover_with_ib_async(gateway)
    await _eventually(lambda: not gateway.core.sessions, "the gateway to release the client")
    by_ibapi = await _recover_with_ibapi(gateway)

    assert sorted(by_ib_async.open_orders, key=lambda o: o.perm_id) == sorted(
        by_ibapi.open_orders, key=lambda o: o.perm_id
    )
    assert sorted(by_ib_async.completed, key=lambda c: c.perm_id) == sorted(
        by_ibapi.completed, key=lambda c: c.perm_id
    )
    assert sorted(by_ib_async.executions, key=lambda e: e.exec_id) == sorted(
        by_ibapi.executions, key=lambda e: e.exec_id
    )
    assert by_ib_async.commissions == by_ibapi.commissions
    assert by_ib_async.positions == by_ibapi.positions
    assert by_ib_async.cash == by_ibapi.cash
    assert sorted(by_ib_async.since_open) == sorted(by_ibapi.since_open)


async def test_the_returning_client_can_cancel_and_modify_the_orders_it_recovered(
    gateway: SimGateway,
) -> None:
    first = await _connect(gateway, CLIENT_ID)
    placed, _ = await _place_with_ib_async(first, gateway)
    first.disconnect()
    await _eventually(lambda: not gateway.core.sessions, "the gateway to release the client")
    await _away_until_back(gateway)

    ib = await _connect(gateway, CLIENT_ID)
    try:
        trades = {t.order.orderRef: t for t in ib.openTrades()}
        far, gtc = trades["far-lmt"], trades["gtc-far"]
        ib.cancelOrder(far.order)
        await _eventually(lambda: far.orderStatus.status == "Cancelled", "the cancel")
        new_price = _on_tick(float(gtc.order.lmtPrice or 0) * 1.01, 0.01)
        gtc.order.lmtPrice = new_price
        ib.placeOrder(gtc.contract, gtc.order)  # a modify: same id, same client id
        await ib.reqOpenOrdersAsync()
        assert [(t.order.orderRef, t.order.lmtPrice) for t in ib.openTrades()] == [
            ("gtc-far", new_price)
        ]
        # a new order gets an id above every recovered one and is accepted (no error 103)
        aapl = Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(aapl)
        fresh = ib.placeOrder(aapl, LimitOrder("BUY", 1, 1.0, orderRef="after"))
        await _eventually(lambda: fresh.orderStatus.status == "Submitted", "the new order")
        assert fresh.order.orderId > max(p.order_id for p in placed)
    finally:
        ib.disconnect()


async def test_another_client_id_sees_the_orders_only_with_req_all_open_orders(
    gateway: SimGateway,
) -> None:
    first = await _connect(gateway, CLIENT_ID)
    placed, _ = await _place_with_ib_async(first, gateway)
    first.disconnect()
    await _away_until_back(gateway)

    other = await _connect(gateway, CLIENT_ID + 1)
    try:
        assert other.openTrades() == []  # the start-up reqOpenOrders: this client's own only
        assert await other.reqOpenOrdersAsync() == []
        every = await other.reqAllOpenOrdersAsync()
    finally:
        other.disconnect()

    by_ref = {p.intent.ref: p for p in placed}
    got = sorted(
        (t.order.orderRef, t.order.orderId, t.order.clientId, t.order.permId, t.orderStatus.status)
        for t in every
    )
    assert got == sorted(
        (r, by_ref[r].order_id, CLIENT_ID, by_ref[r].perm_id, "Submitted") for r in STAYS_OPEN
    )


@pytest.mark.parametrize("rollback_ids", [0, 3])
async def test_orders_executions_and_positions_survive_a_gateway_restart(
    gateway: SimGateway, rollback_ids: int
) -> None:
    ib = await _connect(gateway, CLIENT_ID)
    placed, live = await _place_with_ib_async(ib, gateway)
    watcher = IbapiClient()  # another client id, to read nextValidId before the restart
    await watcher.connect(gateway.port, CLIENT_ID + 1)
    (before,) = await watcher.wait_for("nextValidId")
    assert before == max(p.order_id for p in placed) + 1

    await gateway.faults.restart(down=0.5, rollback_ids=rollback_ids)
    await watcher.wait_for("connectionClosed")
    await watcher.disconnect()
    await _eventually(lambda: not ib.isConnected(), "ib_async to see the restart")
    await _away_until_back(gateway)

    got = await _recover_with_ib_async(gateway)
    _assert_recovered(placed, live, got)
    after_restart = IbapiClient()
    await after_restart.connect(gateway.port, CLIENT_ID + 1)
    try:
        (after,) = await after_restart.wait_for("nextValidId")
    finally:
        await after_restart.disconnect()
    assert after == before - rollback_ids


async def test_after_an_id_rollback_next_valid_id_can_name_a_working_order(
    gateway: SimGateway,
) -> None:
    """Lean #242: after a restart nextValidId went back and the ids were issued again.  Sent
    as is, a new order with such an id lands on the working order that holds it (here: a
    modify that changes the contract, refused with 105); a client must take ids above every
    id it saw in openOrder, as ib_async does."""
    ib = await _connect(gateway, CLIENT_ID)
    placed, _ = await _place_with_ib_async(ib, gateway)
    gtc = next(p for p in placed if p.intent.ref == "gtc-far")
    assert gtc.order_id == max(p.order_id for p in placed)  # the last one placed
    await gateway.faults.restart(down=0.2, rollback_ids=1)
    await _eventually(lambda: not ib.isConnected(), "ib_async to see the restart")

    app = IbapiClient()
    await app.connect(gateway.port, CLIENT_ID)
    try:
        (next_id,) = await app.wait_for("nextValidId")
        assert next_id == gtc.order_id
        reused = Intent("reused-id", "AAPL", "STK", "BUY", 1, "LMT", 1.0)
        app.client.placeOrder(next_id, _ibapi_contract(reused), _ibapi_order(reused))
        assert "does not match" in await app.wait_error(next_id, 105)
        app.client.reqOpenOrders()
        await app.wait_for("openOrderEnd")
        [(_, contract, still, _)] = [a for _, a in app.calls("openOrder") if a[0] == gtc.order_id]
        assert (contract.conId, still.orderRef, still.permId) == (
            gtc.con_id, "gtc-far", gtc.perm_id,
        )  # fmt: skip
    finally:
        await app.disconnect()

    await _eventually(lambda: not gateway.core.sessions, "the gateway to release the client")
    fresh = await _connect(gateway, CLIENT_ID)
    try:
        assert fresh.client.getReqId() > gtc.order_id  # raised past every open order's id
    finally:
        fresh.disconnect()
