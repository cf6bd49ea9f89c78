"""``ibpilot start`` end to end against the simulated gateway (127.0.0.1, every wait bounded).

The bot runs in-process (``runner.run`` on the simulator's accelerated clock, stopped through
its ``stop`` event) or as ``python -m ibpilot start`` (on the wall clock, stopped with
SIGTERM).  What the simulator holds (orders by orderRef, executions, positions) is compared
with what the ledger says.  Strategies are ``sma_cross`` or ``e2e_strategy:Proposer``, which
proposes exactly the orders its parameters list.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from ib_async import IB, Future, MarketOrder, Stock

from ibpilot import cli
from ibpilot.broker._ibkr_hours import parse_hours, zone_name
from ibpilot.broker.base import Contract, ContractRef
from ibpilot.broker.ibkr import IbkrBroker
from ibpilot.config import AdapterConfig, spec_hash_of_file
from ibpilot.control import send_command
from ibpilot.ledger import Entry, EntryKind, LedgerConfigError, open_ledger
from ibpilot.runner import (
    EXIT_CONNECT,
    EXIT_INTEGRITY,
    EXIT_LIVE_REFUSED,
    EXIT_OK,
    HoursBroker,
    LiquidHours,
    StartError,
    StartOptions,
    refresh_hours,
    run,
)
from ibpilot.sim import SimGateway

HERE = Path(__file__).resolve().parent
MONDAY_OPEN = datetime.fromisoformat("2026-03-02T09:35:00-05:00")
MONDAY_PREMARKET = datetime.fromisoformat("2026-03-02T08:00:00-05:00")
WAIT = 15.0  # the bound of every wait, in real seconds
BOT_CLIENT = 1
T = TypeVar("T")
_K = EntryKind

MANDATE: dict[str, Any] = {
    "allowed_symbols": ["AAPL"],
    "max_order_quantity": 100,
    "max_order_notional": 100000,
    "max_position": 100,
    "max_daily_loss": 100000,
}


# -- files, waits, ledger and simulator views ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Files:
    root: Path

    @property
    def adapter(self) -> Path:
        return self.root / "adapter.json"

    @property
    def strategy(self) -> Path:
        return self.root / "strategy.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.sqlite"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def options(self, **extra: Any) -> StartOptions:
        return StartOptions(self.strategy, self.adapter, str(self.ledger), self.state, **extra)

    def argv(self, *extra: str) -> list[str]:
        return [
            "start", "--config", str(self.strategy), "--adapter", str(self.adapter),
            "--ledger", str(self.ledger), "--dir", str(self.state), *extra,
        ]  # fmt: skip


def write_files(
    root: Path, port: int, *, params: dict[str, Any], mandate: dict[str, Any] | None = None,
    strategy: str = "e2e_strategy:Proposer", instruments: Sequence[dict[str, Any]] | None = None,
    bar_size: str = "5 secs", warmup: str = "60 S", environment: str = "sim",
) -> Files:  # fmt: skip
    files = Files(root)
    credentials = {"host": "127.0.0.1", "port": port, "client_id": BOT_CLIENT}
    adapter = {"adapter": "ibkr", "environment": environment, "credentials": credentials}
    files.adapter.write_text(json.dumps(adapter))
    doc = {
        "name": "e2e", "strategy": strategy, "params": params, "bar_size": bar_size,
        "warmup": warmup, "instruments": list(instruments or [{"symbol": "AAPL"}]),
        "mandate": {**MANDATE, **(mandate or {})},
    }  # fmt: skip
    files.strategy.write_text(json.dumps(doc, indent=2))
    return files


def order(side: str = "BUY", quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"symbol": "AAPL", "side": side, "quantity": quantity, **extra}


async def wait_for(what: str, check: Callable[[], T | None], timeout: float = WAIT) -> T:
    """``check()``'s first truthy value, polled; fails the test after ``timeout`` seconds."""
    return await wait_for_async(what, lambda: _now(check()), timeout)


async def _now(value: T) -> T:
    return value


async def wait_for_async(
    what: str, check: Callable[[], Awaitable[T | None]], timeout: float = WAIT
) -> T:
    """``await check()``'s first truthy value, polled; fails the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.05)


def ledger_entries(path: Path, *kinds: EntryKind) -> list[Entry]:
    """The ledger's entries (of ``kinds``, or all); none while a bot is still creating it."""
    try:
        with open_ledger(str(path), path.parent, create=False) as ledger:
            return list(ledger.entries(kind=kinds or None))
    except LedgerConfigError:  # no file yet, or its tables are not there yet
        return []


def codes(decision: Entry) -> list[str]:
    reasons: Any = decision.payload["reasons"]
    return [str(reason["code"]) for reason in reasons]


def refusals(path: Path) -> list[Entry]:
    return [e for e in ledger_entries(path, _K.DECISION) if e.payload["allowed"] is False]


def sim_orders(gw: SimGateway, client_id: int = BOT_CLIENT) -> list[Any]:
    """Every order of ``client_id`` the simulator holds today: working and completed."""
    engine = gw.core.desk.engine
    orders = engine.open_orders() + engine.completed_orders(gw.clock.epoch())
    return [o for o in orders if o.spec.client_id == client_id]


def sim_executions(gw: SimGateway, client_id: int = BOT_CLIENT) -> list[Any]:
    fills = gw.core.desk.engine.executions(gw.clock.epoch(), client_id=client_id)
    return [f.execution for f in fills]


def sim_position(gw: SimGateway, symbol: str = "AAPL") -> Decimal:
    held = [p.quantity for p in gw.core.desk.engine.account.positions() if p.inst.symbol == symbol]
    return sum(held, Decimal(0))


def assert_nothing_reached_the_sim(gw: SimGateway) -> None:
    engine, now = gw.core.desk.engine, gw.clock.epoch()
    assert engine.open_orders() == []
    assert engine.completed_orders(now) == []
    assert engine.executions(now) == []


def assert_ledger_matches_the_sim(path: Path, gw: SimGateway) -> list[str]:
    """Each sim order has exactly one INTENT and each sent INTENT exactly one sim order; the
    ledger's fills are the sim's executions (quantity, price, commission). Returns the ids."""
    intents = [str(e.payload["intent_id"]) for e in ledger_entries(path, _K.INTENT)]
    sent = [str(e.payload["intent_id"]) for e in ledger_entries(path, _K.ORDER_SENT)]
    assert len(set(intents)) == len(intents), "an intent id was used twice"
    assert sorted(sent) == sorted(intents), "an intent was not sent exactly once"
    refs = Counter(o.spec.order_ref for o in sim_orders(gw))
    assert refs == Counter(intents), f"sim orders by orderRef {refs} != intents {intents}"
    fills = {str(e.payload["exec_id"]): e.payload for e in ledger_entries(path, _K.FILL)}
    commissions = {
        str(e.payload["exec_id"]): e.payload["commission"]
        for e in ledger_entries(path, _K.COMMISSION)
    }
    executions = {ex.exec_id: ex for ex in sim_executions(gw)}
    assert fills.keys() == executions.keys()
    for exec_id, ex in executions.items():
        fill = fills[exec_id]
        assert fill["intent_id"] == ex.order_ref
        assert Decimal(str(fill["quantity"])) == ex.shares
        assert Decimal(str(fill["price"])) == Decimal(repr(ex.price))
        assert Decimal(str(commissions[exec_id])) == Decimal(repr(ex.commission))
    return intents


def verify_exit_code(path: Path) -> int:
    return cli.main(["ledger", "verify", "--ledger", str(path)])


# -- the bot, in-process and as a subprocess ----------------------------------------------------


@dataclass(slots=True)
class InProcessBot:
    task: asyncio.Task[int]
    stop_event: asyncio.Event
    said: list[str] = field(default_factory=list)

    async def stop(self) -> int:
        self.stop_event.set()
        return await asyncio.wait_for(self.task, WAIT)


@asynccontextmanager
async def bot_in_process(
    gw: SimGateway, files: Files, **options: Any
) -> AsyncIterator[InProcessBot]:
    """``ibpilot start`` on the simulator's clock; stopped (and awaited) on the way out."""

    def make_broker(adapter: AdapterConfig) -> IbkrBroker:
        return IbkrBroker(adapter, clock=gw.clock.now_dt, request_timeout=WAIT)

    said: list[str] = []
    stop = asyncio.Event()
    coro = run(files.options(**options), make_broker, said.append, clock=gw.clock.now_dt, stop=stop)
    bot = InProcessBot(asyncio.create_task(coro), stop, said)
    try:
        yield bot
    finally:
        if not bot.task.done():
            await bot.stop()


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


@asynccontextmanager
async def ibpilot_start(files: Files, *extra: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``python -m ibpilot start`` (output in files.root/out.txt); killed if still running."""
    with (files.root / "out.txt").open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ibpilot", *files.argv(*extra), env=_env(), stdout=out,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def ibpilot(*args: str) -> tuple[int, str]:
    """``python -m ibpilot <args>``: the exit code and the output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ibpilot", *args, env=_env(), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def control(files: Files, command: str, *args: str) -> dict[str, Any]:
    code, out = await ibpilot(command, "--dir", str(files.state), *args)
    assert code == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


async def exit_code(process: asyncio.subprocess.Process, files: Files) -> int:
    try:
        return await asyncio.wait_for(process.wait(), WAIT)
    except TimeoutError:
        pytest.fail("ibpilot start did not exit: " + (files.root / "out.txt").read_text()[-2000:])


# -- the exchange's trading hours, as IB's contract details give them -----------------------------


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


async def details_at(start: datetime, query: Any, ref: ContractRef) -> tuple[Any, Contract]:
    """IB's contract details (ib_async) and ibpilot's resolved Contract, on a sim at ``start``."""
    async with SimGateway("127.0.0.1", 0, start=start, seed=7) as gw:
        ib = IB()
        await ib.connectAsync("127.0.0.1", gw.port, clientId=9, timeout=WAIT)
        try:
            [details] = await ib.reqContractDetailsAsync(query)
        finally:
            ib.disconnect()
        config = AdapterConfig.model_validate(
            {"credentials": {"host": "127.0.0.1", "port": gw.port}, "environment": "sim"}
        )
        broker = IbkrBroker(config, clock=gw.clock.now_dt)
        await broker.connect()
        try:
            contract = await broker.resolve(ref)
        finally:
            await broker.disconnect()
    return details, contract


def contains(sessions: Sequence[tuple[datetime, datetime]] | None, moment: datetime) -> bool:
    assert sessions is not None, f"hours unknown at {moment}"
    return any(start <= moment < end for start, end in sessions)


async def test_stock_liquid_hours_follow_the_dst_change_and_are_unknown_beyond_their_week() -> None:
    start = datetime.fromisoformat("2026-03-05T10:00:00-05:00")  # DST starts Sunday 03-08
    details, aapl = await details_at(start, Stock("AAPL", "SMART", "USD"), ContractRef("AAPL"))
    assert details.liquidHours.startswith("20260304:0930-20260304:1600;")
    assert "20260307:CLOSED;20260308:CLOSED" in details.liquidHours
    hours = parse_hours(details.liquidHours, details.timeZoneId)
    assert aapl.liquid_hours == hours.sessions
    assert aapl.liquid_hours_known == hours.known
    assert hours.known == (utc("2026-03-04T00:00-05:00"), utc("2026-03-12T00:00-04:00"))
    assert (utc("2026-03-06T09:30-05:00"), utc("2026-03-06T16:00-05:00")) in hours.sessions
    assert (utc("2026-03-09T13:30Z"), utc("2026-03-09T20:00Z")) in hours.sessions  # EDT
    for moment, is_open in [
        ("2026-03-04T09:29-05:00", False),  # a minute before the open
        ("2026-03-04T15:59-05:00", True),
        ("2026-03-09T09:30-04:00", True),  # the open, in EDT
        ("2026-03-07T12:00Z", False),  # Saturday
    ]:
        assert contains(aapl.liquid_sessions(utc(moment)), utc(moment)) is is_open, moment
    assert aapl.liquid_sessions(utc("2026-03-03T12:00-05:00")) is None  # before the week
    assert aapl.liquid_sessions(utc("2026-03-12T10:00-04:00")) is None  # after it


async def test_es_overnight_sessions_and_its_liquid_hours_in_central_time() -> None:
    start = datetime.fromisoformat("2026-03-05T10:00:00-05:00")
    ref = ContractRef("ES", "FUT", "CME", last_trade_date_or_contract_month="202603")
    details, es = await details_at(start, Future("ES", "202603", "CME"), ref)
    assert details.timeZoneId == "US/Central"
    trading = parse_hours(details.tradingHours, details.timeZoneId)
    # Sunday 17:00 CDT (DST began that morning) to Monday 16:00 CDT; Friday's ends at 16:00 CST
    assert (utc("2026-03-08T17:00-05:00"), utc("2026-03-09T16:00-05:00")) in trading.sessions
    assert (utc("2026-03-05T17:00-06:00"), utc("2026-03-06T16:00-06:00")) in trading.sessions
    assert trading.known == (utc("2026-03-04T00:00-06:00"), utc("2026-03-12T00:00-05:00"))
    assert contains(trading.sessions, utc("2026-03-09T02:00Z"))  # overnight, Sunday evening
    assert (utc("2026-03-09T08:30-05:00"), utc("2026-03-09T15:00-05:00")) in es.liquid_hours
    assert not contains(es.liquid_sessions(utc("2026-03-09T02:00Z")), utc("2026-03-09T02:00Z"))


@pytest.mark.parametrize(
    ("start", "closed", "still_open"),
    [
        pytest.param("2026-04-01T10:00:00-04:00", "2026-04-03", "2026-04-02", id="good-friday"),
        pytest.param("2026-11-24T10:00:00-05:00", "2026-11-26", "2026-11-27", id="thanksgiving"),
    ],
)
async def test_exchange_holidays_are_closed_days(start: str, closed: str, still_open: str) -> None:
    when = datetime.fromisoformat(start)
    details, aapl = await details_at(when, Stock("AAPL", "SMART", "USD"), ContractRef("AAPL"))
    assert f"{closed.replace('-', '')}:CLOSED" in details.liquidHours
    noon = utc(f"{closed}T12:00-05:00")
    assert aapl.liquid_sessions(noon) is not None
    assert not any(s.date() == date.fromisoformat(closed) for s, _ in aapl.liquid_hours)
    assert contains(aapl.liquid_sessions(noon), utc(f"{still_open}T10:00-05:00"))


def test_older_hours_formats_lunch_breaks_and_ibs_short_zone_names() -> None:
    old = parse_hours("20090507:0930-1600;20090508:CLOSED", "EST")
    assert zone_name("EST") == "US/Eastern"
    assert old.sessions == ((utc("2009-05-07T09:30-04:00"), utc("2009-05-07T16:00-04:00")),)
    assert old.known == (utc("2009-05-07T00:00-04:00"), utc("2009-05-09T00:00-04:00"))
    lunch = parse_hours("20180604:0900-1130,1300-1600", "Asia/Hong_Kong")
    assert [(s.hour, e.hour) for s, e in lunch.sessions] == [(1, 3), (5, 8)]
    overnight = parse_hours("20231019:1700-1600;20231020:0000-2400", "US/Central")
    assert overnight.sessions[0] == (utc("2023-10-19T17:00-05:00"), utc("2023-10-20T16:00-05:00"))
    assert overnight.sessions[1][1] == utc("2023-10-21T00:00-05:00")
    assert parse_hours("", "US/Eastern").known is None
    for bad in ("20260302:0930", "2026030:0930-1600", "20260302:1600-20260302:0930"):
        with pytest.raises(ValueError, match=r"bad|ends before"):
            parse_hours(bad, "US/Eastern")
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_hours("20260302:CLOSED", "Mars/Olympus")


def test_liquid_hours_are_noted_per_symbol_and_refreshed_before_they_run_out() -> None:
    hours = LiquidHours()
    text = "20260302:0930-20260302:1600;20260303:CLOSED"
    parsed = parse_hours(text, "US/Eastern")
    contract = Contract(265598, "AAPL", "STK", "SMART", "USD", liquid_hours=parsed.sessions,
                        liquid_hours_known=parsed.known)  # fmt: skip
    ref = ContractRef("AAPL")
    assert hours("AAPL", utc("2026-03-02T10:00-05:00")) is None  # nothing resolved yet
    hours.learn(ref, contract)
    assert hours("AAPL", utc("2026-03-02T10:00-05:00")) == parsed.sessions
    assert hours("AAPL", utc("2026-03-05T10:00-05:00")) is None
    assert hours("MSFT", utc("2026-03-02T10:00-05:00")) is None
    assert hours.running_out(utc("2026-03-01T00:00-05:00"), timedelta(hours=1)) == []
    assert hours.running_out(utc("2026-03-03T00:00-05:00")) == [ref]


class NextWeek:
    """A broker stand-in whose resolve answers with next week's hours (resolve only)."""

    def __init__(self) -> None:
        self.asked: list[ContractRef] = []

    async def resolve(self, ref: ContractRef) -> Contract:
        self.asked.append(ref)
        parsed = parse_hours("20260309:0930-20260309:1600;20260310:CLOSED", "US/Eastern")
        return Contract(265598, "AAPL", "STK", "SMART", "USD", liquid_hours=parsed.sessions,
                        liquid_hours_known=parsed.known)  # fmt: skip


async def test_hours_about_to_run_out_are_resolved_again() -> None:
    hours, fake = LiquidHours(), NextWeek()
    broker = HoursBroker(fake, hours)  # type: ignore[arg-type]  # resolve is all it needs
    first = parse_hours("20260302:0930-20260302:1600;20260303:CLOSED", "US/Eastern")
    hours.learn(ContractRef("AAPL"), Contract(265598, "AAPL", "STK", "SMART", "USD",
                liquid_hours=first.sessions, liquid_hours_known=first.known))  # fmt: skip
    monday = utc("2026-03-02T10:00-05:00")
    refresh = asyncio.create_task(refresh_hours(broker, hours, lambda: monday, every=0.01))
    try:
        await wait_for("a refresh", lambda: fake.asked)
    finally:
        refresh.cancel()
    assert fake.asked[0] == ContractRef("AAPL")
    assert contains(hours("AAPL", utc("2026-03-09T10:00-04:00")), utc("2026-03-09T10:00-04:00"))


# -- trading --------------------------------------------------------------------------------------


@pytest.mark.sim(speed=600, start=MONDAY_OPEN)
async def test_sma_cross_trades_on_the_accelerated_sim_and_the_ledger_matches_it(
    gateway: SimGateway, tmp_path: Path
) -> None:
    params = {"fast": 2, "slow": 4, "quantity": 10, "allow_short": True}
    files = write_files(tmp_path, gateway.port, strategy="sma_cross", params=params,
                        bar_size="1 min", warmup="1800 S")  # fmt: skip
    async with bot_in_process(gateway, files) as bot:
        await wait_for("4 fills", lambda: len(ledger_entries(files.ledger, _K.FILL)) >= 4)
        assert await bot.stop() == EXIT_OK
    assert verify_exit_code(files.ledger) == 0
    intents = assert_ledger_matches_the_sim(files.ledger, gateway)
    assert len(intents) >= 2
    assert not refusals(files.ledger)  # exchange hours from the contract: the market is open
    [stop] = ledger_entries(files.ledger, _K.STOP)
    positions: Any = stop.payload["positions"]
    assert Decimal(positions.get("AAPL", 0)) == sim_position(gateway)
    spec_hashes = {e.spec_hash for e in ledger_entries(files.ledger)}
    assert spec_hashes == {spec_hash_of_file(files.strategy)}


# -- each gate rule: a proposal refused, the refusal ledgered, nothing at the sim -----------------


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    steps: list[list[dict[str, Any]]]
    mandate: dict[str, Any] = field(default_factory=dict)
    instruments: list[dict[str, Any]] | None = None
    start: datetime = MONDAY_OPEN
    sent: int = 0  # orders that legitimately went out before the refusal
    only: bool = True  # the rule's code is the decision's only reason
    operator_halt: bool = False


EUR = {"symbol": "EUR", "sec_type": "CASH", "exchange": "IDEALPRO", "currency": "USD"}
RULES = [
    Rule("SYMBOL_NOT_ALLOWED", [[{**order(), "symbol": "MSFT"}]], only=False),
    Rule("SEC_TYPE_NOT_ALLOWED", [[order()]], instruments=[EUR], only=False,
         mandate={"allowed_symbols": ["EUR", "AAPL"], "allowed_sec_types": ["CASH"]}),
    Rule("ORDER_TYPE_NOT_ALLOWED", [[order(order_type="STP", stop_pct=5)]]),
    Rule("MAX_ORDER_QUANTITY", [[order(quantity=10)]], {"max_order_quantity": 5}),
    Rule("MAX_ORDER_NOTIONAL", [[order(quantity=10)]], {"max_order_notional": 100}),
    Rule("MAX_POSITION", [[order(quantity=10)]], {"max_position": 5}),
    Rule("MAX_GROSS_EXPOSURE", [[order(quantity=10)]], {"max_gross_exposure": 1000}),
    Rule("MAX_DAILY_LOSS", [[order(quantity=10)], [order()]], {"max_daily_loss": 0.01},
         sent=1, only=False),
    Rule("MAX_ORDERS_PER_MINUTE", [[order(), order()]], {"max_orders_per_minute": 1}, sent=1),
    Rule("OUTSIDE_TRADING_HOURS", [[order()]], start=MONDAY_PREMARKET),  # the exchange's
    Rule("OUTSIDE_TRADING_HOURS", [[order()]],
         {"trading_hours": {"start": "12:00", "end": "13:00"}}),  # the mandate's
    Rule("PRICE_COLLAR", [[order(order_type="LMT", limit_pct=-5)]], {"price_collar_pct": 1}),
    Rule("MIN_PRICE", [[order()]], {"min_price": 100000}),
    Rule("HALTED", [[order()]], operator_halt=True),
]  # fmt: skip


@pytest.mark.parametrize(
    "rule",
    [pytest.param(r, id=f"{r.code}-{i}") for i, r in enumerate(RULES)],
)
async def test_each_gate_rule_refuses_a_proposal_in_the_ledger_and_nothing_reaches_the_sim(
    rule: Rule, tmp_path: Path
) -> None:
    params: dict[str, Any] = {"steps": rule.steps, "delay_s": 1200 if rule.operator_halt else 0}
    async with SimGateway("127.0.0.1", 0, seed=7, speed=600, start=rule.start) as gw:
        files = write_files(tmp_path, gw.port, params=params, mandate=rule.mandate,
                            instruments=rule.instruments)  # fmt: skip
        async with bot_in_process(gw, files) as bot:
            if rule.operator_halt:
                await wait_for("start", lambda: ledger_entries(files.ledger, _K.RECONCILIATION))
                await send_command(files.state, "halt", {"reason": "e2e"})
            [refused] = await wait_for("a refusal", lambda: refusals(files.ledger))
            assert await bot.stop() == EXIT_OK
        assert rule.code in codes(refused), codes(refused)
        if rule.only:
            assert codes(refused) == [rule.code]
        intents = assert_ledger_matches_the_sim(files.ledger, gw)
        assert refused.payload["intent_id"] not in intents
        assert len(intents) == rule.sent
        if not rule.sent:
            assert_nothing_reached_the_sim(gw)
    halts = ledger_entries(files.ledger, _K.HALT)
    if rule.code == "MAX_DAILY_LOSS":
        assert [h.payload["source"] for h in halts] == ["daily_loss"]
        assert "HALTED" in codes(refused)
    if rule.operator_halt:
        assert halts
        assert halts[0].seq < refused.seq
    assert verify_exit_code(files.ledger) == 0


# -- the spec-hash watch and the ledger's own integrity ----------------------------------------


def open_window_now() -> dict[str, Any]:
    """A mandate window around the wall clock, every day (a subprocess bot's gate runs on the
    wall clock, far from the sim's March 2026: the exchange's hours are unknown there)."""
    now = datetime.now(UTC)
    return {
        "start": f"{now - timedelta(hours=3):%H:%M}", "end": f"{now + timedelta(hours=3):%H:%M}",
        "time_zone": "UTC", "days": ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"],
    }  # fmt: skip


@pytest.mark.sim(speed=60, start=MONDAY_OPEN)
async def test_editing_the_strategy_file_mid_run_halts_and_exits_with_code_4(
    gateway: SimGateway, tmp_path: Path
) -> None:
    files = write_files(tmp_path, gateway.port, params={"steps": [[]]})
    before = spec_hash_of_file(files.strategy)
    async with ibpilot_start(files) as process:
        await wait_for("the start", lambda: ledger_entries(files.ledger, _K.RECONCILIATION))
        doc = json.loads(files.strategy.read_text())
        doc["mandate"]["max_order_quantity"] = 1000  # a bigger limit: the classic tamper
        files.strategy.write_text(json.dumps(doc, indent=2))
        after = spec_hash_of_file(files.strategy)
        assert await exit_code(process, files) == EXIT_INTEGRITY
    output = (files.root / "out.txt").read_text()
    assert "MANDATE_INTEGRITY_VIOLATION" in output
    assert "Traceback" not in output
    [violation] = ledger_entries(files.ledger, _K.MANDATE_INTEGRITY_VIOLATION)
    assert violation.payload == {"expected": before, "found": after}
    [halt] = ledger_entries(files.ledger, _K.HALT)
    [stop] = ledger_entries(files.ledger, _K.STOP)
    assert violation.seq < halt.seq < stop.seq
    assert stop.payload["reason"] == "MANDATE_INTEGRITY_VIOLATION"
    assert verify_exit_code(files.ledger) == 0


@pytest.mark.sim(speed=600, start=MONDAY_OPEN)
async def test_ledger_tampering_is_caught_by_ledger_verify(
    gateway: SimGateway, tmp_path: Path
) -> None:
    files = write_files(tmp_path, gateway.port, params={"steps": [[order()]]})
    async with bot_in_process(gateway, files) as bot:
        await wait_for("a fill", lambda: ledger_entries(files.ledger, _K.COMMISSION))
        assert await bot.stop() == EXIT_OK
    assert (await ibpilot("ledger", "verify", "--ledger", str(files.ledger)))[0] == 0
    [fill] = ledger_entries(files.ledger, _K.FILL)
    cheaper = {**fill.payload, "price": str(Decimal(str(fill.payload["price"])) - 1)}
    with sqlite3.connect(files.ledger) as db:  # the owner of the file can drop the guards
        triggers = db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall()
        for (name,) in triggers:
            db.execute(f"DROP TRIGGER {name}")
        db.execute(
            "UPDATE ibpilot_ledger_entries SET payload = ? WHERE seq = ?",
            (json.dumps(cheaper, sort_keys=True, separators=(",", ":")), fill.seq),
        )
    db.close()
    assert triggers
    code, output = await ibpilot("ledger", "verify", "--ledger", str(files.ledger))
    assert code == 3, output
    assert f"seq {fill.seq}:" in output
    assert "Traceback" not in output


# -- live safety --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow_live", "flags", "missing"),
    [
        pytest.param(False, ["--live", "--confirm-account", "U1234567"], "allow_live",
                     id="no-allow_live"),
        pytest.param(True, ["--confirm-account", "U1234567"], "--live", id="no---live"),
        pytest.param(True, ["--live"], "--confirm-account", id="no-confirm"),
    ],
)  # fmt: skip
async def test_live_without_all_three_signals_is_refused_before_connecting(
    allow_live: bool, flags: list[str], missing: str, tmp_path: Path
) -> None:
    confirm = flags[flags.index("--confirm-account") + 1] if "--confirm-account" in flags else None
    async with SimGateway("127.0.0.1", 0, account="U1234567", start=MONDAY_OPEN) as gw:
        files = write_files(tmp_path, gw.port, params={"steps": [[]]}, environment="live",
                            mandate={"allow_live": allow_live})  # fmt: skip

        def make_broker(adapter: AdapterConfig) -> IbkrBroker:
            pytest.fail("a broker was made for a refused live start")

        options = files.options(live="--live" in flags, confirm_account=confirm)
        with pytest.raises(StartError) as refused:
            await run(options, make_broker, print)
        assert refused.value.code == EXIT_LIVE_REFUSED
        assert "LIVE_NOT_CONFIRMED" in str(refused.value)
        assert missing in str(refused.value)
        code, output = await ibpilot(*files.argv(*flags))
        assert code == EXIT_LIVE_REFUSED, output
        assert missing in output
        assert "Traceback" not in output
        assert gw.connection_count == 0
        assert not gw.core.sessions
    assert not files.ledger.exists()


async def test_live_with_the_three_signals_and_the_right_account_passes_the_live_check(
    tmp_path: Path,
) -> None:
    async with SimGateway("127.0.0.1", 0, account="U1234567", start=MONDAY_OPEN, speed=60) as gw:
        files = write_files(tmp_path, gw.port, params={"steps": [[]]}, environment="live",
                            mandate={"allow_live": True})  # fmt: skip
        async with bot_in_process(gw, files, live=True, confirm_account="U1234567") as bot:
            await wait_for("the start", lambda: ledger_entries(files.ledger, _K.RECONCILIATION))
            assert await bot.stop() == EXIT_OK
    [start] = ledger_entries(files.ledger, _K.START)
    assert start.payload["environment"] == "live"
    assert start.payload["accounts"] == ["U1234567"]


async def test_a_mismatching_confirmed_account_is_refused_right_after_the_handshake(
    tmp_path: Path,
) -> None:
    sent: list[int] = []  # the message ids the gateway sent after its handshake reply

    def tap(version: int, frame: bytes) -> None:
        sent.append(int(frame[4:].split(b"\0", 1)[0]))

    async with SimGateway(
        "127.0.0.1", 0, account="U1234567", start=MONDAY_OPEN, wire_tap=tap
    ) as gw:
        files = write_files(tmp_path, gw.port, params={"steps": [[]]}, environment="live",
                            mandate={"allow_live": True})  # fmt: skip
        async with bot_in_process(gw, files, live=True, confirm_account="U7654321") as bot:
            assert await asyncio.wait_for(bot.task, WAIT) == EXIT_CONNECT
    said = "\n".join(bot.said)
    assert "WRONG_ENVIRONMENT" in said
    assert "--confirm-account U7654321 is not the account the gateway is logged into" in said
    assert sent
    assert set(sent) <= {4, 9, 15}  # error/notices, nextValidId, managedAccounts: no answers
    assert ledger_entries(files.ledger) == []


# -- the control commands against a running `ibpilot start` ------------------------------------


async def buy_elsewhere(gw: SimGateway, quantity: int) -> None:
    """A position the bot did not make: bought by another API client before the bot starts."""
    ib = IB()
    await ib.connectAsync("127.0.0.1", gw.port, clientId=7, timeout=WAIT)
    try:
        aapl = Stock("AAPL", "SMART", "USD")
        await ib.qualifyContractsAsync(aapl)
        trade = ib.placeOrder(aapl, MarketOrder("BUY", quantity))
        await wait_for("the outside fill", trade.isDone)
    finally:
        ib.disconnect()


def decisions_after(files: Files, seq: int) -> list[Entry]:
    return [e for e in ledger_entries(files.ledger, _K.DECISION) if e.seq > seq]


@pytest.mark.sim(speed=60, start=MONDAY_OPEN)
async def test_status_halt_cancel_all_and_flatten_control_a_running_bot(
    gateway: SimGateway, tmp_path: Path
) -> None:
    await buy_elsewhere(gateway, 10)
    params = {"steps": [[order(order_type="LMT", limit_pct=-20)]], "repeat_s": 2}
    mandate = {"trading_hours": open_window_now()}
    files = write_files(tmp_path, gateway.port, params=params, mandate=mandate)
    async with ibpilot_start(files) as process:
        await wait_for("a resting order", lambda: ledger_entries(files.ledger, _K.ORDER_SENT))

        status = await control(files, "status")
        assert status["positions"] == {"AAPL": "10"}
        assert status["connection"] == "connected"
        assert status["open_orders"]

        halted = await control(files, "halt", "--reason", "e2e halt")
        assert halted["trading_state"] == "HALTED"
        [halt] = ledger_entries(files.ledger, _K.HALT)
        refused = await wait_for(
            "a refusal after the halt",
            lambda: [d for d in decisions_after(files, halt.seq) if "HALTED" in codes(d)],
        )
        assert refused[0].payload["allowed"] is False

        cancel = await control(files, "cancel-all")
        assert cancel["cancel_requested"]
        engine = gateway.core.desk.engine
        await wait_for("no working orders at the sim", lambda: not engine.open_orders())
        assert {o.spec.order_ref for o in sim_orders(gateway)} >= set(cancel["cancel_requested"])

        flatten = await control(files, "flatten")
        assert flatten["proposals"] == [{"allowed": True, "reasons": []}]
        await wait_for("a flat position at the sim", lambda: sim_position(gateway) == 0)
        await wait_for_async("status to show it", lambda: flat_in_status(files))

        process.send_signal(signal.SIGTERM)
        assert await exit_code(process, files) == EXIT_OK
    assert "Traceback" not in (files.root / "out.txt").read_text()
    source = {e.payload["intent_id"]: e.payload["source"] for e in ledger_entries(files.ledger)
              if e.kind is _K.PROPOSAL}  # fmt: skip
    allowed = [str(e.payload["intent_id"]) for e in ledger_entries(files.ledger, _K.DECISION)
               if e.payload["allowed"] is True]  # fmt: skip
    assert [source[i] for i in allowed].count("flatten") == 1
    assert sorted(assert_ledger_matches_the_sim(files.ledger, gateway)) == sorted(allowed)
    assert verify_exit_code(files.ledger) == 0


async def flat_in_status(files: Files) -> bool:
    return bool((await control(files, "status"))["positions"] == {})


async def test_a_strategy_class_that_cannot_be_loaded_is_a_configuration_error(
    tmp_path: Path,
) -> None:
    files = write_files(tmp_path, 4102, params={}, strategy="e2e_missing_module:Nope")
    code, output = await ibpilot(*files.argv())
    assert code == 2, output
    assert "cannot import 'e2e_missing_module'" in output
    assert "Traceback" not in output
