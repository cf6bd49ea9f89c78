"""Tick to order: from the simulator writing the tick that triggers to it reading the order.

Run: ``.venv/bin/python bench/tick_to_order.py [--samples 200] [--rounds 2] [--no-pin]``.
Target: ibpilot's p50 within 1.5x of bare ib_async's.

Five contestants, one after the other, against one SimGateway (127.0.0.1, port 0), in
``--rounds`` rounds (ABCDE, then EDCBA, ...) so that a drift in the machine's load falls on all:
``bare ib_async`` (IB(), reqMktData, a pendingTickersEvent handler, placeOrder; no gate, no
ledger); ``ibpilot sqlite normal``, the runtime's path (Engine + IbkrBroker with
``rate_limit_ms`` 0 + the gate, with a permissive mandate and all-day hours: every rule runs,
none refuses + the OMS + SqlLedger in WAL mode with its default ``?sync=normal``, under
``--dir``) with a strategy defined here that proposes in ``on_tick``; ``ibpilot sqlite full``,
the same with ``?sync=full`` (an fsync before the order leaves: ``--dir`` must be a real disk,
on tmpfs fsync is free); ``ibpilot memory``, with MemoryLedger; ``bare + one write``, the bare
script writing the order's record to a file (canonical JSON, one ``os.write``) before
placeOrder: the least any ledger before the wire costs, for scale.  Each is reported with its
p50 and p99 and their ratios to bare ib_async's.

The trigger, applied identically by both contestants to the ticker's last price and, after each
phase, by the benchmark to the LAST tickPrice frames the simulator sent: the last trade price
changed and its cents digit is one of ``--digits``.  Each trigger sends BUY 1 MKT, about three a
second: far below ib_async's 45 messages/s and ibpilot's token bucket.  t0 is taken in the
simulator's wire tap just before it writes the triggering frame, t1 in its request tap when the
placeOrder message has been framed: one process, one clock.

Pairing: the bare script puts the trigger's price in orderRef; ibpilot's orderRef is the intent
id, joined to the trigger's price through the strategy's proposals and the PROPOSAL entries the
ledger was given, in order.  t0 is the latest trigger frame of that price sent before the
contestant reacted (its first timestamp: perf_counter_ns is CLOCK_MONOTONIC in both processes).
Feed steps are 50 ms apart, so two triggers of one price cannot be confused within a reaction.
A trigger no order answers (two feed steps read in one batch can hide a change) is "missed".

The simulator runs in a child process, as IB Gateway does, pinned to the last CPU and the
contestants to the others.  With ``--no-pin`` the kernel tends to wake the simulator on the
contestant's CPU, where it waits for what the contestant does after the send (ibpilot
chains and commits the staged entries then).  Also printed: where the time goes, per stage,
from timestamps taken in the benchmark's own code: the bare handler; ibpilot's strategy, a
timing wrapper around the ledger (``stage``, or ``append_many`` for a ledger without one) and
an IbkrBroker subclass noting when quotes are published and when ``place()`` is called.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import ib_async

from ibpilot.broker.base import BrokerEvent, OrderRequest
from ibpilot.broker.base import Quote as BrokerQuote
from ibpilot.broker.ibkr import IbkrBroker
from ibpilot.config import WEEKDAYS, AdapterConfig, LoadedStrategy, StrategyConfig, spec_hash
from ibpilot.engine import Engine
from ibpilot.ledger import Entry, EntryKind, Ledger, MemoryLedger, SqlLedger
from ibpilot.sim import SimGateway
from ibpilot.sim.order_wire import PlaceOrder, order_parsers
from ibpilot.sim.protocol import FieldReader, Message
from ibpilot.strategies import Context, Quote, Strategy

SYMBOL, PRIMARY = "AAPL", "NASDAQ"
OPEN = datetime.fromisoformat("2026-03-02T10:00:00-05:00")  # a Monday, in regular hours
PLACE_ORDER = 3
TICK_PRICE_V6 = b"1\x006\x00"  # how a tickPrice frame's payload starts
LAST = b"4"
SETTLE_S = 0.5  # after the last trigger: let its order reach the simulator
BARE, MEMORY = "bare ib_async", "ibpilot memory"
FLOOR = "bare + one write"  # bare ib_async writing the order's record to a file first
SQLITE = {"ibpilot sqlite normal": "normal", "ibpilot sqlite full": "full"}  # name -> ?sync=
CONTESTANTS = [BARE, *SQLITE, MEMORY, FLOOR]
Lasts = list[tuple[int, float]]  # (ns when written, price) of each LAST tickPrice frame
Orders = list[tuple[int, str]]  # (ns when read, orderRef) of each placeOrder


class Trigger:
    """The signal: the last trade price changed and its cents digit is one of ``digits``."""

    def __init__(self, digits: frozenset[int]) -> None:
        self.digits = digits
        self._last: int | None = None

    def fires(self, price: float | Decimal | None) -> int | None:
        """The price in cents when it triggers, else None."""
        if price is None or math.isnan(price) or price <= 0:
            return None
        cents = round(float(price) * 100)
        changed, self._last = cents != self._last, cents
        return cents if changed and cents % 10 in self.digits else None


# --- the simulator's side ---------------------------------------------------------------------


class SimRecorder:
    """The gateway's taps: frames and messages with their time, decoded only in :meth:`take`."""

    def __init__(self) -> None:
        self.active = False
        self._sent: list[tuple[int, bytes]] = []
        self._read: list[tuple[int, int, Message]] = []

    def on_send(self, server_version: int, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self.active and data[4:8] == TICK_PRICE_V6:
            self._sent.append((now, data))

    def on_request(self, server_version: int, message: Message) -> None:
        now = time.perf_counter_ns()
        if self.active and message.fields[:1] == (str(PLACE_ORDER),):
            self._read.append((now, server_version, message))

    def start(self) -> None:
        self._sent, self._read, self.active = [], [], True

    def take(self) -> tuple[Lasts, Orders]:
        self.active = False
        lasts = []
        for t, data in self._sent:
            fields = data[4:].split(b"\0")
            if fields[3] == LAST:
                lasts.append((t, float(fields[4])))
        orders = []
        for t, version, message in self._read:
            parse = order_parsers(version)[PLACE_ORDER]
            request = parse(FieldReader("placeOrder", message.fields))
            assert isinstance(request, PlaceOrder)
            orders.append((t, request.order.order_ref))
        return lasts, orders


def _gateway(recorder: SimRecorder, seed: int, speed: float) -> SimGateway:
    return SimGateway(
        "127.0.0.1", 0, seed=seed, speed=speed, start=OPEN,
        wire_tap=recorder.on_send, request_tap=recorder.on_request,
    )  # fmt: skip


def _sim_process(conn: Connection, seed: int, speed: float, cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    asyncio.run(_serve(conn, seed, speed))


async def _serve(conn: Connection, seed: int, speed: float) -> None:
    recorder, stop = SimRecorder(), asyncio.Event()

    def on_command() -> None:
        try:
            command = conn.recv()
        except EOFError:  # the benchmark went away
            command = "stop"
        if command == "start":
            recorder.start()
            conn.send(None)
        elif command == "take":
            conn.send(recorder.take())
        else:
            stop.set()

    async with _gateway(recorder, seed, speed) as gw:
        loop = asyncio.get_running_loop()
        loop.add_reader(conn.fileno(), on_command)
        conn.send(gw.port)
        await stop.wait()
        loop.remove_reader(conn.fileno())


class ChildSim:
    """The simulator in a process of its own, driven through a pipe."""

    def __init__(self, seed: int, speed: float, cpus: set[int] | None) -> None:
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        args = (child, seed, speed, cpus)
        self._process = context.Process(target=_sim_process, args=args)
        self._process.start()
        child.close()
        self.port = 0
        self.where = "child process" + (f" on CPU {min(cpus)}" if cpus else "")

    async def open(self) -> None:
        self.port = await self._receive()

    async def _receive(self) -> Any:
        def wait() -> Any:
            if not self._conn.poll(60):
                raise TimeoutError("the simulator process did not answer within 60 s")
            return self._conn.recv()

        return await asyncio.to_thread(wait)

    async def start(self) -> None:
        self._conn.send("start")
        await self._receive()

    async def take(self) -> tuple[Lasts, Orders]:
        self._conn.send("take")
        result: tuple[Lasts, Orders] = await self._receive()
        return result

    async def close(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        await asyncio.to_thread(self._process.join, 10)
        if self._process.is_alive():
            self._process.terminate()


# --- the contestants --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Marks:
    """What a contestant noted about one order: the trigger's price and its own timestamps."""

    cents: int
    stages: Mapping[str, int]  # stage -> perf_counter_ns, in path order


@dataclass(slots=True)
class Run:
    """One phase of one contestant: its notes by orderRef, and what the simulator saw."""

    marks: dict[str, Marks] = field(default_factory=dict)
    refused: int = 0
    lasts: Lasts = field(default_factory=list)
    orders: Orders = field(default_factory=list)


async def run_bare(
    port: int, client_id: int, digits: frozenset[int], want: int, limit_s: float,
    record_to: int | None = None,
) -> Run:  # fmt: skip
    """``record_to``: a file descriptor the order's record is written to before placeOrder
    (canonical JSON, one os.write): the least a ledger before the wire can cost."""
    run, trigger, done = Run(), Trigger(digits), asyncio.Event()
    ib = ib_async.IB()
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, timeout=10)
    try:
        account = ib.managedAccounts()[0]
        contract = ib_async.Stock(SYMBOL, "SMART", "USD", primaryExchange=PRIMARY)
        await ib.qualifyContractsAsync(contract)

        def on_tickers(tickers: Iterable[ib_async.Ticker]) -> None:
            now = time.perf_counter_ns()
            for ticker in tickers:
                cents = trigger.fires(ticker.last)
                if cents is None or len(run.marks) >= want:
                    continue
                ref = f"bare-{len(run.marks)}-{cents}"
                order = ib_async.MarketOrder("BUY", 1, orderRef=ref, tif="DAY", account=account)
                if record_to is not None:
                    record = {"ref": ref, "symbol": SYMBOL, "side": "BUY", "quantity": "1",
                              "order_type": "MKT", "price": cents}  # fmt: skip
                    line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
                    os.write(record_to, line.encode())
                ib.placeOrder(contract, order)
                run.marks[ref] = Marks(cents, {"handler": now})
                if len(run.marks) >= want:
                    done.set()

        ib.pendingTickersEvent += on_tickers
        ib.reqMktData(contract)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), limit_s)
        await asyncio.sleep(SETTLE_S)
        ib.pendingTickersEvent -= on_tickers
        ib.cancelMktData(contract)
    finally:
        ib.disconnect()
    return run


class TriggerStrategy(Strategy):
    """BUY 1 MKT on every trigger; notes each trigger's price, tick number and time."""

    def __init__(self, digits: frozenset[int], want: int) -> None:
        self.trigger, self.want = Trigger(digits), want
        self.fired: list[tuple[int, int, int]] = []  # (cents, index of the tick, ns)
        self.ticks = 0
        self.done = asyncio.Event()

    def on_tick(self, ctx: Context, quote: Quote, **kwargs: Any) -> None:
        now = time.perf_counter_ns()
        index, self.ticks = self.ticks, self.ticks + 1
        cents = self.trigger.fires(quote.last)
        if cents is None or ctx.warming_up or len(self.fired) >= self.want:
            return
        ctx.propose_order(quote.symbol, "BUY", 1)
        self.fired.append((cents, index, now))
        if len(self.fired) >= self.want:
            self.done.set()


class TimedBroker(IbkrBroker):
    """IbkrBroker noting when each quote is published and when ``place()`` is called."""

    def __init__(self, adapter: AdapterConfig) -> None:
        self.quote_times: list[int] = []
        self.place_times: dict[str, int] = {}
        super().__init__(adapter)

    def _publish(self, event: BrokerEvent) -> None:
        if isinstance(event, BrokerQuote):
            self.quote_times.append(time.perf_counter_ns())
        super()._publish(event)

    async def place(self, order: OrderRequest) -> int:
        self.place_times[order.intent_id] = time.perf_counter_ns()
        return await super().place(order)


class TimedLedger:
    """A Ledger noting, for each PROPOSAL, when the call that made it durable (``stage``, the
    OMS's path before the wire, or ``append_many``) began and returned."""

    def __init__(self, inner: Ledger) -> None:
        self.inner = inner
        self.proposals: list[tuple[str, int, int, bool]] = []  # (intent id, ns, ns, allowed)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _note(
        self, items: list[tuple[EntryKind, Mapping[str, object]]], start: int, end: int
    ) -> None:
        allowed = any(kind is EntryKind.INTENT for kind, _ in items)
        for kind, payload in items:
            if kind is EntryKind.PROPOSAL:
                self.proposals.append((str(payload["intent_id"]), start, end, allowed))

    def stage(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> None:
        listed = list(items)
        start = time.perf_counter_ns()
        self.inner.stage(listed, ts=ts, spec_hash=spec_hash)
        self._note(listed, start, time.perf_counter_ns())

    def append_many(
        self,
        items: Iterable[tuple[EntryKind, Mapping[str, object]]],
        *,
        ts: datetime,
        spec_hash: str = "",
    ) -> list[Entry]:
        listed = list(items)
        start = time.perf_counter_ns()
        entries = self.inner.append_many(listed, ts=ts, spec_hash=spec_hash)
        self._note(listed, start, time.perf_counter_ns())
        return entries


def strategy_file(digits: frozenset[int]) -> LoadedStrategy:
    """A permissive mandate: every rule is checked and none refuses during the run."""
    gap = (datetime.now(UTC) + timedelta(hours=12)).replace(second=0, microsecond=0)
    hours = {  # all day but one minute, 12 hours from now
        "start": f"{gap + timedelta(minutes=1):%H:%M}", "end": f"{gap:%H:%M}",
        "time_zone": "UTC", "days": list(WEEKDAYS),
    }  # fmt: skip
    raw = {
        "name": "tick-to-order benchmark", "strategy": "tick_to_order:TriggerStrategy",
        "params": {"digits": sorted(digits)},
        "instruments": [{"symbol": SYMBOL, "primary_exchange": PRIMARY}],
        "bar_size": "1 min", "warmup": "1800 S", "on_stop": "cancel_open_orders",
        "mandate": {
            "allowed_symbols": [SYMBOL], "allowed_order_types": ["MKT"],
            "max_order_quantity": 1, "max_order_notional": 1_000_000,
            "max_position": 1_000_000, "max_daily_loss": 1_000_000,
            "max_orders_per_minute": 100_000, "trading_hours": hours,
        },
    }  # fmt: skip
    return LoadedStrategy(
        StrategyConfig.model_validate(raw), spec_hash(raw), json.dumps(raw).encode()
    )


async def run_ibpilot(
    port: int, client_id: int, digits: frozenset[int], want: int, limit_s: float, ledger: Ledger
) -> Run:
    adapter = AdapterConfig.model_validate({
        "credentials": {"host": "127.0.0.1", "port": port, "client_id": client_id},
        "environment": "sim", "trading_pair": SYMBOL, "rate_limit_ms": 0,
    })  # fmt: skip
    broker, strategy = TimedBroker(adapter), TriggerStrategy(digits, want)
    timed = TimedLedger(ledger)
    engine = Engine(
        strategy_file(digits), broker, timed,
        lambda: datetime.now(UTC), environment=adapter.environment, strategy=strategy,
    )  # fmt: skip
    task = asyncio.create_task(engine.run())
    enough = asyncio.create_task(strategy.done.wait())
    await asyncio.wait({task, enough}, timeout=limit_s, return_when=asyncio.FIRST_COMPLETED)
    enough.cancel()
    if task.done():
        task.result()  # raises what the engine raised
        raise RuntimeError("the engine stopped on its own")
    await asyncio.sleep(SETTLE_S)
    await engine.stop("benchmark done")
    await task
    run = Run()
    for (cents, index, on_tick), (intent_id, ledger_in, ledger_out, allowed) in zip(
        strategy.fired, timed.proposals, strict=False
    ):
        if not allowed:
            run.refused += 1
            continue
        stages = {
            "published": broker.quote_times[index], "on_tick": on_tick, "ledger": ledger_in,
            "ledgered": ledger_out, "place": broker.place_times[intent_id],
        }  # fmt: skip
        run.marks[intent_id] = Marks(cents, stages)
    return run


# --- pairing and statistics -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    latency_ns: int  # t1 - t0
    stages: Mapping[str, int]  # the contestant's stages and "read" (t1), in ns after t0


@dataclass(slots=True)
class Result:
    samples: list[Sample] = field(default_factory=list)
    triggers: int = 0
    missed: int = 0  # triggers before the last answered one that no order answered
    unpaired: int = 0  # orders the simulator read that match no trigger or no note
    refused: int = 0


def pair(run: Run, digits: frozenset[int], warmup: int, into: Result) -> None:
    """Join the simulator's trigger frames, its placeOrders and the contestant's notes."""
    trigger = Trigger(digits)
    by_price: dict[int, list[int]] = {}
    for t, price in run.lasts:
        cents = trigger.fires(price)
        if cents is not None:
            by_price.setdefault(cents, []).append(t)
            into.triggers += 1
    samples, answered = [], set()
    for t1, ref in sorted(run.orders):
        mark = run.marks.get(ref)
        sent = by_price.get(mark.cents, []) if mark is not None else []
        reacted = min(mark.stages.values()) if mark is not None else t1
        at = bisect.bisect_left(sent, reacted)
        if mark is None or at == 0:
            into.unpaired += 1
            continue
        t0 = sent[at - 1]
        answered.add(t0)
        stages = {name: t - t0 for name, t in mark.stages.items()} | {"read": t1 - t0}
        samples.append(Sample(t1 - t0, stages))
    if answered:
        last = max(answered)
        into.missed += sum(t <= last for ts in by_price.values() for t in ts) - len(answered)
    into.samples += samples[warmup:]
    into.refused += run.refused


def percentile(ordered: list[float], p: float) -> float:
    """Nearest rank."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def row(label: str, values: list[float], bare: list[float]) -> str:
    """n, p50, p90, p99, max and the p50 and p99 ratios to ``bare``'s."""
    ordered, base = sorted(values), sorted(bare)
    cuts = [percentile(ordered, p) for p in (50, 90, 99)] + [ordered[-1]]
    ratios = [percentile(ordered, p) / percentile(base, p) for p in (50, 99)]
    numbers = " ".join(f"{c:8.0f}" for c in cuts) + " " + " ".join(f"{r:6.2f}x" for r in ratios)
    return f"{label:<22} {len(values):5d} {numbers}"


def breakdown(result: Result) -> list[str]:
    """p50/p99 of each stage-to-stage step, in microseconds."""
    names = ["sent", *result.samples[0].stages]
    lines = []
    for before, after in itertools.pairwise(names):
        ordered = sorted((s.stages[after] - s.stages.get(before, 0)) / 1e3 for s in result.samples)
        p50, p99 = percentile(ordered, 50), percentile(ordered, 99)
        lines.append(f"  {before + ' -> ' + after:<24} p50 {p50:7.0f}   p99 {p99:7.0f}")
    return lines


# --- main -------------------------------------------------------------------------------------


def fs_type(path: Path) -> str:
    """The filesystem under ``path`` (Linux; "?" elsewhere)."""
    best, kind, where = "", "?", str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, fs, *_ = line.split()
            if where.startswith(mount) and len(mount) > len(best):
                best, kind = mount, fs
    return kind


def environment(sim_where: str, args: argparse.Namespace) -> list[str]:
    usable = sorted(os.sched_getaffinity(0))
    loop = type(asyncio.get_running_loop()).__name__
    digits = "".join(map(str, sorted(args.digits)))
    python = (
        f"python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, contestants on CPUs {usable}, {loop}"
    )
    ledger = (
        f"ib_async {ib_async.__version__}, SQLite {sqlite3.sqlite_version} on "
        f"{fs_type(args.dir)} ({args.dir})"
    )
    setup = (
        f"simulator: {sim_where}, speed {args.speed:g}x, seed {args.seed}; trigger: the LAST "
        f"price changed and its cents digit is in {digits}; {args.rounds} round(s), "
        f"{args.warmup} warm-up samples dropped per phase"
    )
    return [python, ledger, setup]


async def phase(
    name: str, sim: ChildSim, client_id: int, want: int, args: argparse.Namespace
) -> Run:
    await sim.start()
    if name == BARE:
        run = await run_bare(sim.port, client_id, args.digits, want, args.limit)
    elif name == FLOOR:
        directory = Path(tempfile.mkdtemp(prefix="tick-to-order-", dir=args.dir))
        fd = os.open(directory / "records", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            run = await run_bare(sim.port, client_id, args.digits, want, args.limit, fd)
        finally:
            os.close(fd)
            shutil.rmtree(directory)
    elif name == MEMORY:
        run = await run_ibpilot(sim.port, client_id, args.digits, want, args.limit, MemoryLedger())
    else:
        directory = Path(tempfile.mkdtemp(prefix="tick-to-order-", dir=args.dir))
        path = directory.absolute() / "ledger.sqlite"
        ledger = SqlLedger(f"sqlite:///{path}?sync={SQLITE[name]}")
        try:
            run = await run_ibpilot(sim.port, client_id, args.digits, want, args.limit, ledger)
        finally:
            ledger.close()
            shutil.rmtree(directory)
    run.lasts, run.orders = await sim.take()
    return run


def open_sim(args: argparse.Namespace) -> ChildSim:
    cpus = sorted(os.sched_getaffinity(0))
    if args.no_pin or len(cpus) < 2:
        return ChildSim(args.seed, args.speed, None)
    os.sched_setaffinity(0, set(cpus[:-1]))
    return ChildSim(args.seed, args.speed, {cpus[-1]})


async def bench(args: argparse.Namespace) -> None:
    args.dir.mkdir(parents=True, exist_ok=True)
    sim = open_sim(args)
    await sim.open()
    names = CONTESTANTS
    results = {name: Result() for name in names}
    per_phase = math.ceil(args.samples / args.rounds)
    try:
        for r in range(args.rounds):
            for i, name in enumerate(names if r % 2 == 0 else names[::-1]):
                started = time.monotonic()
                run = await phase(name, sim, 100 + 10 * r + i, args.warmup + per_phase, args)
                pair(run, args.digits, args.warmup, results[name])
                took = time.monotonic() - started
                print(f"round {r + 1}, {name}: {len(run.orders)} orders in {took:.0f} s",
                      file=sys.stderr)  # fmt: skip
    finally:
        await sim.close()
    report(results, sim.where, args)


def report(results: dict[str, Result], sim_where: str, args: argparse.Namespace) -> None:
    print("\nTick to order: the simulator writes the triggering tickPrice -> reads the placeOrder")
    for line in environment(sim_where, args):
        print(line)
    heads = ("n", "p50", "p90", "p99", "max", "p50/bare", "p99/bare")
    widths = (5, 8, 8, 8, 8, 7, 7)
    columns = " ".join(f"{h:>{w}}" for h, w in zip(heads, widths, strict=True))
    print(f"\n{'contestant':<22} {columns}  (us)")
    bare = [s.latency_ns / 1e3 for s in results[BARE].samples]
    for name, result in results.items():
        print(row(name, [s.latency_ns / 1e3 for s in result.samples], bare))
    for name, result in results.items():
        counts = (
            f"{result.triggers} triggers, {result.missed} missed, "
            f"{result.unpaired} orders unpaired, {result.refused} refused by the gate"
        )
        print(f"  {name}: {counts}")
    p50 = {n: percentile(sorted(s.latency_ns for s in r.samples), 50) for n, r in results.items()}
    for name in CONTESTANTS[1:]:
        ratio = p50[name] / p50[BARE]
        verdict = "within" if ratio <= 1.5 else "ABOVE"
        print(f"p50 ratio {name} / {BARE}: {ratio:.2f}x ({verdict} the 1.5x target)")
    print("\nWhere the time goes (us, per step; 'sent' is t0, 'read' is t1):")
    for name, result in results.items():
        print(f" {name}")
        for line in breakdown(result):
            print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--samples", type=int, default=200, help="per contestant, after the warm-ups")
    add("--rounds", type=int, default=2, help="phases per contestant: ABC, CBA, ...")
    add("--warmup", type=int, default=10, help="samples dropped per phase")
    add("--speed", type=float, default=10.0, help="simulated seconds per second (at most 20)")
    add("--digits", type=lambda s: frozenset(int(c) for c in s), default="1357",
        help="the cents digits that trigger (four: about 3 orders/s at 10x)")  # fmt: skip
    add("--seed", type=int, default=7)
    add("--limit", type=float, default=240.0, help="seconds per phase at most")
    add("--dir", type=Path, default=Path("var/bench"), help="for the SQLite ledger: a real disk")
    add("--no-pin", action="store_true", help="do not pin the simulator to a CPU of its own")
    args = parser.parse_args()
    if not 0 < args.speed <= 20:
        parser.error("--speed must be above 0 and at most 20 (one simulated second per step)")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
