"""The IB adapter against the simulated gateway over real sockets (127.0.0.1, bounded waits).

The ``gateway`` fixture (tests/conftest.py) wire-checks every frame the simulator sent with
both real decoders at teardown; the ``sim`` marker sets its start time and speed.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from ibpilot.broker._ibkr_state import (
    Backoff,
    FarmKind,
    FarmState,
    IllegalTransition,
    Trigger,
    farm_status,
    next_state,
)
from ibpilot.broker.base import (
    Bar,
    BrokerConnectError,
    BrokerError,
    BrokerEvent,
    BrokerOrderStatus,
    BrokerRequestError,
    ConnectionEvent,
    ConnectionState,
    Contract,
    ContractRef,
    ExecutionReport,
    OrderReport,
    OrderRequest,
    Quote,
    Side,
)
from ibpilot.broker.ibkr import IbkrBroker
from ibpilot.config import AdapterConfig
from ibpilot.errors import ErrorName
from ibpilot.sim import SimGateway

OPEN = datetime.fromisoformat("2026-03-02T10:00:00-05:00")  # a Monday, market open
AAPL = 265598
E = TypeVar("E", bound=BrokerEvent)


def adapter(port: int, **extra: Any) -> AdapterConfig:
    data: dict[str, Any] = {
        "credentials": {"host": "127.0.0.1", "port": port, "client_id": 1},
        "environment": "paper",
        "trading_pair": "AAPL",
        "connect_timeout_s": 3,
    }
    data.update(extra)
    return AdapterConfig.model_validate(data)


def make_broker(port: int, **kwargs: Any) -> IbkrBroker:
    extra = kwargs.pop("adapter_extra", {})
    kwargs.setdefault("backoff", Backoff(base=0.05, cap=0.2, rng=random.Random(7)))
    return IbkrBroker(adapter(port, **extra), **kwargs)


class Recorder:
    """Drains a broker's event stream into a list; waits are bounded."""

    def __init__(self, broker: IbkrBroker) -> None:
        self.events: list[BrokerEvent] = []
        self._stream = broker.events()
        self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        async for event in self._stream:
            self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    async def wait_for(
        self, kind: type[E], check: Callable[[E], bool] = lambda e: True, timeout: float = 5.0
    ) -> E:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if isinstance(event, kind) and check(event):
                    return event
            if time.monotonic() > deadline:
                seen = [type(e).__name__ for e in self.events][-20:]
                raise AssertionError(f"no {kind.__name__} matching in {timeout} s; last: {seen}")
            await asyncio.sleep(0.01)

    def connection_states(self) -> list[ConnectionState]:
        return [e.state for e in self.of(ConnectionEvent)]

    async def close(self) -> None:
        self._stream.close()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def broker(gateway: SimGateway) -> AsyncIterator[IbkrBroker]:
    b = make_broker(gateway.port)
    await b.connect()
    yield b
    await b.disconnect()


@pytest.fixture
async def events(broker: IbkrBroker) -> AsyncIterator[Recorder]:
    rec = Recorder(broker)
    yield rec
    await rec.close()


async def aapl(broker: IbkrBroker) -> Contract:
    return await broker.resolve(ContractRef("AAPL"))


def order(contract: Contract, intent: str, **kw: Any) -> OrderRequest:
    return OrderRequest(
        intent, contract, kw.pop("side", Side.BUY), Decimal(kw.pop("qty", 10)), **kw
    )


def far_limit(contract: Contract, intent: str) -> OrderRequest:
    return order(contract, intent, order_type="LMT", limit_price=Decimal("1.00"), tif="GTC")


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


# --- connecting ---------------------------------------------------------------------------------


async def test_connect_reports_the_account_server_version_and_farms(gateway: SimGateway) -> None:
    b = make_broker(gateway.port)
    info = await b.connect()
    try:
        assert info.accounts == ("DU0000001",)
        assert (info.server_version, info.port, info.client_id) == (178, gateway.port, 1)
        assert info.connected_at.tzinfo is not None
        assert b.state is ConnectionState.CONNECTED
        assert {(f.kind, f.farm, f.state) for f in b.farms} == {
            (FarmKind.MARKET, "usfarm", FarmState.OK),
            (FarmKind.HMDS, "ushmds", FarmState.OK),
            (FarmKind.SECDEF, "secdefnj", FarmState.OK),
        }
    finally:
        await b.disconnect()
    assert b.state is ConnectionState.DISCONNECTED


async def test_nothing_listening_is_connection_refused_naming_the_port() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    b = make_broker(port)
    with pytest.raises(BrokerConnectError) as caught:
        await b.connect()
    assert caught.value.entry.name is ErrorName.CONNECTION_REFUSED
    assert f"127.0.0.1:{port} refused the connection" in str(caught.value)
    assert "not a default port" in str(caught.value)
    assert b.state is ConnectionState.DISCONNECTED


async def test_client_id_in_use_fails_at_once_not_after_the_timeout(gateway: SimGateway) -> None:
    gateway.faults.hold_client_id(1)
    b = make_broker(gateway.port, adapter_extra={"connect_timeout_s": 20})
    started = time.monotonic()
    with pytest.raises(BrokerConnectError) as caught:
        await b.connect()
    assert time.monotonic() - started < 1.5
    assert caught.value.entry.name is ErrorName.CLIENT_ID_IN_USE
    assert "client id 1 is already in use" in str(caught.value)


async def test_half_open_gateway_is_handshake_timeout(gateway: SimGateway) -> None:
    gateway.faults.half_open(True)
    b = make_broker(gateway.port, adapter_extra={"connect_timeout_s": 0.5})
    started = time.monotonic()
    with pytest.raises(BrokerConnectError) as caught:
        await b.connect()
    assert 0.4 < time.monotonic() - started < 2.0
    assert caught.value.entry.name is ErrorName.HANDSHAKE_TIMEOUT
    assert "accepted the connection but never answered" in caught.value.detail


async def test_a_live_account_on_a_paper_config_is_refused_before_any_request() -> None:
    sent: list[bytes] = []
    async with SimGateway(
        "127.0.0.1", 0, start=OPEN, account="U1234567", wire_tap=lambda sv, d: sent.append(d)
    ) as gw:
        b = make_broker(gw.port)
        with pytest.raises(BrokerConnectError) as caught:
            await b.connect()
        assert caught.value.entry.name is ErrorName.WRONG_ENVIRONMENT
        assert caught.value.info is not None
        assert caught.value.info.accounts == ("U1234567",)
        assert "U1234567" in caught.value.detail
        await eventually(lambda: not gw.core.sessions)
    # what the gateway sent: managedAccounts (15), nextValidId (9), farm notices (4) only
    msg_ids = {frame[4:].split(b"\0", 1)[0] for frame in sent}
    assert msg_ids <= {b"15", b"9", b"4"}


async def test_a_live_config_against_a_paper_account_is_wrong_environment(
    gateway: SimGateway,
) -> None:
    b = make_broker(gateway.port, adapter_extra={"environment": "live"})
    with pytest.raises(BrokerConnectError) as caught:
        await b.connect()
    assert caught.value.entry.name is ErrorName.WRONG_ENVIRONMENT
    assert "DU0000001" in caught.value.detail


# --- contracts and history ----------------------------------------------------------------------


async def test_resolve_gives_one_contract_with_decimal_tick_and_time_zone(
    broker: IbkrBroker,
) -> None:
    c = await aapl(broker)
    assert (c.con_id, c.symbol, c.sec_type, c.primary_exchange, c.currency) == (
        AAPL,
        "AAPL",
        "STK",
        "NASDAQ",
        "USD",
    )
    assert c.min_tick == Decimal("0.01")
    assert c.multiplier == 1
    assert c.time_zone == "US/Eastern"
    es = await broker.resolve(
        ContractRef("ES", "FUT", "CME", last_trade_date_or_contract_month="202603")
    )
    assert es.multiplier == Decimal(50)
    assert es.min_tick == Decimal("0.25")


async def test_unknown_symbol_is_no_security_definition(broker: IbkrBroker) -> None:
    with pytest.raises(BrokerRequestError) as caught:
        await broker.resolve(ContractRef("NOSUCHSYM"))
    assert caught.value.entry.name is ErrorName.NO_SECURITY_DEFINITION
    assert caught.value.code == 200


async def test_a_future_without_its_month_is_ambiguous_listing_candidates(
    broker: IbkrBroker,
) -> None:
    with pytest.raises(BrokerRequestError) as caught:
        await broker.resolve(ContractRef("ES", "FUT", "CME"))
    assert caught.value.entry.name is ErrorName.AMBIGUOUS_CONTRACT
    assert caught.value.detail.count("conId ") >= 2


async def test_history_gives_decimal_bars_intraday_and_daily(broker: IbkrBroker) -> None:
    c = await aapl(broker)
    end = datetime(2026, 2, 27, 21, 0, tzinfo=UTC)  # 16:00 US/Eastern
    bars = await broker.history(c, end=end, duration="1800 S", bar_size="5 mins")
    assert len(bars) == 6
    assert bars[0].time == datetime(2026, 2, 27, 20, 30, tzinfo=UTC)
    assert all(isinstance(b.close, Decimal) and b.low <= b.close <= b.high for b in bars)
    assert all(b.volume > 0 for b in bars)
    daily = await broker.history(c, end=end, duration="5 D", bar_size="1 day")
    # a daily bar starts at midnight in the exchange's time zone (05:00 UTC in winter)
    assert [b.time for b in daily][-1] == datetime(2026, 2, 27, 5, 0, tzinfo=UTC)
    mids = await broker.history(
        c, end=end, duration="1800 S", bar_size="5 mins", what_to_show="MIDPOINT"
    )
    assert all(b.volume == 0 for b in mids)  # IB's -1: no volume


class FakeTime:
    """monotonic() and sleep() for a broker: sleeping advances the clock at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def waits(self) -> list[float]:
        """The sleeps of IB's history pacing rules (seconds), not the message pacing's."""
        return [s for s in self.sleeps if s >= 0.5]


async def test_history_waits_as_ibs_pacing_rules_say_then_refuses_beyond_its_bound(
    gateway: SimGateway,
) -> None:
    fake = FakeTime()
    b = make_broker(gateway.port, monotonic=fake.monotonic, sleep=fake.sleep, history_max_wait=20)
    await b.connect()
    try:
        c = await aapl(b)
        end = datetime(2026, 2, 27, 21, 0, tzinfo=UTC)
        await b.history(c, end=end, duration="1800 S", bar_size="1 min")
        assert fake.waits() == []  # (the 40/s message pacing sleeps a few ms: not counted)
        first_sent = fake.now
        await b.history(c, end=end, duration="1800 S", bar_size="1 min")  # identical: 15 s
        assert fake.now - first_sent == pytest.approx(15.05, abs=0.03)  # 15 s rule + margin
        b2 = make_broker(
            gateway.port,
            adapter_extra={
                "credentials": {"host": "127.0.0.1", "port": gateway.port, "client_id": 2}
            },
            monotonic=fake.monotonic,
            sleep=fake.sleep,
            history_max_wait=5,
        )
        await b2.connect()
        try:
            await b2.history(c, end=end, duration="1800 S", bar_size="1 min")
            before = len(fake.waits())
            with pytest.raises(BrokerRequestError) as caught:
                await b2.history(c, end=end, duration="1800 S", bar_size="1 min")
            assert caught.value.entry.name is ErrorName.PACING_VIOLATION
            assert len(fake.waits()) == before  # refused at once, no waiting
        finally:
            await b2.disconnect()
    finally:
        await b.disconnect()


# --- market data --------------------------------------------------------------------------------


@pytest.mark.sim(start=OPEN, speed=20)
async def test_subscribe_streams_quotes_and_five_second_bars(
    broker: IbkrBroker, events: Recorder
) -> None:
    c = await aapl(broker)
    await broker.subscribe(c)
    await broker.subscribe(c)  # idempotent
    quote = await events.wait_for(Quote, lambda q: q.bid is not None and q.ask is not None)
    assert quote.con_id == AAPL
    assert quote.bid is not None
    assert quote.ask is not None
    assert quote.bid < quote.ask
    bar = await events.wait_for(Bar)
    assert bar.con_id == AAPL
    assert bar.time.timestamp() % 5 == 0
    await broker.unsubscribe(c)
    await asyncio.sleep(0.2)
    count = len(events.of(Quote))
    await asyncio.sleep(0.5)
    assert len(events.of(Quote)) == count


async def test_subscriptions_beyond_the_line_budget_are_refused_locally(
    gateway: SimGateway,
) -> None:
    b = make_broker(gateway.port, market_data_lines=3)
    await b.connect()
    try:
        c = await aapl(b)
        await b.subscribe(c)  # two lines: quotes and bars
        spy = await b.resolve(ContractRef("SPY"))
        with pytest.raises(BrokerRequestError) as caught:
            await b.subscribe(spy)
        assert caught.value.entry.name is ErrorName.MAX_TICKERS
        assert "2 of 3 are in use" in caught.value.detail
        await b.unsubscribe(c)
        await b.subscribe(spy)
    finally:
        await b.disconnect()


# --- orders ---------------------------------------------------------------------------------------


@pytest.mark.sim(start=OPEN)
async def test_place_sends_the_intent_as_order_ref_and_reports_the_fill_then_its_commission(
    gateway: SimGateway, broker: IbkrBroker, events: Recorder
) -> None:
    c = await aapl(broker)
    order_id = await broker.place(order(c, "intent-buy-1"))
    filled = await events.wait_for(OrderReport, lambda r: r.status is BrokerOrderStatus.FILLED)
    working = gateway.core.desk.engine.order(1, order_id)
    assert working is not None
    assert (working.spec.order_ref, working.spec.account) == ("intent-buy-1", "DU0000001")
    assert (filled.intent_id, filled.order_id, filled.filled) == ("intent-buy-1", order_id, 10)
    assert filled.avg_fill_price is not None
    assert filled.avg_fill_price > 0
    with_fee = await events.wait_for(ExecutionReport, lambda x: x.commission is not None)
    fills = events.of(ExecutionReport)
    assert fills[0].commission is None  # the fill first, then the same exec id with commission
    assert fills[0].exec_id == with_fee.exec_id
    assert (with_fee.intent_id, with_fee.side, with_fee.quantity) == ("intent-buy-1", Side.BUY, 10)
    assert with_fee.commission == Decimal("1")
    with pytest.raises(ValueError, match="already placed"):
        await broker.place(order(c, "intent-buy-1"))


@pytest.mark.sim(start=OPEN)
async def test_cancel_finds_the_order_by_intent(
    broker: IbkrBroker, events: Recorder, gateway: SimGateway
) -> None:
    c = await aapl(broker)
    await broker.place(far_limit(c, "intent-rest"))
    await events.wait_for(OrderReport, lambda r: r.status is BrokerOrderStatus.SUBMITTED)
    await broker.cancel("intent-rest")
    done = await events.wait_for(OrderReport, lambda r: r.status is BrokerOrderStatus.CANCELLED)
    assert done.intent_id == "intent-rest"
    error = await events.wait_for(BrokerError, lambda e: e.code == 202)
    assert (error.name, error.intent_id, error.terminal) == ("ORDER_CANCELLED", "intent-rest", True)
    assert gateway.core.desk.engine.open_orders() == []
    with pytest.raises(BrokerRequestError) as caught:
        await broker.cancel("never-placed")
    assert caught.value.entry.name is ErrorName.ORDER_NOT_FOUND


@pytest.mark.sim(start=OPEN)
async def test_open_orders_executions_positions_and_account_for_reconciliation(
    broker: IbkrBroker, events: Recorder
) -> None:
    c = await aapl(broker)
    before = OPEN - timedelta(hours=1)
    await broker.place(order(c, "intent-fill", qty=7))
    await broker.place(far_limit(c, "intent-open"))
    await events.wait_for(ExecutionReport, lambda x: x.commission is not None)
    await events.wait_for(OrderReport, lambda r: r.intent_id == "intent-open")
    [open_order] = await broker.open_orders()
    assert (open_order.intent_id, open_order.status, open_order.remaining) == (
        "intent-open",
        BrokerOrderStatus.SUBMITTED,
        10,
    )
    [fill] = await broker.executions(since=before)
    assert (fill.intent_id, fill.quantity, fill.commission) == ("intent-fill", 7, Decimal(1))
    assert await broker.executions(since=datetime(2030, 1, 1, tzinfo=UTC)) == []
    [position] = await broker.positions()
    assert (position.con_id, position.quantity) == (AAPL, 7)
    assert position.avg_cost > 0
    account = await broker.account()
    assert account.account == "DU0000001"
    assert account.net_liquidation > 900_000
    assert account.cash < account.net_liquidation
    assert account.buying_power > 0
    completed = await broker.completed_orders()
    assert [(r.intent_id, r.status) for r in completed] == [
        ("intent-fill", BrokerOrderStatus.FILLED)
    ]


@pytest.mark.sim(start=OPEN)
async def test_orders_are_spaced_by_rate_limit_ms(gateway: SimGateway) -> None:
    b = make_broker(gateway.port, adapter_extra={"rate_limit_ms": 300})
    await b.connect()
    try:
        c = await aapl(b)
        started = time.monotonic()
        await b.place(far_limit(c, "spaced-1"))
        await b.place(far_limit(c, "spaced-2"))
        await b.place(far_limit(c, "spaced-3"))
        assert time.monotonic() - started >= 0.6
        await b.cancel("spaced-1")  # cancels are not held back
        assert time.monotonic() - started < 0.8
    finally:
        await b.disconnect()


@pytest.mark.sim(start=OPEN)
async def test_errors_follow_the_catalogue_not_ib_asyncs_synthetic_cancel(
    broker: IbkrBroker, events: Recorder
) -> None:
    c = await aapl(broker)
    order_id = await broker.place(far_limit(c, "intent-modify"))
    await events.wait_for(OrderReport, lambda r: r.status is BrokerOrderStatus.SUBMITTED)
    # IB's answer to a refused modify; ib_async's wrapper marks the trade Cancelled on it
    broker.ib.wrapper.error(
        order_id, 462, "Order modify failed. Cannot change to the new Time in Force.DAY", ""
    )
    error = await events.wait_for(BrokerError, lambda e: e.code == 462)
    assert (error.name, error.terminal, error.intent_id) == (
        "MODIFY_REFUSED",
        False,
        "intent-modify",
    )
    await asyncio.sleep(0.05)
    statuses = [r.status for r in events.of(OrderReport) if r.intent_id == "intent-modify"]
    assert BrokerOrderStatus.CANCELLED not in statuses
    [still_open] = await broker.open_orders()
    assert still_open.status is BrokerOrderStatus.SUBMITTED


async def test_write_access_probe_never_places_an_order(
    gateway: SimGateway, broker: IbkrBroker
) -> None:
    await broker.check_write_access()
    gateway.faults.read_only(True)
    with pytest.raises(BrokerRequestError) as caught:
        await broker.check_write_access()
    assert caught.value.entry.name is ErrorName.PERMISSION_DENIED
    assert gateway.core.desk.engine.max_order_id() == 0


# --- the connection supervisor --------------------------------------------------------------


async def _quotes_after(events: Recorder, state: ConnectionState) -> Quote:
    index = max(
        i
        for i, e in enumerate(events.events)
        if isinstance(e, ConnectionEvent) and e.state is state
    )
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        later = [e for e in events.events[index + 1 :] if isinstance(e, Quote)]
        if later:
            return later[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no quote after the reconnect")


@pytest.mark.sim(start=OPEN, speed=10)
async def test_a_dropped_socket_is_reconnected_and_quotes_flow_again(
    gateway: SimGateway, broker: IbkrBroker, events: Recorder
) -> None:
    await broker.subscribe(await aapl(broker))
    await events.wait_for(Quote)
    gateway.faults.drop_all()
    await events.wait_for(ConnectionEvent, lambda e: e.state is ConnectionState.CONNECTED)
    states = events.connection_states()
    assert states[0] is ConnectionState.DISCONNECTED
    assert states[1] is ConnectionState.RECONNECTING
    assert states[-1] is ConnectionState.CONNECTED
    assert events.of(ConnectionEvent)[0].name == "CONNECTION_CLOSED"
    await _quotes_after(events, ConnectionState.CONNECTED)
    assert gateway.core.feed.subscription_count == 2  # quotes and bars, renewed once


@pytest.mark.sim(start=OPEN, speed=10)
async def test_a_gateway_restart_is_retried_with_backoff_until_it_is_back(
    gateway: SimGateway, broker: IbkrBroker, events: Recorder
) -> None:
    c = await aapl(broker)
    await broker.subscribe(c)
    first_id = await broker.place(far_limit(c, "before-restart"))
    await events.wait_for(OrderReport, lambda r: r.status is BrokerOrderStatus.SUBMITTED)
    await gateway.faults.restart(down=0.5, rollback_ids=5)
    await events.wait_for(ConnectionEvent, lambda e: e.state is ConnectionState.CONNECTED)
    states = events.connection_states()
    assert states[0] is ConnectionState.DISCONNECTED
    assert states.count(ConnectionState.RECONNECTING) >= 2  # refused while it was down
    assert states[-1] is ConnectionState.CONNECTED
    assert set(states[1:-1]) == {ConnectionState.RECONNECTING}
    await _quotes_after(events, ConnectionState.CONNECTED)
    # nextValidId went back 5 ids across the restart; ibpilot never reuses an order id
    second_id = await broker.place(far_limit(c, "after-restart"))
    assert second_id > first_id
    await events.wait_for(OrderReport, lambda r: r.intent_id == "after-restart")
    listed = await broker.open_orders()
    assert sorted((r.intent_id, r.order_id) for r in listed) == [
        ("after-restart", second_id),
        ("before-restart", first_id),
    ]
    await broker.cancel("before-restart")  # orders of the earlier socket are still ours
    await events.wait_for(
        OrderReport,
        lambda r: r.intent_id == "before-restart" and r.status is BrokerOrderStatus.CANCELLED,
    )


@pytest.mark.sim(start=OPEN, speed=10)
async def test_1100_pauses_orders_and_1102_resumes_with_data_kept(
    gateway: SimGateway, broker: IbkrBroker, events: Recorder
) -> None:
    c = await aapl(broker)
    gateway.faults.connectivity_lost()
    lost = await events.wait_for(ConnectionEvent, lambda e: e.state is ConnectionState.IB_LOST)
    assert (lost.code, lost.name) == (1100, "CONNECTIVITY_LOST")
    gateway.faults.connectivity_lost()  # IB repeats 1100 during a reset: one event only
    with pytest.raises(BrokerRequestError) as caught:
        await broker.place(order(c, "during-1100"))
    assert caught.value.entry.name is ErrorName.CONNECTIVITY_LOST
    gateway.faults.connectivity_restored(data_lost=False)
    back = await events.wait_for(ConnectionEvent, lambda e: e.code == 1102)
    assert (back.state, back.data_lost) == (ConnectionState.CONNECTED, False)
    assert events.connection_states() == [ConnectionState.IB_LOST, ConnectionState.CONNECTED]
    await broker.place(order(c, "after-1102"))


@pytest.mark.sim(start=OPEN, speed=10)
async def test_1101_renews_the_market_data_subscriptions(
    gateway: SimGateway, broker: IbkrBroker, events: Recorder
) -> None:
    await broker.subscribe(await aapl(broker))
    await events.wait_for(Quote)
    gateway.faults.connectivity_lost()
    gateway.faults.connectivity_restored(data_lost=True)
    assert gateway.core.feed.subscription_count == 0  # IB dropped them
    back = await events.wait_for(ConnectionEvent, lambda e: e.code == 1101)
    assert (back.state, back.data_lost, back.name) == (
        ConnectionState.CONNECTED,
        True,
        "CONNECTIVITY_RESTORED_DATA_LOST",
    )
    await eventually(lambda: gateway.core.feed.subscription_count == 2)  # renewed behind it
    await _quotes_after(events, ConnectionState.CONNECTED)
    # the stale request ids were cancelled quietly: no REQUEST_NOT_FOUND noise
    assert not [e for e in events.of(BrokerError) if e.name == "REQUEST_NOT_FOUND"]


@pytest.mark.sim(start=OPEN)
async def test_a_request_in_flight_fails_when_the_socket_drops_instead_of_hanging(
    gateway: SimGateway, broker: IbkrBroker, events: Recorder
) -> None:
    c = await aapl(broker)
    gateway.faults.delay(2000)  # the answer would come after the drop
    end = datetime(2026, 2, 27, 21, 0, tzinfo=UTC)
    request = asyncio.ensure_future(broker.history(c, end=end, duration="1 D", bar_size="1 hour"))
    await asyncio.sleep(0.1)
    gateway.faults.delay(0)
    gateway.faults.drop_all()
    with pytest.raises(BrokerRequestError) as caught:
        await asyncio.wait_for(request, timeout=2)
    assert caught.value.entry.name is ErrorName.NOT_CONNECTED
    await events.wait_for(ConnectionEvent, lambda e: e.state is ConnectionState.CONNECTED)
    # (not the identical request: IB's pacing rules would make it wait 15 s)
    assert len(await broker.history(c, end=end, duration="1 D", bar_size="30 mins")) == 13


async def test_reconnecting_stops_after_max_attempts(gateway: SimGateway) -> None:
    b = make_broker(gateway.port, max_reconnect_attempts=2)
    await b.connect()
    rec = Recorder(b)
    try:
        gateway.faults.start_restart(down=0.8)
        await rec.wait_for(ConnectionEvent, lambda e: "reconnecting stopped" in e.message)
        assert rec.connection_states() == [
            ConnectionState.DISCONNECTED,
            ConnectionState.RECONNECTING,
            ConnectionState.RECONNECTING,
            ConnectionState.DISCONNECTED,
        ]
        assert b.state is ConnectionState.DISCONNECTED
        with pytest.raises(BrokerRequestError):
            await b.positions()
    finally:
        await rec.close()
        await b.disconnect()
        await eventually(lambda: gateway.listening)


async def test_farm_notices_become_warnings_and_update_the_farm_table(
    gateway: SimGateway, broker: IbkrBroker, events: Recorder
) -> None:
    gateway.faults.farm("market", ok=False)
    warning = await events.wait_for(BrokerError, lambda e: e.code == 2103)
    assert (warning.name, warning.terminal) == ("MARKET_DATA_FARM", False)
    market = [f for f in broker.farms if f.kind is FarmKind.MARKET]
    assert [(f.farm, f.state) for f in market] == [("usfarm", FarmState.BROKEN)]
    gateway.faults.farm("market", ok=True)
    await events.wait_for(BrokerError, lambda e: e.code == 2104)
    assert [f.state for f in broker.farms if f.kind is FarmKind.MARKET] == [FarmState.OK]


async def test_disconnect_ends_every_event_stream(broker: IbkrBroker) -> None:
    stream = broker.events()
    await broker.disconnect()
    seen = [event async for event in stream]
    assert [e.state for e in seen if isinstance(e, ConnectionEvent)] == [
        ConnectionState.DISCONNECTED
    ]
    with pytest.raises(BrokerRequestError) as caught:
        await broker.positions()
    assert caught.value.entry.name is ErrorName.NOT_CONNECTED


# --- the plain parts --------------------------------------------------------------------------


def test_backoff_doubles_up_to_its_cap_with_bounded_jitter() -> None:
    backoff = Backoff(base=1.0, cap=8.0, jitter=0.5, rng=random.Random(3))
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 8), (60, 8)]:
        delay = backoff.delay(attempt)
        assert ceiling * 0.5 <= delay <= ceiling
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.0)


def test_connection_table_rejects_impossible_transitions() -> None:
    assert next_state(ConnectionState.CONNECTED, Trigger.IB_LOST) is ConnectionState.IB_LOST
    assert next_state(ConnectionState.IB_LOST, Trigger.SOCKET_CLOSED) is (
        ConnectionState.DISCONNECTED
    )
    with pytest.raises(IllegalTransition, match="ib_restored is not possible while disconnected"):
        next_state(ConnectionState.DISCONNECTED, Trigger.IB_RESTORED)


@pytest.mark.parametrize(
    ("code", "text", "farm", "state"),
    [
        (2104, "Market data farm connection is OK:usfarm", "usfarm", FarmState.OK),
        (2103, "Market data farm connection is broken:cashfarm", "cashfarm", FarmState.BROKEN),
        (
            2107,
            "HMDS data farm connection is inactive but should be available upon demand.ushmds",
            "ushmds",
            FarmState.INACTIVE,
        ),
        (2158, "Sec-def data farm connection is OK:secdefnj", "secdefnj", FarmState.OK),
    ],
)
def test_farm_names_are_read_from_ibs_text(
    code: int, text: str, farm: str, state: FarmState
) -> None:
    status = farm_status(code, text)
    assert status is not None
    assert (status.farm, status.state) == (farm, state)
    assert farm_status(200, "No security definition") is None


# ---------------------------------------------------------------------------------------------
# Keepalive, client ids held by stale sessions, order ids across a bot restart


@pytest.mark.sim(start=OPEN, speed=10)
async def test_a_gateway_that_stops_answering_is_detected_by_the_keepalive_and_reconnected(
    gateway: SimGateway,
) -> None:
    b = make_broker(gateway.port, adapter_extra={"keepalive_s": 0.2, "keepalive_timeout_s": 0.3})
    await b.connect()
    events = Recorder(b)
    try:
        await b.subscribe(await aapl(b))
        gateway.faults.delay(60_000)  # the socket stays open; nothing is answered any more
        lost = await events.wait_for(
            ConnectionEvent, lambda e: e.state is ConnectionState.DISCONNECTED
        )
        assert lost.name == "GATEWAY_UNRESPONSIVE"
        assert "keepalive" in lost.message
        gateway.faults.delay(0)
        await events.wait_for(
            ConnectionEvent, lambda e: e.state is ConnectionState.CONNECTED, timeout=10
        )
        await _quotes_after(events, ConnectionState.CONNECTED)  # market data flows again
    finally:
        await events.close()
        await b.disconnect()


async def test_an_answering_gateway_is_never_dropped_by_the_keepalive(gateway: SimGateway) -> None:
    asked: list[int] = []
    gateway.request_tap = lambda version, message: asked.append(message.msg_id)
    b = make_broker(gateway.port, adapter_extra={"keepalive_s": 0.05, "keepalive_timeout_s": 1})
    await b.connect()
    events = Recorder(b)
    try:
        await eventually(lambda: asked.count(49) >= 5)  # reqCurrentTime, again and again
        assert events.of(ConnectionEvent) == []
        assert b.state is ConnectionState.CONNECTED
    finally:
        await events.close()
        await b.disconnect()


async def test_a_held_client_id_is_waited_for_then_the_fallback_id_is_used(
    gateway: SimGateway,
) -> None:
    gateway.faults.hold_client_id(1)
    creds = {"host": "127.0.0.1", "port": gateway.port, "client_id": 1, "fallback_client_id": 7}
    b = make_broker(gateway.port, adapter_extra={"credentials": creds, "client_id_wait_s": 0.3})
    started = time.monotonic()
    info = await b.connect()
    try:
        assert info.client_id == 7
        assert time.monotonic() - started >= 0.3  # it waited for the stale session first
    finally:
        await b.disconnect()


async def test_a_held_client_id_without_fallback_names_both_choices(gateway: SimGateway) -> None:
    gateway.faults.hold_client_id(1)
    b = make_broker(gateway.port, adapter_extra={"client_id_wait_s": 0.2})
    with pytest.raises(BrokerConnectError) as caught:
        await b.connect()
    assert caught.value.entry.name is ErrorName.CLIENT_ID_IN_USE
    assert "client_id_wait_s" in str(caught.value)
    assert "fallback_client_id" in str(caught.value)


async def test_a_held_client_id_is_used_once_the_stale_session_lets_go(gateway: SimGateway) -> None:
    gateway.faults.hold_client_id(1)
    b = make_broker(gateway.port, adapter_extra={"client_id_wait_s": 5})
    asyncio.get_running_loop().call_later(0.3, gateway.faults.release_client_id, 1)
    info = await b.connect()
    try:
        assert info.client_id == 1
    finally:
        await b.disconnect()


@pytest.mark.sim(start=OPEN, speed=10)
async def test_order_ids_are_never_reused_by_a_restarted_bot_after_an_id_rollback(
    gateway: SimGateway,
) -> None:
    first = make_broker(gateway.port)
    await first.connect()
    c = await aapl(first)
    used = [await first.place(far_limit(c, f"old-{n}")) for n in range(3)]
    await eventually(lambda: len(gateway.core.desk.engine.open_orders()) == 3)
    await first.disconnect()
    await gateway.faults.restart(down=0.2, rollback_ids=5)  # nextValidId goes back 5 ids
    second = make_broker(gateway.port)
    second.reserve_order_ids(max(used))  # what the ledger of the first run recorded
    await second.connect()
    try:
        new_id = await second.place(far_limit(c, "new"))
        assert new_id > max(used)
        listed = {r.intent_id: r.order_id for r in await second.open_orders()}
        assert listed == {"old-0": used[0], "old-1": used[1], "old-2": used[2], "new": new_id}
    finally:
        await second.disconnect()
