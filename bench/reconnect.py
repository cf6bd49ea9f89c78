"""Reconnect to trading: how long after a gateway restart ibpilot can trade again.

Run: ``.venv/bin/python bench/reconnect.py [--rounds 5] [--down 1.0] [--limit 60]``.

Setup, in one process (the simulator and the broker share the event loop; every socket is
127.0.0.1): a SimGateway at Monday 2026-03-02 10:00 US/Eastern, speed 1, 300 market-data lines;
an IbkrBroker (300 lines, its default backoff; its token bucket at ``--rate``, the runtime's
default 40 messages/s with a burst of a tenth of that, so no second holds more than 44)
subscribed to 100 distinct contracts (the 42 listed stocks, ETFs and FX pairs, the 16 listed
ES/NQ/CL futures, and 14 near-the-money calls and puts of the nearest-but-one expiry of each
of the SPY, AAPL and QQQ chains); 50 working GTC limit orders (BUY 1 AAPL LMT 1.00) placed
through the OMS with a MemoryLedger, as the engine places them.

Each round: ``gateway.faults.restart(down)``, which closes every socket, refuses connections for
``down`` s and returns once the gateway listens again.  t0 is that return (the gateway is back);
the stages are real seconds after t0:

  handshake     the simulator reads the client's startApi (socket open, version handshake done);
  CONNECTED     the broker announces CONNECTED (after the start-up sync; subscriptions are
                renewed behind it, paced);
  all quotes    the last of the 100 subscriptions delivers its first Quote after t0;
  reconciled    the engine's reconciliation, started on CONNECTED as the engine does
                (``Oms.reconcile("reconnect")`` then ``broker.positions()``), has returned and all
                50 orders were matched and are WORKING;
  trading       trading resumed = max(CONNECTED, reconciled): the engine accepts orders again;
  all resumed   max(all quotes, reconciled): strategies see every instrument too.

The floor: every message the client sent, as the simulator's request tap read them, from the
restart to "all resumed", divided by IB's limit of 50 messages/s (and by ibpilot's own token
bucket, 40/s).  Reported per stage: median and max over the rounds, and the ratio of
"all resumed" to each floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from ibpilot.broker._ibkr_state import Backoff
from ibpilot.broker.base import BrokerEvent, ConnectionEvent, ConnectionState, Contract, ContractRef
from ibpilot.broker.base import Quote as BrokerQuote
from ibpilot.broker.ibkr import IbkrBroker
from ibpilot.config import AdapterConfig, OrderType
from ibpilot.gate import Decision, Proposal, Side, Source, TimeInForce
from ibpilot.intents import IntentState
from ibpilot.ledger import MemoryLedger
from ibpilot.oms import Oms
from ibpilot.sim import SimGateway
from ibpilot.sim.protocol import Message
from ibpilot.sim.refdata import ContractQuery, Instrument, RefData
from ibpilot.sim.requests import Out

OPEN = datetime.fromisoformat("2026-03-02T10:00:00-05:00")  # a Monday, in regular hours
SUBSCRIPTIONS, ORDERS = 100, 50
LINES = 300  # each subscription holds 2 lines (quotes + 5-second bars)
IB_RATE, IBPILOT_RATE = 50.0, 40.0
CHAINS = ("SPY", "AAPL", "QQQ")
STRIKES_PER_CHAIN = 7  # each as a call and a put
STAGES = ("handshake", "CONNECTED", "all quotes", "reconciled", "trading", "all resumed")


# --- the 100 contracts ------------------------------------------------------------------------


def pick_contracts(refdata: RefData, day: date) -> list[Instrument]:
    """100 distinct instruments the simulator quotes: listed (no indexes), futures, options."""
    listed = [i for i in _listed(refdata) if i.sec_type in ("STK", "CASH")]
    futures = [
        f
        for s in ("ES", "NQ", "CL")
        for f in refdata.resolve(ContractQuery(symbol=s, sec_type="FUT"), day)
    ]
    options: list[Instrument] = []
    for symbol in CHAINS:
        (chain, *_) = refdata.option_params(symbol, "STK", 0, "SMART", day)
        expiry = chain.expirations[1]
        under = next(i for i in listed if i.symbol == symbol)
        near = sorted(chain.strikes, key=lambda s: abs(s - under.model.price))[:STRIKES_PER_CHAIN]
        for strike in sorted(near):
            for right in ("C", "P"):
                query = ContractQuery(
                    symbol=symbol, sec_type="OPT", exchange="SMART", strike=strike, right=right,
                    last_trade_date_or_contract_month=expiry,
                )  # fmt: skip
                (found,) = refdata.resolve(query, day)
                options.append(found)
    picked = (listed + futures + options)[:SUBSCRIPTIONS]
    if len({i.con_id for i in picked}) != SUBSCRIPTIONS:
        raise RuntimeError(f"only {len({i.con_id for i in picked})} distinct contracts found")
    return picked


def _listed(refdata: RefData) -> list[Instrument]:
    public: tuple[Instrument, ...] = refdata._public  # type: ignore[attr-defined]
    return sorted(public, key=lambda i: i.con_id)


def ref_of(inst: Instrument) -> ContractRef:
    return ContractRef(
        inst.symbol, inst.sec_type, exchange=inst.exchange, currency=inst.currency,
        con_id=inst.con_id,
    )  # fmt: skip


# --- what the simulator read and what the broker published ------------------------------------


class Taps:
    """The simulator's request tap and the broker's events, with perf_counter times."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, int]] = []  # (time, msg id), while recording
        self.recording = False
        self.connected: list[float] = []
        self.first_quote: dict[int, float] = {}  # con id -> first Quote since mark()
        self.states: list[tuple[float, ConnectionState]] = []
        self.on_connected = asyncio.Event()

    def on_request(self, server_version: int, message: Message) -> None:
        if self.recording:
            self.requests.append((time.perf_counter(), message.msg_id))

    def mark(self) -> None:
        self.requests, self.recording = [], True
        self.connected, self.first_quote, self.states = [], {}, []
        self.on_connected.clear()

    def on_event(self, event: BrokerEvent) -> None:
        now = time.perf_counter()
        if isinstance(event, BrokerQuote):
            self.first_quote.setdefault(event.con_id, now)
        elif isinstance(event, ConnectionEvent):
            self.states.append((now, event.state))
            if event.state is ConnectionState.CONNECTED:
                self.connected.append(now)
                self.on_connected.set()


async def drain(broker: IbkrBroker, taps: Taps) -> None:
    stream = broker.events()
    try:
        async for event in stream:
            taps.on_event(event)
    finally:
        stream.close()


async def wait_until(check: object, limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {limit:g} s")
        await asyncio.sleep(0.005)


# --- one round --------------------------------------------------------------------------------


@dataclass(slots=True)
class Round:
    stages: dict[str, float] = field(default_factory=dict)  # stage -> s after t0
    messages: Counter[str] = field(default_factory=Counter)  # restart .. all resumed
    missing_quotes: int = 0
    matched: int = 0
    working: int = 0
    notes: list[str] = field(default_factory=list)


async def reconcile(oms: Oms, broker: IbkrBroker, intents: list[str]) -> tuple[int, int]:
    """The engine's reconciliation; (orders matched, intents WORKING afterwards)."""
    found = await oms.reconcile("reconnect")
    await broker.positions()
    working = [i for i in intents if (s := oms.intent(i)) and s.state is IntentState.WORKING]
    return len(set(found.matched) & set(intents)), len(working)


async def one_round(
    gw: SimGateway, broker: IbkrBroker, oms: Oms, taps: Taps, subs: set[int], intents: list[str],
    args: argparse.Namespace,
) -> Round:  # fmt: skip
    out = Round()
    taps.mark()
    restart_at = time.perf_counter()
    await gw.faults.restart(down=args.down)
    t0 = time.perf_counter()
    await asyncio.wait_for(taps.on_connected.wait(), args.limit)
    (connected,) = taps.connected[-1:]
    out.matched, out.working = await reconcile(oms, broker, intents)
    reconciled = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await wait_until(lambda: subs <= taps.first_quote.keys(), args.limit, "first quotes")
    quoted = [t for c, t in taps.first_quote.items() if c in subs and t >= t0]
    out.missing_quotes = len(subs - {c for c, t in taps.first_quote.items() if t >= t0})
    all_quotes = max(quoted) if quoted and not out.missing_quotes else float("nan")
    resumed = max(all_quotes, reconciled)
    taps.recording = False
    starts = [t for t, m in taps.requests if m == Out.START_API and t >= t0]
    out.stages = {
        "handshake": (starts[0] if starts else float("nan")) - t0,
        "CONNECTED": connected - t0,
        "all quotes": all_quotes - t0,
        "reconciled": reconciled - t0,
        "trading": max(connected, reconciled) - t0,
        "all resumed": resumed - t0,
    }
    for t, m in taps.requests:
        if t <= resumed:
            out.messages[_name(m)] += 1
    before = [t for t, _ in taps.requests if t < t0]
    if before:
        out.notes.append(f"{len(before)} messages read between the restart and t0")
    attempts = sum(s is ConnectionState.RECONNECTING for _, s in taps.states)
    out.notes.append(f"{attempts} RECONNECTING attempt(s); restart took {t0 - restart_at:.2f} s")
    return out


def _name(msg_id: int) -> str:
    try:
        return Out(msg_id).name
    except ValueError:
        return str(msg_id)


# --- setup and report -------------------------------------------------------------------------


async def setup(
    gw: SimGateway, broker: IbkrBroker, oms: Oms, taps: Taps, limit: float
) -> tuple[set[int], list[str]]:
    await broker.connect()
    instruments = pick_contracts(gw.refdata, gw.clock.now_dt().date())
    contracts: list[Contract] = []
    for inst in instruments:
        contracts.append(await broker.resolve(ref_of(inst)))
    for contract in contracts:
        await broker.subscribe(contract)
    subs = {c.con_id for c in contracts}
    aapl = next(c for c in contracts if c.symbol == "AAPL" and c.sec_type == "STK")
    intents = [f"reconnect-bench-{i:02d}" for i in range(ORDERS)]
    for intent_id in intents:
        proposal = Proposal(
            source=Source.CLI, symbol="AAPL", side=Side.BUY, quantity=Decimal(1),
            order_type=OrderType.LMT, limit_price=Decimal("1.00"), tif=TimeInForce.GTC,
            intent_id=intent_id,
        )  # fmt: skip
        await oms.submit(proposal, Decision(allowed=True), aapl)
    await wait_until(lambda: subs <= taps.first_quote.keys(), limit, "first quotes at setup")
    matched, working = await reconcile(oms, broker, intents)
    if (matched, working) != (ORDERS, ORDERS):
        raise RuntimeError(f"setup: {matched} orders matched, {working} working of {ORDERS}")
    kinds = Counter(c.sec_type for c in contracts)
    print(f"setup: {len(subs)} subscriptions {dict(kinds)}, {ORDERS} working GTC orders",
          file=sys.stderr)  # fmt: skip
    return subs, intents


def report(rounds: list[Round], args: argparse.Namespace) -> None:
    print("\nReconnect to trading after a gateway restart")
    print(
        f"simulator in-process (same event loop), speed {args.speed:g}x, restart down "
        f"{args.down:g} s; broker bucket {args.rate:g} msg/s "
        f"(burst {max(1, int(args.rate // 10))}); "
        f"{SUBSCRIPTIONS} subscriptions, {ORDERS} working orders; "
        f"{len(rounds)} round(s); t0 = faults.restart() returned (the gateway listens again)"
    )
    print(f"\n{'stage (s after t0)':<20} {'median':>8} {'max':>8}   per round")
    for stage in STAGES:
        values = [r.stages[stage] for r in rounds]
        each = " ".join(f"{v:6.2f}" for v in values)
        print(f"{stage:<20} {statistics.median(values):8.2f} {max(values):8.2f}   {each}")
    totals = [sum(r.messages.values()) for r in rounds]
    counts = Counter[str]()
    for r in rounds:
        counts.update(r.messages)
    median_n = statistics.median(totals)
    print(f"\nmessages the client sent, restart -> all resumed: per round {totals}")
    per_round = ", ".join(f"{k} {v / len(rounds):g}" for k, v in counts.most_common())
    print(f"  by kind (mean per round): {per_round}")
    resumed = statistics.median(r.stages["all resumed"] for r in rounds)
    trading = statistics.median(r.stages["trading"] for r in rounds)
    ib_floor, own_floor = median_n / IB_RATE, median_n / IBPILOT_RATE
    print(f"floor at IB's {IB_RATE:g} msg/s:        {ib_floor:6.2f} s")
    print(f"floor at ibpilot's {IBPILOT_RATE:g} msg/s bucket: {own_floor:6.2f} s")
    print(f"floor at the {args.rate:g} msg/s used here:  {median_n / args.rate:6.2f} s")
    print(f"all resumed (median) {resumed:.2f} s = {resumed / ib_floor:.2f}x IB's floor, "
          f"{resumed / own_floor:.2f}x ibpilot's")  # fmt: skip
    print(f"trading (median)     {trading:.2f} s = {trading / ib_floor:.2f}x IB's floor, "
          f"{trading / own_floor:.2f}x ibpilot's")  # fmt: skip
    for i, r in enumerate(rounds, 1):
        checks = f"{r.matched}/{ORDERS} orders matched, {r.working}/{ORDERS} WORKING"
        checks += f", {r.missing_quotes} subscriptions without a quote"
        print(f"  round {i}: {checks}; " + "; ".join(r.notes))


async def bench(args: argparse.Namespace) -> None:
    taps = Taps()
    gateway = SimGateway(
        "127.0.0.1", 0, seed=args.seed, speed=args.speed, start=OPEN,
        market_data_lines=LINES, request_tap=taps.on_request,
    )  # fmt: skip
    async with gateway as gw:
        adapter = AdapterConfig.model_validate({
            "credentials": {"host": "127.0.0.1", "port": gw.port, "client_id": 1},
            "environment": "sim", "trading_pair": "AAPL", "rate_limit_ms": 0,
        })  # fmt: skip
        broker = IbkrBroker(
            adapter, clock=gw.clock.now_dt, market_data_lines=LINES,
            backoff=Backoff(rng=random.Random(args.seed)), messages_per_second=args.rate,
        )  # fmt: skip
        oms = Oms(MemoryLedger(), broker, spec_hash="reconnect-bench", clock=gw.clock.now_dt)
        drainer = asyncio.create_task(drain(broker, taps))
        try:
            started = time.monotonic()
            subs, intents = await setup(gw, broker, oms, taps, args.limit)
            print(f"setup took {time.monotonic() - started:.1f} s", file=sys.stderr)
            rounds = []
            for r in range(args.rounds):
                rounds.append(await one_round(gw, broker, oms, taps, subs, intents, args))
                print(f"round {r + 1}: trading after {rounds[-1].stages['trading']:.2f} s",
                      file=sys.stderr)  # fmt: skip
                await asyncio.sleep(args.pause)
        finally:
            await broker.disconnect()
            drainer.cancel()
            await asyncio.gather(drainer, return_exceptions=True)
    report(rounds, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--rounds", type=int, default=5, help="restarts measured (1..20)")
    add("--down", type=float, default=1.0, help="seconds the gateway refuses connections")
    add("--speed", type=float, default=1.0, help="simulated seconds per second")
    add("--limit", type=float, default=60.0, help="seconds any one wait may take at most")
    add("--pause", type=float, default=2.0, help="seconds between rounds")
    add(
        "--rate",
        type=float,
        default=40.0,
        help="the broker's token bucket, messages/s (ibpilot's default; its burst is a tenth)",
    )
    add("--seed", type=int, default=7)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be 1..20")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
